"""Notebook 10's figures: a page's resources finishing over time, HPACK's header blocks, per-resource completion
times under loss, and time to the first byte per protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .draw import figure

__all__ = ["page_progress", "header_blocks", "completion_under_loss", "first_byte_bars", "VERSION_COLOURS"]

VERSION_COLOURS = {"HTTP/1.1": "#ef6c00", "HTTP/2": "#1565c0", "HTTP/3": "#2e7d32"}


class Loaded(Protocol):
    """One version's page (``experiments.http2.pages.PageLoad``): seconds until each resource finished."""

    @property
    def version(self) -> str: ...
    @property
    def done(self) -> list[float]: ...
    @property
    def connections(self) -> int: ...
    @property
    def rtt_ms(self) -> float: ...
    @property
    def link(self) -> str: ...


class Block(Protocol):
    """A request's HEADERS (``experiments.http2.frames.HeaderBlock``)."""

    @property
    def stream(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def plain(self) -> int: ...


class Completions(Protocol):
    """Per-version completion times at one loss (``experiments.http2.hol.Hol``), seconds."""

    @property
    def loss(self) -> float: ...
    @property
    def rtt_ms(self) -> float: ...
    @property
    def runs(self) -> int: ...
    @property
    def done(self) -> dict[str, list[float]]: ...


def page_progress(pages: Sequence[Loaded], *, ax: Axes | None = None) -> Figure:
    """Resources finished against time, one step line per version, with round trips marked on the time axis."""
    fig, ax = figure(ax, (8, 3.4))
    rtt = pages[0].rtt_ms
    end = max(max(p.done) for p in pages) * 1000
    for k in range(1, int(end // rtt) + 2):
        ax.axvline(k * rtt, color="#eeeeee", lw=1, zorder=0)
    for p in pages:
        xs = [t * 1000 for t in sorted(p.done)]
        ax.step([0] + xs, list(range(len(xs) + 1)), where="post", color=VERSION_COLOURS.get(p.version, "k"), lw=2,
                label=f"{p.version}: {p.connections} connection{'s' if p.connections != 1 else ''}")
    ax.set_xlabel(f"ms since the first request (grey lines: each {rtt:g} ms round trip)")
    ax.set_ylabel("resources finished")
    ax.set_title(f"{len(pages[0].done)} small resources across a {rtt:g} ms link ({pages[0].link})")
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def header_blocks(blocks: Sequence[Block], *, ax: Axes | None = None) -> Figure:
    """Each request's header fields as HTTP/1.1 would write them beside the HPACK block HTTP/2 sent."""
    fig, ax = figure(ax, (7, 2.8))
    xs = range(len(blocks))
    ax.bar([x - 0.2 for x in xs], [b.plain for b in blocks], width=0.4, color="#bdbdbd", label="as HTTP/1.1 lines")
    ax.bar([x + 0.2 for x in xs], [b.size for b in blocks], width=0.4, color="#1565c0", label="HPACK block sent")
    for x, b in zip(xs, blocks):
        ax.text(x + 0.2, b.size, f"{b.size}", ha="center", va="bottom", fontsize=8)
        ax.text(x - 0.2, b.plain, f"{b.plain}", ha="center", va="bottom", fontsize=8, color="#616161")
    ax.set_xticks(list(xs), [f"request {i + 1}\n(stream {b.stream})" for i, b in enumerate(blocks)], fontsize=9)
    ax.set_ylabel("bytes of request header")
    ax.set_ylim(0, max(b.plain for b in blocks) * 1.35)  # room for the legend above the bars
    ax.legend(fontsize=8, frameon=False, loc="upper right", ncols=2)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def completion_under_loss(run: Completions, *, ax: Axes | None = None) -> Figure:
    """Every resource's completion time over all runs, as a cumulative share per version (read across at 0.5 for
    the median and 0.95 for the slow tail)."""
    fig, ax = figure(ax, (8, 3.4))
    for version, times in run.done.items():
        xs = sorted(t * 1000 for t in times)
        if not xs:
            continue
        ax.step(xs, [(i + 1) / len(xs) for i in range(len(xs))], where="post", lw=2,
                color=VERSION_COLOURS.get(version, "k"), label=version)
    for q in (0.5, 0.95):
        ax.axhline(q, color="#9e9e9e", ls=":", lw=1)
    ax.set_xlabel("ms from the first request until the resource's last byte")
    ax.set_ylabel("share of resources finished")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{run.loss:.0%} loss each way, {run.rtt_ms:g} ms round trip ({run.runs} runs pooled)")
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def first_byte_bars(rows: Sequence[tuple[str, float, float]], rtt_ms: float, *, ax: Axes | None = None) -> Figure:
    """Time to the first response byte per case: (name, round trips in theory, measured ms)."""
    fig, ax = figure(ax, (8, 3.0))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [t * rtt_ms for _, t, _ in rows], width=0.4, color="#bdbdbd",
           label="theory: round trips × RTT")
    ax.bar([x + 0.2 for x in xs], [m for _, _, m in rows], width=0.4, color="#2e7d32", label="measured")
    for x, (_, t, m) in zip(xs, rows):
        ax.text(x + 0.2, m, f"{m:.0f}", ha="center", va="bottom", fontsize=8)
        ax.text(x - 0.2, t * rtt_ms, f"{t:g} RTT", ha="center", va="bottom", fontsize=8, color="#616161")
    ax.set_xticks(list(xs), [n for n, _, _ in rows], fontsize=9)
    ax.set_ylabel("ms to first response byte")
    ax.set_title(f"A fresh (or resumed) connection across a {rtt_ms:g} ms round trip")
    ax.legend(fontsize=8, frameon=False, loc="upper right")
    ax.spines[["top", "right"]].set_visible(False)
    return fig
