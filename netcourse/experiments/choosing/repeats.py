"""Notebook 11: section 1's workload run several times by ``make bench``, each figure kept as a median with its
range, so that a difference between two transports can be told from the difference between two runs.

One run gives one sample of each figure (a median latency, bytes and CPU per message); the next run gives
another. Stored in ``netcourse/measured/repeats.json`` with the date and the workload; the notebook reads it.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from .harness import Workload
from .sweeps import summarise

__all__ = ["MEASURED", "FIGURES", "SECTION_1", "measure_repeats", "load_repeats", "Spread", "spreads", "SpreadTable",
           "spread_table", "distinguishable"]


MEASURED = Path(__file__).resolve().parents[2] / "measured" / "repeats.json"


FIGURES = {"p50_ms": ("median latency", "ms", 1), "bytes_per_msg": ("bytes per message", "B", 0),
           "cpu_us_per_msg": ("server CPU per message", "µs", 0)}


SECTION_1 = Workload(clients=5, messages=16, rate=50, size=100, rtt_ms=50, interval=0.25)


def measure_repeats(workload: Workload = SECTION_1, runs: int = 5, path: Path = MEASURED) -> dict:
    """Run every transport on ``workload`` ``runs`` times (one transport at a time) and save each run's figures."""
    from datetime import datetime, timezone

    from .transports import compare

    if not 2 <= runs <= 50:
        raise ValueError("runs must be from 2 to 50: a spread needs at least two")
    samples: dict[str, list[dict]] = {}
    for _ in range(runs):
        for name, run in compare(workload).items():
            samples.setdefault(name, []).append(summarise(run))
    data = {"measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "runs": runs,
            "workload": asdict(workload), "samples": samples}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return data


def load_repeats(path: Path = MEASURED) -> dict:
    """The repeats ``make bench`` measured (``measure_repeats``), with when and on which workload."""
    return json.loads(path.read_text())


@dataclass(frozen=True)
class Spread:
    """One figure of one transport over the runs: the median of the runs' values, and the lowest and highest."""

    median: float
    low: float
    high: float

    def overlaps(self, other: Spread) -> bool:
        return self.low <= other.high and other.low <= self.high


def spreads(data: dict) -> dict[str, dict[str, Spread]]:
    """{transport: {figure: Spread}} from stored repeats."""
    out: dict[str, dict[str, Spread]] = {}
    for name, runs in data["samples"].items():
        out[name] = {}
        for figure in FIGURES:
            values = [r[figure] for r in runs]
            out[name][figure] = Spread(statistics.median(values), min(values), max(values))
    return out


def distinguishable(data: dict, a: str, b: str, figure: str) -> bool:
    """True when the runs' ranges of ``figure`` for transports ``a`` and ``b`` do not overlap."""
    table = spreads(data)
    return not table[a][figure].overlaps(table[b][figure])


class SpreadTable(list):
    """Rows (transport, {figure: Spread}) that show as a table: each cell "median (low–high)"."""

    def __init__(self, data: dict):
        super().__init__(spreads(data).items())
        self.data = data

    def _cell(self, figure: str, s: Spread) -> str:
        _, unit, digits = FIGURES[figure]
        return f"{s.median:,.{digits}f} {unit} ({s.low:,.{digits}f}–{s.high:,.{digits}f})"

    def __repr__(self) -> str:
        head = f"{'':<14}" + "".join(f"{FIGURES[f][0]:<32}" for f in FIGURES)
        lines = [f"{self.data['runs']} runs, measured on {self.data['measured_at']}: median (lowest–highest)",
                 head]
        for name, figures in self:
            lines.append(f"{name:<14}" + "".join(f"{self._cell(f, figures[f]):<32}" for f in FIGURES))
        return "\n".join(lines)


def spread_table(data: dict) -> SpreadTable:
    return SpreadTable(data)
