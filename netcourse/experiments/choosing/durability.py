"""Notebook 11: what the broker keeps, with a real ``redis-server``. A Stream survives a crash of Redis only with
its append-only file; pub/sub cuts off a *connected* subscriber that reads too slowly, at its output-buffer limit.

- ``crash_the_broker(aof)``: entries added to a Stream, then Redis killed with SIGKILL (as a crash would) and
  started again on the same folder; how many entries the Stream holds afterwards.
- ``slow_subscriber()``: a subscriber that never reads, a lowered ``client-output-buffer-limit`` for pub/sub,
  and messages published until Redis drops it.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from ...apps.broker import redis_broker

__all__ = ["Crash", "crash_the_broker", "SlowSubscriber", "slow_subscriber"]


@dataclass
class Crash:
    """A Stream across a SIGKILL of Redis."""

    aof: bool
    written: int  # entries added before the crash
    after: int  # entries the Stream holds when Redis is back
    version: str

    def __repr__(self) -> str:
        how = "with the append-only file (appendfsync everysec)" if self.aof else "without persistence"
        return (f"Redis {self.version} {how}: {self.written} entries added, Redis killed (SIGKILL) and started "
                f"again: the Stream holds {self.after}")


def crash_the_broker(aof: bool, entries: int = 200) -> Crash:
    """Add ``entries`` to a Stream, kill Redis with SIGKILL and start it again on the same folder; count what the
    Stream holds. Redis writes each change to its append-only file before it sends the command's reply (and
    fsyncs the file once a second with ``everysec``), so a killed *process* loses nothing it acknowledged, unless
    the disk is so slow that a background fsync is still running (then Redis may hold writes back for up to
    2 s while it goes on replying). A machine that loses power can lose the last second, which this cannot show.
    The restarted Redis answers once it has replayed the file (``redis_broker`` waits for that)."""
    with redis_broker(aof=aof) as broker:
        r = broker.client()
        try:
            for i in range(entries):
                r.xadd("events", {"n": str(i)})
            broker.restart()
        finally:
            r.close()
        r = broker.client()
        try:
            after = r.xlen("events")
        finally:
            r.close()
        return Crash(aof, entries, after, broker.version)


@dataclass
class SlowSubscriber:
    """A subscriber that stopped reading, against pub/sub's output-buffer limit."""

    limit: str  # the client-output-buffer-limit for pub/sub clients, as set
    published: int  # messages published
    size: int  # bytes each
    received_by: list[int]  # PUBLISH's answer (subscribers that got it), message by message
    dropped_after: int | None  # the message after which Redis had dropped the subscriber (None: never)
    connection_ended: bool  # the subscriber's socket saw the end (EOF or a reset)

    def __repr__(self) -> str:
        if self.dropped_after is None:
            return f"limit '{self.limit}': the subscriber was never dropped ({self.published} messages)"
        return (f"limit '{self.limit}': {self.size:,}-byte messages to a subscriber that never reads; Redis dropped "
                f"it after message {self.dropped_after} (about {self.dropped_after * self.size / 1024:,.0f} KiB "
                f"queued, counting what its socket buffers held); PUBLISH then reached "
                f"{self.received_by[-1]} subscribers, and the subscriber's connection "
                f"{'was closed' if self.connection_ended else 'stayed open'}")


def slow_subscriber(limit: str = "pubsub 256kb 128kb 1", messages: int = 3000, size: int = 8192) -> SlowSubscriber:
    """One subscriber that never reads (a small receive buffer), ``messages`` of ``size`` bytes published to its
    channel with the pub/sub output-buffer limit set to ``limit`` (Redis's default: pubsub 32mb 8mb 60)."""
    with redis_broker() as broker:
        r = broker.client()
        sub = socket.socket()
        try:
            r.config_set("client-output-buffer-limit", limit)
            sub.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sub.settimeout(5)
            sub.connect((broker.host, broker.port))
            sub.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nnews\r\n")
            deadline = time.monotonic() + 5
            while r.pubsub_numsub("news")[0][1] < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            body, reached, dropped = b"x" * size, [], None
            for n in range(1, messages + 1):
                reached.append(r.publish("news", body))
                if reached[-1] == 0 and dropped is None:
                    dropped = n - 1
                    break
            ended = _ended(sub)
        finally:
            sub.close()
            r.close()
        return SlowSubscriber(limit, len(reached), size, reached, dropped, ended)


def _ended(sock: socket.socket) -> bool:
    """Read what is queued; True when the connection ends (EOF or a reset) within a few seconds."""
    sock.settimeout(0.5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if not sock.recv(1 << 16):
                return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            continue
    return False
