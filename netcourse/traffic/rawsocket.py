"""The packet socket under a live capture: scapy's listen socket on the loopback interface, with two changes.

- On ``lo`` every packet is delivered twice, the outgoing copy too: the socket drops the PACKET_OUTGOING copy.
- Frames of other ports are dropped in Python when no kernel filter (``traffic.bpf``) is attached; ICMP errors
  count for the ports of the datagram they quote (RFC 792; RFC 4443 §2.1).

Its receive buffer is large (a 10,000-datagram burst fits), forced past ``net.core.rmem_max`` where root may.
It relies on scapy's ``L2ListenSocket`` and its ``_recv_raw`` (scapy's own ``L2Socket.recv_raw`` does the same):
a scapy release that changed that contract would show here first (tests/test_capture.py drives it with a fake).
"""

from __future__ import annotations

import socket
import struct
import time

from . import bpf

__all__ = ["frame_ports", "listen_socket_class", "ETH_P_ALL", "PACKET_OUTGOING", "RCVBUF_BYTES"]

# Socket receive buffer. Each queued packet costs its whole kernel buffer (about 1 KiB for a small
# datagram on lo), so a 10,000-datagram burst needs ~10 MiB when the reader falls behind. Root may
# exceed net.core.rmem_max (SO_RCVBUFFORCE); with only CAP_NET_RAW the kernel caps it there.
RCVBUF_BYTES = 1 << 25  # 32 MiB
_FRAME_MAX = 1 << 17  # lo's MTU is 65,536: frames up to 65,550 bytes

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)



# ICMP messages that quote the datagram that caused them (RFC 792; RFC 4443 §2.1: ICMPv6 types < 128).
ICMP_ERRORS = {3, 4, 5, 11, 12}  # unreachable, source quench, redirect, time exceeded, parameter problem
ETH_LEN, IPV4_MIN, IPV6_LEN, ICMP_LEN = 14, 20, 40, 8


def frame_ports(frame: bytes) -> tuple[int, int, int] | None:
    """(ip proto, source port, dest port) of an Ethernet frame, read straight from its bytes.

    For an ICMP error, the ports are those of the datagram it quotes, so the error is kept with the
    experiment whose datagram caused it. None for anything else: not IP, no ports, an ICMP message
    that quotes nothing (a ping), or a frame too short to hold what its headers announce.
    """
    if len(frame) < ETH_LEN:
        return None
    ethertype = frame[12:14]
    if ethertype == b"\x08\x00":  # IPv4
        if len(frame) < ETH_LEN + IPV4_MIN:
            return None
        ihl = (frame[14] & 0x0F) * 4
        if ihl < IPV4_MIN:
            return None
        proto = frame[23]
        l4 = ETH_LEN + ihl
        if proto == 1:  # ICMP: type, code, checksum, 4 bytes, then the quoted IP header + 8 bytes
            if len(frame) < l4 + ICMP_LEN + IPV4_MIN + 4 or frame[l4] not in ICMP_ERRORS:
                return None
            inner = l4 + ICMP_LEN
            inner_ihl = (frame[inner] & 0x0F) * 4
            if inner_ihl < IPV4_MIN or len(frame) < inner + inner_ihl + 4:
                return None
            sport, dport = struct.unpack_from("!HH", frame, inner + inner_ihl)
            return proto, sport, dport
    elif ethertype == b"\x86\xdd":  # IPv6 (no extension headers on loopback experiments)
        if len(frame) < ETH_LEN + IPV6_LEN:
            return None
        proto = frame[ETH_LEN + 6]
        l4 = ETH_LEN + IPV6_LEN
        if proto == 58:  # ICMPv6: errors (type < 128) quote the offending packet
            if len(frame) < l4 + ICMP_LEN + IPV6_LEN + 4 or frame[l4] >= 128:
                return None
            sport, dport = struct.unpack_from("!HH", frame, l4 + ICMP_LEN + IPV6_LEN)
            return proto, sport, dport
    else:
        return None
    if proto not in (6, 17) or len(frame) < l4 + 4:
        return None
    sport, dport = struct.unpack_from("!HH", frame, l4)
    return proto, sport, dport


def listen_socket_class() -> type:
    """Build the scapy socket class lazily (importing scapy's Linux arch is Linux-only)."""
    from scapy.arch.linux import L2ListenSocket
    from scapy.config import conf

    class LoopbackListenSocket(L2ListenSocket):
        """A scapy listen socket that skips outgoing copies, keeps only given ports, and returns
        undissected frames (dissection happens after the capture, off the hot path)."""

        desc = "loopback listen socket: incoming copies only, filtered by port"

        def __init__(self, iface: str, ports: set[int], kernel_filter: bool) -> None:
            self._ports = ports
            super().__init__(iface=iface, filter=None)
            try:
                if kernel_filter:
                    bpf.attach(self.ins, bpf.port_filter(ports))
                self.ins.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)  # passes rmem_max
            except PermissionError:
                self.ins.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)  # capped by rmem_max
            except BaseException:
                self.close()
                raise
            bpf.packet_statistics(self.ins)  # reading resets the counters: count from here on

        def kernel_statistics(self) -> tuple[int, int]:
            """(packets queued, packets dropped for a full queue) since the socket was set up."""
            return bpf.packet_statistics(self.ins)

        def recv_raw(self, x: int = _FRAME_MAX):  # type: ignore[override]
            frame, sa_ll, ts = self._recv_raw(self.ins, _FRAME_MAX)
            if not frame or sa_ll[2] == PACKET_OUTGOING:
                return None, None, None
            ports = frame_ports(frame)
            if ports is None or (ports[1] not in self._ports and ports[2] not in self._ports):
                return None, None, None
            return conf.raw_layer, frame, ts if ts is not None else time.time()

    return LoopbackListenSocket


