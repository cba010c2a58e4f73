"""An application heartbeat that is honest about time (notebook 04).

``Heartbeat`` pings every ``interval`` seconds and declares the peer dead when the answer to a ping has not
come ``timeout`` seconds after it was sent. It knows nothing of the protocol: it is given a coroutine that
sends ping number n, and is told of each pong with ``pong(n)``, so it fits any protocol with a ping and a
pong that echoes it (WebSocket's control frames, RFC 6455 §5.5.2-3, as well). The course's reconnecting
client, ``experiments.heartbeats.keep_connected``, drives it with notebook 04's length-prefixed PING/PONG.

Honest about time:

- every instant is read from the running loop's clock (``loop.time()``: monotonic, so a wall clock stepped
  by NTP cannot fire or delay it);
- every wait has a deadline (``asyncio.wait_for``), and a ping that cannot even be sent within the timeout
  counts as unanswered;
- only the answer to the *latest* ping counts: a pong for an older ping is late and proves nothing new
  (RFC 6455 §5.5.3 lets a peer answer only the latest ping, too);
- ``run()`` leaves no task behind: when it returns or is cancelled, nothing of it is left running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["Heartbeat"]


class Heartbeat:
    """Ping every ``interval`` s; the peer is dead when the latest ping has no pong ``timeout`` s after it.

    Args:
        ping: ``await ping(n)`` sends ping number n (1, 2, 3, ...).
        interval: seconds from one ping to the next (measured from send to send).
        timeout: seconds a ping may wait for its pong.

    Attributes:
        sent: pings sent so far.
        round_trips: seconds from each answered ping to its pong (one per pong received in time).
        answered: how many pings were answered in time (``len(round_trips)``).
        late: pongs that came for a ping other than the latest (ignored).
    """

    def __init__(self, ping: Callable[[int], Awaitable[None]], *, interval: float, timeout: float) -> None:
        if not 0 < interval <= 3600 or not 0 < timeout <= 3600:
            raise ValueError("interval and timeout must be between 0 and 3600 seconds")
        self._ping = ping
        self.interval, self.timeout = interval, timeout
        self.sent = self.late = 0
        self.round_trips: list[float] = []
        self._waiting: asyncio.Event | None = None
        self._sent_at = 0.0

    @property
    def answered(self) -> int:
        return len(self.round_trips)

    def pong(self, n: int) -> None:
        """Call when a pong for ping ``n`` arrives."""
        if self._waiting is not None and n == self.sent and not self._waiting.is_set():
            self.round_trips.append(asyncio.get_running_loop().time() - self._sent_at)
            self._waiting.set()
        else:
            self.late += 1

    async def run(self, *, beats: int | None = None) -> str | None:
        """Ping until a pong is late; returns why the peer was declared dead (None after ``beats`` pings
        answered). Cancel it to stop: it leaves nothing behind."""
        loop = asyncio.get_running_loop()
        while beats is None or self.sent < beats:
            self.sent += 1
            self._waiting = asyncio.Event()
            self._sent_at = loop.time()
            try:
                await asyncio.wait_for(self._ping(self.sent), self.timeout)
                await asyncio.wait_for(self._waiting.wait(), self._sent_at + self.timeout - loop.time())
            except asyncio.TimeoutError:
                return f"no pong to ping {self.sent} within {self.timeout:g} s"
            finally:
                self._waiting = None
            await asyncio.sleep(max(0.0, self._sent_at + self.interval - loop.time()))
        return None
