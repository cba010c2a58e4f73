"""Notebooks 01 and 02's figures: both directions of one connection on a timeline, the TIME_WAIT port budget, and
slow start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import matplotlib.ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ...traffic.packets import C2S, PacketRow, in_flight
from .draw import arrow_colour, figure

__all__ = ["duplex_timeline", "port_budget", "window_growth", "BulkTransfer"]


class Captured(Protocol):
    def table(self) -> Sequence[PacketRow]: ...


class BulkTransfer(Protocol):
    """A bulk transfer (``experiments.transport.slow_start.Transfer`` has these)."""

    @property
    def capture(self) -> Captured: ...
    @property
    def samples(self) -> Sequence[tuple[float, int, int, int]]: ...  # TCP_INFO: (seconds, cwnd, ssthresh, mss)
    @property
    def rtt_ms(self) -> float: ...
    @property
    def rate_mbit(self) -> float: ...
    @property
    def size(self) -> int: ...


def duplex_timeline(rows: Sequence[PacketRow], *, ax: Axes | None = None, title: str | None = None) -> Figure:
    """Packets of one connection on a time axis, one lane per direction.

    Data packets are tall bars labelled with their payload size; pure ACKs are short grey ticks;
    SYN and FIN packets are purple and red. When both lanes have data at overlapping times, both ends
    were sending at once: full duplex.
    """
    fig, ax = figure(ax, (10, 2.8))
    lanes = {C2S: 1.0, "S→C": 0.0}
    for row in rows:
        y = lanes.get(row.direction, 0.0)
        t = row.t * 1000
        if row.payload:
            ax.vlines(t, y - 0.3, y + 0.3, color="#2e7d32", lw=2.5)
        else:
            ax.vlines(t, y - 0.12, y + 0.12, color=arrow_colour(row), lw=1.5)
    ax.set_yticks([1.0, 0.0], ["client → server", "server → client"])
    ax.set_ylim(-0.6, 1.6)
    ax.set_xlabel("time since the capture started (ms)")
    ax.spines[["top", "right", "left"]].set_visible(False)
    ax.set_title(title or "One connection, both directions (green: data; grey: ACK; purple/red: SYN/FIN)")
    return fig


def port_budget(low: int, high: int, time_wait_s: float, *, ax: Axes | None = None) -> Figure:
    """How fast one client may open connections to one server IP:port, sustained, when it closes first.

    Every connection the client closes holds its port in TIME_WAIT for ``time_wait_s``; with
    ``high - low + 1`` ports to choose from, at most that many connections per ``time_wait_s`` can be
    opened to the same server address and port.

    Args:
        low, high: the ephemeral range.
        time_wait_s: how long TIME_WAIT lasts, seconds (Linux: 60).
        ax: an Axes to draw into; a new figure otherwise.
    """
    if not 0 < low <= high <= 65535:
        raise ValueError("need 0 < low <= high <= 65535")
    if time_wait_s <= 0:
        raise ValueError("time_wait_s must be positive")
    fig, ax = figure(ax, (7, 3.2))
    ports = high - low + 1
    rate = ports / time_wait_s
    presets = [("Linux default\n32768–60999, 60 s", (60999 - 32768 + 1) / 60),
               ("IANA range\n49152–65535, 60 s", (65535 - 49152 + 1) / 60),
               (f"yours\n{low}–{high}, {time_wait_s:g} s", rate)]
    colours = ["#9e9e9e", "#9e9e9e", "#1565c0"]
    bars = ax.barh([name for name, _ in presets], [v for _, v in presets], color=colours)
    for bar, (_, v) in zip(bars, presets):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v:,.0f}/s", va="center", fontsize=9)
    ax.set_xlim(0, max(v for _, v in presets) * 1.25)
    ax.xaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    ax.set_xlabel("new connections per second to one server IP:port, sustained")
    ax.set_title(f"{ports:,} ports ÷ {time_wait_s:g} s of TIME_WAIT")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def window_growth(transfer: BulkTransfer, *, ax: Axes | None = None, title: str | None = None) -> Figure:
    """Bytes in flight over a bulk transfer (from the sender's capture) and the congestion window
    (from its TCP_INFO samples, when there are some), one grey line per round trip.

    Args:
        transfer: a ``Transfer`` (``netcourse.experiments.transport.slow_start``).
    """
    fig, ax = figure(ax, (9, 3.6))
    rows = transfer.capture.table()
    flight = in_flight(rows)
    ax.step([t * 1000 for t, _ in flight], [b / 1000 for _, b in flight], where="post", color="#1565c0",
            lw=1.4, label="bytes in flight (from the capture)")
    if transfer.samples:
        ax.plot([t * 1000 for t, *_ in transfer.samples], [cwnd * mss / 1000 for _, cwnd, _, mss in transfer.samples],
                color="#c62828", ls="--", lw=1.2, label="congestion window × MSS (TCP_INFO)")
    end = max((t for t, _ in flight), default=0) * 1000
    rtt = transfer.rtt_ms
    k = 1
    while rtt > 0 and k * rtt < end:
        ax.axvline(k * rtt, color="#bdbdbd", lw=0.8, zorder=0)
        k += 1
    bdp = transfer.rate_mbit * 1e6 / 8 * rtt / 1000 / 1000 if transfer.rate_mbit else None
    if bdp:
        ax.axhline(bdp, color="#2e7d32", ls=":", lw=1.2, label=f"rate × RTT = {bdp:.0f} kB (the path's capacity)")
    ax.set_xlabel("time since connect (ms); grey lines every base round trip (the link's RTT, queue empty)")
    ax.set_ylabel("kB")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title or f"{transfer.size / 1e6:g} MB across {rtt:g} ms"
                 + (f", {transfer.rate_mbit:g} Mbit/s" if transfer.rate_mbit else ""))
    return fig
