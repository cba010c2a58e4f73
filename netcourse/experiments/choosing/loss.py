"""Notebook 11: loss on every transport. The same workload across the tap link at 0, 1 and 5 % frame loss each
way: the TCP transports deliver everything, late (a lost segment holds back every byte behind it until it is
resent: head-of-line blocking, in the tail of their latency); UDP delivers on time or never.

The relay cannot lose a TCP segment, so this needs the tap link (root). ``make bench`` measures it and stores it
in ``netcourse/measured/loss.json``; the notebook reads that, and a learner without root sees the stored run.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, replace
from pathlib import Path

from .harness import TAIL_SAMPLES, TRANSPORTS, TransportRun, Workload, nearest_rank
from .sweeps import sized
from .transports import run_transport

__all__ = ["MEASURED", "LOSSES", "LOSS_WORKLOAD", "measure_loss", "load_loss", "LossTable", "loss_table",
           "summarise_loss"]


MEASURED = Path(__file__).resolve().parents[2] / "measured" / "loss.json"


LOSSES = (0.0, 0.01, 0.05)  # of the frames, each way


LOSS_WORKLOAD = sized(Workload(clients=5, rate=20.0, size=100, rtt_ms=50.0, interval=0.25, arrivals="poisson"))


def summarise_loss(runs: list[TransportRun]) -> dict:
    """One transport at one loss over several runs: latencies pooled (enough samples for a 99th percentile),
    deliveries summed, each run's median and delivered share kept (their spread), bytes per message the median
    of the runs'."""
    pooled = [x * 1000 for r in runs for x in r.latencies]
    return {"p50_ms": nearest_rank(pooled, 50), "p99_ms": nearest_rank(pooled, 99),
            "max_ms": max(pooled) if pooled else float("nan"), "samples": len(pooled),
            "delivered": sum(r.delivered for r in runs), "expected": sum(r.expected for r in runs),
            "per_run_p50_ms": [r.percentile(50) for r in runs],
            "per_run_delivered": [r.delivered / r.expected for r in runs],
            "steady_bytes_per_msg": statistics.median(r.steady_bytes_per_message for r in runs)}


def measure_loss(runs: int = 5, workload: Workload = LOSS_WORKLOAD, losses: tuple[float, ...] = LOSSES,
                 transports: tuple[str, ...] = TRANSPORTS, path: Path | None = MEASURED, note: str = "") -> dict:
    """Every transport at every loss, ``runs`` times (seeds 1, 2, … for the arrivals) across the tap link;
    saved to ``path`` (None: not saved). About ten minutes; needs root."""
    from datetime import datetime, timezone

    from ...network.link import modes

    why = modes()["tap"]
    if why is not None:
        raise RuntimeError(f"loss on the TCP transports needs the tap link, which cannot run here: {why}. "
                           "load_loss() shows the course's stored run.")
    results: dict[str, dict[str, dict]] = {t: {} for t in transports}
    for loss in losses:
        for t in transports:
            done = [run_transport(t, sized(replace(workload, loss=loss, seed=seed)), mode="tap")
                    for seed in range(1, runs + 1)]  # each seed: its own arrivals and its own losses
            results[t][str(loss)] = summarise_loss(done)
    data = {"measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "runs": runs,
            "workload": {k: v for k, v in asdict(workload).items() if k not in ("away", "batch", "loss")},
            "losses": list(losses), "note": note, "results": results}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1) + "\n")
    return data


def load_loss(path: Path = MEASURED) -> dict:
    """The loss sweep ``make bench`` measured (``measure_loss``), with when and on which workload."""
    return json.loads(path.read_text())


class LossTable(list):
    """Rows (transport, {loss: figures}) shown as a table: median and 99th percentile latency, and what was
    delivered, at each loss."""

    def __init__(self, data: dict):
        super().__init__(data["results"].items())
        self.data = data

    def _cell(self, f: dict) -> str:
        got = "all" if f["delivered"] == f["expected"] else f"{f['delivered'] / f['expected']:.1%}"
        tail = f"{f['p99_ms']:.0f}" if f.get("samples", TAIL_SAMPLES) >= TAIL_SAMPLES else f"max {f['max_ms']:.0f}"
        return f"{f['p50_ms']:.0f} / {tail} ms, {got}, {f.get('steady_bytes_per_msg', float('nan')):.0f} B"

    def __repr__(self) -> str:
        losses = [str(x) for x in self.data["losses"]]
        w = self.data["workload"]
        lines = [f"{self.data['runs']} runs at each loss, measured on {self.data['measured_at']} across the tap link "
                 f"({w['rtt_ms']:g} ms, {w['clients']} clients, {w['rate']:g} msg/s); median / p99 of the runs' "
                 "latencies pooled (thousands of samples), delivered, bytes per delivered message",
                 f"{'':<14}" + "".join(f"{float(x):>6.0%} loss{'':<26}" for x in losses)]
        for name, by_loss in self:
            lines.append(f"{name:<14}" + "".join(f"{self._cell(by_loss[x]):<37}" for x in losses))
        return "\n".join(lines)


def loss_table(data: dict) -> LossTable:
    return LossTable(data)
