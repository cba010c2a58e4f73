"""``link(...)``: a network with distance under a lesson: round-trip time, loss, a rate limit, MTU 1500.

Loopback has no distance (RTT ≈ 30 µs, MTU 64 KiB): on it every design looks instant. A link puts
the server at the far end of an emulated wire:

    with link(rtt_ms=100, loss=0.01, rate_mbit=10) as net:
        srv = net.serve(make_app())                  # at the far end
        result = net.run(client(srv.url))            # a client coroutine at the near end
        with net.capture(srv.port) as cap:           # frames as they crossed the near end's interface
            ...

Two ways to build it, chosen by ``mode="auto"``:

- **"tap"** (root): two private network namespaces, each with a TAP device (addresses from
  192.0.2.0/24, RFC 5737, which nothing routes), joined by a userspace wire (``forwarder``, in a
  process of its own) that delays, drops and paces every Ethernet frame. Real kernel TCP runs end to end, so slow start,
  retransmission and RTT estimation are real, and ``TCP_INFO`` shows them. Nothing of the link
  exists in the machine's own network namespace, and nothing is left when the block ends.
- **"relay"** (anyone): a TCP relay on 127.0.0.1 that delays each direction by RTT/2 and holds a new
  connection's first bytes one RTT more (TCP's handshake). Application timings are right; TCP-level
  effects are not there, and ``capture`` says so. UDP goes through a ``UdpRelay`` (``udp_address``), which
  delays, drops (the link's loss) and paces each datagram.

A kernel with ``sch_netem`` could do the tap mode's work in the kernel; this machine's has none, and
one mechanism everywhere keeps lessons identical, so the course always uses its own wire.
"""

from __future__ import annotations

import fcntl
import math
import os
import struct
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ..errors import LinkError
from ..runtime import netns
from ..runtime.notices import announce
from ..runtime.server import Server, serve
from ..runtime.waiting import in_thread, run_async
from ..traffic import recordings
from ..traffic.sniffer import Capture
from .forwarder import FULL_FRAME_BITS, Direction, WireProcess
from .relay import make_relay
from .udprelay import UdpRelay

__all__ = ["link", "Link", "NEAR_IP", "FAR_IP", "modes", "queue_size"]

T = TypeVar("T")
NEAR_IP, FAR_IP = "192.0.2.1", "192.0.2.2"  # RFC 5737 TEST-NET-1: documentation only, never routed
NEAR_MAC, FAR_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"  # locally administered (IEEE 802 U/L bit)
PREFIX = 24
DEVICE = "nc0"
TUNSETIFF, IFF_TAP, IFF_NO_PI = 0x400454CA, 0x0002, 0x1000  # linux/if_tun.h

MODE_ENV = "NETCOURSE_LINK"  # "relay" makes mode="auto" choose the relay (to see what learners without root see)
_count = 0
_count_lock = threading.Lock()


def modes() -> dict[str, str | None]:
    """Which link modes this machine can run: mode -> None, or the reason it cannot."""
    why = netns.available()
    if why is None and not os.path.exists("/dev/net/tun"):
        why = "there is no /dev/net/tun (TAP devices)"
    return {"tap": why, "relay": None}


MIN_QUEUE = 16  # frames: the smallest queue a link gets from queue_bdp (TCP's first flight is 10)


def queue_size(rate: float, rtt: float, bdp: float = 1.0) -> int:
    """Full-size frames in ``bdp`` bandwidth-delay products of a path of ``rate`` bit/s and ``rtt`` seconds.

    A router's buffer is classically sized to one rate × RTT (enough for one TCP flow to keep the link
    busy while it halves its window after a loss); a deeper one only adds delay (bufferbloat). At 10
    Mbit/s and 100 ms that is 1,000,000 bits, 83 frames of 1,514 bytes, 100 ms of waiting when full.
    """
    return max(MIN_QUEUE, math.ceil(bdp * rate * rtt / FULL_FRAME_BITS))


def _check(name: str, value: float, low: float, high: float, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise LinkError(f"{name} must be a number from {low:g} to {high:g} {unit}, not {value!r}.")
    return float(value)


class Link:
    """An emulated network path between a near end (clients) and a far end (servers).

    Args:
        rtt_ms: round-trip time, milliseconds (half each way), 0 to 10,000.
        loss: probability that a frame is lost, each direction, 0 to 1.
        jitter_ms: each frame's one-way delay varies by up to ± this, milliseconds.
        rate_mbit: rate limit each way, Mbit/s; 0 for none.
        mtu: the interfaces' MTU, bytes (tap mode), 576 to 9,000.
        queue_bdp: the rate limiter's queue, in bandwidth-delay products (rate × RTT), when ``queue_packets``
            is not given: 1 by default, the classic size of a router's buffer for one path (at least
            ``MIN_QUEUE`` frames, so a first flight of ten segments always fits). Bigger makes a bloated
            buffer (try 10), smaller a shallow one.
        queue_packets: full-size frames the rate limiter may queue, if you would rather give a number;
            more are dropped. Without a rate limit nothing ever waits, and the queue plays no part.
        seed: seed of the loss and jitter draws (the same seed, the same losses).
        mode: "auto" (tap if permitted, else relay), "tap" or "relay".

    Attributes:
        mode: the mode that runs.
        notice: one sentence saying which mode ran and what that means.
        setup_s, teardown_s: seconds the link took to build and to remove.
    """

    def __init__(
        self,
        *,
        rtt_ms: float,
        loss: float = 0.0,
        jitter_ms: float = 0.0,
        rate_mbit: float = 0.0,
        mtu: int = 1500,
        queue_bdp: float = 1.0,
        queue_packets: int | None = None,
        seed: int = 1,
        mode: str = "auto",
    ) -> None:
        self.rtt = _check("rtt_ms", rtt_ms, 0, 10_000, "ms") / 1000
        self.loss = _check("loss", loss, 0, 1, "(a probability)")
        self.jitter = _check("jitter_ms", jitter_ms, 0, rtt_ms / 2, "ms (at most half the RTT)") / 1000
        self.rate = _check("rate_mbit", rate_mbit, 0, 100_000, "Mbit/s") * 1e6
        if isinstance(mtu, bool) or not isinstance(mtu, int) or not 576 <= mtu <= 9000:
            raise LinkError(f"mtu must be a whole number from 576 to 9000 bytes, not {mtu!r}.")
        queue_bdp = _check("queue_bdp", queue_bdp, 0.01, 1000, "bandwidth-delay products")
        if queue_packets is None:
            queue_packets = queue_size(self.rate, self.rtt, queue_bdp)
        elif isinstance(queue_packets, bool) or not isinstance(queue_packets, int) or queue_packets < 1:
            raise LinkError(f"queue_packets must be a whole number of at least 1, not {queue_packets!r}.")
        if mode not in ("auto", "tap", "relay"):
            raise LinkError(f"mode must be 'auto', 'tap' or 'relay', not {mode!r}.")
        self.mtu, self.queue_packets, self.seed = mtu, queue_packets, seed
        self.requested_mode = mode
        self.mode = ""
        self.notice = ""
        self.setup_s = self.teardown_s = 0.0
        self._namespaces: list[str] = []
        self._fds: list[int] = []
        self._forwarder: WireProcess | None = None
        self._servers: list[Any] = []  # servers and relays, stopped with the link
        self.udp_relays: list[UdpRelay] = []  # relay mode: one per udp_address()
        self._tcp_relays: list[Any] = []  # relay mode: one handler per serve()
        self._state = "new"

    # -- set up and tear down ------------------------------------------------------------------------

    def __enter__(self) -> "Link":
        if self._state != "new":
            raise LinkError("A link can be used once; call link(...) again for a new one.")
        self._state = "open"
        t = time.perf_counter()
        why = modes()["tap"]
        mode = self.requested_mode
        if mode == "auto" and os.environ.get(MODE_ENV, "").lower() == "relay":
            mode, why = "relay", f"{MODE_ENV}=relay asks for the relay"
        if mode == "tap" and why is not None:
            raise LinkError(f"The tap link cannot run here: {why}.")
        self.mode = "tap" if mode == "tap" or (mode == "auto" and why is None) else "relay"
        try:
            if self.mode == "tap":
                self._build_tap()
                self.notice = (
                    f"Emulated link (tap): {self.rtt * 1000:g} ms round trip between two private network "
                    "namespaces; the kernel's own TCP runs across it." + self._queue_words()
                )
            else:
                self.notice = (
                    f"Emulated link (relay): {self.rtt * 1000:g} ms round trip through a relay on 127.0.0.1. "
                    "Application timings are live; TCP-level effects (slow start, loss recovery) need "
                    + (f"the tap mode, which cannot run here: {why}." if why else "the tap mode.")
                )
        except BaseException:
            self._teardown()
            raise
        self.setup_s = time.perf_counter() - t
        return self

    def __exit__(self, *exc_info: object) -> None:
        t = time.perf_counter()
        self._teardown()
        self.teardown_s = time.perf_counter() - t

    def _queue_words(self) -> str:
        if not self.rate:
            return ""
        frames = self.queue_packets
        wait_ms = frames * FULL_FRAME_BITS / self.rate * 1000
        return (f" {self.rate / 1e6:g} Mbit/s each way, behind a queue of {frames:,} full frames "
                f"({wait_ms:,.0f} ms of waiting when full); more are dropped.")

    def _build_tap(self) -> None:
        global _count
        with _count_lock:
            _count += 1
            tag = f"netcourse-{os.getpid()}-{_count}"
        fds = []
        ends = (("near", NEAR_IP, NEAR_MAC, FAR_IP, FAR_MAC), ("far", FAR_IP, FAR_MAC, NEAR_IP, NEAR_MAC))
        for side, address, mac, peer, peer_mac in ends:
            name = f"{tag}-{side}"
            path = netns.create(name)
            self._namespaces.append(name)
            fd = in_thread(_open_tap, 10.0, namespace=path)
            self._fds.append(fd)
            fds.append(fd)
            netns.ip("link", "set", DEVICE, "address", mac, "mtu", str(self.mtu), "up", namespace=name)
            netns.ip("addr", "add", f"{address}/{PREFIX}", "dev", DEVICE, namespace=name)
            # A permanent neighbour entry: no ARP round trip before the first packet (a lesson's
            # first request costs TCP's handshake and the request, nothing else).
            netns.ip("neigh", "replace", peer, "lladdr", peer_mac, "dev", DEVICE, "nud", "permanent", namespace=name)
        one_way = self.rtt / 2
        seed = self.seed

        def direction(offset: int) -> Direction:
            return Direction(one_way, self.jitter, self.loss, self.rate, self.queue_packets, seed + offset)

        self._forwarder = WireProcess(fds[0], fds[1], direction(0), direction(1))

    def _teardown(self) -> None:
        """Stop the servers, the wire, the TAP devices and the namespaces: every step runs even if one before
        it failed (a server that would not stop must not leave two namespaces behind); the first error is
        raised at the end."""
        if self._state == "closed":
            return
        self._state = "closed"
        errors: list[BaseException] = []

        def step(fn: Any, *args: Any) -> None:
            try:
                fn(*args)
            except BaseException as exc:  # go on tearing down; report it afterwards
                errors.append(exc)

        for srv in self._servers:
            step(srv.stop)
        self._servers.clear()
        if self._forwarder is not None:
            step(self._forwarder.stop)
            self._forwarder = None
        for fd in self._fds:
            step(os.close, fd)  # the TAP device disappears with its last descriptor
        self._fds.clear()
        for name in self._namespaces:
            step(netns.remove, name)
        self._namespaces.clear()
        if errors:
            raise errors[0]

    def _path(self, side: int) -> str:
        if self._state != "open":
            raise LinkError("The link is not open: use it inside its with-block.")
        return os.path.join(netns.NETNS_DIR, self._namespaces[side])

    # -- the two ends --------------------------------------------------------------------------------

    def serve(self, app: Any, *, meter: Any = None, **options: Any) -> Server:
        """Run ``app`` at the far end (as ``serve()`` does); the returned server's ``url`` reaches it
        across the link. It stops with the link at the latest.

        ``meter`` (a ``relay.Meter``, relay mode only) counts the bytes and segments clients exchange with it.
        """
        if meter is not None and self.mode == "tap":
            raise LinkError("meter= counts at the relay: use it with mode='relay'.")
        if self.mode == "tap":
            srv = serve(app, host=FAR_IP, namespace=self._path(1), **options)
            self._servers.append(srv)
            return srv
        if self._state != "open":
            raise LinkError("The link is not open: use it inside its with-block.")
        srv = serve(app, **options)
        self._servers.append(srv)
        handler = make_relay(srv.host, srv.port, rtt=self.rtt, rate=self.rate, meter=meter)
        relay = serve(handler, name="link relay")
        self._servers.append(relay)
        self._tcp_relays.append((relay, handler))
        srv.direct_port = srv.port  # type: ignore[attr-defined]
        srv.port = relay.port  # clients reach the server through the relay
        return srv

    def udp_address(self, port: int) -> tuple[str, int]:
        """Where a near-end client sends datagrams for a UDP server listening on ``port`` at the far end.

        Tap mode: the far end's address, across the wire like every frame. Relay mode: a ``UdpRelay`` on
        127.0.0.1 (started here, stopped with the link) that delays each datagram half the round trip each
        way and drops it with the link's loss, each way."""
        if self._state != "open":
            raise LinkError("The link is not open: use it inside its with-block.")
        if self.mode == "tap":
            return FAR_IP, port
        relay = UdpRelay("127.0.0.1", port, rtt=self.rtt, loss=self.loss, rate=self.rate, seed=self.seed).start()
        self._servers.append(relay)
        self.udp_relays.append(relay)
        return "127.0.0.1", relay.port

    def rebind(self) -> dict[str, int]:
        """A NAT rebinding, in relay mode: every client's address towards the servers changes. A UDP client's
        datagrams now arrive from a new port (QUIC validates the new path and carries on, RFC 9000 §9); a TCP
        connection has no such thing, and is reset (RFC 9293 §3.10.7.1). Returns how many of each."""
        if self.mode != "relay":
            raise LinkError("rebind() needs the relay mode: the tap link's wire does not translate addresses.")
        async def on_its_loop(handler: Any) -> int:  # a transport belongs to its loop's thread
            return handler.rebind()

        return {"tcp connections reset": sum(relay.run(on_its_loop(handler)) for relay, handler in self._tcp_relays),
                "udp clients rebound": sum(relay.rebind() for relay in self.udp_relays)}

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run a client coroutine at the near end and return its result (seconds of ``timeout``)."""
        return run_async(coro, timeout, namespace=self._path(0) if self.mode == "tap" else None)

    def near(self, fn: Any, timeout: float = 30.0) -> Any:
        """Call a plain function at the near end (e.g. code with blocking sockets); returns its result."""
        if self.mode != "tap":
            return fn()
        return in_thread(fn, timeout, namespace=self._path(0))

    def announce(self) -> None:
        """Show the notice in the running cell: which mode ran, and what that means for the lesson."""
        announce(self.notice, kind="live" if self.mode == "tap" else "replay", tag="link")

    def far(self, fn: Any, timeout: float = 30.0) -> Any:
        """Call a plain function at the far end (sockets it creates live there); returns its result."""
        if self.mode != "tap":
            return fn()
        return in_thread(fn, timeout, namespace=self._path(1))

    @property
    def far_namespace(self) -> str | None:
        """The far end's network namespace (tap mode), for a server that binds its own sockets there (a QUIC
        server on ``runtime.loopthread``); None on the relay, where the far end is this machine's loopback."""
        return self._path(1) if self.mode == "tap" else None

    @property
    def addresses(self) -> tuple[str, str]:
        """(near, far) addresses: 192.0.2.1 and 192.0.2.2 on the tap link, loopback on the relay."""
        return (NEAR_IP, FAR_IP) if self.mode == "tap" else ("127.0.0.1", "127.0.0.1")

    def statistics(self) -> dict[str, int]:
        """Frames the wire delivered, lost and tail-dropped, and the bytes of every IPv4 frame offered to it (lost
        ones included: what the senders put on the wire; ARP and IPv6 neighbour discovery left out), each way: ``out_*`` near to far, ``in_*`` back (tap mode;
        empty otherwise)."""
        if self._forwarder is None:
            return {}
        out = {}
        for name, counts in self._forwarder.stats().items():
            out |= {f"{name}_{what}": n for what, n in counts.items()}
        return out

    def set_loss(self, loss: float, inbound: float | None = None) -> None:
        """The loss switch: from now on lose ``loss`` of the frames going out (and ``inbound`` of those
        coming back; the same by default). ``set_loss(1.0)`` makes the far end silent, as if its machine or
        the network had vanished: nothing arrives, no FIN, no RST. Tap mode only (the relay carries bytes,
        and a TCP connection to the relay would stay healthy)."""
        for value in (loss, loss if inbound is None else inbound):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise LinkError(f"loss must be a fraction from 0 to 1, not {value!r}.")
        if self.mode != "tap" or self._forwarder is None:
            raise LinkError("The loss switch needs the tap link (root); the relay cannot silence a TCP peer.")
        self._forwarder.set_loss(float(loss), float(loss if inbound is None else inbound))

    def drop_one(self, *, back: bool = True, nth: int = 1, min_bytes: int = 1000) -> None:
        """Lose exactly one frame: the ``nth`` of at least ``min_bytes`` bytes from now, coming back from the far
        end (``back``) or going out. One loss at a chosen moment, to see what it holds up (head-of-line
        blocking). Tap mode only."""
        if self.mode != "tap" or self._forwarder is None:
            raise LinkError("A chosen loss needs the tap link (root): the relay carries bytes, not frames.")
        if not 1 <= nth <= 100_000 or not 0 <= min_bytes <= 9000:
            raise LinkError("nth is 1 to 100,000 and min_bytes 0 to 9,000.")
        self._forwarder.drop("in" if back else "out", nth, min_bytes)

    @contextmanager
    def capture(self, *ports: int, scenario: str | None = None, snaplen: int | None = None) -> Iterator[Capture]:
        """Record the frames that cross the near end's interface while the block runs.

        Tap mode: the wire itself records them, so nothing is missed; frames the wire lost on the way
        out are listed too (``cap.lost``). With ``scenario`` and ``python -m netcourse record``, the
        capture is saved as that scenario's recording. Relay mode has no wire to record: with a
        ``scenario`` the block still runs live and the packets are replayed from the recording
        (and the notice says so); without one, ``LinkError``. ``snaplen`` keeps only the first bytes
        of each frame (enough for the headers; lengths still come from the IP header), for long runs.
        """
        if self.mode != "tap" or self._forwarder is None:
            if scenario is None:
                raise LinkError(
                    "The relay link carries bytes, not packets: there is nothing to capture. "
                    "Packet-level lessons replay a recording of the tap link instead."
                )
            with Capture(tuple(ports) or (1,), scenario=scenario, mode="replay") as replayed:
                yield replayed
            return
        wire = self._forwarder
        wire.record(True, snaplen)
        cap = Capture(tuple(ports) or (1,), mode="live")  # announces itself, as a replay does
        try:
            yield cap
        finally:
            deadline = time.monotonic() + 2 * self.rtt + 0.5  # what is in flight lands first
            while time.monotonic() < deadline and not wire.idle():
                time.sleep(0.005)
            events = wire.events()
            wire.record(False)
            cap.fill_from_wire(events, server_ports=tuple(ports), notice=self.notice)
            cap.scenario = scenario
            target = recordings.recording_target()
            if scenario is not None and target is not None:
                recordings.write(scenario, target, cap.packets, t0=cap.t0, server_ports=tuple(ports),
                                 complete=True, kernel_drops=0, lost=len(cap.lost))

    def __repr__(self) -> str:
        rate = f", {self.rate / 1e6:g} Mbit/s" if self.rate else ""
        loss = f", loss {self.loss:g}" if self.loss else ""
        return f"<Link {self.mode or self.requested_mode} rtt {self.rtt * 1000:g} ms{loss}{rate} {self._state}>"


def _open_tap() -> int:
    """Create the TAP device ``nc0`` in the calling thread's namespace; returns its descriptor."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", DEVICE.encode(), IFF_TAP | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def link(**options: Any) -> Link:
    """Build an emulated link; use it as ``with link(rtt_ms=100) as net:``. Options: see ``Link``."""
    return Link(**options)
