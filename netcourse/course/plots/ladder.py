"""Ladder diagrams: a capture's packets as arrows between client and server, in order or to time scale.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ...traffic.packets import C2S, PacketRow, presumed_lost
from .draw import arrow, arrow_colour, figure

__all__ = ["ladder", "ladder_in_time"]


def ladder(
    rows: Sequence[PacketRow],
    *,
    ax: Axes | None = None,
    client: str = "client",
    server: str = "server",
    title: str | None = None,
    max_packets: int = 40,
    lost: set[int] | None = None,
    times: bool = True,
    sizes: bool = True,
) -> Figure:
    """Draw packets as arrows between a client and a server column, time running down the page.

    Packets are spaced evenly (loopback packets are microseconds apart); the time of each, in
    milliseconds since the capture started, is written at the left. Each arrow is labelled with what
    the application sent, when the course can tell (``GET /hello``, ``TEXT "hi"``), then the TCP
    fields. A lost packet stops halfway, at a cross.

    Args:
        rows: a capture's table (``capture.table()``) or any sequence of ``PacketRow``.
        ax: an Axes to draw into; a new figure otherwise.
        client, server: column labels.
        title: figure title.
        max_packets: draw at most this many packets (the rest are summarised).
        lost: numbers (``row.no``) of packets to draw as lost; by default the data segments the
            sender later sent again (``presumed_lost``).
        times: write each packet's time at the left (False leaves the timing for the learner to find).
        sizes: write the TCP fields (seq, ack, len) after the flags (False leaves the sizes for the learner to
            find: the numbers give them away).
    """
    lost = presumed_lost(rows) if lost is None else lost
    shown = list(rows)[:max_packets]
    fig, ax = figure(ax, (8, 0.45 * len(shown) + 1.6))
    x_client, x_server = 0.0, 1.0
    top, bottom = 0.0, len(shown) + 0.5
    _columns(ax, ((x_client, client), (x_server, server)), top, bottom, -0.35)
    for i, row in enumerate(shown, start=1):
        left_to_right = row.direction == C2S
        x0, x1 = (x_client, x_server) if left_to_right else (x_server, x_client)
        y0, y1 = i - 0.15, i + 0.15
        colour = arrow_colour(row)
        text = row.caption if sizes else (f"{row.app} · {row.flags}" if row.app else row.flags)
        if times:
            ax.text(-0.06, i, f"{row.t * 1000:.2f} ms", ha="right", va="center", fontsize=8, color="#616161")
        is_lost = row.no in lost
        arrow(ax, x0, y0, x1, y1, colour, 1.6, is_lost)
        # a lost packet's label sits over its half line, on the sender's side
        ax.text(0.27 if is_lost else 0.5, i - 0.08, f"{text} · lost" if is_lost else text, ha="center", va="bottom",
                fontsize=9, color=colour, bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
    if len(rows) > len(shown):
        ax.text(0.5, bottom, f"... and {len(rows) - len(shown)} more packets", ha="center", fontsize=9)
    ax.set_xlim(-0.35, 1.15)
    ax.set_ylim(bottom + 0.3, -0.9)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return fig


def ladder_in_time(
    rows: Sequence[PacketRow],
    *,
    one_way_ms: float,
    ax: Axes | None = None,
    client: str = "client",
    server: str = "server",
    title: str | None = None,
    max_packets: int = 40,
    lost: set[int] | None = None,
) -> Figure:
    """A ladder drawn to time scale: each arrow slants down by the time it spent on the wire.

    The capture is taken at the client, so a packet's time there is measured; the server's end of
    each arrow is ``one_way_ms`` later (client to server) or earlier (server to client).

    Args:
        rows: a capture's table, taken at the client's end of a link.
        one_way_ms: the link's one-way delay, milliseconds (half its round-trip time).
        ax, client, server, title, max_packets, lost: as for ``ladder``.
    """
    lost = presumed_lost(rows) if lost is None else lost
    shown = list(rows)[:max_packets]
    ends = [(_ends(r, one_way_ms)[0][1], _ends(r, one_way_ms)[1][1]) for r in shown] or [(0.0, 0.0)]
    start, end = min(min(a, b) for a, b in ends), max(max(a, b) for a, b in ends)
    span = max(end - start, 1e-6)
    fig, ax = figure(ax, (8, 6.5))
    x_client, x_server = 0.0, 1.0
    _columns(ax, ((x_client, client), (x_server, server)), start, end, start - 0.02 * span)
    last_t, last_label_t, crowd = None, None, 0
    for row in shown:
        t = row.t * 1000
        (x0, y0), (x1, y1) = _ends(row, one_way_ms)
        colour = arrow_colour(row)
        arrow(ax, x0, y0, x1, y1, colour, 1.4, row.no in lost)
        if row.no in lost:  # its label goes along the half that was drawn
            x1, y1 = (x0 + x1) / 2, (y0 + y1) / 2
        crowd = crowd + 1 if last_t is not None and t - last_t < 0.04 * span else 0  # arrows nearly on top
        last_t = t
        f = (0.5, 0.25, 0.75, 0.38, 0.62)[crowd % 5]  # where along the arrow its label sits
        name = row.app or row.label.split(" seq=")[0]
        ax.text(x0 + f * (x1 - x0), y0 + f * (y1 - y0), name, ha="center", va="center",
                fontsize=8, color=colour, bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.8))
        if last_label_t is None or t - last_label_t >= 0.03 * span:  # one time label per crowd
            ax.text(-0.04, t, f"{t:.1f}", ha="right", va="center", fontsize=7, color="#616161")
            last_label_t = t
    ax.set_xlim(-0.3, 1.15)
    ax.set_ylim(end + 0.03 * span, start - 0.06 * span)
    ax.set_xticks([])
    ax.set_ylabel("time at the client (ms)")
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title(title or f"To time scale: {2 * one_way_ms:g} ms round trip")
    return fig


def _columns(ax: Axes, columns, top: float, bottom: float, label_y: float) -> None:
    """The client's and the server's vertical lines, their names above."""
    for x, name in columns:
        ax.plot([x, x], [top, bottom], color="#424242", lw=2)
        ax.text(x, label_y, name, ha="center", va="bottom", fontsize=11, weight="bold")


def _ends(row: PacketRow, one_way_ms: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """An arrow's (x, ms) start and end: the capture is at the client, the server's end one way away."""
    t = row.t * 1000
    if row.direction == C2S:  # left the client at t, reached the server one way later
        return (0.0, t), (1.0, t + one_way_ms)
    return (1.0, t - one_way_ms), (0.0, t)  # reached the client at t, so it left the server one way earlier
