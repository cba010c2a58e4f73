"""``python -m netcourse images``: regenerate the pictures in images/ from shipped recordings.

Everything drawn here comes from data the course ships (recordings, field tables), so the images are
the same on every machine and need no capture rights.
"""

from __future__ import annotations

from pathlib import Path

from scapy.utils import rdpcap

from ..traffic.packets import packet_rows
from ..traffic.recordings import load_meta, recording_paths

IMAGES = Path(__file__).resolve().parents[2] / "images"  # the repository's top-level images/


def first_request_ladder(directory: Path = IMAGES) -> Path:
    """The ladder of the recorded first request (notebook 00), as a PNG."""
    from ..course.plots.ladder import ladder

    meta = load_meta("first_request")
    pcap, _ = recording_paths("first_request")
    rows = packet_rows(rdpcap(str(pcap)), meta["server_ports"], meta["t0"])
    fig = ladder(rows, title="One HTTP request on loopback (recorded)")
    path = directory / "first_request_ladder.png"
    fig.savefig(path, dpi=100)
    return path


def header_diagrams(directory: Path = IMAGES) -> list[Path]:
    """The IPv4, TCP and UDP header diagrams, drawn from the field tables in ``netcourse.headers``."""
    from ..course.plots.wire import header_diagram
    from ..protocols.headers import LAYOUTS

    paths = []
    for key, layout in LAYOUTS.items():
        path = directory / f"{key}_header.png"
        header_diagram(layout).savefig(path, dpi=100)
        paths.append(path)
    return paths


def websocket_frame(directory: Path = IMAGES) -> Path:
    """The WebSocket frame layout (RFC 6455 §5.2), drawn from ``netcourse.wsframe.FIELDS``."""
    from ..course.plots.wire import header_diagram
    from ..protocols.headers import Field, HeaderLayout
    from ..protocols.wsframe import FIELDS

    layout = HeaderLayout(
        "WebSocket frame",
        "RFC 6455 §5.2",
        tuple(Field(name, bits) for name, bits in FIELDS)
        + (
            Field("Extended payload length (if len = 126 or 127)", 16),
            Field("Extended payload length, continued (if len = 127)", 48),
            Field("Masking key (if MASK = 1)", 32),
        ),
        note="Payload data (masked if MASK = 1)",
    )
    fig = header_diagram(layout)
    fig.axes[0].set_title("WebSocket frame header: 2 to 14 bytes (RFC 6455 §5.2)", fontsize=11)
    path = directory / "websocket_frame.png"
    fig.savefig(path, dpi=100)
    return path


def websocket_broker(directory: Path = IMAGES) -> Path:
    """Why scaling WebSockets out needs a broker: clients held by different server processes."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.2), layout="constrained")
    plt.close(fig)

    def box(x: float, y: float, w: float, h: float, text: str, colour: str) -> None:
        ax.add_patch(plt.Rectangle((x, y), w, h, fc=colour, ec="#424242", lw=1.2))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9)

    box(3.6, 4.1, 2.8, 0.8, "broker (pub/sub)\ne.g. Redis, NATS", "#ffe0b2")
    for i, x in enumerate((0.5, 3.6, 6.7)):
        box(x, 2.2, 2.8, 0.8, f"WebSocket server {i + 1}\n(holds its own clients)", "#e3f2fd")
        ax.annotate("", xy=(5.0, 4.1), xytext=(x + 1.4, 3.0), arrowprops=dict(arrowstyle="<->", color="#6d4c41"))
        for j in range(3):
            cx = x + 0.2 + j * 0.95
            box(cx, 0.4, 0.5, 0.5, "c", "#f5f5f5")
            ax.annotate("", xy=(cx + 0.25, 0.9), xytext=(x + 1.4, 2.2), arrowprops=dict(arrowstyle="-", color="#9e9e9e"))
    ax.text(5.0, 5.35, "A message for every client arrives at one server; only the broker reaches the others",
            ha="center", fontsize=10)
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 5.7)
    ax.axis("off")
    path = directory / "websocket_broker.png"
    fig.savefig(path, dpi=100)
    return path


def generate_all(directory: Path = IMAGES) -> list[Path]:
    """Draw every image; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    return [first_request_ladder(directory), *header_diagrams(directory), websocket_frame(directory), websocket_broker(directory)]
