"""The sans-I/O layer's edges (../shared/reviews/code.md §3): a role that must be exact, decoders that stay
failed, RFC 9112 §6.3 framing, one error tree that says what to send back. Each failed before its fix."""

from __future__ import annotations

import pytest

from netcourse import errors
from netcourse.protocols import beat, chunked, httpwire, sse, tlsrecord, wsconn, wsframe
from netcourse.protocols.wsconn import Close, Connection, Message, State
from netcourse.protocols.wsframe import Opcode, Role


def test_a_mistyped_role_is_refused_not_half_a_client():
    for wrong in ("Server", "SERVER", "srv", ""):
        with pytest.raises(ValueError, match="role must be"):
            Connection(wrong)
    assert Connection("server").role is Role.SERVER and Connection(Role.CLIENT).role is Role.CLIENT


def test_the_documented_echo_loop_survives_a_message_and_a_close_in_one_read():
    client, server = Connection("client"), Connection("server")
    wire = client.send(Message(Opcode.TEXT, b"hi")) + client.send(Close(1000, "bye"))
    sent = b""
    for event in server.receive_data(wire):  # the loop of wsconn's docstring
        if isinstance(event, Message) and server.state is State.OPEN:
            sent += server.send(Message(event.opcode, event.payload))
    sent += server.data_to_send()
    assert server.state is State.CLOSED and sent  # the close echo went out, and nothing raised


@pytest.mark.parametrize("make, bad, good", [
    (chunked.ChunkedDecoder, b"zz\r\n", b"3\r\nabc\r\n0\r\n\r\n"),
    (lambda: sse.SSEDecoder(max_line=8), b"data: " + b"x" * 20, b"data: ok\n\n"),
    (tlsrecord.RecordDecoder, b"\x99\x03\x03\x00\x01x", b"\x17\x03\x03\x00\x01x"),
    (beat.Decoder, b"\x00\x00", beat.encode(beat.Kind.PING, b"1")),
])
def test_a_decoder_that_failed_stays_failed(make, bad, good):
    decoder = make()
    with pytest.raises(errors.ProtocolError) as first:
        decoder.feed(bad)
    with pytest.raises(type(first.value)):  # valid bytes after the failure are refused too
        decoder.feed(good)
    assert decoder.failed is first.value


def test_an_event_stream_starts_afresh_on_a_new_connection():
    decoder = sse.SSEDecoder(max_line=8)
    with pytest.raises(errors.SSEParseError):
        decoder.feed(b"data: " + b"x" * 20)
    decoder.end_of_stream()
    assert [e.data for e in decoder.feed(b"data: ok\n\n")] == ["ok"]


def _framed(head: bytes, body: bytes, *, responses: bool = True) -> list[httpwire.HttpMessage]:
    return httpwire.parse_messages(head + b"\r\n\r\n" + body, responses=responses)


def test_framing_follows_rfc_9112_section_6_3():
    with pytest.raises(errors.HttpParseError, match="not one number"):
        _framed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 3", b"abc")
    assert _framed(b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3", b"abc")[0].body == b"abc"  # the same number twice
    with pytest.raises(errors.HttpParseError, match="does not end in chunked"):
        _framed(b"POST / HTTP/1.1\r\nTransfer-Encoding: notchunked", b"3\r\nabc\r\n0\r\n\r\n", responses=False)
    odd = _framed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: notchunked", b"3\r\nabc\r\n0\r\n\r\n")
    assert odd[0].body == b"3\r\nabc\r\n0\r\n\r\n"  # not chunked: the body runs to the end of the connection
    both = _framed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked", b"3\r\nabc\r\n0\r\n\r\n")
    assert both[0].body == b"abc"  # Transfer-Encoding wins over Content-Length
    split = _framed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked", b"0\r\n\r\n")
    assert split[0].body == b""  # two lines form one list, and chunked is last


def test_one_error_tree_says_what_to_send_back():
    classes = [errors.HttpParseError, errors.ChunkedParseError, errors.HandshakeError, errors.FrameError,
               errors.SSEParseError, errors.TLSRecordError, errors.BeatProtocolError, errors.SignatureError]
    for cls in classes:
        assert issubclass(cls, errors.ProtocolError) and issubclass(cls, errors.NetcourseError)
        assert issubclass(cls, ValueError)  # callers that catch ValueError keep working
    assert issubclass(errors.CursorTooOld, errors.NetcourseError) and errors.CursorTooOld.status == 410
    assert issubclass(errors.EndpointRefused, errors.NetcourseError)
    with pytest.raises(errors.HttpParseError) as info:
        httpwire.split_head(b"GET / HTTP/1.1\r\nX: " + b"a" * 9000, max_size=8192)
    assert info.value.status == 431
    with pytest.raises(errors.FrameError) as info:
        wsframe.FrameDecoder("server", max_size=10).feed(wsframe.encode(wsframe.Frame(Opcode.TEXT, b"x" * 11),
                                                                      mask=True))
    assert info.value.close_code == 1009
    assert errors.TLSRecordError("x").alert == 50 and errors.SignatureError("x").status == 401
    with pytest.raises(errors.HandshakeError) as info:
        wsconn.accept_request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", allowed_origins=None)
    assert info.value.status == 400
