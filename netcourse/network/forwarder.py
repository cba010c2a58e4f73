"""The emulated wire: moves Ethernet frames between two TAP devices with delay, loss and a rate limit.

Each direction is a ``Direction``: a frame that enters it is, in order,

1. lost with probability ``loss`` (a seeded random generator: the same seed, the same losses);
2. tail-dropped if more than ``queue_limit`` full-size frames wait to be serialised (a router's
   queue is finite);
3. serialised at ``rate`` bits per second: it starts when the frame before it has finished, and takes
   ``8 * len / rate`` seconds (nothing waits when there is no rate limit);
4. delivered ``delay`` seconds (± ``jitter``) after that. Frames never overtake each other.

The wire runs in a **process of its own** (``python -m netcourse.network.forwarder``), holding the two
TAP descriptors. In the notebook's process it would share Python's global interpreter lock with
the lesson's own code, and a busy cell (drawing a figure, say) would stretch every delay. The parent
talks to it over a pipe, one JSON line per command: ``record`` (start or stop keeping what crosses
the near end's interface), ``dump`` (write that record to a file), ``loss`` (the loss switch), ``drop`` (lose
one chosen frame), ``stats``, ``idle`` and ``stop``.
"""

from __future__ import annotations

import collections
import json
import os
import random
import select
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Direction", "WireEvent", "WireProcess"]

MAX_FRAME = 65536
FULL_FRAME_BITS = 8 * 1514  # an Ethernet frame at MTU 1500
MAX_RECORD = 200_000  # frames kept in one record (a bound, not a target)
EVENT = struct.Struct("!dBI")  # time (s since the epoch), kind, frame length; then the frame
KINDS = ("out", "in", "lost")


@dataclass
class Direction:
    """One direction of the wire.

    Args:
        delay: one-way propagation delay, seconds.
        jitter: delay varies uniformly within ± this many seconds (frames still keep their order).
        loss: probability that a frame is lost, 0 to 1.
        rate: bits per second; 0 for no limit.
        queue_limit: full-size frames (1,514 bytes) that may wait to be serialised; more are dropped.
        seed: seed of the loss and jitter generator.
    """

    delay: float
    jitter: float = 0.0
    loss: float = 0.0
    rate: float = 0.0
    queue_limit: int = 1000
    seed: int | None = None
    queue: collections.deque = field(default_factory=collections.deque, repr=False)
    delivered: int = 0
    lost: int = 0
    tail_dropped: int = 0
    offered_bytes: int = 0  # every IPv4 frame that entered this direction, lost or not (the kernel's own ARP and
    # IPv6 neighbour discovery left out): the bytes the experiment's senders put on the wire
    drop_countdown: int = 0  # lose the frame this many frames of at least drop_min bytes from now (0: none)
    drop_min: int = 0
    _free_at: float = 0.0
    _last_due: float = 0.0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def settings(self) -> dict[str, Any]:
        """The parameters, to hand to the wire's process."""
        return {k: getattr(self, k) for k in ("delay", "jitter", "loss", "rate", "queue_limit", "seed")}

    def accept(self, frame: bytes, now: float) -> str:
        """Take a frame at time ``now``; returns "queued", "lost" or "dropped"."""
        if frame[12:14] == b"\x08\x00":  # EtherType IPv4
            self.offered_bytes += len(frame)
        if self.drop_countdown and len(frame) >= self.drop_min:
            self.drop_countdown -= 1
            if self.drop_countdown == 0:  # the one frame a targeted drop asked for
                self.lost += 1
                return "lost"
        if self.loss and self._rng.random() < self.loss:
            self.lost += 1
            return "lost"
        if self.rate and (self._free_at - now) * self.rate > self.queue_limit * FULL_FRAME_BITS:
            self.tail_dropped += 1
            return "dropped"
        start = max(now, self._free_at)
        done = start + (8 * len(frame) / self.rate if self.rate else 0.0)
        self._free_at = done
        wobble = self._rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0
        due = max(done + self.delay + wobble, self._last_due)
        self._last_due = due
        self.queue.append((due, frame))
        return "queued"


@dataclass(frozen=True)
class WireEvent:
    """What crossed the near end's interface: ``kind`` is "out" (left it), "in" (arrived) or "lost"."""

    time: float
    kind: str
    frame: bytes


# -- the wire's own process -----------------------------------------------------------------------


class _Wire:
    """The wire's process: two directions between two TAP descriptors, a recorder, and a control pipe."""

    def __init__(self, near_fd: int, far_fd: int, outbound: Direction, inbound: Direction):
        self.near_fd, self.far_fd, self.outbound, self.inbound = near_fd, far_fd, outbound, inbound
        self.wires = {near_fd: (outbound, far_fd), far_fd: (inbound, near_fd)}
        self.record: collections.deque[tuple[float, int, bytes]] = collections.deque(maxlen=MAX_RECORD)
        self.recording = False
        self.snaplen = MAX_FRAME
        self.offset = time.time() - time.monotonic()  # monotonic -> wall clock, for timestamps
        self.pending = b""

    def answer(self, obj: dict[str, Any]) -> None:
        os.write(sys.stdout.fileno(), (json.dumps(obj) + "\n").encode())

    def serve(self) -> None:
        """The loop; commands arrive on stdin, answers leave on stdout. Ends on "stop" or EOF."""
        control = sys.stdin.fileno()
        for fd in (self.near_fd, self.far_fd, control):
            os.set_blocking(fd, False)
        while True:
            heads = [w.queue[0][0] for w, _ in self.wires.values() if w.queue]
            timeout = max(0.0, min(heads) - time.monotonic()) if heads else 1.0
            ready, _, _ = select.select([self.near_fd, self.far_fd, control], [], [], timeout)
            now = time.monotonic()
            for fd in ready:
                if fd != control:
                    self.take(fd, now)
                elif not self.commands(os.read(control, 4096)):
                    return
            self.deliver(time.monotonic())

    def commands(self, data: bytes) -> bool:
        """Obey the control pipe's complete lines; False once told to stop (or the parent is gone)."""
        if not data:
            return False  # the parent is gone
        self.pending += data
        while b"\n" in self.pending:
            line, self.pending = self.pending.split(b"\n", 1)
            cmd = json.loads(line)
            if cmd["cmd"] == "stop":
                self.answer({"ok": True})
                return False
            if cmd["cmd"] == "record":
                self.recording = bool(cmd["on"])
                self.snaplen = int(cmd.get("snaplen") or MAX_FRAME)
                if self.recording:
                    self.record.clear()
                self.answer({"ok": True})
            elif cmd["cmd"] == "loss":  # the loss switch: change both directions' loss now
                self.outbound.loss, self.inbound.loss = float(cmd["out"]), float(cmd["in"])
                self.answer({"ok": True})
            elif cmd["cmd"] == "drop":  # lose one chosen frame: the nth of at least min bytes, in one direction
                direction = self.outbound if cmd["direction"] == "out" else self.inbound
                direction.drop_countdown, direction.drop_min = int(cmd["nth"]), int(cmd["min_bytes"])
                self.answer({"ok": True})
            elif cmd["cmd"] == "idle":
                self.answer({"idle": not self.outbound.queue and not self.inbound.queue})
            elif cmd["cmd"] == "stats":
                self.answer({name: {"delivered": d.delivered, "lost": d.lost, "dropped": d.tail_dropped,
                                    "offered_bytes": d.offered_bytes}
                             for name, d in (("out", self.outbound), ("in", self.inbound))})
            elif cmd["cmd"] == "dump":
                with open(cmd["path"], "wb") as f:
                    for t, kind, frame in self.record:
                        f.write(EVENT.pack(t, kind, len(frame)) + frame)
                self.answer({"events": len(self.record)})
        return True

    def take(self, fd: int, now: float) -> None:
        """Frames waiting on one end, into that direction's queue (recorded at the near end)."""
        wire, _ = self.wires[fd]
        for _ in range(256):  # bounded: both directions and the control pipe get their turn
            try:
                frame = os.read(fd, MAX_FRAME)
            except BlockingIOError:
                break
            verdict = wire.accept(frame, now)
            if self.recording and fd == self.near_fd:
                self.record.append((now + self.offset, 0, frame[:self.snaplen]))
                if verdict != "queued":
                    self.record.append((now + self.offset, 2, frame[:self.snaplen]))

    def deliver(self, now: float) -> None:
        """Frames whose time has come, out of the other end."""
        for wire, out_fd in self.wires.values():
            while wire.queue and wire.queue[0][0] <= now:
                _, frame = wire.queue.popleft()
                os.write(out_fd, frame)
                wire.delivered += 1
                if self.recording and out_fd == self.near_fd:
                    self.record.append((now + self.offset, 1, frame[:self.snaplen]))


def _serve_wire(near_fd: int, far_fd: int, outbound: Direction, inbound: Direction) -> None:
    _Wire(near_fd, far_fd, outbound, inbound).serve()


def main(argv: list[str]) -> int:
    """``python -m netcourse.network.forwarder NEAR_FD FAR_FD SETTINGS_JSON``."""
    near_fd, far_fd = int(argv[0]), int(argv[1])
    settings = json.loads(argv[2])
    answer_ready = (json.dumps({"ready": True}) + "\n").encode()
    os.write(sys.stdout.fileno(), answer_ready)
    _serve_wire(near_fd, far_fd, Direction(**settings["out"]), Direction(**settings["in"]))
    return 0


# -- the parent's handle on it ----------------------------------------------------------------------


class WireProcess:
    """Runs the wire in a child process and talks to it.

    Args:
        near_fd, far_fd: the TAP descriptors of the near (client) and far (server) ends.
        outbound, inbound: the two directions' settings (near → far, far → near).
    """

    def __init__(self, near_fd: int, far_fd: int, outbound: Direction, inbound: Direction) -> None:
        settings = json.dumps({"out": outbound.settings(), "in": inbound.settings()})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "netcourse.network.forwarder", str(near_fd), str(far_fd), settings],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=(near_fd, far_fd),
            env=dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p)),
        )
        if self._read(5.0).get("ready") is not True:
            self.stop()
            raise RuntimeError("the link's wire process did not start")

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"the link's wire process did not answer within {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the link's wire process ended (exit status {self.proc.poll()})")
        return json.loads(line)

    def ask(self, timeout: float = 5.0, **command: Any) -> dict[str, Any]:
        """Send one command; return the wire's answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        self.proc.stdin.flush()
        return self._read(timeout)

    def record(self, on: bool, snaplen: int | None = None) -> None:
        """Start (or stop) recording; ``snaplen`` keeps only the first bytes of each frame (headers)."""
        self.ask(cmd="record", on=on, snaplen=snaplen)

    def idle(self) -> bool:
        return bool(self.ask(cmd="idle")["idle"])

    def stats(self) -> dict[str, dict[str, int]]:
        return self.ask(cmd="stats")

    def set_loss(self, out: float, inbound: float) -> None:
        self.ask(cmd="loss", out=out, **{"in": inbound})

    def drop(self, direction: str, nth: int, min_bytes: int) -> None:
        self.ask(cmd="drop", direction=direction, nth=nth, min_bytes=min_bytes)

    def events(self) -> list[WireEvent]:
        """What the wire recorded at the near end since ``record(True)``."""
        with tempfile.NamedTemporaryFile(prefix="netcourse-wire-", suffix=".bin") as f:
            self.ask(cmd="dump", path=f.name, timeout=30.0)
            data = f.read()
        out, pos = [], 0
        while pos < len(data):
            t, kind, length = EVENT.unpack_from(data, pos)
            pos += EVENT.size
            out.append(WireEvent(t, KINDS[kind], data[pos : pos + length]))
            pos += length
        return out

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the wire (frames still on it are dropped) and reap its process."""
        if self.proc.poll() is None:
            try:
                self.ask(cmd="stop", timeout=timeout)
            except (OSError, RuntimeError, TimeoutError):
                self.proc.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
