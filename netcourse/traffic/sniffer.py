"""Capture the loopback traffic of an experiment, live with scapy, or replayed from a recording.

    with serve(app) as srv, capture(srv.port, scenario="first_request") as cap:
        ...  # talk to the server
    cap.table()    # one row per packet

What it takes care of (each was measured on Linux with scapy 2.8):

- Ready before the block runs: the packet socket is bound before the block starts, and the sniffer's
  thread has reported that it is listening (bounded wait), so the first SYN is never lost.
- Each packet once: on ``lo`` the kernel delivers every packet twice, the outgoing copy and the
  incoming one. The socket below drops the PACKET_OUTGOING copy.
- Only the experiment: Jupyter's own loopback traffic is filtered out by port, in the kernel with a
  BPF program the course assembles itself (``traffic.bpf``, no libpcap needed), and again in Python.
- Honest about losses: at the end it reads the kernel's PACKET_STATISTICS; if the kernel dropped any
  packet that passed the filter (a full queue), the capture is marked incomplete and says how many.
- The tail: on exit it waits (bounded) for connections on the ports to finish their handshake or
  teardown, then sends a sentinel datagram to a port of its own and stops when the sentinel arrives.
  Packets on one interface reach the packet socket in order, so everything before it was seen.
- Bursts: a 32 MiB socket receive buffer, and dissection after the capture, not during it.

Without capture rights (most learners: Binder, JupyterHub, a laptop without sudo) a capture that names a
scenario replays the course's recording of it, and says so in the cell. The block still runs live.
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import CaptureError, CaptureNotPermitted, CaptureStartTimeout
from ..runtime.notices import announce
from ..runtime.tcpinfo import connections_settling
from ..runtime.waiting import wait_until
from . import recordings
from .packets import PacketTable, packet_rows
from .rawsocket import ETH_P_ALL, frame_ports, listen_socket_class

__all__ = ["Capture", "capture", "capture_permitted", "HOW_TO_ENABLE", "called_with"]

HOW_TO_ENABLE = (
    "To capture live, run Jupyter as root, or run `make allow-capture` once "
    "(it gives a private copy of the course's Python the capture right; README: Capture rights)."
)

MODE_ENV = "NETCOURSE_CAPTURE"  # "auto" (default), "live" or "replay"

# Recordings are made with each scenario's default arguments. While a scenario runs with other arguments,
# a replay says which of them the packets shown do not reflect (set by the registry's wrapper).
_called_with: dict[str, str] = {}
_called_lock = threading.Lock()


@contextmanager
def called_with(scenario: str, arguments: str) -> Iterator[None]:
    """While the block runs, a replay of ``scenario`` names ``arguments`` (the ones not at their defaults)."""
    with _called_lock:
        _called_with[scenario] = arguments
    try:
        yield
    finally:
        with _called_lock:
            _called_with.pop(scenario, None)


def capture_permitted(iface: str = "lo") -> bool:
    """True if this process may open a packet socket (root or CAP_NET_RAW) on Linux."""
    if not hasattr(socket, "AF_PACKET"):
        return False
    try:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    except OSError:
        return False
    s.close()
    return True


class Capture:
    """The packets of one experiment. Create it with ``capture(...)`` and use it as a context manager.

    Args:
        ports: the server ports of the experiment (a packet to one goes client→server).
        scenario: a scenario name with a shipped recording. Without capture rights it is replayed.
        iface: the interface; loopback is "lo" on Linux.
        mode: "auto" (default: live if permitted, else replay), "live", or "replay". The environment
            variable NETCOURSE_CAPTURE sets the default.
        bpf: filter in the kernel with the course's BPF program (``traffic.bpf``; the default). False
            filters in Python only, where the kernel's queue also holds every other loopback packet.
        ready_timeout: seconds to wait for the sniffer to listen.
        settle_timeout: seconds to wait at the end for handshakes and teardowns on the ports to finish.
        stop_timeout: seconds to wait at the end for the sniffer to see the end marker.
        show_notice: in a notebook, show the one-line "live capture" notice (a replay always shows
            its notice).

    Attributes:
        server_ports: the ports servers listen on (in replay: those of the recording).
        scenario: the scenario name, or None.
        live: True when packets were captured live, False when replayed from a recording.
        complete: True when the end-of-capture sentinel arrived (nothing lost at the tail) and the
            kernel dropped no packet of ours.
        kernel_drops: packets of ours the kernel dropped for a full queue (live captures; None if
            unknown).
        packets: the captured packets, a scapy ``PacketList`` (filled when the block ends).
        notice: one line saying where the packets came from.
        recorded_at: for a replay, when the recording was made (ISO 8601, UTC).
        annotations: what the experiment adds to its recording for a replay (JSON values), set inside
            the block; in a replay, the recording's own.
        ready_s: seconds it took the live sniffer to be ready.
    """

    def __init__(
        self,
        ports: tuple[int, ...],
        *,
        scenario: str | None = None,
        iface: str = "lo",
        mode: str | None = None,
        bpf: bool | None = None,
        ready_timeout: float = 2.0,
        settle_timeout: float = 0.5,
        stop_timeout: float = 5.0,
        show_notice: bool = True,
    ) -> None:
        if not ports:
            raise CaptureError("capture() needs at least one port: the server's (e.g. srv.port).")
        for p in ports:
            if isinstance(p, bool) or not isinstance(p, int) or not 0 < p < 65536:
                raise CaptureError(f"capture(): {p!r} is not a port number (1-65535).")
        mode = (mode or os.environ.get(MODE_ENV) or "auto").lower()
        if mode not in ("auto", "live", "replay"):
            raise CaptureError(f"capture mode must be 'auto', 'live' or 'replay', not {mode!r}.")
        if scenario is not None and recordings.recording_target() is None:
            recordings.load_meta(scenario)  # a name with no recording fails now, live or not
        if mode == "replay" and scenario is None:
            raise CaptureError("Replay needs a scenario name: capture(port, scenario='...').")
        self.server_ports = tuple(ports)
        self.scenario = scenario
        self.iface = iface
        self.mode = mode
        self.bpf = bpf
        self.ready_timeout = ready_timeout
        self.settle_timeout = settle_timeout
        self.stop_timeout = stop_timeout
        self.show_notice = show_notice
        self.live = False
        self.complete = False
        self.packets: Any = None
        self.notice = ""
        self.recorded_at: str | None = None
        self.ready_s: float | None = None
        self.kernel_drops: int | None = None
        self.lost: Any = None  # on an emulated link: frames the wire lost on their way out
        self.lost_count: int | None = None  # how many (also known for a replayed link recording)
        self.t0 = 0.0
        self.annotations: dict[str, Any] = {}
        self._sniffer: Any = None
        self._sock: Any = None
        self._marker: socket.socket | None = None
        self._token = b""
        self._table: PacketTable | None = None
        self._state = "new"

    # -- context manager ---------------------------------------------------------------------------

    def __enter__(self) -> "Capture":
        if self._state != "new":
            raise CaptureError("A Capture can be used once; call capture(...) again for a new one.")
        self._state = "running"
        permitted = recordings.recording_target() is not None or capture_permitted(self.iface)
        if self.mode == "replay" or (self.mode == "auto" and not permitted):
            if self.scenario is None:
                raise CaptureNotPermitted(
                    "Live capture is not permitted for this user, and this capture names no scenario "
                    f"to replay. {HOW_TO_ENABLE}"
                )
            self._meta = recordings.load_meta(self.scenario)  # fails early if the recording is missing
            self.live = False
            self.t0 = time.time()
            return self
        self._start_live()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._state != "running":
            return
        self._state = "done"
        if self.live:
            self._stop_live(drain=exc_type is None)
            target = recordings.recording_target()
            if target is not None and self.scenario and exc_type is None:
                recordings.write(
                    self.scenario,
                    target,
                    self.packets,
                    t0=self.t0,
                    server_ports=self.server_ports,
                    complete=self.complete,
                    kernel_drops=self.kernel_drops,
                    annotations=self.annotations,
                )
            if self.show_notice:
                announce(self.notice, kind="live")
        else:
            self._load_replay()
            announce(self.notice, kind="replay")  # a replay always says so

    # -- live --------------------------------------------------------------------------------------

    def _start_live(self) -> None:
        from scapy.sendrecv import AsyncSniffer

        self._marker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._marker.bind(("127.0.0.1", 0))
        marker_port = self._marker.getsockname()[1]
        self._token = b"netcourse-capture-end-" + secrets.token_hex(8).encode()
        ports = set(self.server_ports) | {marker_port}
        use_bpf = True if self.bpf is None else bool(self.bpf)
        self.bpf = use_bpf
        started = time.perf_counter()
        try:
            self._sock = listen_socket_class()(self.iface, ports, use_bpf)
        except PermissionError as exc:
            self._close_marker()
            raise CaptureNotPermitted(
                f"Live capture is not permitted for this user ({exc.strerror}). {HOW_TO_ENABLE}"
            ) from exc
        except OSError as exc:
            self._close_marker()
            if exc.errno == errno.ENODEV:
                raise CaptureError(f"There is no network interface named {self.iface!r}.") from exc
            raise CaptureError(f"Could not open a capture socket on {self.iface!r}: {exc}") from exc
        except Exception as exc:  # e.g. scapy could not compile or attach the filter
            self._close_marker()
            raise CaptureError(f"Could not start the capture: {exc}") from exc
        ready = threading.Event()
        token = self._token
        self._sniffer = AsyncSniffer(
            opened_socket=self._sock,
            store=True,
            started_callback=ready.set,
            stop_filter=lambda p: bytes(p).endswith(token),
        )
        try:
            self._sniffer.start()
        except Exception as exc:
            self._abort_live()
            raise CaptureError(f"The sniffer could not start: {exc}") from exc
        if not ready.wait(self.ready_timeout):
            failure = self._sniffer.exception
            self._abort_live()
            if failure is not None:
                raise CaptureError(f"The sniffer failed to start: {failure}") from failure
            raise CaptureStartTimeout(
                f"The sniffer was not listening after {self.ready_timeout} s; nothing was captured."
            )
        self.ready_s = time.perf_counter() - started
        self.live = True
        self.t0 = time.time()

    def _stop_live(self, drain: bool) -> None:
        from scapy.layers.l2 import Ether
        from scapy.plist import PacketList

        settled = True
        if drain:
            settled = wait_until(lambda: not connections_settling(set(self.server_ports)), self.settle_timeout)
        assert self._marker is not None
        self._marker.sendto(self._token, self._marker.getsockname())
        try:
            self._sniffer.join(self.stop_timeout)
            if self._sniffer.running:
                self._sniffer.stop(join=True)
                self.complete = False
            else:
                self.complete = True
        except Exception as exc:  # the sniffer's thread failed: report it, leave nothing open
            self._close_socket()
            self._close_marker()
            raise CaptureError(f"The capture failed while running: {exc}") from exc
        raw = self._sniffer.results or []
        try:
            _, self.kernel_drops = self._sock.kernel_statistics()
        except (OSError, AttributeError):  # the socket is already closed: nothing to say either way
            self.kernel_drops = None
        if self.kernel_drops:
            self.complete = False
        self._close_socket()
        self._close_marker()
        frames = []
        for p in raw:
            data = bytes(p)
            if data.endswith(self._token):
                continue
            frame = Ether(data)
            frame.time = p.time
            frames.append(frame)
        self.packets = PacketList(frames, name=f"capture {self.scenario or ''}".strip())
        problems = []
        if self.kernel_drops:
            whose = "of this capture's" if self.bpf else "(this capture's, or other loopback traffic's)"
            problems.append(
                f"INCOMPLETE: the kernel dropped {self.kernel_drops:,} packets {whose} because the "
                "capture's queue was full (the machine was busy); run the cell again"
            )
        elif not self.complete:
            problems.append("the end marker never arrived, so the tail may be missing")
        if not settled:
            problems.append(
                f"connections on the ports were still opening or closing after {self.settle_timeout} s, "
                "so their last packets may be missing"
            )
        self.notice = (
            f"Live capture on {self.iface}: {len(frames)} packets"
            + (f" (scenario {self.scenario!r})" if self.scenario else "")
            + ("; " + "; ".join(problems) + "." if problems else ".")
        )

    def _abort_live(self) -> None:
        try:
            if self._sniffer is not None and self._sniffer.running:
                self._sniffer.stop(join=True)
        except Exception:
            pass
        self._close_socket()
        self._close_marker()

    def _close_socket(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def _close_marker(self) -> None:
        if self._marker is not None:
            self._marker.close()
            self._marker = None

    # -- recordings --------------------------------------------------------------------------------

    def _read_recording(self, name: str, directory: Path | None) -> None:
        packets, meta = recordings.read(name, directory)
        self.packets = packets
        self.server_ports = tuple(meta["server_ports"])
        self.t0 = float(meta["t0"])
        self.complete = bool(meta.get("complete", True))
        self.recorded_at = meta["recorded_at"]

    def _load_replay(self) -> None:
        assert self.scenario is not None
        self._read_recording(self.scenario, None)
        self.lost_count = self._meta.get("lost")
        self.annotations = dict(self._meta.get("annotations", {}))  # the recording's, not this run's
        self.notice = (
            f"Replayed recording of scenario {self.scenario!r} ({len(self.packets)} packets, "
            f"recorded {recordings.recorded_when(self._meta)} on {self._meta.get('kernel', 'Linux')}). Your server "
            f"and client ran live; only the packets are from the recording. {HOW_TO_ENABLE}"
        )
        with _called_lock:
            changed = _called_with.get(self.scenario)
        if changed:
            self.notice += (f" The recording ran with the defaults: your {changed} changed the live run, "
                            "not these packets.")

    @classmethod
    def from_recording(cls, scenario: str, directory: Path, *, live: bool, notice: str) -> "Capture":
        """A finished capture read from a recording made elsewhere (e.g. in a network namespace).

        Args:
            scenario: the scenario name.
            directory: where ``scenario.pcap`` and ``scenario.json`` are.
            live: whether the recording was made just now (True) or shipped with the course.
            notice: the one-line notice to show.
        """
        meta = recordings.load_meta(scenario, directory)
        cap = cls(tuple(meta["server_ports"]), mode="live")
        cap.scenario = scenario
        cap.mode = "live" if live else "replay"
        cap._state = "done"
        cap.live = live
        cap._read_recording(scenario, directory)
        cap.notice = notice
        announce(notice, kind="live" if live else "replay")
        return cap

    def fill_from_wire(self, events: list[Any], *, server_ports: tuple[int, ...], notice: str) -> None:
        """Finish this capture from an emulated link's record of its wire (``network.link``).

        Args:
            events: what crossed the near end's interface, each with ``time`` (seconds since the
                epoch), ``kind`` ("out", "in" or "lost") and ``frame`` (bytes).
            server_ports: the far end's ports; frames to or from other ports are left out. Empty: keep
                every IP frame.
            notice: the one-line notice to show.
        """
        from scapy.layers.l2 import Ether
        from scapy.plist import PacketList

        wanted = set(server_ports)

        def ours(frame: bytes) -> bool:
            found = frame_ports(frame)
            return found is not None and (not wanted or bool({found[1], found[2]} & wanted))

        frames, lost = [], []
        for event in events:
            if not ours(event.frame):
                continue
            packet = Ether(event.frame)
            packet.time = event.time
            (lost if event.kind == "lost" else frames).append(packet)
        self.server_ports = tuple(server_ports) or self.server_ports
        self.packets = PacketList(frames, name="link capture")
        self.lost = PacketList(lost, name="lost on the link")
        self.lost_count = len(lost)
        self.t0 = frames[0].time if frames else time.time()
        self.live = True
        self.complete = True
        self.kernel_drops = 0
        self._state = "done"
        self.notice = f"{notice} Captured on the wire: {len(frames)} packets, {len(lost)} lost on the way out."
        if self.show_notice:
            announce(self.notice, kind="live")

    # -- results -----------------------------------------------------------------------------------

    def table(self) -> PacketTable:
        """One row per packet: time, direction, flags, relative seq/ack, bytes per layer."""
        if self.packets is None:
            raise CaptureError("The capture has not finished yet: use the table after the with-block.")
        if self._table is None:
            self._table = packet_rows(self.packets, self.server_ports, self.t0)
        return self._table

    def __len__(self) -> int:
        return 0 if self.packets is None else len(self.packets)

    def __repr__(self) -> str:
        source = "live" if self.live else ("replayed" if self._state == "done" else self._state)
        return f"<Capture {source} {len(self)} packets, server ports {list(self.server_ports)}>"


def capture(*ports: int, **options: Any) -> Capture:
    """Capture the packets to and from ``ports`` while a ``with`` block runs.

    ``ports`` are the experiment's server ports (a packet to one goes client→server); the keyword
    options are ``Capture``'s (one signature, one place). Without capture rights a capture that names
    a ``scenario`` replays its recording. After the block, ``.packets``, ``.live`` and ``.table()``
    hold the result.
    """
    return Capture(tuple(ports), **options)
