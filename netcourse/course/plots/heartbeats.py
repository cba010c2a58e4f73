"""Notebook 04's figures: the heartbeat's trade-off, connections of a reconnecting client, a reconnect storm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import matplotlib.pyplot as plt
import matplotlib.ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["heartbeat_tradeoff", "heartbeat_connections", "storm_attempts", "Trials", "Connections", "StormLog"]


class Trials(Protocol):
    """Detection trials (``experiments.heartbeats.detection.Detection``): the settings and the seconds each took."""

    @property
    def interval(self) -> float: ...
    @property
    def timeout(self) -> float: ...
    @property
    def seconds(self) -> Sequence[float]: ...


class Connections(Protocol):
    """A reconnecting client's log (``experiments.heartbeats.reconnect.Reconnecting``): (seconds, what happened), and the freeze."""

    @property
    def events(self) -> list[tuple[float, str]]: ...
    @property
    def froze_at(self) -> float | None: ...
    @property
    def thawed_at(self) -> float | None: ...


class StormLog(Protocol):
    """A reconnect storm (``experiments.heartbeats.reconnect.Storm``): attempts per schedule, (seconds, connected)."""

    @property
    def attempts(self) -> Mapping[str, Sequence[tuple[float, bool]]]: ...
    @property
    def down_for(self) -> float: ...
    @property
    def clients(self) -> int: ...
    def peak(self, name: str, width: float) -> int: ...


def heartbeat_tradeoff(interval: float, timeout: float, *, clients: int = 100_000, measured: Trials | None = None,
                       ax: Axes | None = None) -> Figure:
    """An application heartbeat's two costs side by side: how late a death is noticed, and the traffic.

    Left: detection time, between ``timeout`` and ``interval + timeout`` (and ``measured``'s trials, a
    ``Detection``, when its settings are the ones drawn). Right: bytes per hour on the wire for one
    connection, and what ``clients`` connections cost the server.
    """
    from ...protocols.beat import detection_bounds, heartbeat_cost

    if ax is None:
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.2), layout="constrained", width_ratios=[1.2, 1])
        plt.close(fig)
    else:
        fig, left, right = ax.figure, ax, None
    lo, hi = detection_bounds(interval, timeout)
    left.barh([0], [hi - lo], left=[lo], height=0.4, color="#90caf9", label="theory: timeout … interval + timeout")
    if measured is not None and abs(measured.interval - interval) < 1e-9 and abs(measured.timeout - timeout) < 1e-9:
        left.plot(measured.seconds, [0] * len(measured.seconds), "o", color="#c62828", label="measured trials")
    left.set_xlim(0, max(hi * 1.3, 0.1))
    left.set_ylim(-0.5, 1.0)  # room above the bar for the legend
    left.set_yticks([])
    left.set_xlabel("seconds from the peer's death to its detection")
    left.legend(loc="upper right", fontsize=8, frameon=False)
    left.set_title(f"PING every {interval:g} s, dead after {timeout:g} s without PONG")
    left.spines[["top", "right", "left"]].set_visible(False)
    if right is not None:
        plain = heartbeat_cost(interval, clients=clients)
        ws = heartbeat_cost(interval, clients=clients, websocket=True)
        names = ["length-prefixed\nPING/PONG", "WebSocket\nping/pong"]
        values = [plain["bytes per hour, one connection"] / 1000, ws["bytes per hour, one connection"] / 1000]
        bars = right.barh(names, values, color=["#1565c0", "#2e7d32"])
        for bar, cost in zip(bars, (plain, ws)):
            right.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                       f" {bar.get_width():,.0f} kB/h; {clients:,} clients: {cost['packets per second at the server, both ways']:,.0f} packets/s",
                       va="center", fontsize=8)
        right.set_xlim(0, max(values) * 2.2)
        right.set_xlabel("kB per hour per connection (all headers included)")
        right.xaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
        right.spines[["top", "right"]].set_visible(False)
    return fig


def heartbeat_connections(runs: Sequence[Connections], labels: Sequence[str], *, title: str | None = None) -> Figure:
    """Reconnecting heartbeat clients (``heartbeats.Reconnecting``), one lane each: every connection as a bar
    from its connect to its end (green once a pong came), each "declared dead" as a cross, and the time the
    peer was frozen shaded."""
    if len(runs) != len(labels) or not runs:
        raise ValueError("give one label per run")
    fig, ax = plt.subplots(figsize=(9, 0.7 * len(runs) + 1.3), layout="constrained")
    plt.close(fig)
    end = max(max((t for t, _ in r.events), default=0.0) for r in runs) + 0.1
    for lane, run in enumerate(runs):
        y = len(runs) - 1 - lane
        if run.froze_at is not None:
            ax.broken_barh([(run.froze_at, (run.thawed_at or end) - run.froze_at)], (y - 0.4, 0.8),
                           color="#eceff1", zorder=0)
            ax.text(run.froze_at + 0.01, y + 0.28, "peer frozen (SIGSTOP)", fontsize=7, color="#546e7a")
        opened, ponged = None, None
        for t, what in run.events + [(end, "end")]:
            if what == "connected":
                opened, ponged = t, None
            elif what.startswith("first pong"):
                ponged = t
            elif opened is not None and (what.startswith(("dead", "closed")) or what == "end"):
                if ponged is None:
                    ax.broken_barh([(opened, t - opened)], (y - 0.15, 0.3), color="#ffcdd2")
                else:
                    ax.broken_barh([(opened, ponged - opened), (ponged, t - ponged)], (y - 0.15, 0.3),
                                   color=["#ffcdd2", "#81c784"])
                opened = None
            if what.startswith("dead"):
                ax.plot([t], [y], "X", color="#c62828", ms=8)
    ax.set_yticks(range(len(runs)), list(reversed(labels)), fontsize=8)
    ax.set_ylim(-0.6, len(runs) - 0.4)
    ax.set_xlim(0, end)
    ax.set_xlabel("seconds (bars: connections, green once pongs come; X: declared dead and closed)")
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title or "A heartbeat that closes and reconnects", fontsize=10)
    return fig


def storm_attempts(storm: StormLog, *, width: float = 0.025) -> Figure:
    """Connection attempts over time when many clients lost their server at once: one panel per back-off
    schedule (a ``heartbeats.Storm``), refused attempts and successful connects stacked in ``width``-s bins."""
    names = list(storm.attempts)
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 1.9 * len(names) + 0.6), sharex=True, sharey=True,
                             layout="constrained")
    plt.close(fig)
    axes = list(axes) if len(names) > 1 else [axes]
    end = max((t for log in storm.attempts.values() for t, _ in log), default=1.0) + width
    edges = [i * width for i in range(int(end / width) + 2)]
    for ax, name in zip(axes, names):
        refused = [t for t, ok in storm.attempts[name] if not ok]
        connected = [t for t, ok in storm.attempts[name] if ok]
        ax.hist([refused, connected], bins=edges, stacked=True, color=["#b0bec5", "#2e7d32"],
                label=["refused (server down)", "connected"])
        ax.axvline(storm.down_for, color="#c62828", lw=1.2, ls="--")
        ax.text(storm.down_for, 1.0, " server back", color="#c62828", fontsize=8, va="top",
                transform=ax.get_xaxis_transform())
        ax.set_title(f"{name}: {len(storm.attempts[name])} attempts, at most {storm.peak(name, width)} per "
                     f"{width * 1000:g} ms", fontsize=9, loc="left")
        ax.set_ylabel("attempts")
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].legend(loc="upper right", fontsize=8, frameon=False)
    axes[-1].set_xlabel(f"seconds since {storm.clients} clients lost the server")
    return fig
