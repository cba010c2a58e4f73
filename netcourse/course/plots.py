"""Pictures of traffic: ladder diagrams and bytes-on-the-wire bars.

Every function takes data (and an optional matplotlib ``Axes``) and returns the ``Figure``. They never
run experiments, so a notebook can wire them to a widget and a test can call them directly.
"""

from __future__ import annotations

import math
import statistics
import textwrap
from collections.abc import Sequence

import matplotlib.pyplot as plt
import matplotlib.ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..protocols.headers import HeaderLayout
from ..traffic.packets import C2S, PacketRow, in_flight, presumed_lost
from ..traffic.wire import LAYER_LABELS, LAYERS, WireBytes
from .exercises import sig3

__all__ = ["ladder", "overhead_bar", "header_diagram", "duplex_timeline", "port_map", "port_budget", "overhead_at_rate", "latency_distributions", "polling_timeline", "polling_latency", "polling_costs", "heartbeat_connections", "reconnect_storm", "stream_delays", "chunks_and_segments", "webhook_attempts", "webhook_noise", "offline_timeline", "soak_result",
           "tls_timeline", "tls_ladder", "tls_round_trips", "tls_overhead", "byte_histogram",
           "latency_cdf", "transport_costs", "transport_sweep", "away_and_back", "scale_out"]

LAYER_COLOURS = {
    "link": "#9e9e9e",
    "ip": "#64b5f6",
    "transport": "#1565c0",
    "app_headers": "#ffb74d",
    "payload": "#43a047",
}


def _figure(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    plt.close(fig)  # returned, not shown twice: the notebook displays the returned figure
    return fig, ax


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
    """
    lost = presumed_lost(rows) if lost is None else lost
    shown = list(rows)[:max_packets]
    fig, ax = _figure(ax, (8, 0.45 * len(shown) + 1.6))
    x_client, x_server = 0.0, 1.0
    top, bottom = 0.0, len(shown) + 0.5
    for x, name in ((x_client, client), (x_server, server)):
        ax.plot([x, x], [top, bottom], color="#424242", lw=2)
        ax.text(x, -0.35, name, ha="center", va="bottom", fontsize=11, weight="bold")
    for i, row in enumerate(shown, start=1):
        left_to_right = row.direction == C2S
        x0, x1 = (x_client, x_server) if left_to_right else (x_server, x_client)
        y0, y1 = i - 0.15, i + 0.15
        colour = _arrow_colour(row)
        text = row.caption
        if times:
            ax.text(-0.06, i, f"{row.t * 1000:.2f} ms", ha="right", va="center", fontsize=8, color="#616161")
        is_lost = row.no in lost
        _arrow(ax, x0, y0, x1, y1, colour, 1.6, is_lost)
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
    ends = [(r.t * 1000 - (0 if r.direction == C2S else one_way_ms), r.t * 1000 + (one_way_ms if r.direction == C2S else 0))
            for r in shown] or [(0.0, 0.0)]
    start, end = min(a for a, _ in ends), max(b for _, b in ends)
    span = max(end - start, 1e-6)
    fig, ax = _figure(ax, (8, 6.5))
    x_client, x_server = 0.0, 1.0
    for x, name in ((x_client, client), (x_server, server)):
        ax.plot([x, x], [start, end], color="#424242", lw=2)
        ax.text(x, start - 0.02 * span, name, ha="center", va="bottom", fontsize=11, weight="bold")
    last_t, last_label_t, crowd = None, None, 0
    for row in shown:
        t = row.t * 1000
        if row.direction == C2S:  # left the client at t, reached the server one way later
            (x0, y0), (x1, y1) = (x_client, t), (x_server, t + one_way_ms)
        else:  # reached the client at t, so it left the server one way earlier
            (x0, y0), (x1, y1) = (x_server, t - one_way_ms), (x_client, t)
        colour = _arrow_colour(row)
        _arrow(ax, x0, y0, x1, y1, colour, 1.4, row.no in lost)
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


def _arrow(ax: Axes, x0: float, y0: float, x1: float, y1: float, colour: str, lw: float, lost: bool) -> None:
    """One packet: an arrow from (x0, y0) to (x1, y1), or, when it was lost, a line that stops halfway at a cross."""
    if lost:
        xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
        ax.plot([x0, xm], [y0, ym], color=colour, lw=lw)
        ax.plot([xm], [ym], marker="x", color="#b00020", markersize=10, mew=2.5)
    else:
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=dict(arrowstyle="-|>", color=colour, lw=lw))


def _arrow_colour(row: PacketRow) -> str:
    if "S" in row.flags:
        return "#6a1b9a"  # handshake
    if "F" in row.flags or "R" in row.flags:
        return "#c62828"  # teardown or reset
    if row.payload:
        return "#2e7d32"  # data
    return "#757575"  # pure ACK


def overhead_bar(
    exchanges: WireBytes | Sequence[WireBytes],
    *,
    ax: Axes | None = None,
    title: str = "Bytes on the wire, by layer",
    share: bool = False,
) -> Figure:
    """A stacked bar per exchange: link, IP, TCP/UDP, application headers and payload.

    Args:
        exchanges: one ``WireBytes`` or several (one bar each).
        ax: an Axes to draw into; a new figure otherwise.
        title: figure title.
        share: plot each layer's share of the total (percent) instead of bytes.
    """
    if isinstance(exchanges, WireBytes):
        exchanges = [exchanges]
    fig, ax = _figure(ax, (max(4.0, 2.2 * len(exchanges) + 2.5), 4.2))
    labels = [e.label for e in exchanges]
    bottoms = [0.0] * len(exchanges)
    for layer in LAYERS:
        values = [
            (getattr(e, layer) / e.total * 100 if e.total else 0.0) if share else getattr(e, layer)
            for e in exchanges
        ]
        ax.bar(labels, values, bottom=bottoms, color=LAYER_COLOURS[layer], label=LAYER_LABELS[layer], width=0.55)
        bottoms = [b + v for b, v in zip(bottoms, values)]
    for i, e in enumerate(exchanges):
        note = f"{e.total:,} B\npayload {e.payload_share:.1%}"
        ax.text(i, bottoms[i], note, ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("share of bytes on the wire (%)" if share else "bytes on the wire")
    ax.set_ylim(0, max(bottoms) * 1.22 if bottoms and max(bottoms) else 1)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    ax.set_title(title)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def header_diagram(layout: HeaderLayout, *, ax: Axes | None = None, values: dict[str, int] | None = None) -> Figure:
    """Draw a header as the RFCs do: rows of 32 bits, one box per field.

    Args:
        layout: a ``HeaderLayout`` from ``netcourse.headers`` (IPV4, TCP, UDP).
        ax: an Axes to draw into; a new figure otherwise.
        values: optional field values (e.g. ``layout.parse(bytes)``) written under the names.
    """
    rows = -(-layout.bits // 32)
    fig, ax = _figure(ax, (10, 0.75 * (rows + 1) + 1.0))
    bit = 0
    for f in layout.fields:
        remaining = f.bits
        while remaining:
            row, col = divmod(bit, 32)
            width = min(remaining, 32 - col)
            colour = "#ffe0b2" if "Checksum" in f.name else ("#e3f2fd" if "Port" in f.name or "Address" in f.name else "#f5f5f5")
            ax.add_patch(plt.Rectangle((col, row), width, 1, fc=colour, ec="#424242", lw=1))
            label = f.name if f.bits == 1 else textwrap.fill(f.name, max(6, int(width * 3.2)))
            text = label if values is None else f"{label}\n{values.get(f.name, '')}"
            size = 7 if f.bits == 1 else 9
            ax.text(col + width / 2, row + 0.5, text, ha="center", va="center", fontsize=size,
                    rotation=90 if f.bits == 1 else 0)
            bit += width
            remaining -= width
    if layout.note:
        ax.add_patch(plt.Rectangle((0, rows), 32, 0.8, fc="white", ec="#9e9e9e", lw=1, ls="--"))
        ax.text(16, rows + 0.4, layout.note, ha="center", va="center", fontsize=9, color="#616161")
    for b in range(0, 33, 8):
        ax.text(b, -0.15, str(b), ha="center", va="bottom", fontsize=8, color="#616161")
    for r in range(rows):
        ax.text(-0.4, r + 0.5, f"{r * 4}", ha="right", va="center", fontsize=8, color="#616161")
    ax.text(-0.4, -0.15, "byte ↓  bit →", ha="right", va="bottom", fontsize=8, color="#616161")
    ax.set_xlim(-2.2, 32.3)
    ax.set_ylim(rows + 1.0, -0.8)
    ax.axis("off")
    has_options = layout.name not in ("UDP",)  # UDP's header is fixed: it has no options field
    size = f"{layout.size} bytes without options" if has_options else f"{layout.size} bytes, always"
    ax.set_title(f"{layout.name} header: {size} ({layout.source})", fontsize=11)
    return fig


def duplex_timeline(rows: Sequence[PacketRow], *, ax: Axes | None = None, title: str | None = None) -> Figure:
    """Packets of one connection on a time axis, one lane per direction.

    Data packets are tall bars labelled with their payload size; pure ACKs are short grey ticks;
    SYN and FIN packets are purple and red. When both lanes have data at overlapping times, both ends
    were sending at once: full duplex.
    """
    fig, ax = _figure(ax, (10, 2.8))
    lanes = {C2S: 1.0, "S→C": 0.0}
    for row in rows:
        y = lanes.get(row.direction, 0.0)
        t = row.t * 1000
        if row.payload:
            ax.vlines(t, y - 0.3, y + 0.3, color="#2e7d32", lw=2.5)
        else:
            ax.vlines(t, y - 0.12, y + 0.12, color=_arrow_colour(row), lw=1.5)
    ax.set_yticks([1.0, 0.0], ["client → server", "server → client"])
    ax.set_ylim(-0.6, 1.6)
    ax.set_xlabel("time since the capture started (ms)")
    ax.spines[["top", "right", "left"]].set_visible(False)
    ax.set_title(title or "One connection, both directions (green: data; grey: ACK; purple/red: SYN/FIN)")
    return fig


# RFC 6335 §6: the three port ranges.
PORT_RANGES = [
    (0, 1023, "System (well-known) ports", "#ffcdd2"),
    (1024, 49151, "User (registered) ports", "#e3f2fd"),
    (49152, 65535, "Dynamic (private) ports", "#e8f5e9"),
]


def port_map(ports: Sequence[int], *, ephemeral: tuple[int, int] | None = None, ax: Axes | None = None) -> Figure:
    """Where the ports the OS assigned fall: among all 65,536 (left), and close up (right).

    The close-up spans only the assigned ports, so the gaps between successive ones (which RFC 6056's
    port selection makes small and random) can be read; each step is labelled with its size.

    Args:
        ports: client ports, in the order the connections were opened.
        ephemeral: the OS's ephemeral range (low, high), drawn as a band.
        ax: an Axes to draw the overview into (no close-up then); a new two-panel figure otherwise.
    """
    if ax is None:
        fig, (ax, zoom) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained", width_ratios=[1, 1.3])
        plt.close(fig)
    else:
        fig, zoom = ax.figure, None
    n = len(ports)
    for low, high, label, colour in PORT_RANGES:
        ax.axhspan(low, high, color=colour, alpha=0.8, lw=0)
        ax.text(n + 0.6, (low + high) / 2, label, va="center", fontsize=8)
    if ephemeral:
        ax.axhspan(ephemeral[0], ephemeral[1], fill=False, hatch="//", ec="#6a1b9a", lw=0.8)
        ax.text(0.6, ephemeral[1] + 600, f"this OS's ephemeral range {ephemeral[0]}–{ephemeral[1]}",
                fontsize=8, color="#6a1b9a")
    ax.plot(range(1, n + 1), ports, "o-", color="#1565c0", ms=4, lw=1)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlim(0.5, n + 0.5)
    ax.set_ylim(0, 65535)
    ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:.0f}"))
    ax.set_xlabel("connection number (in the order opened)")
    ax.set_ylabel("client port")
    ax.set_title("Among all 65,536 ports")
    ax.spines[["top", "right"]].set_visible(False)
    if zoom is not None and ports:
        xs = range(1, n + 1)
        zoom.plot(xs, ports, "o-", color="#1565c0", ms=5, lw=1)
        for x, (a, b) in enumerate(zip(ports, ports[1:]), start=1):
            zoom.text(x + 0.5, (a + b) / 2, f"{b - a:+d}", fontsize=7, color="#424242", ha="right", va="bottom")
        span = max(max(ports) - min(ports), 10)
        zoom.set_ylim(min(ports) - 0.05 * span, max(ports) + 0.08 * span)
        zoom.set_xlim(0.5, n + 0.5)
        zoom.xaxis.get_major_locator().set_params(integer=True)
        zoom.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:.0f}"))
        zoom.set_xlabel("connection number (in the order opened)")
        zoom.set_title("Close up: each step is the gap to the next port")
        zoom.spines[["top", "right"]].set_visible(False)
        fig.suptitle("Ports the OS chose for your client sockets")
    return fig


def overhead_at_rate(ws_overhead: int, http_overhead: int, size: int, rate: float, *, ax: Axes | None = None) -> Figure:
    """Bytes per second an echo service spends at ``rate`` messages/s: WebSocket frames against HTTP.

    Each echo carries ``size`` bytes each way. A WebSocket adds ``ws_overhead`` bytes of frame headers per
    echo, HTTP ``http_overhead`` bytes of request and response heads. TCP/IP headers are not counted: about
    the same for both (66 bytes a packet on Linux, two data packets per echo, plus ACKs).

    Args:
        ws_overhead, http_overhead: header bytes per echo, both directions together.
        size: payload bytes each way.
        rate: echoes per second; marked on the curves.
        ax: an Axes to draw into; a new figure otherwise.
    """
    if size < 0 or rate <= 0:
        raise ValueError("size must be >= 0 and rate > 0")
    fig, ax = _figure(ax, (8, 3.6))
    rates = [10 ** (k / 10) for k in range(0, 41)]  # 1 to 10,000 per second
    for name, head, colour in (("WebSocket", ws_overhead, "#2e7d32"), ("HTTP request", http_overhead, "#c62828")):
        per = head + 2 * size
        ax.plot(rates, [r * per for r in rates], color=colour, label=f"{name}: {head} B of headers + {2 * size} B of payload per echo")
        ax.plot([rate], [rate * per], "o", color=colour, ms=7)
        ax.annotate(f"{rate * per:,.0f} B/s ({head / per:.0%} headers)", (rate, rate * per), textcoords="offset points",
                    xytext=(6, -12 if colour == "#2e7d32" else 6), fontsize=8, color=colour)
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.set_xlabel("echoes per second")
    ax.set_ylabel("application bytes per second\n(headers + payload, TCP/IP not counted)")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.set_title(f"{size}-byte messages at {rate:g} per second")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def heartbeat_tradeoff(interval: float, timeout: float, *, clients: int = 100_000, measured=None,
                       ax: Axes | None = None) -> Figure:
    """An application heartbeat's two costs side by side: how late a death is noticed, and the traffic.

    Left: detection time, between ``timeout`` and ``interval + timeout`` (and ``measured``'s trials, a
    ``Detection``, when its settings are the ones drawn). Right: bytes per hour on the wire for one
    connection, and what ``clients`` connections cost the server.
    """
    from ..protocols.beat import detection_bounds, heartbeat_cost

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


def heartbeat_connections(runs: Sequence, labels: Sequence[str], *, title: str | None = None) -> Figure:
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


def reconnect_storm(storm, *, width: float = 0.025) -> Figure:
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


def stream_delays(run, cases: Sequence[str] | None = None, *, title: str | None = None) -> Figure:
    """When each event of a stream was published (grey ticks) and when it reached the client (dots), one row
    per way of connecting (a ``streaming.Buffering``): events held by a buffer arrive in a lump."""
    cases = list(run.delays) if cases is None else list(cases)
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(cases) + 1.3), layout="constrained")
    plt.close(fig)
    published = run._published()
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


def chunks_and_segments(bounds, name: str, *, title: str | None = None) -> Figure:
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


def webhook_attempts(outage, *, title: str | None = None) -> Figure:
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
    from ..apps.webhooks import STANDARD_SCHEDULE

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
    ax.set_title(title or "Delivery attempts, one row per event: × failed, ○ 410 Gone, ● delivered")
    return fig


def webhook_noise(runs, *, title: str | None = None) -> Figure:
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


def offline_timeline(run, *, title: str | None = None) -> Figure:
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


def soak_result(soak, *, title: str | None = None) -> Figure:
    """A fault soak (an ``offline.Soak``): the messages published over time, each fault where it struck,
    and the verdict."""
    fig, ax = plt.subplots(figsize=(9, 2.3), layout="constrained")
    plt.close(fig)
    ax.axvspan(0, soak.streaming_until, color="#e3f2fd", label="messages streaming")
    marks = {"client killed (SIGKILL)": ("X", "#c62828"), "server crashed and restarted": ("s", "#ef6c00"),
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
    fig, ax = _figure(ax, (7, 3.2))
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


def latency_distributions(
    samples_ms: dict[str, Sequence[float]], *, ax: Axes | None = None, title: str | None = None
) -> Figure:
    """Box plots of latency samples (milliseconds) per method, on a log scale, with medians written.

    Args:
        samples_ms: method -> latencies in milliseconds.
        ax: an Axes to draw into; a new figure otherwise.
        title: figure title.
    """
    import statistics

    fig, ax = _figure(ax, (9, 0.9 * len(samples_ms) + 1.6))
    names = list(samples_ms)
    data = [list(samples_ms[n]) for n in names]
    try:
        ax.boxplot(data, orientation="horizontal", showfliers=False, widths=0.5)
    except TypeError:  # matplotlib < 3.10
        ax.boxplot(data, vert=False, showfliers=False, widths=0.5)
    ax.set_yticks(range(1, len(names) + 1), names)
    for i, values in enumerate(data, start=1):
        median = statistics.median(values)
        # Written above the median line: inside the drawn range whatever the outliers (which are not
        # drawn, so a label at the maximum could fall outside the axes).
        ax.annotate(f"median {sig3(median)} ms", xy=(median, i + 0.25), xytext=(0, 2),
                    textcoords="offset points", fontsize=8, ha="center", va="bottom", annotation_clip=False)
    ax.set_ylim(0.5, len(names) + 0.8)  # room above the top box for its label
    ax.margins(x=0.12)  # on the log scale: room either side for labels centred on a median
    ax.set_xscale("log")
    # Plain numbers (0.2, 1, 50), never 2×10⁻¹; labelled ticks at 1, 2 and 5 of each decade only.
    values = [v for d in data for v in d if v == v and v > 0]
    decades = math.log10(max(values) / min(values)) if values else 0.0
    subs = (1.0, 2.0, 5.0) if decades <= 2.5 else (1.0,)  # 1-2-5 ticks, or decades only when they would crowd
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=subs))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: sig3(v).rstrip("0").rstrip(".") if v < 1 else f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("round-trip latency (ms, log scale)")
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title or "Request/response latency")
    return fig


def polling_timeline(run, *, ax: Axes | None = None, title: str | None = None) -> Figure:
    """One run on one time axis: publications on top, then one lane per poller.

    Each request is a horizontal bar from when it was sent to when it was answered (long polls are
    long bars); a dot marks answers that carried messages.

    Args:
        run: a ``PollingRun`` (``netcourse.experiments.polling.compare``).
    """
    lanes = len(run.pollers) + 1
    fig, ax = _figure(ax, (10, 0.55 * lanes + 1.6))
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


def polling_latency(run, *, ax: Axes | None = None, title: str | None = None) -> Figure:
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


def polling_on_link(run, *, ax: Axes | None = None, title: str | None = None) -> Figure:
    """Every message's delivery latency across a link (ms), one row per poller, with the transits marked.

    For a link of round trip RTT: a held long poll delivers in one transit (RTT/2); a message that
    arrives while the answer is on its way waits for three (the answer, the new request, its answer:
    RFC 6202 §2.2); a short poller with interval T adds a wait of up to T before its poll reaches the
    server, T/2 on average.
    """
    fig, ax = _figure(ax, (9, 3.2))
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


def polling_theory(rtt_ms: float, interval: float, *, burst: int = 3, measured=None, ax: Axes | None = None) -> Figure:
    """Expected delivery latency (ms) for a round trip ``rtt_ms`` and short-poll ``interval`` (seconds).

    Bars: short polling's mean (T/2 + RTT/2) and worst (T + RTT/2); long polling's single message
    (RTT/2) and the worst of a burst (3 × RTT/2). ``measured`` (a ``PollingRun`` on a link) adds its
    measured means as dots, when its RTT and interval are the ones drawn.
    """
    fig, ax = _figure(ax, (8, 2.8))
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


def slow_start(transfer, *, ax: Axes | None = None, title: str | None = None) -> Figure:
    """Bytes in flight over a bulk transfer (from the sender's capture) and the congestion window
    (from its TCP_INFO samples, when there are some), one grey line per round trip.

    Args:
        transfer: a ``Transfer`` (``netcourse.experiments.transport.slow_start``).
    """
    fig, ax = _figure(ax, (9, 3.6))
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
    ax.set_xlabel("time since connect (ms); grey lines one round trip apart")
    ax.set_ylabel("kB")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title or f"{transfer.size / 1e6:g} MB across {rtt:g} ms"
                 + (f", {transfer.rate_mbit:g} Mbit/s" if transfer.rate_mbit else ""))
    return fig


def polling_costs(summary, *, ax: Axes | None = None) -> Figure:
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


# -- notebook 09: TLS ---------------------------------------------------------------------------------------

_TLS_KINDS = {"ssl": ("#e53935", "SSL (Netscape)"), "tls": ("#1565c0", "TLS (IETF)"), "retired": ("#757575", "retired by RFC")}


def tls_timeline(milestones, *, ax: Axes | None = None) -> Figure:
    """SSL and TLS versions on a time axis, and the RFCs that retired the old ones."""
    fig, ax = _figure(ax, (10, 3.4))
    for i, m in enumerate(milestones):
        colour, _ = _TLS_KINDS[m.kind]
        y = 1 if m.kind != "retired" else -1
        level = y * (0.6 + 0.5 * (i % 2))
        ax.vlines(m.year, 0, level, color=colour, lw=1.2)
        ax.plot([m.year], [0], "o", color=colour, ms=6)
        label = m.name + "\n" + (m.source.split(":")[0].split(";")[0].split(" (")[0] if m.kind != "ssl" else "Netscape")
        ax.text(m.year, level + (0.08 if y > 0 else -0.08), label, ha="center", va="bottom" if y > 0 else "top",
                fontsize=8.5, color=colour)
    ax.axhline(0, color="#424242", lw=1)
    ax.set_ylim(-2.0, 2.0)
    ax.set_xlim(1993, 2024)
    ax.set_yticks([])
    ax.spines[["top", "right", "left"]].set_visible(False)
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=label) for c, label in _TLS_KINDS.values()]
    ax.legend(handles=handles, loc="lower left", fontsize=8, frameon=False)
    ax.set_title("Versions above the line, their retirement below")
    return fig


def tls_ladder(connection, *, ax: Axes | None = None, title: str | None = None, max_records: int = 20) -> Figure:
    """The records of one TLS connection as a ladder, labelled with what each carried."""
    records = connection.records[:max_records]
    fig, ax = _figure(ax, (8.5, 0.42 * len(records) + 1.4))
    for x, name in ((0.0, "client"), (1.0, "server")):
        ax.plot([x, x], [0, len(records) + 0.5], color="#424242", lw=2)
        ax.text(x, -0.35, name, ha="center", va="bottom", fontsize=11, weight="bold")
    for i, r in enumerate(records, start=1):
        x0, x1 = (0.0, 1.0) if r.direction == C2S else (1.0, 0.0)
        colour = "#2e7d32" if not r.encrypted else ("#6a1b9a" if r.decrypted else "#9e9e9e")
        _arrow(ax, x0, i - 0.15, x1, i + 0.15, colour, 1.5, False)
        ax.text(0.5, i - 0.08, r.label, ha="center", va="bottom", fontsize=8.5, color=colour,
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
    if len(connection.records) > len(records):
        ax.text(0.5, len(records) + 0.6, f"... and {len(connection.records) - len(records)} more records",
                ha="center", fontsize=9)
    ax.text(-0.3, len(records) + 0.9, "green: in clear · purple: encrypted, opened with the key log · grey: encrypted",
            fontsize=8, color="#616161")
    ax.set_xlim(-0.3, 1.3)
    ax.set_ylim(len(records) + 1.2, -0.9)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return fig


def tls_round_trips(run, *, ax: Axes | None = None) -> Figure:
    """Time to the first response byte per case: measured bars beside theory (round trips × RTT)."""
    fig, ax = _figure(ax, (8, 3.4))
    names = [c for c, _, _ in run.rows]
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [t * run.rtt_ms for _, t, _ in run.rows], width=0.4, color="#bdbdbd",
           label="theory: round trips × RTT")
    ax.bar([x + 0.2 for x in xs], [m for _, _, m in run.rows], width=0.4, color="#1565c0", label=f"measured ({run.mode} link)")
    for x, (_, t, m) in zip(xs, run.rows):
        ax.text(x + 0.2, m, f"{m:.0f}", ha="center", va="bottom", fontsize=8)
        ax.text(x - 0.2, t * run.rtt_ms, f"{t} RTT", ha="center", va="bottom", fontsize=8, color="#616161")
    ax.set_xticks(list(xs), names, fontsize=9)
    ax.set_ylabel("ms to first response byte")
    ax.set_title(f"A fresh connection across a {run.rtt_ms:g} ms round trip")
    ax.legend(fontsize=8, frameon=False, loc="upper right")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def tls_overhead(rows, chosen, *, ax: Axes | None = None) -> Figure:
    """Left: overhead bytes per exchange against body size (log). Right: one size's bytes, plain vs TLS."""
    if ax is None:
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4), layout="constrained")
        plt.close(fig)
    else:
        fig, left = ax.figure, ax
        right = None
    sizes = [max(r.body, 1) for r in rows]
    left.plot(sizes, [r.tls13 - r.plain for r in rows], "o-", color="#1565c0", label="TLS 1.3")
    left.plot(sizes, [r.tls12 - r.plain for r in rows], "s-", color="#ef6c00", label="TLS 1.2 (AES-GCM)")
    left.axvline(max(chosen.body, 1), color="#9e9e9e", ls=":")
    left.set_xscale("log")
    left.set_xlabel("body bytes (request and echo), log scale")
    left.set_ylabel("extra bytes vs plain HTTP")
    left.set_title("TLS overhead per request + response", fontsize=10)
    left.legend(fontsize=8, frameon=False)
    left.spines[["top", "right"]].set_visible(False)
    if right is not None:
        extras = [chosen.tls13 - chosen.plain, chosen.tls12 - chosen.plain]
        right.barh(["TLS 1.3", "TLS 1.2"], extras, color=["#1565c0", "#ef6c00"])
        for y, (extra, rec) in enumerate(zip(extras, [chosen.records13, chosen.records12])):
            right.text(extra, y, f" +{extra} B = {100 * extra / chosen.plain:.2f} % of {chosen.plain:,} B, "
                       f"{rec} records", va="center", fontsize=8)
        right.set_xlim(0, max(extras) * 2.6)
        right.set_xlabel("extra bytes of TCP payload")
        right.set_title(f"{chosen.body:,}-byte body echoed", fontsize=10)
        right.spines[["top", "right"]].set_visible(False)
    return fig


def byte_histogram(plaintext: bytes, ciphertext: bytes, *, ax: Axes | None = None) -> Figure:
    """How often each byte value occurs: the page in clear against the same page encrypted."""
    if ax is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 2.8), layout="constrained", sharey=True)
        plt.close(fig)
    else:
        fig, axes = ax.figure, [ax, ax]
    for a, data, title, colour in ((axes[0], plaintext, "plaintext (decrypted with the key log)", "#43a047"),
                                   (axes[1], ciphertext, "the same bytes as they crossed the wire", "#757575")):
        counts = [0] * 256
        for b in data:
            counts[b] += 1
        a.bar(range(256), counts, width=1.0, color=colour)
        a.set_title(title, fontsize=10)
        a.set_xlabel("byte value")
        a.spines[["top", "right"]].set_visible(False)
    axes[0].set_ylabel("count")
    return fig


# -- notebook 10: choosing a transport --------------------------------------------------------------------

TRANSPORT_COLOURS = {"short polling": "#9e9e9e", "long polling": "#616161", "SSE": "#ef6c00", "WebSocket": "#1565c0",
                     "raw TCP": "#2e7d32", "UDP": "#6a1b9a", "webhooks": "#c62828"}


def latency_cdf(runs, *, ax: Axes | None = None, title: str | None = None) -> Figure:
    """The share of messages delivered within x ms, one line per transport (x on a log scale)."""
    fig, ax = _figure(ax, (8, 3.6))
    for name, run in runs.items():
        values = sorted(1000 * v for v in run.latencies)
        if not values:
            continue
        ys = [(i + 1) / run.expected for i in range(len(values))]
        ax.step(values, ys, where="post", label=name, color=TRANSPORT_COLOURS.get(name), lw=1.6)
    ax.set_xscale("log")
    ax.set_xlabel("publication to receipt, ms (log scale)")
    ax.set_ylabel("share of messages delivered")
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    if title:
        ax.set_title(title)
    return fig


def transport_costs(runs, *, ax: Axes | None = None) -> Figure:
    """Three panels per transport: bytes on the wire, requests or frames, and server CPU per message."""
    if ax is None:
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), layout="constrained")
        plt.close(fig)
    else:
        fig, axes = ax.figure, [ax, ax, ax]
    names = list(runs)
    colours = [TRANSPORT_COLOURS.get(n, "#1565c0") for n in names]
    panels = [([r.bytes_per_message for r in runs.values()], "bytes on the wire per message"),
              ([r.units_per_message for r in runs.values()], "requests, frames or datagrams per message"),
              ([r.cpu_us_per_message for r in runs.values()], "server CPU per message, µs")]
    for a, (values, label) in zip(axes, panels):
        a.bar(names, values, color=colours, width=0.65)
        a.set_title(label, fontsize=10)
        a.tick_params(axis="x", labelrotation=40, labelsize=8)
        a.spines[["top", "right"]].set_visible(False)
    return fig


def transport_sweep(data, dimension: str, key: str) -> Figure:
    """Bytes per message and median latency of every transport as one workload dimension varies."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
    plt.close(fig)
    series = data["sweeps"][dimension]
    labels = {"rate": "messages per second", "clients": "clients", "size": "message bytes", "rtt_ms": "round trip, ms"}
    for name, by_value in series.items():
        xs = sorted(by_value, key=float)
        x = [max(float(v), 0.05) for v in xs]
        colour = TRANSPORT_COLOURS.get(name)
        left.plot(x, [by_value[v]["bytes_per_msg"] for v in xs], "o-", ms=3, color=colour, label=name)
        right.plot(x, [by_value[v]["p50_ms"] for v in xs], "o-", ms=3, color=colour, label=name)
    chosen = max(float(key), 0.05)
    for a, ylabel in ((left, "bytes on the wire per message"), (right, "median latency, ms")):
        a.axvline(chosen, color="#9e9e9e", ls=":")
        if dimension in ("rate", "size", "clients"):
            a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel(labels[dimension] + (" (log)" if dimension != "rtt_ms" else ""))
        a.set_ylabel(ylabel)
        a.spines[["top", "right"]].set_visible(False)
    right.legend(fontsize=7, frameon=False, loc="best")
    left.set_title(f"measured by make bench on {data['measured_at']}", fontsize=9)
    right.set_title(f"{labels[dimension]} = {float(key):g}: marked", fontsize=9)
    return fig


def away_and_back(runs, *, ax: Axes | None = None) -> Figure:
    """For the client that went away: messages published meanwhile, delivered late or lost."""
    fig, ax = _figure(ax, (8, 3.0))
    names = list(runs)
    late = [runs[n].caught_up for n in names]
    lost = [runs[n].while_away - runs[n].caught_up for n in names]
    ax.bar(names, late, color="#2e7d32", label="delivered when it came back")
    ax.bar(names, lost, bottom=late, color="#c62828", label="lost")
    ax.set_ylabel("messages published while away")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.legend(fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def scale_out(without, with_broker, *, ax: Axes | None = None) -> Figure:
    """Messages received by the clients of node A and node B, without and with a broker."""
    fig, ax = _figure(ax, (7, 3.0))
    xs = [0, 1, 3, 4]
    values = [without.received["A"], without.received["B"], with_broker.received["A"], with_broker.received["B"]]
    expected = [without.expected_per_node["A"], without.expected_per_node["B"],
                with_broker.expected_per_node["A"], with_broker.expected_per_node["B"]]
    ax.bar(xs, expected, color="#e0e0e0", width=0.8, label="expected")
    ax.bar(xs, values, color=["#1565c0", "#ef6c00"] * 2, width=0.5, label="received")
    ax.set_xticks(xs, ["node A", "node B", "node A", "node B"])
    ax.text(0.5, max(expected) * 1.08, "no broker", ha="center")
    ax.text(3.5, max(expected) * 1.08, "Redis pub/sub", ha="center")
    ax.set_ylim(0, max(expected) * 1.25)
    ax.set_ylabel("messages received by its clients")
    ax.spines[["top", "right"]].set_visible(False)
    return fig
