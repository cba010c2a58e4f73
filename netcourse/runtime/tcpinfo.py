"""What the operating system's kernel knows about our connections, read without privileges.

- ``tcp_info(sock)`` reads Linux's ``TCP_INFO`` for one connected socket: segments and bytes in and
  out, the round-trip time estimate, the MSS. It is an honest live cross-check of a capture, and a
  live source of segment counts when capture is not allowed.
- ``tcp_sockets()`` parses the kernel's socket table (``/proc/net/tcp`` and ``/proc/net/tcp6``),
  the same table ``ss -t -a`` prints.

Both are Linux-only; elsewhere ``tcp_info`` returns None and ``tcp_sockets`` returns [].
"""

from __future__ import annotations

import socket
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TcpInfo", "tcp_info", "SocketEntry", "tcp_sockets", "TCP_STATES"]

# linux/tcp.h, struct tcp_info: (name, struct format, byte offset). Offsets are part of the kernel's
# user-space ABI: fields are only ever appended.
_TCP_INFO_FIELDS = [
    ("state", "B", 0),
    ("options", "B", 5),
    ("wscale", "B", 6),
    ("rto_us", "I", 8),
    ("snd_mss", "I", 16),
    ("rcv_mss", "I", 20),
    ("retransmits_total", "I", 100),
    ("rtt_us", "I", 68),
    ("rttvar_us", "I", 72),
    ("snd_cwnd", "I", 80),
    ("unacked", "I", 24),
    ("lost", "I", 32),
    ("snd_ssthresh", "I", 76),
    ("min_rtt_us", "I", 148),
    ("bytes_acked", "Q", 120),
    ("bytes_received", "Q", 128),
    ("segs_out", "I", 136),
    ("segs_in", "I", 140),
    ("data_segs_in", "I", 152),
    ("data_segs_out", "I", 156),
    ("bytes_sent", "Q", 200),
]
_TCP_INFO_SIZE = 232

TCPI_OPT_TIMESTAMPS = 1
TCPI_OPT_SACK = 2
TCPI_OPT_WSCALE = 4

# include/net/tcp_states.h
TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
}


@dataclass(frozen=True)
class TcpInfo:
    """One connection's counters, as the kernel keeps them (RFC 4898 names in brackets).

    Attributes:
        state: TCP state name, e.g. "ESTABLISHED".
        timestamps: whether TCP timestamps (RFC 7323) were negotiated: 12 more header bytes/segment.
        snd_mss: largest payload this end sends in one segment, in bytes.
        rtt_us: smoothed round-trip time estimate, in microseconds.
        segs_out: segments sent, SYN/FIN/pure ACKs included [tcpEStatsPerfSegsOut].
        segs_in: segments received [tcpEStatsPerfSegsIn].
        data_segs_out: segments sent that carried payload [tcpEStatsDataSegsOut].
        data_segs_in: segments received that carried payload [tcpEStatsDataSegsIn].
        bytes_sent: payload bytes sent, retransmissions included, in bytes.
        bytes_acked: payload bytes the peer acknowledged [tcpEStatsAppHCThruOctetsAcked].
        bytes_received: payload bytes received in order [tcpEStatsAppHCThruOctetsReceived].
        retransmits_total: segments retransmitted over the connection's life.
        snd_cwnd: congestion window, in segments (RFC 5681 §2: cwnd).
        snd_ssthresh: slow-start threshold, in segments; a huge value until the first loss.
        unacked: segments sent and not yet acknowledged: what is "in flight" (RFC 5681 §2: FlightSize).
        lost: segments the kernel currently believes lost.
        min_rtt_us: the smallest round trip seen, in microseconds.
    """

    state: str
    timestamps: bool
    sack: bool
    snd_mss: int
    rcv_mss: int
    rtt_us: int
    rttvar_us: int
    segs_out: int
    segs_in: int
    data_segs_out: int
    data_segs_in: int
    bytes_sent: int
    bytes_acked: int
    bytes_received: int
    retransmits_total: int
    snd_cwnd: int = 0
    snd_ssthresh: int = 0
    unacked: int = 0
    lost: int = 0
    min_rtt_us: int = 0


def tcp_info(sock: socket.socket) -> TcpInfo | None:
    """Read TCP_INFO for a TCP socket (no privileges needed). None where the OS has no TCP_INFO.

    The socket must still be open in this process; its counters stay readable after the connection
    has closed, until ``sock.close()``.
    """
    if not sys.platform.startswith("linux") or not hasattr(socket, "TCP_INFO"):
        return None
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
    raw = raw.ljust(_TCP_INFO_SIZE, b"\0")
    values = {name: struct.unpack_from("=" + fmt, raw, off)[0] for name, fmt, off in _TCP_INFO_FIELDS}
    return TcpInfo(
        state=TCP_STATES.get(values["state"], str(values["state"])),
        timestamps=bool(values["options"] & TCPI_OPT_TIMESTAMPS),
        sack=bool(values["options"] & TCPI_OPT_SACK),
        snd_mss=values["snd_mss"],
        rcv_mss=values["rcv_mss"],
        rtt_us=values["rtt_us"],
        rttvar_us=values["rttvar_us"],
        segs_out=values["segs_out"],
        segs_in=values["segs_in"],
        data_segs_out=values["data_segs_out"],
        data_segs_in=values["data_segs_in"],
        bytes_sent=values["bytes_sent"],
        bytes_acked=values["bytes_acked"],
        bytes_received=values["bytes_received"],
        retransmits_total=values["retransmits_total"],
        snd_cwnd=values["snd_cwnd"],
        snd_ssthresh=values["snd_ssthresh"],
        unacked=values["unacked"],
        lost=values["lost"],
        min_rtt_us=values["min_rtt_us"],
    )


@dataclass(frozen=True)
class SocketEntry:
    """One row of the kernel's TCP socket table.

    Attributes:
        local: (address, port) of this end.
        remote: (address, port) of the peer; the unspecified address and port 0 for a listening socket.
        state: TCP state name, e.g. "LISTEN" or "TIME_WAIT".
        uid: owner's user id.
        inode: the socket's inode (0 for TIME_WAIT entries, which belong to no process).
    """

    local: tuple[str, int]
    remote: tuple[str, int]
    state: str
    uid: int
    inode: int


def _parse_addr(text: str, family: int) -> tuple[str, int]:
    addr_hex, port_hex = text.split(":")
    raw = bytes.fromhex(addr_hex)
    if family == socket.AF_INET:
        packed = raw[::-1]  # one little-endian 32-bit word
    else:
        packed = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(family, packed), int(port_hex, 16)


def tcp_sockets() -> list[SocketEntry]:
    """Every TCP socket the kernel knows of (all users, IPv4 and IPv6). [] where /proc is absent."""
    entries = []
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = Path("/proc/net") / name
        try:
            lines = path.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            entries.append(
                SocketEntry(
                    local=_parse_addr(fields[1], family),
                    remote=_parse_addr(fields[2], family),
                    state=TCP_STATES.get(int(fields[3], 16), fields[3]),
                    uid=int(fields[7]),
                    inode=int(fields[9]),
                )
            )
    return entries


def listening_ports() -> set[int]:
    """Ports with a TCP socket in LISTEN state, on any address."""
    return {e.local[1] for e in tcp_sockets() if e.state == "LISTEN"}


# States in which a connection is on its way somewhere: a capture waits for these to settle.
TRANSIENT_STATES = frozenset({"SYN_SENT", "SYN_RECV", "FIN_WAIT1", "CLOSING", "LAST_ACK"})


def connections_settling(ports: set[int]) -> bool:
    """True while some TCP connection on one of ``ports`` is mid-handshake or mid-teardown."""
    return any(
        e.state in TRANSIENT_STATES and (e.local[1] in ports or e.remote[1] in ports)
        for e in tcp_sockets()
    )
