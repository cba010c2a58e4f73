"""Notebook 10: the rate, clients, size and RTT sweeps measured by ``make bench`` and stored; the knobs read them.
"""

from __future__ import annotations

from pathlib import Path

from .harness import TRANSPORTS, TransportRun, Workload
from .transports import run_transport

__all__ = ["MEASURED", "SWEEPS", "BASE", "summarise", "sweep", "measure_sweeps", "load_sweeps", "crossover", "sweep_knob", "live_rate_sweep"]


MEASURED = Path(__file__).resolve().parents[2] / "measured" / "sweeps.json"


SWEEPS = {  # the knob's values, one dimension at a time, the others at the default workload
    "rate": (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0),
    "clients": (1, 5, 20, 50),
    "size": (10, 100, 1000, 10000),
    "rtt_ms": (0.0, 50.0, 200.0),
}


BASE = Workload(clients=5, messages=20, rate=10.0, size=100, rtt_ms=50.0, interval=1.0)


def _messages_for(rate: float) -> int:
    """Enough messages for a distribution, few enough that a slow rate ends within about 30 s."""
    return int(max(3, min(40, rate * 4)))


def summarise(run: TransportRun) -> dict:
    """The figures a sweep keeps of one run."""
    return {"p50_ms": run.percentile(50), "p99_ms": run.percentile(99), "bytes_per_msg": run.bytes_per_message,
            "units_per_msg": run.units_per_message, "cpu_us_per_msg": run.cpu_us_per_message,
            "delivered": run.delivered, "expected": run.expected}


def sweep(dimension: str, values: tuple, base: Workload = BASE,
          transports: tuple[str, ...] = TRANSPORTS) -> dict[str, dict[str, dict]]:
    """{transport: {value: summary}} with one workload dimension varied."""
    from dataclasses import replace

    out: dict[str, dict[str, dict]] = {t: {} for t in transports}
    for value in values:
        workload = replace(base, **{dimension: value})
        if dimension == "rate":
            workload = replace(workload, messages=_messages_for(value))
        for t in transports:
            out[t][str(value)] = summarise(run_transport(t, workload))
    return out


def measure_sweeps(path=MEASURED) -> dict:
    """Every sweep of ``SWEEPS`` (a few minutes: the slow rates take their time); saved for the knobs."""
    import json
    from datetime import datetime, timezone

    data = {"measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "base": {k: getattr(BASE, k) for k in ("clients", "messages", "rate", "size", "rtt_ms", "interval")},
            "sweeps": {dim: sweep(dim, values) for dim, values in SWEEPS.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return data


def load_sweeps(path=MEASURED) -> dict:
    """The sweeps ``make bench`` measured (``measure_sweeps``), with when."""
    import json

    return json.loads(path.read_text())


def crossover(data: dict, cheap: str = "short polling", push: str = "WebSocket") -> float | None:
    """The rate (messages/s) above which ``cheap`` costs fewer bytes per message than ``push``, interpolated
    on the measured rates (log scale); None if it never does in the measured range."""
    import math

    rates = sorted(float(r) for r in data["sweeps"]["rate"][cheap])
    a = [data["sweeps"]["rate"][cheap][str(r)]["bytes_per_msg"] for r in rates]
    b = [data["sweeps"]["rate"][push][str(r)]["bytes_per_msg"] for r in rates]
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


def live_rate_sweep(rates: tuple[float, ...] = (5.0, 20.0, 100.0),
                    transports: tuple[str, ...] = ("short polling", "long polling", "WebSocket")) -> dict:
    """A small rate sweep, live (about ten seconds): the notebook's button."""
    from dataclasses import replace

    out: dict[str, dict[str, dict]] = {t: {} for t in transports}
    for rate in rates:
        workload = replace(BASE, rate=rate, messages=int(min(40, max(5, rate))))
        for t in transports:
            out[t][str(rate)] = summarise(run_transport(t, workload))
    return {"measured_at": "just now, live", "base": {}, "sweeps": {"rate": out}}
