"""What every figure of the course shares: the colours of the layers and transports, a new figure or the caller's
axes, and the arrows of a ladder.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ...traffic.packets import PacketRow

__all__ = ["LAYER_COLOURS", "TRANSPORT_COLOURS", "figure", "arrow", "arrow_colour"]


LAYER_COLOURS = {
    "link": "#9e9e9e",
    "ip": "#64b5f6",
    "transport": "#1565c0",
    "app_headers": "#ffb74d",
    "payload": "#43a047",
}


def figure(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    plt.close(fig)  # returned, not shown twice: the notebook displays the returned figure
    return fig, ax


def arrow(ax: Axes, x0: float, y0: float, x1: float, y1: float, colour: str, lw: float, lost: bool) -> None:
    """One packet: an arrow from (x0, y0) to (x1, y1), or, when it was lost, a line that stops halfway at a cross."""
    if lost:
        xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
        ax.plot([x0, xm], [y0, ym], color=colour, lw=lw)
        ax.plot([xm], [ym], marker="x", color="#b00020", markersize=10, mew=2.5)
    else:
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=dict(arrowstyle="-|>", color=colour, lw=lw))


def arrow_colour(row: PacketRow) -> str:
    if "S" in row.flags:
        return "#6a1b9a"  # handshake
    if "F" in row.flags or "R" in row.flags:
        return "#c62828"  # teardown or reset
    if row.payload:
        return "#2e7d32"  # data
    return "#757575"  # pure ACK


TRANSPORT_COLOURS = {"short polling": "#9e9e9e", "long polling": "#616161", "SSE": "#ef6c00", "WebSocket": "#1565c0",
                     "raw TCP": "#2e7d32", "UDP": "#6a1b9a", "webhooks": "#c62828"}
