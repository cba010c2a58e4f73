"""Notebook 04, section 4: TCP's own mechanisms find a vanished peer: keepalive probes and ``TCP_USER_TIMEOUT``
(root: the emulated link's loss switch; otherwise the recording is replayed).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from ...course.exercises import Exercise
from ...network.link import link
from ...traffic.packets import C2S
from ...traffic.sniffer import Capture
from ..registry import scenario

__all__ = ["keepalive_defaults", "TcpDetection", "keepalive_detection", "user_timeout_detection", "exercise_probe_seq"]


def keepalive_defaults() -> dict[str, int]:
    """This machine's keepalive settings (Linux sysctls), seconds and probes."""
    out = {}
    for name in ("tcp_keepalive_time", "tcp_keepalive_intvl", "tcp_keepalive_probes"):
        try:
            out[name] = int(open(f"/proc/sys/net/ipv4/{name}").read())
        except OSError:
            pass
    return out


@dataclass
class TcpDetection:
    """TCP noticing a peer that vanished (the link's loss switch at 100 %).

    Attributes:
        mechanism: "keepalive" or "user timeout".
        settings: the socket options used.
        seconds: from the switch to the error the application saw (None when replayed: no live run).
        error: the error ``recv`` raised; None when nothing ran live (relay mode: the recording is shown).
        capture: the packets at the client's end of the link (tap: live; otherwise the recording).
        mode: the link's mode.
    """

    mechanism: str
    settings: dict[str, int]
    seconds: float | None
    error: str | None
    capture: Capture | None
    mode: str

    @property
    def outcome(self) -> str:
        """What ``recv`` ended with, in words: the live error, or what the replayed recording stands for."""
        return self.error if self.error is not None else "(not run here: the recording's probes show how it ends)"

    def into_silence(self) -> set[int]:
        """Row numbers of what the client sent into the silence: from the first probe (or resend) on."""
        if self.capture is None:
            return set()
        rows = self.capture.table()
        first = next((r.no for r in self.probes()), None)
        if first is None:  # user timeout: from the first resend on
            seen, first = set(), None
            for r in rows:
                if r.direction == C2S and r.payload:
                    if r.seq in seen:
                        first = r.no
                        break
                    seen.add(r.seq)
            first = first - 1 if first is not None else None  # the original went into the silence too
        return {r.no for r in rows if first is not None and r.no >= first and r.direction == C2S}

    def probes(self) -> list:
        """Keepalive probes in the capture: bare ACKs from the client, no data, sent after an idle half
        second or more (the probes' timing; their sequence number is left for the learner to read)."""
        if self.capture is None:
            return []
        rows = self.capture.table()
        last_data = max((r.t for r in rows if r.payload), default=0.0)
        return [r for r in rows if r.direction == C2S and not r.payload and r.flags == "A" and r.t >= last_data + 0.5]


def _tcp_detection(mechanism: str, name: str, options: dict[str, int], send_data: bool, timeout: float) -> TcpDetection:
    from ...apps.echo import tcp_echo

    with link(rtt_ms=10) as net:
        srv = net.serve(tcp_echo, name="echo")
        net.announce()

        def client() -> tuple[float | None, str]:
            with socket.create_connection((srv.host, srv.port), timeout=5) as sock:
                for opt, value in options.items():
                    sock.setsockopt(*_option(opt), value)
                sock.sendall(b"hello")
                sock.recv(100)
                if net.mode != "tap":
                    return None, None  # nothing runs live: the recording is what is shown
                net.set_loss(1.0)
                t0 = time.monotonic()
                if send_data:
                    sock.sendall(b"are you there?")
                sock.settimeout(timeout)
                try:
                    data = sock.recv(100)
                    error = "b'' (end of stream)" if not data else f"data {data!r}"
                except OSError as exc:
                    error = f"{type(exc).__name__}: {os.strerror(exc.errno) if exc.errno else exc}"
                return time.monotonic() - t0, error

        with net.capture(srv.port, scenario=name) as cap:
            seconds, error = net.near(client, timeout + 10)
        return TcpDetection(mechanism, options, seconds, error, cap, net.mode)


def _option(name: str) -> tuple[int, int]:
    return {
        "SO_KEEPALIVE": (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        "TCP_KEEPIDLE": (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        "TCP_KEEPINTVL": (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        "TCP_KEEPCNT": (socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        "TCP_USER_TIMEOUT": (socket.IPPROTO_TCP, getattr(socket, "TCP_USER_TIMEOUT", 18)),
    }[name]


@scenario("keepalive_probes")
def keepalive_detection(idle: int = 1, interval: int = 1, count: int = 3) -> TcpDetection:
    """TCP keepalive with shrunk settings finds a silent peer: ``idle`` + ``count`` × ``interval`` seconds."""
    opts = {"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": idle, "TCP_KEEPINTVL": interval, "TCP_KEEPCNT": count}
    return _tcp_detection("keepalive", "keepalive_probes", opts, False, idle + interval * (count + 2) + 3)


@scenario("user_timeout")
def user_timeout_detection(timeout_ms: int = 1000) -> TcpDetection:
    """TCP_USER_TIMEOUT (the user timeout of RFC 9293 §3.9.1.1; RFC 5482 only advertises it): data unacknowledged for ``timeout_ms`` kills the connection."""
    return _tcp_detection("user timeout", "user_timeout", {"TCP_USER_TIMEOUT": timeout_ms}, True, timeout_ms / 1000 + 5)


def exercise_probe_seq(det: TcpDetection) -> Exercise:
    """The keepalive probe's seq relative to the last byte sent, from the learner's own capture."""
    rows = det.capture.table() if det.capture is not None else []
    data_end = max((r.seq + r.payload for r in rows if r.direction == C2S and r.payload), default=1)
    probes = det.probes()
    seq = probes[0].seq if probes else None
    return Exercise(
        "In your capture (without capture rights: the course's recording of the same run), find the client's "
        "keepalive probes: segments with no payload, sent after the link went silent. Take the sequence number of the next byte the client would send (the last data "
        "segment's seq + len). What is the probe's seq minus that number?",
        answer=(seq - data_end) if seq is not None else None,
        hint="A probe must make a live peer answer, yet add nothing to the stream. Which sequence number could "
        "do both? Then read it in the capture.",
        recipe="the probes are the C→S rows with flags 'A', payload 0, at the end of keepalive.capture.table(); "
        "the last data row is the last C→S row with a payload: its seq + payload is the next byte.",
        mistakes=[
            (0, "a segment at the next byte with no data is an ordinary ACK, which needs no answer. The probe "
             "sits one byte *before* it, on data already acknowledged."),
            (1, "the probe sits before the next byte, not after it: a byte past the window would be new data."),
        ],
        explanation="−1: a probe carries the sequence number of a byte the peer already acknowledged (seq − 1), "
        "so a live peer must answer it with an ACK, while it carries no new data (RFC 9293 §3.8.4).",
        kind="capture", source=det,
    )
