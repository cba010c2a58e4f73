"""Notebook 04, section 2: how a peer's death looks from the other end.

What a reader and a writer see when the peer closes, crashes (SIGKILL), freezes (SIGSTOP: the process stops,
its kernel does not) or vanishes from the network (the link's loss switch, root only); and a half-open
connection, whose forgetful side answers with an RST.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from ...apps.beat import make_beat_handler
from ...clients.beat import BeatClient, peer_process
from ...course.exercises import Prediction
from ...network.link import link
from ...protocols.beat import Kind, encode
from ...runtime.server import serve
from ...runtime.tcpinfo import tcp_info
from ...traffic.packets import S2C
from ...traffic.sniffer import Capture
from ..registry import scenario

__all__ = ["Death", "peer_deaths", "predict_frozen_unacked", "HalfOpen", "half_open"]


@dataclass(frozen=True)
class Death:
    """What the client saw when its peer died one way.

    Attributes:
        kind: "clean close", "crash", "frozen process", "vanished network".
        read: what a read returned or raised.
        read_ms: how long after the death the read gave that answer (None: it was still waiting when we stopped).
        write: what two writes of 100 bytes, 0.1 s apart, did meanwhile.
        unacked: segments the client's kernel still waited to have acknowledged, 0.1 s after the second write
            (0 also when the connection is gone: nothing is waiting any more).
    """

    kind: str
    read: str
    read_ms: float | None
    write: str
    unacked: int | None

    def __repr__(self) -> str:
        when = "still waiting" if self.read_ms is None else f"after {self.read_ms:.0f} ms"
        return f"{self.kind:<16} read: {self.read} ({when}); write: {self.write}; unacknowledged: {self.unacked}"


def _observe(client: BeatClient, kind: str, die, *, wait: float = 1.0) -> Death:
    """Kill the peer with ``die()`` (which returns when the peer is dead), then read (up to ``wait`` s) and
    write; report both."""
    die()
    t0 = time.monotonic()
    read, read_ms = "nothing", None
    try:
        while time.monotonic() - t0 < wait:
            frames = client.receive(wait - (time.monotonic() - t0))
            if not frames:
                break
            if any(f.kind is Kind.CLOSE for f in frames):
                read = "a CLOSE frame (the reason), then b'' (a FIN)"
                read_ms = (time.monotonic() - t0) * 1000
                try:
                    client.receive(0.5)
                except ConnectionError:
                    pass
                break
    except ConnectionAbortedError:
        read, read_ms = "b'' (end of stream: a FIN)", (time.monotonic() - t0) * 1000
    except ConnectionResetError:
        read, read_ms = "ConnectionResetError (an RST)", (time.monotonic() - t0) * 1000
    outcomes = []
    for _ in range(2):  # after a FIN the first write still succeeds; the peer's RST makes the second fail
        try:
            client.sock.settimeout(1.0)
            client.sock.sendall(encode(Kind.MSG, b"x" * 97))
            outcomes.append("accepted")
        except OSError as exc:
            outcomes.append(type(exc).__name__)
        time.sleep(0.1)
    write = f"first {outcomes[0]}, second {outcomes[1]}"
    info = tcp_info(client.sock)
    return Death(kind, read, read_ms, write, None if info is None else info.unacked)


def peer_deaths(*, wait: float = 0.6) -> list[Death]:
    """The client reads and writes after its peer closes, crashes, freezes and (root) vanishes.

    The four cases are independent (each its own server, process or link), so they run side by side."""
    from concurrent.futures import ThreadPoolExecutor

    def clean() -> Death:
        # the server closes a client that stays quiet for 0.3 s (a CLOSE frame, then a FIN); the death is
        # that moment, 0.3 s after the connection opened
        with serve(make_beat_handler(tick=None, idle_timeout=0.3), name="beat") as srv:
            with BeatClient(srv.host, srv.port) as client:
                opened = time.monotonic()
                return _observe(client, "clean close",
                                lambda: time.sleep(max(0.0, opened + 0.3 - time.monotonic())), wait=wait)

    def in_process(kind: str) -> Death:
        with peer_process() as peer:
            with BeatClient("127.0.0.1", peer.port) as client:
                client.send(Kind.PING, b"1")
                client.receive(2.0)
                try:
                    return _observe(client, kind, peer.kill if kind == "crash" else peer.freeze, wait=wait)
                finally:
                    peer.thaw()

    def vanished() -> Death:
        with link(rtt_ms=10) as net:
            if net.mode != "tap":
                return Death("vanished network", "(needs the tap link: root)", None, "—", None)
            srv = net.serve(make_beat_handler(tick=None, idle_timeout=None), name="beat")

            def far_side_vanishes() -> Death:
                with BeatClient(srv.host, srv.port) as client:
                    client.send(Kind.PING, b"1")
                    client.receive(2.0)
                    return _observe(client, "vanished network", lambda: net.set_loss(1.0), wait=wait)

            return net.near(far_side_vanishes, 30)

    jobs = [clean, lambda: in_process("crash"), lambda: in_process("frozen process"), vanished]
    with ThreadPoolExecutor(len(jobs), thread_name_prefix="peer death") as pool:
        futures = [pool.submit(job) for job in jobs]
        return [f.result() for f in futures]


def predict_frozen_unacked() -> Prediction:
    """Predict what a frozen peer's kernel does with new data."""
    def explain(given: float, measured: float) -> str:
        return ("SIGSTOP freezes the process, not its kernel: TCP lives in the kernel, which goes on receiving, "
                "buffering and acknowledging. So the client's kernel has nothing unacknowledged, and TCP (keepalive "
                "included: the frozen peer's kernel answers the probes too) sees a healthy connection. Only the "
                "application can notice that nobody reads: an application heartbeat.")

    return Prediction(
        "The peer process is frozen (SIGSTOP) while its connection stays open. The client writes 100 bytes, and "
        "0.1 s later 100 bytes more. 0.1 s after that, how many of the client's segments are still waiting to be "
        "acknowledged?",
        measure=lambda deaths: next(d.unacked for d in deaths if d.kind == "frozen process"),
        unit="segments", tolerance=0.0, explain=explain,
        mistakes=[(lambda g, m: g >= 1, "The process is frozen, but TCP lives in its kernel, which is not: it "
                   "receives and acknowledges as usual; only the reading stops.")],
    )


@dataclass
class HalfOpen:
    """A connection whose far side forgot it while the path was down.

    Attributes:
        error: what the client's next receive raised after it sent into the forgotten connection; None when
            nothing ran live (relay mode: only the recording's packets are shown).
        capture: the packets at the client's end (tap: live; otherwise the recording).
        mode: the link's mode.
    """

    error: str | None
    capture: Capture
    mode: str

    @property
    def outcome(self) -> str:
        """What the client met, in words: the live error, or what the replayed recording stands for."""
        return self.error if self.error is not None else "(not run here: the recording's RST is what it met)"

    def resets(self) -> list:
        """RST segments from the far side in the capture."""
        return [r for r in self.capture.table() if r.direction == S2C and "R" in r.flags]


@scenario("half_open")
def half_open() -> HalfOpen:
    """The far side drops its end of a connection without a word reaching the client (the path is down,
    and it aborts: SO_LINGER 0 frees the socket at once); the path comes back; the client sends; the far
    kernel, which knows no such connection, answers RST (RFC 9293 §3.5.1)."""
    import struct

    with link(rtt_ms=10) as net:
        near, far = net.addresses
        listener = net.far(lambda: socket.create_server((far, 0)))
        port = listener.getsockname()[1]
        net.announce()
        try:
            with net.capture(port, scenario="half_open") as cap:
                if net.mode != "tap":
                    return HalfOpen(None, cap, net.mode)  # nothing ran live: no error to report

                def client() -> str:
                    with socket.create_connection((far, port), timeout=5) as sock:
                        conn, _ = listener.accept()
                        sock.sendall(b"hello")
                        conn.recv(100)
                        net.set_loss(1.0)  # the path goes down ...
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        conn.close()  # ... and the far side forgets (its RST is lost on the way)
                        listener.close()
                        time.sleep(0.1)
                        net.set_loss(0.0)  # the path comes back
                        sock.sendall(b"are you still there?")
                        sock.settimeout(3)
                        try:
                            data = sock.recv(100)
                            return "b'' (end of stream)" if not data else f"data {data!r}"
                        except OSError as exc:
                            return type(exc).__name__

                error = net.near(client, 20)
        finally:
            listener.close()
    return HalfOpen(error, cap, net.mode)
