"""Notebook 06's figures: delays through buffering proxies, and chunks against TCP segments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["stream_delays", "chunks_and_segments", "Delays", "ByteRanges"]


class Delays(Protocol):
    """Delivery delays per way of connecting (``experiments.streaming.buffering.Buffering``), ms."""

    @property
    def delays(self) -> Mapping[str, Sequence[float | None]]: ...
    @property
    def published(self) -> Sequence[float]: ...  # ms since the first event, one per event


class ByteRanges(Protocol):
    """Byte ranges of chunks and of segments per case (``experiments.streaming.chunked.Boundaries``)."""

    @property
    def chunks(self) -> Mapping[str, Sequence[tuple[int, int]]]: ...
    @property
    def segments(self) -> Mapping[str, Sequence[tuple[int, int]]]: ...


def stream_delays(run: Delays, cases: Sequence[str] | None = None, *, title: str | None = None) -> Figure:
    """When each event of a stream was published (grey ticks) and when it reached the client (dots), one row
    per way of connecting (a ``streaming.Buffering``): events held by a buffer arrive in a lump."""
    cases = list(run.delays) if cases is None else list(cases)
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(cases) + 1.3), layout="constrained")
    plt.close(fig)
    published = run.published
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    end = max(published, default=0.0)
    for row, case in enumerate(cases):
        y = len(cases) - 1 - row
        colour = colours[row % len(colours)]
        for t, delay in zip(published, run.delays[case]):
            ax.plot([t, t], [y - 0.25, y + 0.25], color="#9e9e9e", lw=1)
            if delay is not None:
                ax.plot([t, t + delay], [y, y], color=colour, lw=0.8, alpha=0.5)
                ax.plot(t + delay, y, "o", color=colour, ms=5)
                end = max(end, t + delay)
    ax.set_yticks(range(len(cases)), list(reversed(cases)))
    ax.set_xlim(-20, end + 40)
    ax.set_xlabel("ms since the first event was published (grey: published; dot: reached the client)")
    ax.spines[["top", "right"]].set_visible(False)
    if title:
        ax.set_title(title)
    return fig


def chunks_and_segments(bounds: ByteRanges, name: str, *, title: str | None = None) -> Figure:
    """A response's bytes from start to end on two lanes: the HTTP chunks' data, and the TCP segments that
    carried them (a ``streaming.Boundaries``): the two sets of boundaries do not line up."""
    fig, ax = plt.subplots(figsize=(10, 1.9), layout="constrained")
    plt.close(fig)
    for i, (a, b) in enumerate(bounds.chunks[name]):
        ax.barh(1, b - a, left=a, height=0.5, color=["#66bb6a", "#a5d6a7"][i % 2], edgecolor="white")
        ax.text((a + b) / 2, 1, f"chunk {i + 1}", ha="center", va="center", fontsize=8)
    for i, (a, b) in enumerate(bounds.segments[name]):
        ax.barh(0, b - a, left=a, height=0.5, color=["#1e88e5", "#90caf9"][i % 2], edgecolor="white")
        if b - a > 60:
            ax.text((a + b) / 2, 0, f"{b - a} B", ha="center", va="center", fontsize=8)
    ax.set_yticks([0, 1], ["TCP segments", "HTTP chunks\n(data only)"])
    ax.set_xlabel("byte offset in the server's response (head included)")
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title or name)
    return fig
