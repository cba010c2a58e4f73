"""The course's own BPF program: the same verdicts as libpcap's, and the kernel really filters with it."""

from __future__ import annotations

import socket

import pytest

from netcourse.traffic import bpf
from netcourse.traffic.recordings import read, shipped

from .conftest import live

PORTS = {8080, 5000}


def _frames() -> list[bytes]:
    """Real recorded frames, plus one of every kind the filter must tell apart."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6EchoRequest, IPv6
    from scapy.layers.l2 import ARP, Ether

    frames = [bytes(p) for name in shipped() for p in read(name)[0]]
    for port in (8080, 5000, 5001, 80):
        for other in (40000, 8080):
            frames += [
                bytes(Ether() / IP() / TCP(sport=other, dport=port)),
                bytes(Ether() / IP() / TCP(sport=port, dport=other)),
                bytes(Ether() / IP() / UDP(sport=other, dport=port) / b"x"),
                bytes(Ether() / IP(options=b"\x01\x01\x01\x00") / UDP(sport=other, dport=port)),  # IHL 6
                bytes(Ether() / IP(frag=100, proto=17) / (port.to_bytes(2, "big") * 4)),  # later fragment
                bytes(Ether() / IPv6() / TCP(sport=other, dport=port)),
                bytes(Ether() / IPv6() / UDP(sport=port, dport=other)),
            ]
    frames += [
        bytes(Ether() / IP() / ICMP()),
        bytes(Ether() / IP() / ICMP(type=3, code=3) / IP() / UDP(sport=1, dport=8080)),
        bytes(Ether() / IPv6() / ICMPv6EchoRequest()),
        bytes(Ether() / IPv6() / ICMPv6DestUnreach() / IPv6() / UDP(dport=8080)),
        bytes(Ether() / ARP()),
        bytes(Ether(type=0x0800) / b"\x45"),  # truncated IPv4
        bytes(Ether(type=0x86DD) / b"\x60\x00"),  # truncated IPv6
        b"\x00" * 6,
    ]
    return frames


def test_the_program_keeps_exactly_the_lessons_packets():
    program = bpf.port_filter(PORTS)
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    keep = lambda frame, pkttype=0: bpf.run(program, bytes(frame), pkttype=pkttype) > 0  # noqa: E731
    assert keep(Ether() / IP() / TCP(sport=40000, dport=8080))
    assert keep(Ether() / IP() / UDP(sport=5000, dport=9))
    assert keep(Ether() / IPv6() / TCP(sport=8080, dport=40000))
    assert not keep(Ether() / IP() / TCP(sport=40000, dport=8081))
    assert not keep(Ether() / IP() / TCP(sport=40000, dport=8080), bpf.PACKET_OUTGOING)  # lo's twin copy
    assert not keep(Ether(type=0x0800) / b"\x45")  # too short: the kernel drops it, never reads past


@pytest.mark.slow
def test_same_verdicts_as_libpcap_on_every_frame():
    common = pytest.importorskip("scapy.arch.common")
    try:
        compiled = common.compile_filter(
            "inbound and (((tcp or udp) and (port 8080 or port 5000)) or icmp or icmp6)", iface="lo"
        )
    except Exception as exc:  # no libpcap on this machine
        pytest.skip(f"libpcap is not available to compare with: {exc}")
    theirs = [bpf.Insn(i.code, i.jt, i.jf, i.k) for i in compiled.bf_insns[: compiled.bf_len]]
    ours = bpf.port_filter(PORTS)
    frames = _frames()
    assert len(frames) > 100
    for frame in frames:
        for pkttype in (0, bpf.PACKET_OUTGOING):
            assert (bpf.run(ours, frame, pkttype=pkttype) > 0) == (bpf.run(theirs, frame, pkttype=pkttype) > 0), frame.hex()


def test_programs_are_checked_and_readable():
    with pytest.raises(ValueError, match="1 to 60 port numbers"):
        bpf.port_filter([])
    with pytest.raises(ValueError):
        bpf.port_filter([70000])
    text = bpf.listing(bpf.port_filter({8080}))
    assert "(000) ld    #pktype" in text and "ldxb  4*([14]&0xf)" in text and text.rstrip().endswith("ret   #0")


@live
def test_the_kernel_runs_it_and_counts_drops():
    wanted, unwanted = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    try:
        wanted.bind(("127.0.0.1", 0))
        unwanted.bind(("127.0.0.1", 0))
        port = wanted.getsockname()[1]
        sniff.bind(("lo", 0))
        bpf.attach(sniff, bpf.port_filter({port}))
        bpf.packet_statistics(sniff)
        while True:  # empty what queued before the filter was attached
            sniff.setblocking(False)
            try:
                sniff.recv(65536)
            except BlockingIOError:
                break
        for _ in range(20):
            wanted.sendto(b"yes", wanted.getsockname())
            unwanted.sendto(b"no", unwanted.getsockname())
        sniff.settimeout(2)
        got = [sniff.recv(65536) for _ in range(20)]
        sniff.setblocking(False)
        with pytest.raises(BlockingIOError):
            sniff.recv(65536)  # nothing else arrived: not the other port, not lo's outgoing copies
        assert all(frame.endswith(b"yes") for frame in got)
        packets, drops = bpf.packet_statistics(sniff)
        assert (packets, drops) == (20, 0)
    finally:
        for s in (wanted, unwanted, sniff):
            s.close()
