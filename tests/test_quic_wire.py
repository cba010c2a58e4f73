"""QUIC on the wire (issue 29): the visible headers read by the course (RFC 9000 §16-17), and a first flight
captured live and decrypted with its key log."""

from __future__ import annotations

import shutil

import pytest

from netcourse.errors import QuicPacketError
from netcourse.protocols.quicpacket import parse_datagram, varint

from .conftest import live


@pytest.mark.parametrize("hex_bytes, value", [  # RFC 9000 Appendix A.1's examples
    ("c2197c5eff14e88c", 151_288_809_941_952_652), ("9d7f3e7d", 494_878_333), ("7bbd", 15_293), ("25", 37),
    ("4025", 37)])
def test_variable_length_integers_as_rfc_9000_appendix_a_1_gives_them(hex_bytes, value):
    data = bytes.fromhex(hex_bytes)
    assert varint(data, 0) == (value, len(data))


def _long(kind: int, dcid: bytes, scid: bytes, body: bytes, token: bytes = b"") -> bytes:
    head = bytes([0xC0 | kind << 4]) + (1).to_bytes(4, "big") + bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid
    if kind == 0:
        head += bytes([len(token)]) + token
    return head + bytes([0x40 | len(body) >> 8, len(body) & 0xFF]) + body  # a two-byte Length


def test_coalesced_packets_are_split_and_their_ids_read():
    client, server = bytes(range(8)), bytes(range(10, 18))
    datagram = (_long(0, client, server, b"\x00" * 100) + _long(2, client, server, b"\x01" * 50)
                + bytes([0x40]) + client + b"\x02" * 30)
    packets = parse_datagram(datagram)
    assert [p.kind for p in packets] == ["Initial", "Handshake", "1-RTT"]
    assert packets[0].dcid == client and packets[0].scid == server and packets[2].dcid == client
    assert sum(p.size for p in packets) == len(datagram)
    assert packets[0].describe() == f"Initial ({packets[0].size} B): DCID {client.hex()} SCID {server.hex()}"


@pytest.mark.parametrize("datagram, says", [
    (b"\xc0\x00\x00\x00", "shorter than its version"),
    (b"\xc0\x00\x00\x00\x01\x15" + b"\x00" * 30, "20 at most"),
    (b"\x00" + b"\x00" * 20, "fixed bit"),
    (_long(2, b"a" * 8, b"b" * 8, b"x" * 10)[:-5], "runs past the datagram"),
])
def test_bytes_that_are_not_quic_are_refused_with_the_rule(datagram, says):
    with pytest.raises(QuicPacketError, match=says):
        parse_datagram(datagram)


@live
@pytest.mark.slow
def test_a_first_flight_captured_shows_the_handshake_in_long_headers_then_short_ones():
    from netcourse.experiments.http2.quicwire import first_flight

    flight = first_flight()
    first, answer = flight.datagrams[0], flight.datagrams[1]
    assert first.direction == "C→S" and first.packets[0].kind == "Initial" and first.size >= 1200  # §14.1
    assert answer.direction == "S→C" and [p.kind for p in answer.packets][:2] == ["Initial", "Handshake"]
    server_id = answer.packets[0].scid
    later = [d for d in flight.datagrams[2:] if d.direction == "C→S" and d.packets[-1].kind == "1-RTT"]
    assert later and later[-1].packets[-1].dcid == server_id  # the client now names the server's chosen ID
    assert flight.decrypted and first.frames[0] == "CRYPTO" and first.numbers == [0]  # opened with the key log
    assert any("HANDSHAKE_DONE" in d.frames for d in flight.datagrams if d.direction == "S→C")
    assert [f for f in answer.frames if f.startswith("STREAM")] == ["STREAM 3", "STREAM 7", "STREAM 11"]  # H3, QPACK
    if shutil.which("tshark"):
        assert flight.tshark_agrees  # Wireshark reads the same frames in every datagram with the same key log


def test_frames_are_walked_as_rfc_9000_section_19_lays_them_out():
    from netcourse.protocols.quicpacket import frame_names

    ack = bytes([0x02, 0x05, 0x00, 0x00, 0x05])  # largest 5, delay 0, no extra ranges, first range 5
    crypto = bytes([0x06, 0x00, 0x03]) + b"abc"  # offset 0, length 3
    stream = bytes([0x0B, 0x04, 0x02]) + b"hi"  # STREAM with LEN (0x02) and FIN (0x01) on stream 4
    new_cid = bytes([0x18, 0x01, 0x00, 0x04]) + b"\x01\x02\x03\x04" + bytes(16)
    payload = ack + crypto + stream + new_cid + bytes([0x1E]) + bytes(5)
    assert frame_names(payload) == ["ACK", "CRYPTO", "STREAM 4", "NEW_CONNECTION_ID", "HANDSHAKE_DONE", "PADDING"]
    with pytest.raises(QuicPacketError, match="0x21"):
        frame_names(bytes([0x21]))
    with pytest.raises(QuicPacketError, match="runs past"):
        frame_names(bytes([0x06, 0x00, 0x09]) + b"abc")
