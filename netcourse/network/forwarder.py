"""The emulated wire: moves Ethernet frames between two TAP devices with delay, loss and a rate limit.

Each direction is a ``Direction``: a frame that enters it is, in order,

1. lost with probability ``loss`` (a seeded random generator: the same seed, the same losses);
2. tail-dropped if ``queue_limit`` frames already wait (a router's queue is finite);
3. serialised at ``rate`` bits per second: it starts when the frame before it has finished, and takes
   ``8 * len / rate`` seconds (nothing waits when there is no rate limit);
4. delivered ``delay`` seconds (± ``jitter``) after that. Frames never overtake each other.

The ``Forwarder`` thread reads frames from both TAP devices and writes each one out of the other at
its due time. It also keeps a record of what crossed the near end's interface (frames leaving, frames
arriving, and frames the wire lost), which is what ``Link.capture`` returns: the wire itself is the
most honest capture point there is.
"""

from __future__ import annotations

import collections
import os
import random
import select
import threading
import time
from dataclasses import dataclass, field

__all__ = ["Direction", "Forwarder", "WireEvent"]

MAX_FRAME = 65536
FULL_FRAME_BITS = 8 * 1514  # an Ethernet frame at MTU 1500
MAX_RECORD = 200_000  # frames kept in the record of one link (a bound, not a target)


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
    _free_at: float = 0.0
    _last_due: float = 0.0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def waiting(self) -> int:
        """Frames accepted and not yet delivered (serialising or in flight)."""
        return len(self.queue)

    def accept(self, frame: bytes, now: float) -> str:
        """Take a frame at time ``now``; returns "queued", "lost" or "dropped"."""
        if self.loss and self._rng.random() < self.loss:
            self.lost += 1
            return "lost"
        if self.rate and (self._free_at - now) * self.rate > self.queue_limit * FULL_FRAME_BITS:
            self.tail_dropped += 1  # more than queue_limit full-size frames wait to be serialised
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


class Forwarder:
    """Moves frames between two TAP file descriptors in a thread of its own.

    Args:
        near_fd: the near end's TAP device (the client's side).
        far_fd: the far end's TAP device (the server's side).
        outbound: the direction near → far.
        inbound: the direction far → near.
    """

    def __init__(self, near_fd: int, far_fd: int, outbound: Direction, inbound: Direction) -> None:
        self.near_fd, self.far_fd = near_fd, far_fd
        self.outbound, self.inbound = outbound, inbound
        self.record: collections.deque[WireEvent] = collections.deque(maxlen=MAX_RECORD)
        self.recording = False
        self.errors: list[str] = []
        self._wake_r, self._wake_w = os.pipe()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="netcourse-link", daemon=True)
        for fd in (near_fd, far_fd, self._wake_r):
            os.set_blocking(fd, False)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread (frames still on the wire are dropped) and close its pipe."""
        self._stop.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass  # the pipe is already closed: the thread is gone
        self._thread.join(timeout)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass  # closed twice

    def _note(self, kind: str, frame: bytes, now: float) -> None:
        if self.recording:
            self.record.append(WireEvent(time.time() - (time.monotonic() - now), kind, frame))

    def _main(self) -> None:
        wires = {self.near_fd: (self.outbound, self.far_fd), self.far_fd: (self.inbound, self.near_fd)}
        while not self._stop.is_set():
            now = time.monotonic()
            heads = [w.queue[0][0] for w, _ in wires.values() if w.queue]
            timeout = max(0.0, min(heads) - now) if heads else 0.5
            try:
                ready, _, _ = select.select([self.near_fd, self.far_fd, self._wake_r], [], [], timeout)
            except (OSError, ValueError) as exc:  # a descriptor closed under us: the link is going
                self.errors.append(f"select: {exc}")
                return
            now = time.monotonic()
            for fd in ready:
                if fd == self._wake_r:
                    continue
                wire, _ = wires[fd]
                for _ in range(256):  # bounded: both directions get their turn
                    try:
                        frame = os.read(fd, MAX_FRAME)
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        self.errors.append(f"read: {exc}")
                        return
                    verdict = wire.accept(frame, now)
                    if fd == self.near_fd:
                        self._note("out", frame, now)
                    if verdict != "queued" and fd == self.near_fd:
                        self._note("lost", frame, now)
            now = time.monotonic()
            for wire, out_fd in wires.values():
                while wire.queue and wire.queue[0][0] <= now:
                    _, frame = wire.queue.popleft()
                    try:
                        os.write(out_fd, frame)
                        wire.delivered += 1
                    except OSError as exc:
                        self.errors.append(f"write: {exc}")
                    if out_fd == self.near_fd:
                        self._note("in", frame, now)
