"""Notebook 02: a real TCP retransmission, made by dropping segments inside a private network namespace.

Loopback never loses a packet, so to see TCP recover from loss we need something that drops one. As
root on Linux, the experiment starts a child process in a new, empty network namespace (its own private
loopback, invisible to the rest of the machine), adds an nftables rule there that drops the client's
data segments on arrival, sends a message, and removes the rule a moment later. The capture (taken in
the namespace) shows the original segment, the retransmissions the kernel sent after its
retransmission timeout, and the one that finally got through.

Elsewhere (no root, no ``unshare`` or ``nft``, or the kernel refuses) the course's recording of the same
experiment is replayed, and the notice says why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ...course.exercises import Exercise
from ...traffic.packets import C2S, PacketRow
from ...traffic.recordings import (
    RECORDINGS,
    load_meta,
    recorded_when,
    recording_paths,
    recording_target,
)
from ...traffic.sniffer import HOW_TO_ENABLE, Capture
from ..registry import scenario

__all__ = ["Retransmission", "tcp_retransmission", "can_run_live", "exercise_first_resend"]

NAME = "tcp_retransmission"


@dataclass(frozen=True)
class Retransmission:
    """One message whose first transmissions were dropped.

    Attributes:
        capture: the packets, from inside the namespace (or the shipped recording).
        why_replayed: why the live experiment could not run here (None when it ran live).
    """

    capture: Capture
    why_replayed: str | None

    def data_rows(self) -> list[PacketRow]:
        """The client's data segments, originals and retransmissions."""
        return [r for r in self.capture.table() if r.direction == C2S and r.payload]

    @property
    def transmissions(self) -> int:
        """How many times the client sent the (same) first data segment."""
        rows = self.data_rows()
        return sum(1 for r in rows if r.seq == rows[0].seq) if rows else 0

    @property
    def delivered(self) -> bool:
        """True when the server finally acknowledged the whole segment."""
        rows = self.data_rows()
        if not rows:
            return False
        end = rows[0].seq + rows[0].payload
        return any(r.direction != C2S and r.ack is not None and r.ack >= end for r in self.capture.table())

    def gaps_ms(self) -> list[float]:
        """Milliseconds between successive transmissions of that segment: the backing-off timeout."""
        rows = self.data_rows()
        times = [r.t * 1000 for r in rows if r.seq == rows[0].seq]
        return [b - a for a, b in zip(times, times[1:])]


def can_run_live() -> str | None:
    """None if the live experiment can run here; otherwise the reason it cannot."""
    if not sys.platform.startswith("linux"):
        return "it needs Linux network namespaces"
    if os.geteuid() != 0:
        return "it needs root to create a network namespace"
    for tool in ("unshare", "nft", "ip"):
        if shutil.which(tool) is None:
            return f"the `{tool}` command is not installed"
    return None


def _run_child(directory: Path, timeout: float) -> str | None:
    cmd = [shutil.which("unshare") or "unshare", "--net", sys.executable, "-m", "netcourse.experiments.transport._retransmit_child", str(directory)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return "the namespace experiment timed out"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        return f"the namespace experiment failed ({last})"
    return None


@scenario(NAME)
def tcp_retransmission(timeout: float = 20.0) -> Retransmission:
    """Run the experiment live in a private network namespace if possible, else replay the recording."""
    why = can_run_live()
    if why is None:
        with tempfile.TemporaryDirectory(prefix="netcourse-rtx-") as tmp:
            why = _run_child(Path(tmp), timeout)
            if why is None:
                target = recording_target()
                if target is not None:
                    for path in recording_paths(NAME, Path(tmp)):
                        shutil.copy2(path, Path(target) / path.name)
                cap = Capture.from_recording(
                    NAME, Path(tmp), live=True,
                    notice="Live capture inside a private network namespace, where an nftables rule "
                    "dropped the client's first data segments.",
                )
                return Retransmission(cap, None)
    meta = load_meta(NAME)
    cap = Capture.from_recording(
        NAME, RECORDINGS, live=False,
        notice=f"Replayed recording of scenario {NAME!r} ({meta['packets']} packets, recorded "
        f"{recorded_when(meta)}): "
        f"the live experiment cannot run here because {why}. {HOW_TO_ENABLE}",
    )
    return Retransmission(cap, why)


def exercise_first_resend(rtx: Retransmission) -> Exercise:
    """How the waits between copies grow, from the learner's own capture: the last gap over the one before."""
    rows = rtx.data_rows()
    gaps = [(b.t - a.t) * 1000 for a, b in zip(rows, rows[1:])]
    ratio = round(gaps[-1] / gaps[-2], 2) if len(gaps) > 1 and gaps[-2] > 0 else 0.0
    first = round(gaps[0]) if gaps else 0
    return Exercise(
        "Your capture holds several copies of the same segment. Measure the time between consecutive copies: "
        "by what factor is the *last* wait longer than the one before it? (Two decimals; within 0.05.)",
        answer=ratio,
        tolerance=0.05,
        # the doubling itself (2) counts as right when the run shows it (a ratio near 2)
        check=lambda v: abs(float(v) - ratio) <= 0.05 or (1.8 < ratio < 2.3 and abs(float(v) - 2) <= 0.05),
        kind="capture", source=rtx,
        hint="The copies are the client's data segments with the same seq; their times are in the capture's "
        "rows (row.t, in seconds).",
        recipe="copies = rtx.data_rows(); the waits are the differences of consecutive copies' t; divide the "
        "last wait by the one before it.",
        mistakes=[
            (lambda v: len(gaps) > 2 and abs(float(v) - gaps[1] / gaps[0]) <= 0.05 and abs(gaps[1] / gaps[0] - ratio) > 0.1,
             "that compares the first two waits; the question asks for the last one against the one before it."),
            (lambda v: abs(float(v) - gaps[-1]) <= 1 or abs(float(v) - first) <= 1,
             "that is a wait in milliseconds; the question asks how many times longer the last wait is."),
        ],
        explanation=f"The waits were {', '.join(f'{g:.0f} ms' for g in gaps)}: the last about {round(ratio)} times the "
        "one before. The first is a tail-loss "
        "probe, the next a retransmission timeout, and each further timeout doubles the one before "
        "(exponential backoff, RFC 6298 §5.5): the next cell explains each timer.",
    )
