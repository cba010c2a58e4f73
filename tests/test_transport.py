"""Notebook 02's protocol code (headers, checksums) and experiments (TCP, UDP, loss, cost, latency)."""

from __future__ import annotations

import threading

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from netcourse.course.plots.connections import duplex_timeline
from netcourse.course.plots.wire import header_diagram, latency_distributions, port_map
from netcourse.experiments.transport.checksum import check_checksum
from netcourse.experiments.transport.conversation import tcp_conversation
from netcourse.experiments.transport.costs import latency, per_message, transport_costs
from netcourse.experiments.transport.datagrams import (
    lossy_relay,
    message_boundaries,
    refused,
)
from netcourse.protocols.checksum import (
    internet_checksum,
    ones_complement_sum,
    partial_checksum,
    pseudo_header,
    transport_checksum,
)
from netcourse.protocols.headers import IPV4, LAYOUTS
from netcourse.protocols.headers import TCP as TCP_LAYOUT
from netcourse.protocols.headers import UDP as UDP_LAYOUT

# -- sans-I/O: headers and checksums --------------------------------------------------------------


def test_layout_sizes_and_offsets_match_the_rfcs():
    assert (IPV4.size, TCP_LAYOUT.size, UDP_LAYOUT.size) == (20, 20, 8)
    assert TCP_LAYOUT.byte_offset("Checksum") == 16 and UDP_LAYOUT.byte_offset("Checksum") == 6
    assert IPV4.byte_offset("Source Address") == 12
    with pytest.raises(KeyError):
        TCP_LAYOUT.bit_offset("Colour")
    with pytest.raises(ValueError):
        TCP_LAYOUT.byte_offset("SYN")


def test_layouts_parse_what_scapy_builds():
    pkt = IP(src="10.0.0.1", dst="10.0.0.2", ttl=42) / TCP(sport=1234, dport=80, seq=7, ack=9, flags="SA", window=512)
    raw = bytes(pkt)
    ip = IPV4.parse(raw)
    assert ip["Version"] == 4 and ip["IHL"] == 5 and ip["Time to Live"] == 42 and ip["Protocol"] == 6
    tcp = TCP_LAYOUT.parse(raw[20:])
    assert (tcp["Source Port"], tcp["Destination Port"], tcp["Sequence Number"], tcp["Acknowledgment Number"]) == (1234, 80, 7, 9)
    assert (tcp["SYN"], tcp["ACK"], tcp["FIN"], tcp["Window"], tcp["Data Offset"]) == (1, 1, 0, 512, 5)
    assert tcp["Checksum"] == pkt.__class__(raw)[TCP].chksum
    udp = UDP_LAYOUT.parse(bytes(UDP(sport=5, dport=53) / b"abc"))
    assert udp["Length"] == 11
    with pytest.raises(ValueError):
        UDP_LAYOUT.parse(b"123")


def test_rfc1071_numerical_example():
    data = bytes.fromhex("0001f203f4f5f6f7")  # RFC 1071 §3
    assert ones_complement_sum(data) == 0xDDF2
    assert internet_checksum(data) == 0x220D
    assert ones_complement_sum(b"\x01") == 0x0100  # odd length pads with a zero byte


def test_pseudo_headers_v4_and_v6():
    assert pseudo_header("127.0.0.1", "127.0.0.1", 6, 32) == bytes.fromhex("7f0000017f000001 0006 0020".replace(" ", ""))
    v6 = pseudo_header("::1", "::1", 17, 9)
    assert len(v6) == 40 and v6[-1] == 17 and v6[32:36] == (9).to_bytes(4, "big")
    with pytest.raises(ValueError):
        pseudo_header("127.0.0.1", "::1", 6, 20)


@pytest.mark.parametrize("layer", [TCP(sport=1000, dport=2000, seq=5, flags="PA") / b"hello", UDP(sport=1, dport=2) / b"xyz"])
def test_our_checksum_equals_scapys(layer):
    pkt = IP(src="192.0.2.1", dst="198.51.100.7") / layer
    built = IP(bytes(pkt))  # scapy fills in the checksum when building
    segment = bytes(built)[20:]
    proto = built.proto
    ours = transport_checksum("192.0.2.1", "198.51.100.7", proto, segment)
    theirs = built[TCP].chksum if TCP in built else built[UDP].chksum
    assert ours == theirs
    # and a segment carrying its correct checksum sums to 0xffff with its pseudo-header (RFC 1071 §1)
    assert ones_complement_sum(pseudo_header(built.src, built.dst, proto, len(segment)) + segment) == 0xFFFF


def test_partial_checksum_is_the_pseudo_header_sum():
    assert partial_checksum("127.0.0.1", "127.0.0.1", 6, 40) == 0xFE30


def test_header_diagrams_draw_every_field():
    for layout in LAYOUTS.values():
        fig = header_diagram(layout)
        texts = {t.get_text() for t in fig.axes[0].texts}
        for f in layout.fields:
            assert f.name in texts or f.name.replace(" ", "\n") in texts


# -- experiments ----------------------------------------------------------------------------------


@pytest.mark.replayable
def test_tcp_conversation_handshake_seq_ack_and_syn_options():
    conv = tcp_conversation()
    assert conv.received == b"onetwothree"
    rows = conv.capture.table()
    assert [r.flags for r in rows[:3]] == ["S", "SA", "A"]
    data = conv.data_rows()
    assert [(r.seq, r.payload) for r in data] == [(1, 3), (4, 3), (7, 5)]
    (_, _, cisn, _), (_, _, sisn, ack) = conv.absolute()[:2]
    assert ack == (cisn + 1) % 2**32
    names = [n for n, _ in conv.syn_options()]
    assert "MSS" in names and "Timestamp" in names
    assert dict(conv.syn_options())["MSS"] == 65495  # loopback MTU 65536 - 20 - 20
    fins = [r for r in rows if "F" in r.flags]
    assert len(fins) == 2 and fins[0].seq == 12


@pytest.mark.replayable
def test_captured_checksums_are_offloaded_and_a_flip_changes_the_full_one():
    conv = tcp_conversation()
    pkt = conv.capture.packets[conv.data_rows()[0].no - 1]
    check = check_checksum(pkt)
    rebuilt = Ether(bytes(pkt))
    del rebuilt[TCP].chksum
    assert Ether(bytes(rebuilt))[TCP].chksum == check.full
    assert check.offloaded or check.complete  # loopback: offloaded (pseudo-header only)
    flipped = check_checksum(pkt, flip=len(pkt[TCP]) - 1)
    assert flipped.full != check.full and flipped.field == check.field
    assert "checksum field" in repr(check)


def test_complete_checksum_is_recognised():
    built = Ether(bytes(Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / UDP(sport=1, dport=2) / b"x"))
    check = check_checksum(built)
    assert check.complete and not check.offloaded
    with pytest.raises(ValueError):
        check_checksum(Ether() / IP(proto=1) / b"12345678")


def test_udp_keeps_boundaries_tcp_does_not():
    assert message_boundaries() == {"UDP": [b"one", b"two", b"three"], "TCP": [b"onetwothree"]}


@pytest.mark.replayable
def test_nobody_listening():
    r = refused()
    assert r.udp_unconnected is None
    assert r.udp_connected == "ConnectionRefusedError" and r.tcp == "ConnectionRefusedError"
    protos = [row.proto + row.flags for row in r.capture.table()]
    assert protos == ["UDP", "ICMP", "UDP", "ICMP", "TCPS", "TCPRA"]


def test_lossy_relay_is_seeded_and_bounded():
    a = lossy_relay(count=50, loss=0.2, seed=7)
    b = lossy_relay(count=50, loss=0.2, seed=7)
    assert a.missing == b.missing and 0 < len(a.missing) < 50
    assert sorted(a.received + a.missing) == list(range(50))
    assert lossy_relay(count=10, loss=0.0).missing == []
    assert len(lossy_relay(count=10, loss=1.0).received) == 0
    with pytest.raises(ValueError):
        lossy_relay(loss=1.5)


@pytest.mark.replayable
def test_costs_and_per_message_model():
    costs = transport_costs(tcp_conversation(), refused())
    assert costs.tcp_data_headers == 66 and costs.tcp_ack == 66 and costs.udp_headers == 42
    assert costs.tcp_setup == 74 + 74 + 66
    tcp1, udp = per_message(costs, 100, 1)
    assert udp.total == 142 and udp.payload == 100
    assert tcp1.total == pytest.approx(costs.tcp_setup + costs.tcp_teardown + 66 + 100 + 66, abs=0.2)
    tcp_many, _ = per_message(costs, 100, 1000)
    assert tcp_many.total < tcp1.total and tcp_many.total == pytest.approx(232 + (costs.tcp_setup + costs.tcp_teardown) / 1000, abs=0.2)
    with pytest.raises(ValueError):
        per_message(costs, 10, 0)


def test_latency_samples_and_rtt_model():
    threads = threading.active_count()
    run = latency(20)
    assert set(run.samples) == {"TCP, new connection", "TCP, reused connection", "UDP"}
    assert all(len(v) == 20 and all(0 < s < 5 for s in v) for v in run.samples.values())
    shifted = run.with_rtt(10)
    assert shifted["TCP, new connection"][0] == pytest.approx(run.samples["TCP, new connection"][0] * 1000 + 20)
    assert shifted["UDP"][0] == pytest.approx(run.samples["UDP"][0] * 1000 + 10)
    fig = latency_distributions(shifted)
    assert len(fig.axes[0].get_yticklabels()) == 3
    assert threading.active_count() == threads
    with pytest.raises(ValueError):
        latency(0)


def test_duplex_timeline_and_port_map_plots():
    from netcourse.traffic.packets import C2S, S2C, PacketRow

    rows = [PacketRow(i, i / 1000, C2S if i % 2 else S2C, "TCP", "a", "b", "PA", 0, 0, 14, 20, 32, 3) for i in range(1, 7)]
    fig = duplex_timeline(rows)
    assert len(fig.axes[0].collections) == 6
    fig = port_map([40000, 40002, 40010], ephemeral=(32768, 60999))
    assert fig.axes[0].get_ylim() == (0, 65535)
