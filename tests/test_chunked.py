"""The chunked transfer coding (RFC 9112 §7.1): every split of the input, the grammar's corners, hostile
input refused with a reason, and aiohttp's own parser as an oracle."""

from __future__ import annotations

import random

import pytest

from netcourse.errors import ChunkedParseError
from netcourse.protocols.chunked import (
    LAST_CHUNK,
    Chunk,
    ChunkedDecoder,
    Data,
    End,
    Trailers,
    dechunk,
    encode_chunk,
    encode_chunked,
)

WIRE = b"5;note=x\r\nHello\r\n7\r\n, world\r\n0\r\nExpires: never\r\nX-Count:  2 \r\n\r\nNEXT"


def _decode_all(pieces: list[bytes], **limits) -> tuple[list, ChunkedDecoder]:
    d = ChunkedDecoder(**limits)
    events = []
    for p in pieces:
        events += d.feed(p)
    return events, d


def _merge(events: list) -> list:
    """Adjacent Data events joined (how the bytes were split must not matter)."""
    out = []
    for e in events:
        if isinstance(e, Data) and out and isinstance(out[-1], Data):
            out[-1] = Data(out[-1].data + e.data)
        else:
            out.append(e)
    return out


def test_events_in_order_with_extensions_trailers_and_what_follows():
    events, d = _decode_all([WIRE])
    assert events == [Chunk(5, (("note", "x"),)), Data(b"Hello"), Chunk(7), Data(b", world"), Chunk(0),
                      Trailers((("Expires", "never"), ("X-Count", "2"))), End()]
    assert d.done and d.unused == b"NEXT" and d.wire_bytes == len(WIRE) - 4


@pytest.mark.parametrize("cut", range(len(WIRE) + 1))
def test_every_split_gives_the_same_events(cut):
    whole, _ = _decode_all([WIRE])
    events, d = _decode_all([WIRE[:cut], WIRE[cut:]])
    assert _merge(events) == whole and d.unused == b"NEXT"


def test_one_byte_at_a_time_and_random_pieces():
    rng = random.Random(5)
    for _ in range(50):
        pieces = [rng.randbytes(rng.randint(1, 300)) for _ in range(rng.randint(0, 6))]
        wire = encode_chunked(pieces, trailers=[("T", "1")] if rng.random() < 0.5 else [])
        events, d = _decode_all([wire[i:i + 1] for i in range(len(wire))])
        assert b"".join(e.data for e in events if isinstance(e, Data)) == b"".join(pieces)
        assert d.done and isinstance(events[-1], End)
        assert dechunk(wire) == b"".join(pieces)


def test_hex_digits_in_either_case_and_leading_zeros():
    assert dechunk(b"a\r\n0123456789\r\nA\r\n0123456789\r\n000\r\n\r\n") == b"0123456789" * 2
    assert dechunk(b"0001F\r\n" + b"x" * 31 + b"\r\n0\r\n\r\n") == b"x" * 31
    assert dechunk(b'3 ; a = "q\\"x" ;b\r\nabc\r\n0\r\n\r\n') == b"abc"  # BWS and a quoted extension value


def test_encoder_writes_hex_sizes_and_refuses_an_empty_chunk():
    assert encode_chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    assert encode_chunked([b"Hi", b"", b"!"]) == b"2\r\nHi\r\n1\r\n!\r\n" + LAST_CHUNK
    with pytest.raises(ValueError):
        encode_chunk(b"")


@pytest.mark.parametrize("wire, words", [
    (b"zz\r\nab\r\n", "not hexadecimal"),
    (b"-5\r\nhello\r\n", "not hexadecimal"),
    (b"0x5\r\nhello\r\n", "not hexadecimal"),
    (b"ffffffffffffffffff\r\n", "over the limit"),
    (b"5\r\nhelloXX0\r\n\r\n", "expected CRLF"),
    (b"5\nhello\n", "bare LF"),
    (b"5" + b";a" * 600 + b"\r\n", "over the limit of 1024"),
    (b"5" * 1100, "longer than 1024 bytes"),
    (b"0\r\nno colon here\r\n\r\n", "bad trailer"),
    (b"5;=x\r\n", "chunk extension"),
    (b"5 \r\nhello\r\n", "chunk extension"),  # whitespace only before a ';' (BWS), never alone
    (b'5;a="x\x01"\r\nhello\r\n', "chunk extension"),  # a control character in a quoted value
    (b"0\r\nA: b\x00c\r\n\r\n", "bad trailer"),
    (b"0\r\nA: b\rc\r\n\r\n", "bad trailer"),
])
def test_bad_input_is_refused_with_the_problem_named(wire, words):
    with pytest.raises(ChunkedParseError, match=words) as info:
        _decode_all([wire])
    assert info.value.status == 400


def test_a_size_line_exactly_at_the_limit_passes_whatever_the_split():
    line = b"1;" + b"x" * 1022  # 1,024 bytes, the limit
    wire = line + b"\r\n" + b"a\r\n0\r\n\r\n"
    for cut in range(len(wire) + 1):
        events, _ = _decode_all([wire[:cut], wire[cut:]])  # the CR at byte 1,024 may arrive without its LF
        assert type(events[-1]).__name__ == "End" and b"".join(e.data for e in events if isinstance(e, Data)) == b"a"
    with pytest.raises(ChunkedParseError, match="longer than 1024"):
        _decode_all([b"1;" + b"x" * 1023 + b"\r", b"\n"])  # 1,025 bytes before the CRLF


def test_limits_are_keyword_options():
    with pytest.raises(ChunkedParseError, match="over the limit of 16"):
        ChunkedDecoder(max_size=16).feed(b"11\r\n")
    with pytest.raises(ChunkedParseError, match="over the limit of 8"):
        ChunkedDecoder(max_line=8).feed(b"5;abcdefgh\r\n")
    with pytest.raises(ChunkedParseError, match="trailer section"):
        ChunkedDecoder(max_trailers=10).feed(b"0\r\nA: 1\r\nB: 2\r\n\r\n")
    with pytest.raises(ChunkedParseError, match="cut short"):
        dechunk(b"5\r\nhello\r\n")
    with pytest.raises(ChunkedParseError, match="follow the end"):
        dechunk(b"0\r\n\r\nextra")


def test_aiohttp_reads_the_same_body_from_what_we_encode():
    """aiohttp's client as an oracle: a raw server writes our encoding, in random pieces; aiohttp dechunks it."""
    import asyncio

    import aiohttp

    from netcourse.runtime.server import serve
    from netcourse.runtime.waiting import run_async

    rng = random.Random(9)
    bodies = [[rng.randbytes(rng.randint(1, 3000)) for _ in range(rng.randint(1, 5))] for _ in range(10)]
    wires = [encode_chunked(pieces, trailers=[("X-Sum", str(len(pieces)))]) for pieces in bodies]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for wire in wires:
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            cuts = sorted(rng.sample(range(1, len(wire)), 3))
            for a, b in zip([0, *cuts], [*cuts, len(wire)]):
                writer.write(wire[a:b])
                await writer.drain()
        writer.close()

    async def client(port: int) -> list[bytes]:
        async with aiohttp.ClientSession() as session:
            return [await (await session.get(f"http://127.0.0.1:{port}/")).read() for _ in wires]

    with serve(handler) as srv:
        got = run_async(client(srv.port), 20)
    assert got == [b"".join(p) for p in bodies]


def test_many_trailer_lines_are_a_loop_not_a_recursion():
    events, d = _decode_all([b"0\r\n" + b"a:\r\n" * 1100 + b"\r\n"])
    assert d.done and isinstance(events[-1], End) and len(events[-2].fields) == 1100
