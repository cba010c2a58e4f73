"""The captures the course ships, for learners who may not capture live.

A recording is two files named after its scenario: ``NAME.pcap`` (the packets, nanosecond
timestamps) and ``NAME.json`` (when and where it was recorded, the server ports, whether the capture
was complete). They live in ``netcourse/recordings/``; ``python -m netcourse record`` (as root)
re-records them by running every registered scenario while ``recording()`` is active.

Recordings are found by name only: this module knows nothing of the experiments that make them.
"""

from __future__ import annotations

import json
import platform
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import RecordingMissing, UnknownScenarioError

__all__ = [
    "RECORDINGS",
    "recording_paths",
    "shipped",
    "load_meta",
    "recorded_when",
    "recording",
    "recording_target",
    "write",
    "read",
    "check_scenario_name",
]

RECORDINGS = Path(__file__).resolve().parent.parent / "recordings"

_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_recording_dir: Path | None = None


def check_scenario_name(name: str) -> None:
    """Refuse a scenario name that is not a short lower-case identifier (it names files)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UnknownScenarioError(str(name), shipped())


def recording_paths(name: str, directory: Path | None = None) -> tuple[Path, Path]:
    """(pcap, json) paths of a scenario's recording."""
    check_scenario_name(name)
    base = (directory or RECORDINGS) / name
    return base.with_suffix(".pcap"), base.with_suffix(".json")


def shipped(directory: Path | None = None) -> list[str]:
    """Names of the scenarios that have a complete recording (both files) in ``directory``."""
    folder = directory or RECORDINGS
    return sorted(p.stem for p in folder.glob("*.pcap") if p.with_suffix(".json").exists())


def load_meta(name: str, directory: Path | None = None) -> dict[str, Any]:
    """The JSON metadata of a recording.

    Raises:
        UnknownScenarioError: no recording of that name (the message lists those there are).
        RecordingMissing: only one of its two files exists.
    """
    pcap, meta = recording_paths(name, directory)
    if not pcap.exists() and not meta.exists():
        raise UnknownScenarioError(name, shipped(directory))
    if not pcap.exists() or not meta.exists():
        raise RecordingMissing(
            f"The recording of scenario {name!r} in {pcap.parent} is incomplete (it needs both "
            f"{pcap.name} and {meta.name}). A maintainer re-records it with `python -m netcourse record` "
            "(as root)."
        )
    return json.loads(meta.read_text())


def recorded_when(meta: dict[str, Any]) -> str:
    """A recording's time for people: "2026-11-26 12:20:18 UTC"."""
    return str(meta["recorded_at"]).replace("T", " ").replace("Z", " UTC")


def kernel_label() -> str:
    """The operating system as a lesson shows it: "Linux 6.x" (no build string, no host details)."""
    major = platform.release().split(".", 1)[0]
    return f"{platform.system()} {major}.x" if major.isdigit() else platform.system()


def recording_target() -> Path | None:
    """Where live captures are being recorded to right now, or None."""
    return _recording_dir


@contextmanager
def recording(directory: Path | None = None) -> Iterator[Path]:
    """While active, every live capture with a scenario name saves itself into ``directory``."""
    global _recording_dir
    previous = _recording_dir
    _recording_dir = Path(directory or RECORDINGS)
    _recording_dir.mkdir(parents=True, exist_ok=True)
    try:
        yield _recording_dir
    finally:
        _recording_dir = previous


def write(
    name: str,
    directory: Path,
    packets: Any,
    *,
    t0: float,
    server_ports: tuple[int, ...],
    complete: bool,
    kernel_drops: int | None = None,
    lost: int | None = None,
    annotations: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Save packets and their metadata as a recording; returns the (pcap, json) paths.

    ``annotations`` is whatever else a replay needs, as JSON (notebook 09 keeps the TLS key log of its
    recorded handshakes there, so a replay decrypts them too).
    """
    from scapy.utils import PcapWriter

    from .. import __version__  # noqa: the package root holds only the version and lazy names

    pcap, meta = recording_paths(name, directory)
    with PcapWriter(str(pcap), linktype=1, nano=True, sync=True) as writer:
        for p in packets:
            writer.write(p)
    info: dict[str, Any] = {
        "scenario": name,
        "recorded_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "t0": t0,
        "server_ports": list(server_ports),
        "packets": len(packets),
        "complete": complete,
        "kernel": kernel_label(),
        "netcourse": __version__,
    }
    if kernel_drops is not None:
        info["kernel_drops"] = kernel_drops
    if lost is not None:
        info["lost"] = lost  # frames an emulated link lost on their way out (not in the pcap)
    if annotations:
        info["annotations"] = annotations
    meta.write_text(json.dumps(info, indent=2) + "\n")
    return pcap, meta


def read(name: str, directory: Path | None = None) -> tuple[Any, dict[str, Any]]:
    """(packets as a scapy ``PacketList``, metadata) of a recording."""
    from scapy.utils import rdpcap

    meta = load_meta(name, directory)
    pcap, _ = recording_paths(name, directory)
    return rdpcap(str(pcap)), meta
