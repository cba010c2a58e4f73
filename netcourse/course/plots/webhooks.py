"""Notebook 07's figures: delivery attempts on a timeline, and the noise of a burst.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Protocol

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["webhook_attempts", "webhook_noise", "Attempt", "AttemptLog", "BurstCost"]


class Attempt(Protocol):
    @property
    def at(self) -> float: ...
    @property
    def msg_id(self) -> str: ...
    @property
    def endpoint(self) -> int: ...
    @property
    def status(self) -> int | None: ...


class AttemptLog(Protocol):
    """An outage run (``experiments.webhooks.retries.Outage``): every attempt, when the receiver was down
    (seconds), and the schedule's scale."""

    @property
    def attempts(self) -> Sequence[Attempt]: ...
    @property
    def down(self) -> tuple[float, float]: ...
    @property
    def scale(self) -> float: ...


class BurstCost(Protocol):
    """One way of delivering a burst (``experiments.webhooks.noise.Noise``)."""

    @property
    def way(self) -> str: ...
    @property
    def requests(self) -> int: ...
    @property
    def total_bytes(self) -> int: ...
    @property
    def delays_ms(self) -> Sequence[float]: ...


def webhook_attempts(outage: AttemptLog, *, title: str | None = None) -> Figure:
    """Every delivery attempt on a timeline, one row per endpoint (a ``webhooks.Outage``): failures as crosses,
    deliveries as dots, the receiver's outage shaded, and the schedule's steps (scaled) as ticks."""
    fig, ax = plt.subplots(figsize=(9, 2.6), layout="constrained")
    plt.close(fig)
    start, end = outage.down
    ax.axvspan(start * 1000, end * 1000, color="#ffcdd2", alpha=0.6, label="receiver 1 down")
    first = min((a.at for a in outage.attempts), default=0.0)
    messages = list(dict.fromkeys(a.msg_id for a in outage.attempts))  # one sub-row per event
    for a in outage.attempts:
        y = 2 - a.endpoint + 0.22 * (messages.index(a.msg_id) - (len(messages) - 1) / 2)
        ok = a.status is not None and 200 <= a.status < 300
        marker = "o" if ok else ("s" if a.status == 410 else "x")
        ax.plot((a.at - first) * 1000, y, marker, color="#2e7d32" if ok else "#c62828", ms=6 if ok else 7,
                mfc="none" if a.status == 410 else None)
    from ...apps.webhooks import STANDARD_SCHEDULE

    t, steps = 0.0, []
    for step in STANDARD_SCHEDULE[:4]:
        t += step * outage.scale * 1000
        steps.append(t)
        ax.axvline(t, color="#9e9e9e", lw=0.8, ls=":")
    ax.set_yticks([1, 0], ["endpoint 1\n(down, then back)", "endpoint 2\n(410 Gone)"])
    ax.set_ylim(-0.6, 1.6)
    ax.set_xlabel("ms since the events were published (dotted: the schedule's steps, scaled: "
                  + ", ".join(f"{x:g}" for x in steps) + ")")
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title or "Delivery attempts, one row per event: × failed, □ 410 Gone, ● delivered")
    return fig


def webhook_noise(runs: Sequence[BurstCost], *, title: str | None = None) -> Figure:
    """Requests, kilobytes and delivery delay for ways of delivering the same burst (``webhooks.Noise`` runs)."""
    fig, axes = plt.subplots(1, 3, figsize=(11, 0.5 * len(runs) + 1.8), layout="constrained", sharey=True)
    plt.close(fig)
    names = [r.way for r in runs]
    colours = ["#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#5d4037"]
    for ax, values, label in ((axes[0], [r.requests for r in runs], "HTTP requests"),
                              (axes[1], [r.total_bytes / 1000 for r in runs], "kB of heads and bodies"),
                              (axes[2], [statistics.median(r.delays_ms) for r in runs], "median delay, ms")):
        bars = ax.barh(names, values, color=colours[: len(runs)])
        for bar, v in zip(bars, values):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v:,.0f}", va="center", fontsize=8)
        ax.set_xlabel(label)
        ax.set_xlim(0, max(values + [1]) * 1.35)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].invert_yaxis()
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
