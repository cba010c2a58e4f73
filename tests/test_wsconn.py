"""The sans-I/O WebSocket connection: a client and a server paired in memory, no sockets."""

from __future__ import annotations

import pytest

from netcourse.errors import HandshakeError, ProtocolError
from netcourse.protocols.wsconn import (
    Close,
    CloseReceived,
    Connection,
    ConnectionFailed,
    Message,
    Ping,
    Pong,
    State,
    accept_request,
    check_response,
    client_request,
    new_key,
)
from netcourse.protocols.wsframe import Frame, Opcode, encode


def pair() -> tuple[Connection, Connection]:
    key = new_key()
    _, response = accept_request(client_request("127.0.0.1", 80, key), allowed_origins=None)
    check_response(response, key)
    return Connection("client"), Connection("server")


def test_messages_both_ways_masked_one_way_only():
    client, server = pair()
    wire = client.send(Message(Opcode.TEXT, b"hello"))
    assert wire[1] & 0x80  # the client's frames are masked (RFC 6455 §5.3)
    assert server.receive_data(wire) == [Message(Opcode.TEXT, b"hello")]
    back = server.send(Message(Opcode.BINARY, b"\x00\x01"))
    assert not back[1] & 0x80  # the server's are not
    assert client.receive_data(back) == [Message(Opcode.BINARY, b"\x00\x01")]


def test_fragments_are_joined_and_any_split_of_the_bytes_works():
    client, server = pair()
    wire = b"".join(
        client.send_frame(f)
        for f in (Frame(Opcode.TEXT, b"Hel", fin=False), Frame(Opcode.PING, b"p"),
                  Frame(Opcode.CONTINUATION, b"lo", fin=True))
    )
    events = []
    for i in range(len(wire)):  # one byte at a time
        events += server.receive_data(wire[i : i + 1])
    assert events == [Ping(b"p"), Message(Opcode.TEXT, b"Hello")]
    assert client.receive_data(server.data_to_send()) == [Pong(b"p")]  # the automatic pong


def test_close_handshake_started_by_the_client():
    client, server = pair()
    wire = client.send(Close(1000, "bye"))
    assert client.state is State.CLOSING
    assert server.receive_data(wire) == [CloseReceived(1000, "bye")]
    assert server.state is State.CLOSED  # it echoed the close (§5.5.1); now it closes TCP first
    assert client.receive_data(server.data_to_send()) == [CloseReceived(1000, "")]
    assert client.state is State.CLOSED
    with pytest.raises(ProtocolError, match="closed"):
        client.send(Message(Opcode.TEXT, b"too late"))


def test_a_close_without_a_code_is_answered_with_1000_and_seen_as_1005():
    client, server = pair()
    assert server.receive_data(encode(Frame(Opcode.CLOSE, b""), mask=True)) == [CloseReceived(1005, "")]
    assert client.receive_data(server.data_to_send()) == [CloseReceived(1000, "")]


def test_protocol_errors_come_after_the_good_frames_then_a_close_with_the_code():
    _, server = pair()
    good = encode(Frame(Opcode.TEXT, b"ok"), mask=True)
    unmasked = encode(Frame(Opcode.TEXT, b"x"))
    events = server.receive_data(good + unmasked)
    assert events[0] == Message(Opcode.TEXT, b"ok")
    assert isinstance(events[1], ConnectionFailed) and events[1].code == 1002
    reply = server.send(Message(Opcode.TEXT, b"answer to ok"))  # still allowed before the close goes out
    assert reply
    closing = Connection("client").receive_data(server.data_to_send())
    assert closing == [CloseReceived(1002, "a client's frames must be masked (§5.1)")]
    assert server.state is State.CLOSED  # §7.1.7: after failing, close TCP; read nothing more
    assert server.receive_data(good) == []  # nothing more is read from a failed peer


def test_bad_utf8_and_oversized_messages_have_their_own_codes():
    _, server = pair()
    assert server.receive_data(encode(Frame(Opcode.TEXT, b"\xc3\x28"), mask=True))[-1].code == 1007
    small = Connection("server", max_size=10)
    assert small.receive_data(encode(Frame(Opcode.BINARY, bytes(11)), mask=True))[-1].code == 1009


def test_fail_is_1011_for_a_broken_handler():
    _, server = pair()
    failed = server.fail(1011, "handler raised")
    assert failed == ConnectionFailed(1011, "handler raised")
    assert Connection("client").receive_data(server.data_to_send()) == [CloseReceived(1011, "handler raised")]


def test_handshake_checks_on_both_sides():
    key = new_key()
    request = client_request("127.0.0.1", 80, key, origin="http://127.0.0.1")
    _, response = accept_request(request, allowed_origins={"http://127.0.0.1"})
    check_response(response, key)
    with pytest.raises(HandshakeError, match="does not match"):
        check_response(response, new_key())
    with pytest.raises(HandshakeError) as refused:
        check_response(b"HTTP/1.1 403 Forbidden\r\n\r\n", key)
    assert refused.value.status == 403


def test_a_message_in_too_many_fragments_is_refused():
    _, server = pair()
    wire = encode(Frame(Opcode.TEXT, b"", fin=False), mask=True) + encode(Frame(Opcode.CONTINUATION, b"", fin=False), mask=True) * 1100
    events = server.receive_data(wire)
    assert isinstance(events[-1], ConnectionFailed) and events[-1].code == 1009
