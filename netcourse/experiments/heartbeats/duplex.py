"""Notebook 04, section 1: a persistent full-duplex pipe. The server (``apps.beat``) pushes ticks nobody asked for while the client
sends messages: both directions interleave on one connection, captured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ...apps.beat import make_beat_handler
from ...clients.beat import BeatClient
from ...course.exercises import Exercise
from ...errors import NetcourseError
from ...protocols.beat import Kind
from ...runtime.server import serve
from ...traffic.packets import C2S, S2C
from ...traffic.sniffer import Capture, capture
from ..registry import scenario

__all__ = ["DuplexTicks", "duplex_ticks", "exercise_echo_time"]


@dataclass
class DuplexTicks:
    """Ticks pushed by the server and messages sent by the client, on one connection.

    Attributes:
        ticks: (seconds since the start, tick number) as the client received them.
        sent: seconds since the start at which the client sent each message.
        echoes: seconds at which each message's echo came back.
        capture: the packets.
    """

    ticks: list[tuple[float, int]]
    sent: list[float]
    echoes: list[float]
    capture: Capture

    @property
    def requested_nothing(self) -> bool:
        """True: the ticks arrived although the client never asked for one."""
        return bool(self.ticks)


@scenario("heartbeat_duplex")
def duplex_ticks(clicks: tuple[float, ...] = (0.3, 0.5, 0.9), duration: float = 1.2, tick: float = 0.2) -> DuplexTicks:
    """The server ticks every ``tick`` s; the client sends a message at each time in ``clicks`` (scripted clicks)."""
    handler = make_beat_handler(tick=tick, idle_timeout=None)
    ticks: list[tuple[float, int]] = []
    echoes: list[float] = []
    sent: list[float] = []
    with serve(handler, name="beat") as srv:
        with capture(srv.port, scenario="heartbeat_duplex") as cap:
            with BeatClient(srv.host, srv.port) as client:
                start = time.monotonic()
                pending = sorted(clicks)
                while (now := time.monotonic() - start) < duration:
                    if pending and now >= pending[0]:
                        client.send(Kind.MSG, f"click {len(sent) + 1}".encode())
                        sent.append(now)
                        pending.pop(0)
                        continue
                    wait = min(duration - now, (pending[0] - now) if pending else duration)
                    for frame in client.receive(max(wait, 0.001)):
                        t = time.monotonic() - start
                        if frame.kind is Kind.TICK:
                            ticks.append((t, int(frame.body)))
                        elif frame.kind is Kind.MSG:
                            echoes.append(t)
                client.send(Kind.CLOSE, b"done")
                try:
                    while client.receive(1.0):
                        pass
                except ConnectionError:
                    pass
    return DuplexTicks(ticks, sent, echoes, cap)


def exercise_echo_time(run: DuplexTicks) -> Exercise:
    """Bytes the server had sent before it echoed the client's first message: a question about each
    direction numbering its own bytes, answered from the learner's own capture."""
    rows = run.capture.table()
    sent = next((r for r in rows if r.direction == C2S and r.app.startswith("MSG")), None)
    echo = next((r for r in rows if sent is not None and r.direction == S2C and r.app.startswith("MSG")
                 and r.t >= sent.t), None)
    if sent is None or echo is None:
        raise NetcourseError("the capture holds no message and echo: run duplex_ticks() again")
    before = sum(r.payload for r in rows if r.direction == S2C and r.no < echo.no)
    both = before + sum(r.payload for r in rows if r.direction == C2S and r.no < echo.no)
    return Exercise(
        "Each direction of a TCP connection numbers its own bytes. How many bytes of payload had the server "
        "sent on this connection before the segment that echoed the client's first MSG? Compute it two ways "
        "from your capture (the echo's own numbers, and a sum), and check that they agree.",
        answer=before,
        kind="capture", source=run,
        unit="B",
        hint="A sequence number counts the bytes one side has sent, from its own starting point; what the "
        "other side sends does not move it.",
        recipe="the echo's relative seq minus 1 (the SYN used number 0); or the sum of `payload` over the "
        "S→C rows before the echo in duplex.capture.table().",
        mistakes=[
            (both, "that counts the client's bytes too. The server's sequence numbers count only what the "
             "server sent: the client's MSG frames move the *client's* numbers."),
            (echo.seq, "that is the echo's relative seq itself. Relative numbering starts at 1, because the SYN "
             "consumed number 0: subtract one."),
        ],
        explanation=f"{before} bytes: the frames the server had sent so far, and nothing of the client's. "
        f"The echo's seq is {echo.seq}, one more, because the SYN took a number too. Ticks and "
        "messages interleave on one connection, each direction counting only its own bytes (RFC 9293 §3.3.1, "
        "§3.4).",
    )
