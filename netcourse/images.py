"""``python -m netcourse images``: regenerate the pictures in images/ from shipped recordings.

Everything drawn here comes from data the course ships (recordings, field tables), so the images are
the same on every machine and need no capture rights.
"""

from __future__ import annotations

from pathlib import Path

from scapy.utils import rdpcap

from .packets import packet_rows
from .scenarios import load_meta, recording_paths

IMAGES = Path(__file__).resolve().parent.parent / "images"


def first_request_ladder(directory: Path = IMAGES) -> Path:
    """The ladder of the recorded first request (notebook 00), as a PNG."""
    from . import plots

    meta = load_meta("first_request")
    pcap, _ = recording_paths("first_request")
    rows = packet_rows(rdpcap(str(pcap)), meta["server_ports"], meta["t0"])
    fig = plots.ladder(rows, title="One HTTP request on loopback (recorded)")
    path = directory / "first_request_ladder.png"
    fig.savefig(path, dpi=100)
    return path


def header_diagrams(directory: Path = IMAGES) -> list[Path]:
    """The IPv4, TCP and UDP header diagrams, drawn from the field tables in ``netcourse.headers``."""
    from . import plots
    from .headers import LAYOUTS

    paths = []
    for key, layout in LAYOUTS.items():
        path = directory / f"{key}_header.png"
        plots.header_diagram(layout).savefig(path, dpi=100)
        paths.append(path)
    return paths


def generate_all(directory: Path = IMAGES) -> list[Path]:
    """Draw every image; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    return [first_request_ladder(directory), *header_diagrams(directory)]
