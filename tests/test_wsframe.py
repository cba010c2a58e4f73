"""The WebSocket codec against RFC 6455's own examples, round-trip properties, and strict checks."""

from __future__ import annotations

import random

import pytest

from netcourse.errors import FrameError
from netcourse.protocols.wsframe import (
    CloseCode,
    Frame,
    FrameDecoder,
    Opcode,
    accept_key,
    apply_mask,
    close_payload,
    encode,
    header_length,
    parse_close,
)

KEY = bytes.fromhex("37fa213d")  # the masking key of RFC 6455 §5.7's examples


def test_rfc6455_section_1_3_accept_key():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


# RFC 6455 §5.7, every example.
SECTION_5_7 = [
    ("single-frame unmasked text", Frame(Opcode.TEXT, b"Hello"), None, "810548656c6c6f"),
    ("single-frame masked text", Frame(Opcode.TEXT, b"Hello"), KEY, "818537fa213d7f9f4d5158"),
    ("fragment 1 of unmasked text", Frame(Opcode.TEXT, b"Hel", fin=False), None, "010348656c"),
    ("fragment 2 of unmasked text", Frame(Opcode.CONTINUATION, b"lo"), None, "80026c6f"),
    ("unmasked ping", Frame(Opcode.PING, b"Hello"), None, "890548656c6c6f"),
    ("masked pong", Frame(Opcode.PONG, b"Hello"), KEY, "8a8537fa213d7f9f4d5158"),
]


@pytest.mark.parametrize("name, frame, key, wire", SECTION_5_7, ids=[c[0] for c in SECTION_5_7])
def test_rfc6455_section_5_7_examples_encode(name, frame, key, wire):
    assert encode(frame, mask_key=key).hex() == wire


@pytest.mark.parametrize("name, frame, key, wire", SECTION_5_7, ids=[c[0] for c in SECTION_5_7])
def test_rfc6455_section_5_7_examples_decode(name, frame, key, wire):
    role = "server" if key else "client"
    decoder = FrameDecoder(role)
    if frame.opcode == Opcode.CONTINUATION:  # needs its first fragment first
        decoder.feed(bytes.fromhex("010348656c"))
    assert decoder.feed(bytes.fromhex(wire)) == [frame]


def test_rfc6455_section_5_7_long_lengths():
    f256 = Frame(Opcode.BINARY, bytes(256))
    wire = encode(f256)
    assert wire[:4] == bytes.fromhex("827e0100") and len(wire) == 4 + 256
    f64k = Frame(Opcode.BINARY, bytes(65536))
    wire = encode(f64k)
    assert wire[:10] == bytes.fromhex("827f0000000000010000") and len(wire) == 10 + 65536
    assert FrameDecoder("client", max_size=1 << 17).feed(wire) == [f64k]


def test_header_lengths():
    assert [header_length(n, False) for n in (0, 125, 126, 65535, 65536)] == [2, 2, 4, 4, 10]
    assert header_length(5, True) == 6 and header_length(70000, True) == 14


def test_masking_is_its_own_inverse_and_keys_are_fresh():
    assert apply_mask(apply_mask(b"attack at dawn", KEY), KEY) == b"attack at dawn"
    keys = {encode(Frame(Opcode.TEXT, b"x"), mask=True)[2:6] for _ in range(50)}
    assert len(keys) == 50
    with pytest.raises(ValueError):
        apply_mask(b"x", b"123")


def test_round_trip_any_payload_any_chunking():
    rng = random.Random(6455)
    for _ in range(300):
        size = rng.choice([0, 1, 125, 126, 127, 65535, 65536, rng.randint(0, 70000)])
        payload = rng.randbytes(size)
        opcode = rng.choice([Opcode.BINARY, Opcode.TEXT]) if size > 125 else rng.choice(list(Opcode)[1:])
        if opcode == Opcode.TEXT:
            payload = ("é" * (size // 2)).encode()
        if opcode == Opcode.CLOSE:
            payload = close_payload(1000, "bye")
        frame = Frame(opcode, payload)
        masked = rng.random() < 0.5
        wire = encode(frame, mask=masked)
        decoder = FrameDecoder("server" if masked else "client")
        out, pos = [], 0
        while pos < len(wire):  # random chunking, including 1-byte pieces
            step = rng.choice([1, 2, 3, 7, 100, 4096, len(wire)])
            out += decoder.feed(wire[pos : pos + step])
            pos += step
        assert out == [frame]


def test_fragmented_message_with_a_ping_in_between():
    d = FrameDecoder("client")
    wire = (encode(Frame(Opcode.TEXT, b"Hel", fin=False)) + encode(Frame(Opcode.PING, b"?"))
            + encode(Frame(Opcode.CONTINUATION, b"lo")))
    assert [f.opcode for f in d.feed(wire)] == [Opcode.TEXT, Opcode.PING, Opcode.CONTINUATION]


@pytest.mark.parametrize(
    "role, wire, code",
    [
        ("server", encode(Frame(Opcode.TEXT, b"hi")), 1002),  # unmasked from a client
        ("client", encode(Frame(Opcode.TEXT, b"hi"), mask=True), 1002),  # masked from a server
        ("client", bytes([0xC1, 0x00]), 1002),  # RSV1 without an extension
        ("client", bytes([0x83, 0x00]), 1002),  # reserved opcode 0x3
        ("client", bytes([0x09, 0x00]), 1002),  # fragmented ping
        ("client", bytes([0x89, 0x7E, 0x00, 0x7E]) + bytes(126), 1002),  # control frame > 125
        ("client", bytes([0x82, 0x7E, 0x00, 0x05]) + bytes(5), 1002),  # non-minimal 16-bit length
        ("client", bytes([0x82, 0x7F]) + (1 << 63).to_bytes(8, "big"), 1002),  # 64-bit top bit
        ("client", bytes([0x80, 0x01, 0x41]), 1002),  # continuation with nothing to continue
        ("client", bytes([0x01, 0x01, 0x41, 0x81, 0x01, 0x41]), 1002),  # new message mid-fragment
        ("client", bytes([0x81, 0x02, 0xC3, 0x28]), 1007),  # invalid UTF-8 text
        ("client", bytes([0x88, 0x01, 0x03]), 1002),  # close payload of 1 byte
        ("client", bytes([0x88, 0x02, 0x03, 0xED]), 1002),  # close code 1005 on the wire
        ("client", bytes([0x88, 0x04, 0x03, 0xE8, 0xC3, 0x28]), 1007),  # close reason not UTF-8
    ],
)
def test_strict_decoding_gives_the_right_close_code(role, wire, code):
    decoder = FrameDecoder(role)
    with pytest.raises(FrameError) as info:
        decoder.feed(wire)
    assert info.value.close_code == code
    with pytest.raises(FrameError):  # and it stays failed
        decoder.feed(b"")


def test_message_too_big():
    d = FrameDecoder("client", max_size=10)
    d.feed(encode(Frame(Opcode.BINARY, bytes(6), fin=False)))
    with pytest.raises(FrameError) as info:
        d.feed(encode(Frame(Opcode.CONTINUATION, bytes(6))))
    assert info.value.close_code == CloseCode.MESSAGE_TOO_BIG


def test_close_payloads():
    assert parse_close(close_payload(1000, "done")) == (1000, "done")
    assert parse_close(b"") == (1005, "")
    assert parse_close(close_payload(4000)) == (4000, "")
    with pytest.raises(FrameError):
        close_payload(1000, "x" * 124)
    with pytest.raises(FrameError):
        Frame(Opcode.PING, bytes(126))
    with pytest.raises(ValueError):
        FrameDecoder("proxy")
