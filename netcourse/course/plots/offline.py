"""Notebook 08's figures: a client offline and back on a timeline, and the fault soak's result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["offline_timeline", "soak_result", "Arrivals", "SoakVerdict"]


class Arrivals(Protocol):
    """A reconnection (``experiments.offline.online.OfflineRun``): (ms, message id, "replayed" or "live")."""

    @property
    def arrivals(self) -> Sequence[tuple[float, int, str]]: ...
    @property
    def replayed(self) -> int: ...


class SoakVerdict(Protocol):
    """A fault soak (``experiments.offline.faults.Soak``)."""

    @property
    def published(self) -> Sequence[int]: ...
    @property
    def faults(self) -> Sequence[tuple[float, str, int]]: ...  # (seconds, kind, messages published before it)
    @property
    def streaming_until(self) -> float: ...
    @property
    def lost(self) -> list[int]: ...
    @property
    def duplicated(self) -> int: ...
    @property
    def in_order(self) -> bool: ...


def offline_timeline(run: Arrivals, *, title: str | None = None) -> Figure:
    """Message ids against arrival time after a reconnection (an ``offline.OfflineRun``): the replayed backlog
    arrives at once, the live messages one by one."""
    fig, ax = plt.subplots(figsize=(8, 3), layout="constrained")
    plt.close(fig)
    for kind, colour in (("replayed", "#1565c0"), ("live", "#2e7d32")):
        pts = [(t, i) for t, i, k in run.arrivals if k == kind]
        if pts:
            ax.plot([t for t, _ in pts], [i for _, i in pts], "o", ms=4, color=colour, label=f"{kind} ({len(pts)})")
    ax.set_xlabel("ms since the client reconnected")
    ax.set_ylabel("message id")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title or f"Back online: {run.replayed} replayed at once, then live messages as they come")
    return fig


def soak_result(soak: SoakVerdict, *, title: str | None = None) -> Figure:
    """A fault soak (an ``offline.Soak``): the messages published over time, each fault where it struck,
    and the verdict."""
    fig, ax = plt.subplots(figsize=(9, 2.3), layout="constrained")
    plt.close(fig)
    ax.axvspan(0, soak.streaming_until, color="#e3f2fd", label="messages streaming")
    marks = {"client killed (SIGKILL)": ("X", "#c62828"), "server killed (SIGKILL) and restarted": ("s", "#ef6c00"),
             "connection cut mid-frame": ("v", "#6a1b9a")}
    for kind, (marker, colour) in marks.items():
        pts = [(t, n) for t, k, n in soak.faults if k == kind]
        ax.plot([t for t, _ in pts], [n for _, n in pts], marker, color=colour, ms=8, linestyle="none",
                label=f"{kind} ({len(pts)})")
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("published so far")
    ax.set_xlim(0, max([t for t, _, _ in soak.faults] + [soak.streaming_until, 0.5]) * 1.05)
    ax.set_ylim(0, max(len(soak.published), 1) * 1.05)
    ax.legend(loc="center left", fontsize=8, frameon=False, bbox_to_anchor=(1.01, 0.5))
    ax.spines[["top", "right"]].set_visible(False)
    verdict = (f"{len(soak.published):,} messages: {len(soak.lost)} lost, {soak.duplicated} duplicated, "
               f"{'in order' if soak.in_order else 'OUT OF ORDER'}")
    ax.set_title(title or verdict, fontsize=10)
    return fig
