"""HTTP/2 on the wire (issue 29): the course's frame reader against RFC 9113's layouts and an independent
implementation (hyperframe, which h2 uses), and HPACK against RFC 7541 Appendix C."""

from __future__ import annotations

import h2.config
import h2.connection
import hpack
import pytest
from hyperframe import frame as hf

from netcourse.errors import H2FrameError
from netcourse.protocols.h2frame import (
    PREFACE,
    ErrorCode,
    Flag,
    Frame,
    FrameDecoder,
    FrameType,
    encode,
    settings,
)


def test_the_nine_byte_header_is_laid_out_as_rfc_9113_section_4_1_says():
    # SETTINGS_MAX_CONCURRENT_STREAMS (0x3) = 100: length 6, type 4, no flags, stream 0, then id and value.
    assert encode(settings({0x3: 100})) == bytes.fromhex("000006" "04" "00" "00000000" "0003" "00000064")
    assert encode(settings(ack=True)) == bytes.fromhex("000000" "04" "01" "00000000")
    # A 70,000-byte DATA frame on stream 3, END_STREAM: the length takes all 24 bits' worth of room.
    big = encode(Frame(FrameType.DATA, Flag.END_STREAM, 3, b"x" * 70_000))
    assert big[:9] == bytes.fromhex("011170" "00" "01" "00000003")
    with pytest.raises(ValueError):
        encode(Frame(FrameType.DATA, 0, 1 << 31, b""))


def _oracle_frames() -> list[hf.Frame]:
    data = hf.DataFrame(1, data=b"hello", flags=["END_STREAM"])
    headers = hf.HeadersFrame(3, data=b"\x82\x86\x84", flags=["END_HEADERS"])
    window = hf.WindowUpdateFrame(0, window_increment=65_535)
    ping = hf.PingFrame(0, opaque_data=b"12345678", flags=["ACK"])
    goaway = hf.GoAwayFrame(0, last_stream_id=5, error_code=0xB)
    reset = hf.RstStreamFrame(7, error_code=0x8)
    table = hf.SettingsFrame(0, settings={hf.SettingsFrame.MAX_CONCURRENT_STREAMS: 100,
                                          hf.SettingsFrame.INITIAL_WINDOW_SIZE: 1 << 20})
    return [data, headers, window, ping, goaway, reset, table]


def test_the_decoder_reads_what_an_independent_implementation_writes_byte_by_byte():
    wire = b"".join(f.serialize() for f in _oracle_frames())
    decoder = FrameDecoder(max_frame_size=1 << 20)
    got = []
    for i in range(len(wire)):  # one byte at a time: a frame split anywhere still arrives whole
        got += decoder.feed(wire[i:i + 1])
    assert [(f.type, f.stream) for f in got] == [(o.type, o.stream_id) for o in _oracle_frames()]
    assert [f.describe() for f in got] == [
        "DATA stream 1 [END_STREAM]: 5 bytes",
        "HEADERS stream 3 [END_HEADERS]: a 3-byte header block (HPACK)",
        "WINDOW_UPDATE stream 0: +65,535 bytes of window",
        "PING stream 0 [ACK]: 3132333435363738",
        "GOAWAY stream 0: last stream 5, ENHANCE_YOUR_CALM",
        "RST_STREAM stream 7: CANCEL",
        "SETTINGS stream 0: MAX_CONCURRENT_STREAMS=100, INITIAL_WINDOW_SIZE=1,048,576",
    ]
    for ours in got:  # and the course's encoder writes the same bytes back
        theirs, length = hf.Frame.parse_frame_header(memoryview(encode(ours)[:9]))
        assert (theirs.type, theirs.stream_id, length) == (ours.type, ours.stream, len(ours.payload))
    assert encode(got[0]) == _oracle_frames()[0].serialize()


def test_a_client_from_the_h2_library_opens_with_the_preface_and_its_settings():
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a")],
                        end_stream=True)
    wire = client.data_to_send()
    assert wire.startswith(PREFACE)
    frames = FrameDecoder(preface=True).feed(wire)
    assert [f.name for f in frames] == ["SETTINGS", "HEADERS"]
    assert frames[1].stream == 1 and frames[1].flag_names() == ["END_STREAM", "END_HEADERS"]


@pytest.mark.parametrize("wire, code, says", [
    (b"GET / HTTP/1.1\r\n\r\n", ErrorCode.PROTOCOL_ERROR, "preface"),
    (encode(Frame(FrameType.DATA, 0, 1, b"x" * 16_385)), ErrorCode.FRAME_SIZE_ERROR, "over this side's maximum"),
    (encode(Frame(FrameType.SETTINGS, 0, 1, b"")), ErrorCode.PROTOCOL_ERROR, "stream 0"),
    (encode(Frame(FrameType.PING, 0, 0, b"1234567")), ErrorCode.FRAME_SIZE_ERROR, "8 bytes"),
    (encode(Frame(FrameType.DATA, 0, 0, b"x")), ErrorCode.PROTOCOL_ERROR, "must name a stream"),
    (encode(Frame(FrameType.SETTINGS, Flag.ACK, 0, b"\x00" * 6)), ErrorCode.FRAME_SIZE_ERROR, "acknowledgement"),
    (encode(Frame(FrameType.SETTINGS, 0, 0, b"\x00" * 5)), ErrorCode.FRAME_SIZE_ERROR, "six bytes"),
    (encode(Frame(FrameType.WINDOW_UPDATE, 0, 0, b"\x00" * 4)), ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0"),
    (encode(Frame(FrameType.GOAWAY, 0, 0, b"\x00" * 4)), ErrorCode.FRAME_SIZE_ERROR, "at least 8"),
    (encode(Frame(FrameType.DATA, Flag.PADDED, 1, b"\x05abc")), ErrorCode.PROTOCOL_ERROR, "padding"),
    (encode(settings({0x2: 7})), ErrorCode.PROTOCOL_ERROR, "ENABLE_PUSH is 0 or 1"),
    (encode(settings({0x4: 1 << 31})), ErrorCode.FLOW_CONTROL_ERROR, "over 2\\^31 - 1"),
    (encode(settings({0x5: 1})), ErrorCode.PROTOCOL_ERROR, "MAX_FRAME_SIZE"),
    (encode(Frame(FrameType.PRIORITY, 0, 3, b"\x00\x00\x00\x03\x10")), ErrorCode.PROTOCOL_ERROR, "depend on itself"),
    (encode(Frame(FrameType.HEADERS, 0, 1, b"\x82")) + encode(Frame(FrameType.DATA, 0, 1, b"x")),
     ErrorCode.PROTOCOL_ERROR, "interrupted"),
    (encode(Frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, b"\x82")), ErrorCode.PROTOCOL_ERROR, "no header block"),
])
def test_bytes_that_break_the_framing_name_the_rule_and_the_goaway_code_and_the_decoder_stays_failed(wire, code, says):
    """Each row breaks one rule of RFC 9113 §4-§6 (all found by hand or by an attacker's fuzzing)."""
    decoder = FrameDecoder(preface=wire.startswith(b"GET"))
    with pytest.raises(H2FrameError, match=says) as caught:
        decoder.feed(wire)
    assert caught.value.error_code == code
    with pytest.raises(H2FrameError):
        decoder.feed(encode(settings(ack=True)))


def test_an_unknown_frame_type_is_kept_and_ignored():
    frames = FrameDecoder().feed(encode(Frame(0xFA, 0, 0, b"??")) + encode(settings(ack=True)))
    assert frames[0].name.startswith("type 0xfa") and frames[1].describe() == "SETTINGS stream 0 [ACK]"


REQUESTS = [  # RFC 7541 Appendix C.3 and C.4: three requests on one connection
    [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")],
    [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com"),
     ("cache-control", "no-cache")],
    [(":method", "GET"), (":scheme", "https"), (":path", "/index.html"), (":authority", "www.example.com"),
     ("custom-key", "custom-value")],
]
PLAIN = ["828684410f7777772e6578616d706c652e636f6d", "828684be58086e6f2d6361636865",
         "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565"]  # C.3.1-C.3.3
HUFFMAN = ["828684418cf1e3c2e5f23a6ba0ab90f4ff", "828684be5886a8eb10649cbf",
           "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"]  # C.4.1-C.4.3
TABLE_SIZES = [57, 110, 164]  # the dynamic table after each request (the RFC's "Table size")


@pytest.mark.parametrize("huffman, expected", [(False, PLAIN), (True, HUFFMAN)])
def test_hpack_encodes_rfc_7541_appendix_c_and_the_second_request_shrinks(huffman, expected):
    encoder, decoder = hpack.Encoder(), hpack.Decoder()
    for headers, hex_block, table in zip(REQUESTS, expected, TABLE_SIZES):
        block = encoder.encode(headers, huffman=huffman)
        assert block.hex() == hex_block
        assert decoder.decode(block) == headers
        assert decoder.header_table._current_size == table  # noqa: SLF001 (the RFC's figure; no public getter)
    # The dynamic table at work: the same four fields again are four one-byte indexes.
    again = hpack.Encoder()
    first, second = again.encode(REQUESTS[0], huffman=huffman), again.encode(REQUESTS[0], huffman=huffman)
    assert len(first) == len(bytes.fromhex(expected[0])) and second.hex() == "828684be"


def test_a_header_block_may_continue_and_then_anything_may_follow():
    wire = (encode(Frame(FrameType.HEADERS, 0, 1, b"\x82")) + encode(Frame(FrameType.CONTINUATION, 0, 1, b"\x86"))
            + encode(Frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, b"\x84")) + encode(settings(ack=True)))
    assert [f.name for f in FrameDecoder().feed(wire)] == ["HEADERS", "CONTINUATION", "CONTINUATION", "SETTINGS"]
