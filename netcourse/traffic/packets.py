"""Turn captured packets into a table a learner can read: one row per packet.

Each row says when the packet was seen, which way it went (judged by the server's port), its TCP flags,
its sequence and acknowledgement numbers relative to the start of the connection, and how many bytes
each layer took: link (Ethernet, 14 bytes on Linux loopback), IP, TCP or UDP, and payload.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import Packet

from ..errors import BeatProtocolError, FrameError, TLSRecordError
from ..protocols.beat import Decoder as BeatDecoder
from ..protocols.beat import Kind as BeatKind
from ..protocols.tlsrecord import RecordDecoder
from ..protocols.wsframe import FrameDecoder, Opcode, parse_close

__all__ = ["PacketRow", "PacketTable", "packet_rows", "in_flight", "retransmissions", "presumed_lost", "resends", "Resend",
           "C2S", "S2C"]

C2S = "C→S"
S2C = "S→C"
_MOD = 1 << 32


@dataclass(frozen=True)
class PacketRow:
    """One packet, as the course tables and diagrams see it.

    Attributes:
        no: 1-based position in the capture.
        t: seconds since the capture started (``ms``, the tables' column, is the same in milliseconds).
        direction: "C→S" (to a server port) or "S→C" (from one).
        proto: "TCP", "UDP" or "ICMP".
        src, dst: "ip:port" of sender and receiver.
        flags: TCP flags as scapy spells them ("S", "SA", "A", "PA", "FA", "R"...); "" for UDP.
        seq: sequence number relative to this direction's initial one (the SYN is 0); None for UDP.
        ack: acknowledgement number relative to the other direction's initial one; None without ACK.
        link, ip, transport, payload: bytes taken by each layer; their sum is the frame's length.
        app: what the application put in the payload, when the course can tell: an HTTP request
            line (``GET /hello``), a status (``101 Switching Protocols``), WebSocket frames
            (``TEXT "hello"``, ``CLOSE 1000``); "" otherwise.
    """

    no: int
    t: float
    direction: str
    proto: str
    src: str
    dst: str
    flags: str
    seq: int | None
    ack: int | None
    link: int
    ip: int
    transport: int
    payload: int
    app: str = ""

    @property
    def ms(self) -> float:
        """Milliseconds since the capture started: the tables' ``ms`` column (``t`` is in seconds)."""
        return self.t * 1000

    @property
    def caption(self) -> str:
        """The application's message, then the TCP label: ``GET /hello · PA seq=1 ack=1 len=78``."""
        return f"{self.app} · {self.label}" if self.app else self.label

    @property
    def wire(self) -> int:
        """Bytes of the whole frame on the wire."""
        return self.link + self.ip + self.transport + self.payload

    @property
    def label(self) -> str:
        """A short label for diagrams, e.g. ``PA seq=1 ack=1 len=94``."""
        if self.proto == "TCP":
            parts = [self.flags, f"seq={self.seq}"]
            if self.ack is not None:
                parts.append(f"ack={self.ack}")
            if self.payload:
                parts.append(f"len={self.payload}")
            return " ".join(parts)
        return f"{self.proto} len={self.payload}"


_COLUMNS = ["no", "t", "direction", "proto", "flags", "seq", "ack", "link", "ip", "transport", "payload"]


class PacketTable(Sequence[PacketRow]):
    """A list of ``PacketRow`` that shows itself as a table (text and HTML)."""

    def __init__(self, rows: Iterable[PacketRow]) -> None:
        self._rows = list(rows)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return PacketTable(self._rows[index])
        return self._rows[index]

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[PacketRow]:
        return iter(self._rows)

    def to_dicts(self) -> list[dict]:
        """The rows as plain dictionaries."""
        return [asdict(r) for r in self._rows]

    def _cells(self, row: PacketRow) -> list[str]:
        out = []
        for name in _COLUMNS:
            value = getattr(row, name)
            if name == "t":
                out.append(f"{value * 1000:.3f}")
            elif value is None:
                out.append("")
            else:
                out.append(str(value))
        return out

    def _headers(self) -> list[str]:
        return ["#", "ms", "dir", "proto", "flags", "seq", "ack", "link", "IP", "TCP/UDP", "payload"]

    def __repr__(self) -> str:
        rows = [self._headers()] + [self._cells(r) for r in self._rows]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self._headers())
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in self._cells(r)) + "</tr>"
            for r in self._rows
        )
        return f"<table class='netcourse-packets'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_METHODS = (b"GET ", b"POST ", b"PUT ", b"DELETE ", b"HEAD ", b"OPTIONS ", b"PATCH ")


class _AppReader:
    """Names what the application sent on each TCP connection, segment by segment.

    HTTP/1.1 request and status lines are recognised where a message starts; after a ``101`` the
    bytes are WebSocket frames, decoded in order (a resent segment is not decoded twice). A connection
    whose first bytes are a TLS handshake record is read as TLS records (``protocols.tlsrecord``): the
    messages still in clear are named, the rest is "encrypted".
    """

    def __init__(self) -> None:
        self._next: dict[tuple, int] = {}  # (src, sport, dst, dport) -> next relative seq expected
        self._ws: dict[tuple, FrameDecoder | None] = {}  # per direction, once upgraded
        self._upgraded: set[frozenset] = set()
        self._tls: dict[tuple, RecordDecoder | None] = {}  # per direction of a TLS connection
        self._tls_conns: set[frozenset] = set()

    def label(self, key: tuple, seq: int, data: bytes, complete: bool, direction: str) -> str:
        if not data:
            return ""
        expected = self._next.get(key)
        if expected is not None and seq != expected:
            return ""  # a resend, or out of order: already named (or not nameable)
        self._next[key] = seq + len(data)
        conn = frozenset((key[:2], key[2:]))
        if seq == 1 and conn not in self._tls_conns and len(data) >= 3 and data[0] == 22 and data[1] == 3:
            self._tls_conns.add(conn)  # a handshake record opens the connection: TLS (RFC 8446 §5.1)
        if conn in self._tls_conns:
            return self._tls_label(key, data, complete)
        if conn in self._upgraded:
            if not complete:  # the capture kept only headers: the frames cannot be read
                self._ws[key] = None
            decoder = self._ws.setdefault(key, FrameDecoder("server" if direction == C2S else "client"))
            if decoder is None:
                return ""
            frames, error = decoder.decode(data)
            if error is not None:
                self._ws[key] = None
            return ", ".join(_frame_label(f) for f in frames[:3]) + (" …" if len(frames) > 3 else "")
        if data.startswith(_METHODS):
            line = data.split(b"\r\n", 1)[0].decode("latin-1")
            method, _, rest = line.partition(" ")
            target = rest.rsplit(" HTTP/", 1)[0]
            return f"{method} {target[:40] + ('…' if len(target) > 40 else '')}"
        if data.startswith(b"HTTP/1."):
            line = data.split(b"\r\n", 1)[0].decode("latin-1")
            status = line.split(" ", 1)[1] if " " in line else line
            if status.startswith("101"):
                self._upgraded.add(conn)
            return status
        return _beat_label(data) if complete else ""


    def _tls_label(self, key: tuple, data: bytes, complete: bool) -> str:
        decoder = self._tls.setdefault(key, RecordDecoder() if complete else None)
        if decoder is None or not complete:
            self._tls[key] = None  # bytes missing from the capture: the records cannot be followed
            return ""
        try:
            records = decoder.feed(data)
        except TLSRecordError:
            self._tls[key] = None
            return "not TLS"
        names = [r.label for r in records]
        text = ", ".join(names[:3]) + (" …" if len(names) > 3 else "")
        if decoder.pending:
            text += (" + " if text else "") + "part of a record"
        return text


def _beat_label(data: bytes) -> str:
    """Notebook 04's length-prefixed frames, when the segment is made of whole ones exactly; else ""."""
    decoder = BeatDecoder()
    try:
        frames = decoder.feed(data)
    except BeatProtocolError:
        return ""
    if not frames or decoder.partial:
        return ""
    names = []
    for f in frames[:3]:
        if f.kind is BeatKind.MSG:
            text = f.body.decode("utf-8", "replace")
            names.append(f'MSG "{text[:10]}{"…" if len(text) > 10 else ""}"')
        elif f.kind is BeatKind.TICK:
            names.append(f"TICK {f.body.decode('ascii', 'replace')}")
        else:
            names.append(f.kind.name)
    return ", ".join(names) + (" …" if len(frames) > 3 else "")


def _frame_label(frame) -> str:
    if frame.opcode == Opcode.TEXT:
        text = frame.payload.decode("utf-8", "replace")
        return f'TEXT "{text[:10]}{"…" if len(text) > 10 else ""}"'
    if frame.opcode == Opcode.CLOSE:
        try:
            code, _ = parse_close(frame.payload)
        except FrameError:
            return "CLOSE ?"
        return f"CLOSE {code}" if code else "CLOSE"
    if frame.opcode == Opcode.BINARY:
        return f"BINARY {len(frame.payload)} B"
    if frame.opcode == Opcode.CONTINUATION:
        return f"CONT {len(frame.payload)} B"
    return frame.opcode.name


def _endpoint(ip: str, port: int | None) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"{host}:{port}" if port is not None else host


def packet_rows(packets: Iterable[Packet], server_ports: Iterable[int], t0: float | None = None) -> PacketTable:
    """Build the per-packet table.

    Args:
        packets: dissected packets (``Ether`` frames from loopback, or bare IP packets).
        server_ports: ports that servers listen on; a packet to one of them goes client→server.
        t0: capture start, in seconds since the epoch; defaults to the first packet's time.

    Returns:
        A ``PacketTable``, one row per packet that has an IP layer.
    """
    server_ports = set(server_ports)
    packets = list(packets)
    if t0 is None:
        t0 = float(packets[0].time) if packets else 0.0
    isn: dict[tuple, int] = {}  # (src, sport, dst, dport) -> initial sequence number
    reader = _AppReader()
    rows = []
    for pkt in packets:
        ip_layer = pkt.getlayer(IP) or pkt.getlayer(IPv6)
        if ip_layer is None:
            continue
        ip_len, ip_total = (ip_layer.ihl * 4, ip_layer.len) if isinstance(ip_layer, IP) else (40, 40 + ip_layer.plen)
        proto, transport, sport, dport = _transport(ip_layer)
        payload = max(ip_total - ip_len - transport, 0)
        direction = _direction(proto, sport, dport, server_ports)
        flags, seq, ack, app = "", None, None, ""
        if proto == "TCP":
            tcp = ip_layer[TCP]
            flags = str(tcp.flags)
            seq, ack = _relative(ip_layer, tcp, flags, isn)
            if payload:
                data = bytes(tcp.payload)[:payload]
                try:
                    app = reader.label((ip_layer.src, sport, ip_layer.dst, dport), seq, data, len(data) == payload,
                                       direction)
                except (ValueError, UnicodeError):  # a frame the decoder refuses: leave it unnamed
                    app = ""
        rows.append(PacketRow(no=len(rows) + 1, t=float(pkt.time) - t0, direction=direction, proto=proto,
                              src=_endpoint(ip_layer.src, sport), dst=_endpoint(ip_layer.dst, dport), flags=flags,
                              seq=seq, ack=ack, link=len(pkt) - len(ip_layer), ip=ip_len, transport=transport,
                              payload=payload, app=app))
    return PacketTable(rows)


def _transport(ip_layer) -> tuple[str, int, int | None, int | None]:
    """(protocol, its header's bytes, source port, destination port) of an IP packet."""
    if TCP in ip_layer:
        tcp = ip_layer[TCP]
        return "TCP", tcp.dataofs * 4, tcp.sport, tcp.dport
    if UDP in ip_layer:
        return "UDP", 8, ip_layer[UDP].sport, ip_layer[UDP].dport
    if ICMP in ip_layer:
        return "ICMP", 8, None, None
    return (ip_layer.sprintf("%proto%") if isinstance(ip_layer, IP) else "IPv6"), 0, None, None


def _direction(proto: str, sport: int | None, dport: int | None, server_ports: set[int]) -> str:
    if dport in server_ports:
        return C2S
    if sport in server_ports:
        return S2C
    return S2C if proto == "ICMP" else C2S  # ICMP and strays: an error about a datagram travels towards its sender


def _relative(ip_layer, tcp, flags: str, isn: dict[tuple, int]) -> tuple[int, int | None]:
    """Sequence and acknowledgement numbers relative to each direction's first (as Wireshark shows them)."""
    key = (ip_layer.src, tcp.sport, ip_layer.dst, tcp.dport)
    back = (ip_layer.dst, tcp.dport, ip_layer.src, tcp.sport)
    if "S" in flags or key not in isn:
        isn[key] = tcp.seq if "S" in flags else isn.get(key, tcp.seq)
    seq = (tcp.seq - isn[key]) % _MOD
    ack = None
    if "A" in flags:
        ack = (tcp.ack - isn[back]) % _MOD if back in isn else tcp.ack
    return seq, ack


def in_flight(rows: Sequence[PacketRow]) -> list[tuple[float, int]]:
    """(seconds, bytes in flight) after each packet, computed from the sender's own capture.

    In flight = the highest byte sent so far minus the highest byte acknowledged (RFC 5681 §2,
    FlightSize), for data the client sends. Sequence numbers are the table's relative ones.
    """
    sent = acked = 0
    out = []
    for row in rows:
        if row.direction == C2S and row.seq is not None and row.payload:
            sent = max(sent, row.seq + row.payload)
        elif row.direction != C2S and row.ack is not None:
            acked = max(acked, row.ack - 1)  # the SYN took sequence number 0
        out.append((row.t, max(sent - acked, 0)))
    return out


def retransmissions(rows: Sequence[PacketRow]) -> list[PacketRow]:
    """Data segments the client sent a second time (a sequence number seen before)."""
    seen: set[int] = set()
    again = []
    for row in rows:
        if row.direction == C2S and row.payload and row.seq is not None:
            if row.seq in seen:
                again.append(row)
            seen.add(row.seq)
    return again


def presumed_lost(rows: Sequence[PacketRow]) -> set[int]:
    """Numbers (``row.no``) of data segments that were sent again later with the same ``seq``.

    A capture at the sender sees a segment leave, not whether it arrived; a resend of the same bytes
    says the sender believed it lost (or its acknowledgement). Diagrams draw these as lost.
    """
    last: dict[tuple[str, str, int], int] = {}
    lost = set()
    for row in rows:
        if row.proto == "TCP" and row.payload and row.seq is not None:
            key = (row.src, row.dst, row.seq)  # per connection: two connections both start at seq 1
            if key in last:
                lost.add(last[key])
            last[key] = row.no
    return lost


@dataclass(frozen=True)
class Resend:
    """One resent data segment, next to its first transmission.

    Attributes:
        seq: the segment's relative sequence number.
        original_t, resend_t: seconds since the capture started.
        duplicate_acks: ACKs from the receiver between the two that acknowledged nothing new (each says
            "still missing a byte": this one, or an earlier hole's).
    """

    seq: int
    original_t: float
    resend_t: float
    duplicate_acks: int

    @property
    def gap_ms(self) -> float:
        """Milliseconds from the first transmission to this resend."""
        return (self.resend_t - self.original_t) * 1000


def resends(rows: Sequence[PacketRow]) -> list[Resend]:
    """Every client data segment sent again, with the time since its first copy and the duplicate ACKs
    that came back in between (RFC 5681 §2: an ACK that acknowledges nothing new, i.e. repeats the ack
    number of the ACK before it)."""
    rows = list(rows)
    first: dict[tuple[str, str, int], int] = {}  # (connection, seq) -> index of its first transmission
    out = []
    for i, row in enumerate(rows):
        if row.direction != C2S or not row.payload or row.seq is None:
            continue
        key = (row.src, row.dst, row.seq)
        if key not in first:
            first[key] = i
            continue
        j = first[key]

        def answers(o: PacketRow) -> bool:  # the receiver's ACKs on this same connection
            return o.src == row.dst and o.dst == row.src and o.ack is not None

        acks = [o.ack for o in rows[:i] if answers(o)]
        before = sum(1 for o in rows[:j] if answers(o))
        # RFC 5681 §2: a duplicate ACK acknowledges nothing new (its ack equals the one before it).
        dup = sum(1 for k in range(max(before, 1), len(acks)) if acks[k] == acks[k - 1])
        out.append(Resend(row.seq, rows[j].t, row.t, dup))
    return out
