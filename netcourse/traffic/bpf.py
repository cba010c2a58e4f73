"""A packet filter the kernel runs for the capture: classic BPF, assembled here, no libpcap needed.

Without a filter, a packet socket on ``lo`` receives *every* loopback packet: Jupyter's own traffic,
and anything else on the machine. Under load the socket's queue overflows and the kernel drops
packets, including the lesson's. A filter attached with ``SO_ATTACH_FILTER`` runs in the kernel
before a packet is queued, so only the lesson's packets take space.

Classic BPF (McCanne & Jacobson 1993; Linux: Documentation/networking/filter.rst) is a tiny machine
with an accumulator A, an index register X, loads from the packet, conditional jumps that only go
forward, and ``ret`` with the number of bytes to keep (0: drop). The program below says, for an
Ethernet frame on loopback::

    drop the kernel's outgoing copy            (on lo every packet is seen leaving and arriving)
    IPv4: keep ICMP; keep TCP/UDP of a first fragment whose source or destination port is ours
    IPv6: keep ICMPv6; keep TCP/UDP whose source or destination port is ours
    drop everything else

ICMP is kept whole here; ``sniffer`` then keeps only errors that quote one of our datagrams.

    >>> program = port_filter({8080})                       # doctest: +SKIP
    >>> attach(sock, program)                               # doctest: +SKIP
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Insn", "port_filter", "attach", "run", "listing", "packet_statistics"]

# Instruction classes and modes (linux/filter.h, linux/bpf_common.h).
LD, LDX, JMP, RET = 0x00, 0x01, 0x05, 0x06
W, H, B = 0x00, 0x08, 0x10  # sizes: word, half-word, byte
ABS, IND, MSH = 0x20, 0x40, 0xA0  # modes: absolute offset, X + offset, 4*(byte & 0xf)
JEQ, JSET = 0x10, 0x40
K = 0x00  # the operand is the constant k

# Ancillary data (linux/filter.h): a load from SKF_AD_OFF + n reads skb metadata, not the packet.
SKF_AD_OFF = -0x1000
SKF_AD_PKTTYPE = 4
PACKET_OUTGOING = 4  # linux/if_packet.h

SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
SOL_PACKET = getattr(socket, "SOL_PACKET", 263)
PACKET_STATISTICS = 6

KEEP = 0x40000  # bytes to keep of an accepted packet (more than any frame on lo)

# Offsets in an Ethernet frame (14-byte header, as on lo).
ETHERTYPE = 12
IPV4, IPV6 = 0x0800, 0x86DD
IPV4_PROTO, IPV4_FRAG, IPV4_START = 23, 20, 14  # RFC 791 §3.1
IPV6_NEXT, IPV6_L4 = 20, 54  # RFC 8200 §3: next header at byte 6 of a 40-byte header
PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6 = 1, 6, 17, 58


@dataclass(frozen=True)
class Insn:
    """One classic BPF instruction: ``code``, jump offsets ``jt``/``jf`` (if true/false), constant ``k``."""

    code: int
    jt: int = 0
    jf: int = 0
    k: int = 0

    def pack(self) -> bytes:
        """The 8 bytes of ``struct sock_filter``, in the machine's byte order."""
        return struct.pack("=HBBI", self.code, self.jt, self.jf, self.k & 0xFFFFFFFF)


class _Assembler:
    """Writes a program with named labels; jumps are resolved to forward offsets at the end."""

    def __init__(self) -> None:
        self.lines: list[tuple[int, str | None, str | None, int]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.lines)

    def op(self, code: int, k: int = 0) -> None:
        self.lines.append((code, None, None, k))

    def jump(self, code: int, k: int, if_true: str | None, if_false: str | None) -> None:
        """A conditional jump; None means "fall through to the next instruction"."""
        self.lines.append((code, if_true, if_false, k))

    def assemble(self) -> list[Insn]:
        out = []
        for here, (code, jt, jf, k) in enumerate(self.lines):
            offsets = []
            for target in (jt, jf):
                offset = 0 if target is None else self.labels[target] - here - 1
                if not 0 <= offset <= 255:
                    raise ValueError("a BPF jump can only go 0-255 instructions forward")
                offsets.append(offset)
            out.append(Insn(code, offsets[0], offsets[1], k))
        return out


def port_filter(ports: Iterable[int], *, drop_outgoing: bool = True) -> list[Insn]:
    """The program: keep TCP/UDP to or from ``ports`` (IPv4 and IPv6) and ICMP; drop the rest.

    Args:
        ports: port numbers, 1-65535 (at most 60, so every jump stays short).
        drop_outgoing: drop the PACKET_OUTGOING copy of each packet (the copy seen leaving ``lo``).
    """
    wanted = sorted(set(ports))
    if not wanted or len(wanted) > 60 or not all(isinstance(p, int) and 0 < p < 65536 for p in wanted):
        raise ValueError(f"ports must be 1 to 60 port numbers (1-65535), not {wanted!r}")
    a = _Assembler()

    def match_ports(offset_op: int, src: int, dst: int) -> None:
        for offset in (src, dst):  # source port, then destination port
            a.op(offset_op, offset)
            for p in wanted:
                a.jump(JMP | JEQ | K, p, "keep", None)
        a.op(RET | K, 0)

    if drop_outgoing:
        a.op(LD | W | ABS, SKF_AD_OFF + SKF_AD_PKTTYPE)  # A = skb->pkt_type
        a.jump(JMP | JEQ | K, PACKET_OUTGOING, "drop", None)
    a.op(LD | H | ABS, ETHERTYPE)  # A = ethertype
    a.jump(JMP | JEQ | K, IPV4, None, "not_ipv4")
    # IPv4
    a.op(LD | B | ABS, IPV4_PROTO)  # A = protocol
    a.jump(JMP | JEQ | K, PROTO_ICMP, "keep", None)
    a.jump(JMP | JEQ | K, PROTO_TCP, "v4_ports", None)
    a.jump(JMP | JEQ | K, PROTO_UDP, "v4_ports", "drop")
    a.label("v4_ports")
    a.op(LD | H | ABS, IPV4_FRAG)  # A = flags + fragment offset
    a.jump(JMP | JSET | K, 0x1FFF, "drop", None)  # a later fragment carries no ports
    a.op(LDX | B | MSH, IPV4_START)  # X = 4 * IHL: the IPv4 header's length
    match_ports(LD | H | IND, IPV4_START, IPV4_START + 2)  # A = port at X + 14, X + 16
    a.label("not_ipv4")
    a.jump(JMP | JEQ | K, IPV6, None, "drop")
    # IPv6 (no extension headers: the kernel's own loopback traffic has none)
    a.op(LD | B | ABS, IPV6_NEXT)  # A = next header
    a.jump(JMP | JEQ | K, PROTO_ICMPV6, "keep", None)
    a.jump(JMP | JEQ | K, PROTO_TCP, "v6_ports", None)
    a.jump(JMP | JEQ | K, PROTO_UDP, "v6_ports", "drop")
    a.label("v6_ports")
    match_ports(LD | H | ABS, IPV6_L4, IPV6_L4 + 2)
    a.label("keep")
    a.op(RET | K, KEEP)
    a.label("drop")
    a.op(RET | K, 0)
    return a.assemble()


def attach(sock: socket.socket, program: list[Insn]) -> None:
    """Attach ``program`` to a socket (``SO_ATTACH_FILTER``); the kernel copies it."""
    code = b"".join(insn.pack() for insn in program)
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def packet_statistics(sock: socket.socket) -> tuple[int, int]:
    """(packets, drops) the kernel counted for a packet socket since the last call (reading resets them).

    ``packets`` passed the filter; ``drops`` of them found the receive queue full and were lost.
    """
    packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    return packets, drops


def run(program: list[Insn], frame: bytes, *, pkttype: int = 0) -> int:
    """Run a program on a frame in Python, as the kernel would; returns the bytes to keep (0: drop).

    For tests and for reading: the same answer the kernel gives, one instruction at a time.
    Loads past the end of the frame drop it, as in the kernel.
    """
    acc = x = 0
    pc = 0
    while True:
        insn = program[pc]
        cls, size, mode = insn.code & 0x07, insn.code & 0x18, insn.code & 0xE0
        if cls == RET:
            return insn.k if (insn.code & 0x18) == K else acc
        if cls in (LD, LDX):
            width = {W: 4, H: 2, B: 1}[size]
            if mode == MSH:
                if insn.k >= len(frame):
                    return 0
                x = 4 * (frame[insn.k] & 0x0F)
            else:
                offset = insn.k - (1 << 32) if insn.k >= 1 << 31 else insn.k
                if mode == ABS and offset == SKF_AD_OFF + SKF_AD_PKTTYPE:
                    value = pkttype
                else:
                    start = offset + (x if mode == IND else 0)
                    if start < 0 or start + width > len(frame):
                        return 0
                    value = int.from_bytes(frame[start : start + width], "big")
                if cls == LD:
                    acc = value
                else:
                    x = value
            pc += 1
        elif cls == JMP:
            op = insn.code & 0xF0
            if op == 0x00:  # ja
                pc += 1 + insn.k
                continue
            operand = insn.k if (insn.code & 0x08) == 0 else x
            taken = {0x10: acc == operand, 0x20: acc > operand, 0x30: acc >= operand, 0x40: bool(acc & operand)}[op]
            pc += 1 + (insn.jt if taken else insn.jf)
        elif cls == 0x07:  # misc: tax / txa
            if insn.code & 0xF8 == 0x00:
                x = acc
            else:
                acc = x
            pc += 1
        elif cls == 0x04:  # alu, the few operations libpcap uses
            op = insn.code & 0xF0
            operand = insn.k if (insn.code & 0x08) == 0 else x
            acc = {
                0x00: acc + operand, 0x10: acc - operand, 0x20: acc * operand, 0x50: acc & operand,
                0x40: acc | operand, 0x60: acc << operand, 0x70: acc >> operand,
            }[op] & 0xFFFFFFFF
            pc += 1
        elif cls == 0x02:  # st (scratch memory): not used by our program; libpcap rarely
            raise NotImplementedError("scratch memory stores are not supported by this interpreter")
        else:
            raise NotImplementedError(f"BPF instruction class {cls:#x}")


def listing(program: list[Insn]) -> str:
    """The program as text, one instruction a line, in the style of ``tcpdump -d``."""
    names = {LD | W | ABS: "ld", LD | H | ABS: "ldh", LD | B | ABS: "ldb", LD | H | IND: "ldh",
             LDX | B | MSH: "ldxb", JMP | JEQ | K: "jeq", JMP | JSET | K: "jset", RET | K: "ret"}
    lines = []
    for i, insn in enumerate(program):
        name = names.get(insn.code, f"op{insn.code:#x}")
        k = insn.k - (1 << 32) if insn.k >= 1 << 31 else insn.k
        if insn.code == LD | W | ABS and k == SKF_AD_OFF + SKF_AD_PKTTYPE:
            arg = "#pktype"
        elif insn.code == LDX | B | MSH:
            arg = f"4*([{k}]&0xf)"
        elif insn.code == LD | H | IND:
            arg = f"[x + {k}]"
        elif insn.code & 0x07 in (LD,):
            arg = f"[{k}]"
        else:
            arg = f"#{k:#x}" if insn.code & 0x07 == JMP else f"#{k}"
        if insn.code & 0x07 == JMP:
            arg += f"  jt {i + 1 + insn.jt}  jf {i + 1 + insn.jf}"
        lines.append(f"({i:03d}) {name:<5} {arg}")
    return "\n".join(lines)
