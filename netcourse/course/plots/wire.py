"""Bytes on the wire: one exchange's bytes per layer, a header's fields, ports, overhead against message rate, and
latency distributions (the generic figures several lessons use).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Protocol

import matplotlib.pyplot as plt
import matplotlib.ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ...protocols.headers import HeaderLayout
from ...traffic.wire import LAYER_LABELS, LAYERS, WireBytes
from ..exercises import sig3
from .draw import LAYER_COLOURS, TRANSPORT_COLOURS, figure

__all__ = ["overhead_bar", "header_diagram", "PORT_RANGES", "port_map", "overhead_at_rate", "latency_distributions", "byte_histogram", "latency_cdf",
           "Latencies"]


class Latencies(Protocol):
    """One transport's deliveries (``experiments.choosing.harness.TransportRun``): seconds each, of ``expected``."""

    @property
    def latencies(self) -> Sequence[float]: ...
    @property
    def expected(self) -> int: ...


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
    fig, ax = figure(ax, (max(4.0, 2.2 * len(exchanges) + 2.5), 4.2))
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
    fig, ax = figure(ax, (10, 0.75 * (rows + 1) + 1.0))
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
    fig, ax = figure(ax, (8, 3.6))
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

    fig, ax = figure(ax, (9, 0.9 * len(samples_ms) + 1.6))
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


def latency_cdf(runs: Mapping[str, Latencies], *, ax: Axes | None = None, title: str | None = None) -> Figure:
    """The share of messages delivered within x ms, one line per transport (x on a log scale)."""
    fig, ax = figure(ax, (8, 3.6))
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
