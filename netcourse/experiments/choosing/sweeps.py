"""Notebook 11: the rate, clients, size and RTT sweeps measured by ``make bench`` and stored; the knobs read them.

Every point is a steady state: Poisson arrivals for as long as each short poller asks 20 times (``POLLS``), the
connections' set-up counted apart from the bytes per message once everyone is connected, and each point run
several times with different draws of the arrivals (its median kept with the lowest and highest). The rate sweep
adds a WebSocket server that batches on short polling's clock (``BATCHED``), so that bytes can be compared at an
equal latency.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, replace
from pathlib import Path

from .harness import TRANSPORTS, TransportRun, Workload
from .transports import run_transport

__all__ = ["MEASURED", "SWEEPS", "BASE", "POLLS", "BATCHED", "FIGURES", "sized", "summarise", "sweep",
           "measure_sweeps", "load_sweeps", "crossover", "sweep_knob", "live_rate_sweep", "run_one", "best_mode",
           "RateTable", "rate_table", "setup_costs"]


MEASURED = Path(__file__).resolve().parents[2] / "measured" / "sweeps.json"


SWEEPS = {  # the knob's values, one dimension at a time, the others at BASE
    "rate": (0.3, 1.0, 3.0, 10.0, 30.0, 100.0),
    "clients": (1, 5, 20, 50),
    "size": (10, 100, 1000, 10000),
    "rtt_ms": (0.0, 50.0, 200.0),
}


BASE = Workload(clients=5, messages=60, rate=10.0, size=100, rtt_ms=50.0, interval=0.25, arrivals="poisson")


POLLS = 20  # every point publishes for as long as a short poller takes to ask this many times


BATCHED = "WebSocket, batched"  # a WebSocket server that sends what it holds once per poll period


FIGURES = ("p50_ms", "max_ms", "bytes_per_msg", "steady_bytes_per_msg", "setup_bytes_per_client",
           "teardown_bytes_per_client", "units_per_msg", "cpu_us_per_msg")


def sized(workload: Workload, polls: int = POLLS) -> Workload:
    """``workload`` with just enough messages (at least two) that its arrivals last ``polls`` poll periods
    (interval plus round trip), so every short poller asks that many times while messages arrive."""
    target = polls * (workload.interval + workload.rtt_ms / 1000)
    guess = replace(workload, messages=max(2, int(2 * workload.rate * target) + 10))
    schedule = guess.schedule()  # a shorter run's arrivals are the start of a longer one's (same draws)
    for n in range(2, len(schedule) + 1):
        if schedule[n - 1] + 1 / workload.rate >= target:
            return replace(workload, messages=n)
    return guess


def summarise(run: TransportRun) -> dict:
    """The figures a sweep keeps of one run."""
    return {"p50_ms": run.percentile(50), "p99_ms": run.percentile(99),
            "max_ms": 1000 * max(run.latencies) if run.latencies else float("nan"),
            "bytes_per_msg": run.bytes_per_message, "steady_bytes_per_msg": run.steady_bytes_per_message,
            "setup_bytes_per_client": run.setup_bytes_per_client,
            "teardown_bytes_per_client": run.teardown_wire / run.workload.clients, "units_per_msg": run.units_per_message,
            "cpu_us_per_msg": run.cpu_us_per_message, "delivered": run.delivered, "expected": run.expected}


def best_mode() -> str:
    """"tap" where this machine can run the tap link (root): bytes counted on the link, ACKs on a real path;
    else "relay"."""
    from ...network.link import modes

    return "tap" if modes()["tap"] is None else "relay"


def run_one(name: str, workload: Workload, mode: str = "relay") -> TransportRun:
    """One transport (a name of ``TRANSPORTS`` or ``BATCHED``) on ``workload``."""
    if name == BATCHED:  # the same latency budget as short polling: one delivery per poll period
        run = run_transport("WebSocket", replace(workload, batch=workload.interval + workload.rtt_ms / 1000), mode)
        run.name = BATCHED
        return run
    return run_transport(name, workload, mode)


def _median(samples: list[dict]) -> dict:
    """One point: each figure's median over the runs, its [lowest, highest] in ``spread``, the runs kept."""
    out: dict = {}
    for key in samples[0]:
        values = [s[key] for s in samples if s[key] == s[key]]  # NaN (nothing delivered) left out
        out[key] = statistics.median(values) if values else float("nan")
    out["spread"] = {}
    for k in FIGURES:
        values = [s[k] for s in samples if s[k] == s[k]]
        out["spread"][k] = [min(values), max(values)] if values else [float("nan"), float("nan")]
    out["runs"] = len(samples)
    return out


def sweep(dimension: str, values: tuple, base: Workload = BASE, transports: tuple[str, ...] = TRANSPORTS,
          runs: int = 1, seeds: tuple[int, ...] | None = None, mode: str = "relay") -> dict[str, dict[str, dict]]:
    """{transport: {value: point}} with one workload dimension varied, each point ``runs`` runs (seeds 1, 2, …
    for the arrivals and the link's losses), one transport at a time; a point keeps each figure's median and
    range. (``measure_sweeps`` gives the other dimensions the rate sweep's base point: ``_fill_base``.)"""
    seeds = seeds or tuple(range(1, runs + 1))
    out: dict[str, dict[str, dict]] = {t: {} for t in transports}
    for value in values:
        samples: dict[str, list[dict]] = {t: [] for t in transports}
        for seed in seeds:
            workload = sized(replace(base, seed=seed, **{dimension: value}))
            for t in transports:
                samples[t].append(summarise(run_one(t, workload, mode)))
        for t in transports:
            out[t][str(value)] = _median(samples[t])
    return out


def measure_sweeps(path=MEASURED, runs: int = 5, dimensions: tuple[str, ...] = tuple(SWEEPS),
                   mode: str | None = None, note: str = "") -> dict:
    """The sweeps of ``dimensions`` (the rate sweep with ``BATCHED``), each point ``runs`` times, across the tap
    link where this machine can run it (``mode``: None picks); saved for the knobs (merged into what is stored,
    so dimensions can be measured apart). About an hour for all four here."""
    import json
    from datetime import datetime, timezone

    mode = mode or best_mode()
    sweeps: dict = {}
    if "rate" in dimensions:
        sweeps["rate"] = sweep("rate", SWEEPS["rate"], transports=TRANSPORTS + (BATCHED,), runs=runs, mode=mode)
    for dim in dimensions:
        if dim != "rate":  # the base point is the rate sweep's own (the same workload, seeds and runs)
            others = tuple(v for v in SWEEPS[dim] if v != getattr(BASE, dim))
            sweeps[dim] = sweep(dim, others, runs=runs, mode=mode)
    data = {"measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "mode": mode,
            "base": {k: v for k, v in asdict(BASE).items() if k not in ("away", "batch", "loss", "messages", "seed")},
            "polls": POLLS, "runs": {"rate": runs, "others": runs}, "seeds": list(range(1, runs + 1)),
            "note": note, "sweeps": sweeps}
    if path.exists():  # another process may have measured other dimensions meanwhile: keep them
        stored = json.loads(path.read_text())
        if stored.get("mode") == mode and stored.get("polls") == POLLS:
            data["sweeps"] = {**stored.get("sweeps", {}), **sweeps}
    _fill_base(data["sweeps"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return data


def _fill_base(sweeps: dict) -> None:
    """Each other dimension's base point, from the rate sweep's point at the base rate (the same workload)."""
    if "rate" not in sweeps:
        return
    for dim in SWEEPS:
        if dim != "rate" and dim in sweeps:
            key = str(getattr(BASE, dim))
            for t in sweeps[dim]:
                if t in sweeps["rate"]:
                    sweeps[dim][t][key] = sweeps["rate"][t][str(BASE.rate)]
            for t in sweeps[dim]:  # keys in the sweep's order
                sweeps[dim][t] = dict(sorted(sweeps[dim][t].items(), key=lambda kv: float(kv[0])))


def load_sweeps(path=MEASURED) -> dict:
    """The sweeps ``make bench`` measured (``measure_sweeps``), with when."""
    import json

    return json.loads(path.read_text())


def crossover(data: dict, cheap: str = "short polling", push: str = "WebSocket",
              figure: str = "steady_bytes_per_msg") -> float | None:
    """The rate (messages/s) above which ``cheap`` costs fewer bytes per message than ``push`` in the steady
    state, interpolated on the measured rates (log scale); None if it never does in the measured range."""
    import math

    rates = sorted(float(r) for r in data["sweeps"]["rate"][cheap])
    a = [data["sweeps"]["rate"][cheap][str(r)][figure] for r in rates]
    b = [data["sweeps"]["rate"][push][str(r)][figure] for r in rates]
    for i in range(1, len(rates)):
        d0, d1 = a[i - 1] - b[i - 1], a[i] - b[i]
        if d0 > 0 >= d1:
            x0, x1 = math.log10(rates[i - 1]), math.log10(rates[i])
            return 10 ** (x0 + (x1 - x0) * d0 / (d0 - d1))
    return None


def sweep_knob(data: dict, dimension: str, value):
    """The knob's picture: every transport at one value of one swept dimension, beside the whole sweep."""
    from ...course.plots.choosing import transport_sweep

    key = str(value)
    if key not in next(iter(data["sweeps"][dimension].values())):
        raise ValueError(f"{dimension} = {value} was not measured; measured: {', '.join(map(str, SWEEPS[dimension]))}")
    return transport_sweep(data, dimension, key)


def live_rate_sweep(rates: tuple[float, ...] = (3.0, 30.0), transports: tuple[str, ...] = (
        "short polling", "long polling", "WebSocket", BATCHED), polls: int = 6, mode: str = "relay") -> dict:
    """A small rate sweep, live (about fifteen seconds, across the relay): the notebook's button. Shorter than
    the bench's (``polls`` poll periods, one run), so its points scatter more."""
    out: dict[str, dict[str, dict]] = {t: {} for t in transports}
    for rate in rates:
        workload = sized(replace(BASE, rate=rate), polls)
        for t in transports:
            out[t][str(rate)] = _median([summarise(run_one(t, workload, mode))])
    return {"measured_at": "just now, live", "base": {}, "sweeps": {"rate": out}}


class RateTable(list):
    """The rate sweep for a few transports: one row per rate, each cell "bytes per message (steady state) and
    median latency", the median of the runs with the lowest and highest in brackets."""

    def __init__(self, data: dict, transports: tuple[str, ...]):
        rate = data["sweeps"]["rate"]
        super().__init__((key, {t: rate[t][key] for t in transports}) for key in sorted(rate[transports[0]], key=float))
        self.data, self.transports = data, transports

    @staticmethod
    def _cell(point: dict) -> str:
        (b_lo, b_hi), (l_lo, l_hi) = point["spread"]["steady_bytes_per_msg"], point["spread"]["p50_ms"]
        return (f"{point['steady_bytes_per_msg']:,.0f} B ({b_lo:,.0f}–{b_hi:,.0f}), "
                f"{point['p50_ms']:,.0f} ms ({l_lo:,.0f}–{l_hi:,.0f})")

    def __repr__(self) -> str:
        runs = self.data.get("runs", {}).get("rate", 1)
        where = {"tap": "counted on the emulated link", "relay": "counted at the relay"}.get(self.data.get("mode"), "")
        lines = [f"bytes per message once connected ({where}), and median latency: median of {runs} runs "
                 "(lowest–highest)",
                 f"{'msg/s':>6}  " + "".join(f"{t:<42}" for t in self.transports)]
        for key, cells in self:
            lines.append(f"{float(key):>6g}  " + "".join(f"{self._cell(cells[t]):<42}" for t in self.transports))
        return "\n".join(lines)


def rate_table(data: dict, transports: tuple[str, ...] = ("short polling", "WebSocket", BATCHED)) -> RateTable:
    return RateTable(data, transports)


def setup_costs(data: dict, rate: float = BASE.rate) -> dict[str, float]:
    """{transport: bytes each client's subscription cost before the first message} at one rate of the sweep."""
    points = data["sweeps"]["rate"]
    return {t: by_rate[str(rate)]["setup_bytes_per_client"] for t, by_rate in points.items() if t != BATCHED}

