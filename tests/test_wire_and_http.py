"""HTTP head/body split, bytes per layer, TCP_INFO, and the first experiment."""

from __future__ import annotations

import socket

import pytest

from netcourse import tcp_info
from netcourse.errors import HttpParseError
from netcourse.experiments import start_here
from netcourse.protocols.httpwire import parse_messages
from netcourse.runtime.tcpinfo import tcp_sockets
from netcourse.traffic.wire import from_capture, from_tcp_info

from .conftest import live


def test_parse_content_length_and_close_delimited():
    stream = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\n\r\nrest of it"
    first, second = parse_messages(stream, responses=True)
    assert first.head_bytes == len(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
    assert first.body == b"hello" and first.framing_bytes == 0
    assert second.body == b"rest of it"


def test_parse_chunked_rfc9112_section_7_1():
    stream = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\nT: 1\r\n\r\n"
    (msg,) = parse_messages(stream, responses=True)
    assert msg.body == b"Wikipedia"
    assert msg.framing_bytes == len(b"4\r\n\r\n5;x=y\r\n\r\n0\r\nT: 1\r\n\r\n")
    assert msg.header("transfer-encoding") == "chunked"


def test_requests_without_length_have_no_body_and_204_has_none():
    (req,) = parse_messages(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", responses=False)
    assert req.body == b"" and req.start_line == "GET / HTTP/1.1"
    (resp,) = parse_messages(b"HTTP/1.1 204 No Content\r\n\r\n", responses=True)
    assert resp.body == b""


@pytest.mark.parametrize(
    "bad",
    [b"GET / HTTP/1.1\r\nHost: a\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort",
     b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
     b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: \xc2\xb2\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"],
)
def test_malformed_messages_raise(bad):
    with pytest.raises(HttpParseError):
        parse_messages(bad, responses=True)


def test_request_bytes_are_fixed():
    req = start_here.build_request("127.0.0.1", 40000)
    assert len(req) == 101
    assert req.endswith(b"\r\n\r\n") and b"Host: 127.0.0.1:40000\r\n" in req


def test_tcp_info_and_socket_table_without_privileges():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()) as client:
            conn, _ = server.accept()
            with conn:
                client.sendall(b"x" * 10)
                assert conn.recv(10) == b"x" * 10
                info = tcp_info(client)
                client_port = client.getsockname()[1]
                states = {e.local[1]: e.state for e in tcp_sockets() if e.remote[1] == server.getsockname()[1]}
    assert info.state == "ESTABLISHED"
    assert info.bytes_sent == 10 and info.data_segs_out == 1
    assert info.segs_out >= 3  # SYN, ACK, data
    assert states[client_port] == "ESTABLISHED"


def test_first_exchange_counts_without_capture():
    wire = start_here.exchange_bytes(13, use_capture=False)
    assert wire.source == "TCP_INFO"
    assert wire.payload == 13
    assert wire.app_headers == len(start_here.build_request("127.0.0.1", 40000, "/hello?size=13")) + 140
    assert wire.packets >= 9 and wire.link == 14 * wire.packets and wire.ip == 20 * wire.packets
    with pytest.raises(ValueError):
        start_here.exchange_bytes(-1)


@live
@pytest.mark.parametrize("body", [0, 13, 50_000])
def test_capture_and_tcp_info_agree_on_bytes_per_layer(body):
    from netcourse import capture, serve

    with serve(start_here.make_hello_app()) as srv:
        with capture(srv.port) as cap:
            ex = start_here.http_exchange(srv, f"/hello?size={body}")
    a = from_capture(cap)
    b = from_tcp_info(ex.tcp, sent=ex.request, received=ex.response)
    assert a.layers() == b.layers() and a.packets == b.packets
    assert a.payload == body


@pytest.mark.replayable
def test_first_request_scenario_and_its_exercises():
    ex = start_here.first_request()
    assert ex.body == start_here.HELLO_BODY and len(ex.response_head) == 140
    assert ex.capture is not None and len(ex.capture) >= 9
    wire = ex.wire()
    assert wire.payload == 13 and wire.app_headers == 101 + 140
    q1 = start_here.exercise_client_bytes(ex)
    assert q1.check(...).pending and not q1.check("lots")


def test_heads_split_and_parse_in_one_place():
    from netcourse.protocols.httpwire import parse_head, split_head

    assert split_head(b"GET / HTTP/1.1\r\nHost: a") is None  # not yet whole
    head, rest = split_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY")
    assert rest == b"BODY" and parse_head(head).header("host") == "a"
    with pytest.raises(HttpParseError) as too_long:
        split_head(b"GET / HTTP/1.1\r\nX: " + b"a" * 100, max_size=64)
    assert too_long.value.status == 431
    with pytest.raises(HttpParseError, match="appears 2 times"):
        parse_head(b"GET / HTTP/1.1\r\nOrigin: a\r\nOrigin: b\r\n\r\n").header("Origin")
    with pytest.raises(HttpParseError, match="malformed header line"):
        parse_head(b"GET / HTTP/1.1\r\n folded: x\r\n\r\n")
