"""Notebook 03's figures: pollers on a timeline, their latency and cost, across a link, and the theory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .draw import figure
from .wire import latency_distributions

__all__ = ["polling_timeline", "polling_latency", "polling_on_link", "polling_theory", "polling_costs",
           "Poll", "Poller", "Polls"]


class Poll(Protocol):
    """One request: when it was sent and answered (perf_counter seconds), and how many messages it carried."""

    @property
    def sent(self) -> float: ...
    @property
    def answered(self) -> float: ...
    @property
    def count(self) -> int: ...


class Poller(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def polls(self) -> Sequence[Poll]: ...


class Polls(Protocol):
    """What the polling figures read from a run (``experiments.polling.compare.PollingRun`` has it)."""

    @property
    def pollers(self) -> Sequence[Poller]: ...
    @property
    def published(self) -> Sequence[tuple[int, float]]: ...  # (message id, perf_counter seconds)
    @property
    def start(self) -> float: ...
    @property
    def duration(self) -> float: ...
    @property
    def intervals(self) -> Mapping[str, float]: ...  # short poller's name -> its interval, seconds
    @property
    def rtt(self) -> float: ...
    def latencies(self, name: str) -> list[float]: ...
    def theory_mean(self, name: str) -> float: ...
    def burst_worst(self, name: str) -> list[float]: ...


def polling_timeline(run: Polls, *, ax: Axes | None = None, title: str | None = None) -> Figure:
    """One run on one time axis: publications on top, then one lane per poller.

    Each request is a horizontal bar from when it was sent to when it was answered (long polls are
    long bars); a dot marks answers that carried messages.

    Args:
        run: a ``PollingRun`` (``netcourse.experiments.polling.compare``).
    """
    lanes = len(run.pollers) + 1
    fig, ax = figure(ax, (10, 0.55 * lanes + 1.6))
    for _, t in run.published:
        ax.vlines(t - run.start, lanes - 0.7, lanes - 0.3, color="#c62828", lw=1.5)
    shortest = 0.006 * (run.duration + 0.25)  # a loopback poll takes ~1 ms: draw it wide enough to see
    for lane, poller in enumerate(run.pollers, start=1):
        y = lanes - lane - 0.5
        for p in poller.polls:
            ax.hlines(y, p.sent - run.start, max(p.answered - run.start, p.sent - run.start + shortest),
                      color="#90a4ae", lw=7)
            ax.plot(p.sent - run.start, y, marker="|", color="#263238", ms=11, mew=1.5)  # where each request starts
            if p.count:
                ax.plot(p.answered - run.start, y, "o", color="#2e7d32", ms=5)
    ax.set_yticks([lanes - 0.5] + [lanes - i - 0.5 for i in range(1, lanes)],
                  ["published"] + [p.name for p in run.pollers])
    ax.set_xlim(-0.05, run.duration + 0.2)
    ax.set_xlabel("seconds since publishing started")
    ax.spines[["top", "right", "left"]].set_visible(False)
    ax.set_title(title or "Requests (grey bars from | sent to answered), answers with data (green), publications (red)")
    return fig


def polling_latency(run: Polls, *, ax: Axes | None = None, title: str | None = None) -> Figure:
    """Delivery latency per poller (box plots, ms, log scale) with short polling's theory marked.

    For a short poller with interval T, a message waits on average T/2 and at most T (red marks).
    """
    names = [p.name for p in run.pollers]
    data = {n: [x * 1000 for x in run.latencies(n)] or [float("nan")] for n in names}
    fig = latency_distributions(data, ax=ax, title=title or "Delivery latency: publish → receipt")
    ax = fig.axes[0] if ax is None else ax
    for i, n in enumerate(names, start=1):
        if n in run.intervals:
            t = run.intervals[n] * 1000
            ax.plot([t / 2], [i], marker="D", color="#c62828", ms=7, zorder=5)
            ax.plot([t], [i], marker="|", color="#c62828", ms=18, mew=2, zorder=5)
    if any(n in run.intervals for n in names):  # a legend only for marks that are drawn
        ax.plot([], [], marker="D", color="#c62828", ls="none", label="theory: mean T/2")
        ax.plot([], [], marker="|", color="#c62828", ls="none", ms=12, mew=2, label="theory: max T")
        ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.set_xlabel("delivery latency (ms, log scale)")
    return fig


def polling_on_link(run: Polls, *, ax: Axes | None = None, title: str | None = None) -> Figure:
    """Every message's delivery latency across a link (ms), one row per poller, with the transits marked.

    For a link of round trip RTT: a held long poll delivers in one transit (RTT/2); a message that
    arrives while the answer is on its way waits for three (the answer, the new request, its answer:
    RFC 6202 §2.2); a short poller with interval T adds a wait of up to T before its poll reaches the
    server, T/2 on average.
    """
    fig, ax = figure(ax, (9, 3.2))
    names = [p.name for p in run.pollers]
    rtt = run.rtt * 1000
    for row, name in enumerate(names, start=1):
        values = [x * 1000 for x in run.latencies(name)]
        ax.plot(values, [row] * len(values), "o", ms=5, alpha=0.6, color="#1565c0")
        theory = run.theory_mean(name) * 1000
        ax.plot([theory], [row], marker="D", color="#c62828", ms=8, zorder=5)
    for transits, style in ((1, "-"), (3, "--")):
        ax.axvline(transits * rtt / 2, color="#2e7d32", ls=style, lw=1.2)
        ax.text(transits * rtt / 2, len(names) + 0.45, f"{transits} transit{'s' if transits > 1 else ''}",
                color="#2e7d32", fontsize=8, ha="center")
    ax.plot([], [], marker="D", color="#c62828", ls="none", label="theory: mean")
    ax.plot([], [], marker="o", color="#1565c0", ls="none", label="one message")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.set_yticks(range(1, len(names) + 1), names)
    ax.set_ylim(0.4, len(names) + 0.7)
    ax.set_xlim(left=0)
    ax.set_xlabel("delivery latency (ms): publish → receipt")
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title or f"Polling across a {rtt:g} ms link")
    return fig


def polling_theory(rtt_ms: float, interval: float, *, burst: int = 3, measured: Polls | None = None, ax: Axes | None = None) -> Figure:
    """Expected delivery latency (ms) for a round trip ``rtt_ms`` and short-poll ``interval`` (seconds).

    Bars: short polling's mean (T/2 + RTT/2) and worst (T + RTT/2); long polling's single message
    (RTT/2) and the worst of a burst (3 × RTT/2). ``measured`` (a ``PollingRun`` on a link) adds its
    measured means as dots, when its RTT and interval are the ones drawn.
    """
    fig, ax = figure(ax, (8, 2.8))
    t = interval * 1000
    bars = [
        ("short: mean", t / 2 + rtt_ms / 2),
        ("short: worst", t + rtt_ms / 2),
        ("long: one message", rtt_ms / 2),
        ("long: worst in a burst", 3 * rtt_ms / 2),
    ]
    ax.barh([b[0] for b in bars], [b[1] for b in bars], color=["#90caf9", "#1565c0", "#a5d6a7", "#2e7d32"])
    for i, (_, v) in enumerate(bars):
        ax.text(v, i, f" {v:.0f} ms", va="center", fontsize=8)
    if measured is not None and abs(measured.rtt * 1000 - rtt_ms) < 1e-6 and interval in measured.intervals.values():
        short = next(n for n, T in measured.intervals.items() if T == interval)
        ax.plot([measured.latencies(short) and sum(measured.latencies(short)) / len(measured.latencies(short)) * 1000],
                [0], "o", color="#c62828", label="measured")
        worst = measured.burst_worst("long")
        if worst:
            ax.plot([max(worst) * 1000], [3], "o", color="#c62828")
        ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.invert_yaxis()
    ax.set_xlabel("delivery latency (ms)")
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(f"Expected latency: RTT {rtt_ms:g} ms, short-poll interval {interval:g} s")
    return fig


def polling_costs(summary: Sequence[Mapping[str, Any]], *, ax: Axes | None = None) -> Figure:
    """Three bars per poller: requests per delivered message, share of empty answers, bytes per message."""
    if ax is None:
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), layout="constrained")
        plt.close(fig)
    else:
        fig, axes = ax.figure, [ax]
    names = [r["poller"] for r in summary]
    panels = [("requests per message", "requests per delivered message"),
              ("empty share", "share of empty answers"),
              ("bytes per message", "bytes on the wire per message")]
    for a, (key, label) in zip(axes, panels):
        a.bar(names, [r[key] for r in summary], color="#1565c0", width=0.6)
        a.set_title(label, fontsize=10)
        a.tick_params(axis="x", labelrotation=30, labelsize=8)
        a.spines[["top", "right"]].set_visible(False)
    return fig
