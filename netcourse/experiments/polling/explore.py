"""Notebook 03, section 5: the knob's grid of measured runs, and its callback.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .compare import PollingRun, run_pollers

__all__ = ["ExploreGrid", "explore_grid", "explore"]


@dataclass(frozen=True)
class ExploreGrid:
    """Short pollers at several intervals and long pollers at several waits, measured at several rates.

    One run per rate, all at once (each with its own server and publisher); in each run every poller
    follows the same messages. The knob then only looks results up: it redraws in milliseconds.

    Attributes:
        runs: rate (messages per second) -> the run at that rate.
        intervals, waits, rates: the grid's values.
    """

    runs: dict[float, PollingRun]
    intervals: tuple[float, ...]
    waits: tuple[float, ...]
    rates: tuple[float, ...]

    def view(self, interval: float, wait: float, rate: float) -> PollingRun:
        """The run at ``rate``, reduced to the short poller at ``interval`` and the long one at ``wait``."""
        run = self.runs[rate]
        short, long_ = run.poller(f"short {interval:g} s"), run.poller(f"long {wait:g} s")
        return dataclasses.replace(run, pollers=[short, long_], intervals={short.name: interval}, capture=None)


def explore_grid(
    intervals: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0),
    waits: tuple[float, ...] = (0.5, 2.0, 10.0),
    rates: tuple[float, ...] = (2.0, 5.0, 20.0),
    *,
    duration: float = 2.5,
    seed: int = 1,
) -> ExploreGrid:
    """Measure every interval and wait at every rate: ``len(rates)`` runs of ``duration`` s, side by side."""
    from concurrent.futures import ThreadPoolExecutor

    pollers = [("short", i) for i in intervals] + [("long named", w) for w in waits]

    def one(rate: float) -> PollingRun:
        return run_pollers(pollers, rate=rate, duration=duration, seed=seed, wait=max(waits))

    with ThreadPoolExecutor(max_workers=len(rates), thread_name_prefix="netcourse-grid") as pool:
        runs = dict(zip(rates, pool.map(one, rates)))
    return ExploreGrid(runs, tuple(intervals), tuple(waits), tuple(rates))


def explore(grid: ExploreGrid, interval: float = 0.5, wait: float = 10.0, rate: float = 3.0):
    """The knob's callback: latency and cost of one short and one long poller, looked up in ``grid``."""
    import matplotlib.pyplot as plt

    from ...course.plots.polling import polling_costs, polling_latency

    small = grid.view(interval, wait, rate)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.6), layout="constrained")
    plt.close(fig)
    polling_latency(small, ax=left, title=f"Latency: interval {interval:g} s, wait {wait:g} s, {rate:g} msg/s")
    polling_costs(small.summary(), ax=right)
    return fig
