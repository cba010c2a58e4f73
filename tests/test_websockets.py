"""The course's WebSocket server and client against independent implementations, on the wire."""

from __future__ import annotations

import base64

import aiohttp
import pytest
from aiohttp import web

from netcourse import serve
from netcourse.apps.wsserver import make_ws_handler
from netcourse.clients.websocket import RawClient
from netcourse.errors import HandshakeError
from netcourse.experiments.websockets.cost import latency, overhead
from netcourse.experiments.websockets.frames import (
    control_frames,
    exercise_decode,
    explain,
)
from netcourse.experiments.websockets.handshake import exercise_accept, handshake
from netcourse.experiments.websockets.held import idle_connections
from netcourse.experiments.websockets.security import security
from netcourse.protocols.wsconn import (
    CloseReceived,
    Message,
    Pong,
    accept_request,
    client_request,
)
from netcourse.protocols.wsframe import Frame, FrameDecoder, Opcode, accept_key, encode
from netcourse.runtime.waiting import run_async

from .conftest import retried

websockets_frames = pytest.importorskip("websockets.frames")
websockets_streams = pytest.importorskip("websockets.streams")


async def _aiohttp_echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type == aiohttp.WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


def test_our_client_codec_against_aiohttps_server():
    """aiohttp's server accepts our handshake and masked frames; its frames, read off the wire, decode."""
    app = web.Application()
    app.router.add_get("/ws", _aiohttp_echo)
    with serve(app) as srv:
        with RawClient(srv) as client:
            assert client.accepted and client.accept_header == accept_key(client.key)
            client.send(Frame(Opcode.TEXT, "héllo".encode()))
            client.send(Frame(Opcode.BINARY, bytes(range(256)) * 300))  # 76,800 bytes: 64-bit length
            client.send(Frame(Opcode.PING, b"p"))
            events = client.receive(3)
    assert events == [
        Message(Opcode.TEXT, "héllo".encode()),
        Message(Opcode.BINARY, bytes(range(256)) * 300),
        Pong(b"p"),
    ]


def test_aiohttps_client_against_our_server():
    """aiohttp's client (masked frames, its own handshake) talks to the course's server."""
    handler = make_ws_handler(allowed_origins=None, max_size=1 << 20)
    with serve(handler) as srv:

        async def go() -> list:
            async with aiohttp.ClientSession() as s:
                async with s.ws_connect(srv.url + "/ws", autoping=False) as ws:
                    await ws.send_str("hi")
                    a = await ws.receive()
                    await ws.send_bytes(b"\x00\x01" * 40000)
                    b = await ws.receive()
                    await ws.ping(b"x")
                    c = await ws.receive()
                    await ws.close()
                    return [a, b, c, ws.close_code]

        a, b, c, code = run_async(go(), timeout=20)
    assert a.data == "hi" and b.data == b"\x00\x01" * 40000
    assert c.type == aiohttp.WSMsgType.PONG and c.data == b"x"
    assert code == 1000
    assert handler.hub.count == 0


def test_codec_agrees_byte_for_byte_with_the_websockets_library():
    Wf = websockets_frames
    for payload in (b"", b"Hello", bytes(126), bytes(70000)):
        theirs = Wf.Frame(Wf.Opcode.BINARY, payload).serialize(mask=False)
        assert encode(Frame(Opcode.BINARY, payload)) == theirs
        masked = Wf.Frame(Wf.Opcode.TEXT, b"x" * len(payload)).serialize(mask=True)  # their random key
        assert FrameDecoder("server", max_size=1 << 20).feed(masked) == [Frame(Opcode.TEXT, b"x" * len(payload))]
        ours = encode(Frame(Opcode.BINARY, payload), mask=True)
        reader = websockets_streams.StreamReader()
        reader.feed_data(ours)
        parser = Wf.Frame.parse(reader.read_exact, mask=True)
        with pytest.raises(StopIteration) as done:
            next(parser)
        assert done.value.value.data == payload


def test_handshake_validation():
    key = base64.b64encode(bytes(16)).decode()
    good = client_request("127.0.0.1", 1, key, origin="http://a")
    assert accept_request(good, allowed_origins={"http://a"})[0] == key
    with pytest.raises(HandshakeError) as e:
        accept_request(good, allowed_origins={"http://b"})
    assert e.value.status == 403
    two_origins = good.replace(b"Origin: http://a", b"Origin: http://evil\r\nOrigin: http://a")
    with pytest.raises(HandshakeError, match="Origin header appears 2 times") as e:
        accept_request(two_origins, allowed_origins={"http://a"})
    assert e.value.status == 400
    for broken, status in (
        (good.replace(b"GET", b"PUT"), 400),
        (good.replace(b"Upgrade: websocket", b"Upgrade: h2c"), 400),
        (good.replace(b"Version: 13", b"Version: 8"), 426),
        (good.replace(key.encode(), b"short"), 400),
    ):
        with pytest.raises(HandshakeError) as e:
            accept_request(broken, allowed_origins=None)
        assert e.value.status == status


def test_security_outcomes():
    outcomes = {o.case: o.outcome for o in security()}
    assert outcomes["handshake from another site's page (Origin)"].startswith("HTTP/1.1 403")
    assert outcomes["unmasked client frame"] == "close 1002"
    assert outcomes["message over the 1 KiB limit"] == "close 1009"
    assert outcomes["text frame that is not UTF-8"] == "close 1007"


@pytest.mark.replayable
def test_handshake_and_control_frames_scenarios():
    run = handshake()
    assert run.accept == accept_key(run.key)
    assert run.reply == [Message(Opcode.TEXT, b"Hello"), CloseReceived(1000, "")]  # the server echoes the code
    assert run.sent.hex() == "818537fa213d7f9f4d5158"  # RFC 6455 §5.7, on our wire
    ctl = control_frames()
    assert [f.opcode for f in ctl.client_frames] == [Opcode.PING, Opcode.TEXT, Opcode.CONTINUATION, Opcode.CONTINUATION, Opcode.CLOSE]
    assert [f.opcode for f in ctl.server_frames] == [Opcode.PONG, Opcode.TEXT, Opcode.CLOSE]
    assert ctl.server_frames[1].payload == b"Hello, world"
    for cap in (run.capture, ctl.capture):  # RFC 6455 §7.1.1: the server closes TCP first
        fins = [r.direction for r in cap.table() if "F" in r.flags]
        assert fins[0] == "S→C", fins


def test_explain_overhead_latency_and_idle_cost():
    view = explain(encode(Frame(Opcode.TEXT, b"Hello"), mask_key=bytes.fromhex("37fa213d")))
    names = [f[0] for f in view.fields]
    assert names == ["FIN", "RSV1", "RSV2", "RSV3", "opcode", "MASK", "payload len", "masking key", "payload"]
    assert "37fa213d" in repr(view) and "<table>" in view._repr_html_()
    long_view = explain(encode(Frame(Opcode.BINARY, bytes(70000))))
    assert ("extended length", "70000 (64 bits)", 16, 64) in long_view.fields
    o = overhead(20)
    assert (o.ws_client, o.ws_server) == (6, 2) and o.http_total > 150
    lat = latency(20)
    assert all(len(v) == 20 for v in lat.values())
    cost = idle_connections(50)
    assert cost.connections == 50 and cost.python_bytes_per_connection > 1000 and cost.broadcast_s < 10


def test_exercises_accept_the_rfcs_own_answers():
    # Independent answers, not the functions that made the exercises: RFC 6455 §5.7's "Hello", and
    # the accept key computed here from the RFC's recipe with hashlib.
    import hashlib

    data = bytes.fromhex(exercise_decode().question.split("bytes ")[1].split(".")[0])
    key, body = data[2:6], data[6:]
    by_hand = bytes(b ^ key[i % 4] for i, b in enumerate(body)).decode()
    assert exercise_decode().check(by_hand) and not exercise_decode().check(by_hand.upper())
    assert by_hand != "Hello"  # not the RFC's example, which notebook 05 shows decoded
    q = exercise_accept("x3JJHMbDL1EzLkh9GBhXDw==")
    by_recipe = base64.b64encode(hashlib.sha1(b"x3JJHMbDL1EzLkh9GBhXDw==258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
    offered = dict(part.split(": ") for part in q.question.split("values: ")[1].split(". Which")[0].split("; "))
    right = [name for name, value in offered.items() if value == by_recipe]
    assert right == ["server 2"] and q.check(2) and q.check("server 2")
    assert "lower-cased" in repr(q.check(1)) and "hex" in repr(q.check(3))
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 §1.3


# -- regressions ----------------------------------------------------------------------------------


def _raw(srv, data: bytes, *, timeout: float = 3.0) -> bytes:
    """Send bytes on a fresh connection, half-close, and read everything until the server closes."""
    import socket

    with socket.create_connection((srv.host, srv.port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_a_valid_frame_before_a_bad_one_in_the_same_read_is_delivered():
    from netcourse.protocols.wsframe import FrameDecoder as Decoder

    key = base64.b64encode(bytes(16)).decode()
    good = encode(Frame(Opcode.TEXT, b"first"), mask=True)
    bad = encode(Frame(Opcode.TEXT, b"x"), mask=False)  # unmasked: 1002
    with serve(make_ws_handler()) as srv:
        answer = _raw(srv, client_request(srv.host, srv.port, key) + good + bad)
    head, _, frames = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    decoded = Decoder("client").feed(frames)
    assert decoded[0] == Frame(Opcode.TEXT, b"first")
    assert decoded[1].opcode == Opcode.CLOSE and decoded[1].payload[:2] == (1002).to_bytes(2, "big")


def test_an_over_long_handshake_head_answers_431():
    with serve(make_ws_handler()) as srv:
        answer = _raw(srv, b"GET /ws HTTP/1.1\r\nX-Pad: " + b"a" * 10_000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431")


def test_a_handler_that_raises_closes_with_1011():
    async def broken(opcode, payload):
        raise RuntimeError("bug in the app")

    with serve(make_ws_handler(on_message=broken)) as srv:
        with RawClient(srv) as client:
            client.send(Frame(Opcode.TEXT, b"hi"))
            events = client.receive(1)
    assert events == [CloseReceived(1011, "server error: RuntimeError")]


def test_broadcast_counts_only_connections_it_could_write_to():
    import asyncio

    from netcourse.apps.wsserver import Hub

    class Transport:
        def get_write_buffer_size(self) -> int:
            return 0

    class Broken:
        transport = Transport()

        def is_closing(self) -> bool:
            return False

        def write(self, data: bytes) -> None:
            pass

        async def drain(self) -> None:
            raise ConnectionResetError("gone")

    class Fine(Broken):
        async def drain(self) -> None:
            return None

    hub = Hub()
    hub.writers.update({Broken(), Fine(), Fine()})  # type: ignore[arg-type]
    assert asyncio.run(hub.broadcast(b"x")) == 2


@retried()
def test_close_handshake_with_the_websockets_library_is_quick():
    import time

    from websockets.sync.client import connect

    with serve(make_ws_handler()) as srv:
        with connect(f"ws://{srv.host}:{srv.port}/ws", open_timeout=5, close_timeout=5) as ws:
            ws.send("hi")
            assert ws.recv(timeout=5) == "hi"
            t = time.perf_counter()
        elapsed = time.perf_counter() - t
    assert elapsed < 0.5, f"close took {elapsed:.3f} s"  # behaviour bound; the figure is in make bench


@pytest.mark.slow
@retried()
def test_a_stalled_peer_does_not_hold_up_a_broadcast():
    import socket
    import time

    from netcourse.apps.wsserver import Hub
    from netcourse.runtime.waiting import wait_until

    hub = Hub(max_buffered=256 * 1024, write_timeout=0.5)
    with serve(make_ws_handler(hub, max_size=1 << 20)) as srv:
        stalled = socket.create_connection((srv.host, srv.port), timeout=5)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and it never reads
        stalled.sendall(client_request(srv.host, srv.port, base64.b64encode(bytes(16)).decode()))
        with RawClient(srv) as reader:
            assert wait_until(lambda: hub.count == 2, 5)
            payload = bytes(64 * 1024)
            t = time.perf_counter()
            delivered = []
            for _ in range(400):  # at most 25 MiB: more than the kernel's buffers for the stalled peer
                delivered.append(srv.run(hub.broadcast(payload), timeout=10))
                assert len(reader.receive(1)) == 1  # the healthy peer gets every one
                if hub.evicted:
                    break
            elapsed = time.perf_counter() - t
        stalled.close()
    assert hub.evicted == 1 and hub.closes[-1][0] == 1013
    assert delivered[0] == 2 and delivered[-1] == 1
    assert elapsed < 10  # bounded by the write deadline, not by the stalled peer


@retried()
def test_half_sent_handshakes_are_dropped_and_connections_capped():
    import socket
    import time

    with serve(make_ws_handler(handshake_timeout=0.3), max_connections=2) as srv:
        with socket.create_connection((srv.host, srv.port), timeout=5) as s:
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1")  # and nothing more
            t = time.perf_counter()
            assert s.recv(100) == b""  # the server gave up on it
            assert time.perf_counter() - t < 2
        with RawClient(srv) as a, RawClient(srv) as b:
            assert a.accepted and b.accepted
            with RawClient(srv) as c:  # a third makes room: the oldest busy connection goes
                assert c.accepted
            assert srv.admission.evictions == {"over the cap": 1}


# -- found by attacking the server (each failed before its fix) -------------------------------------


def _handshaken(srv):
    import socket

    s = socket.create_connection((srv.host, srv.port), timeout=5)
    s.sendall(client_request(srv.host, srv.port, base64.b64encode(bytes(16)).decode()))
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    return s


def test_broadcast_skips_peers_that_are_closing_and_never_raises():
    from netcourse.apps.wsserver import Hub
    from netcourse.protocols.wsframe import close_payload
    from netcourse.runtime.waiting import wait_until

    hub = Hub()
    with serve(make_ws_handler(hub)) as srv:
        closing, healthy = _handshaken(srv), _handshaken(srv)
        try:
            assert wait_until(lambda: hub.count == 2, 5)
            closing.sendall(encode(Frame(Opcode.CLOSE, close_payload(1000)), mask=True))  # and no FIN
            assert wait_until(lambda: hub.count == 1, 5)  # out of the hub as soon as it closes
            assert srv.run(hub.broadcast(b"news")) == 1
            data = b""
            closing.settimeout(1)
            while chunk := closing.recv(1000):
                data += chunk
            frames = FrameDecoder("client").feed(data)
            assert [f.opcode for f in frames] == [Opcode.CLOSE]  # nothing after the close (§5.5.1)
        finally:
            closing.close()
            healthy.close()


@retried()
def test_after_a_protocol_error_the_server_closes_at_once_whatever_the_peer_dribbles():
    import time

    with serve(make_ws_handler()) as srv:
        s = _handshaken(srv)
        try:
            s.sendall(encode(Frame(Opcode.TEXT, b"unmasked")))
            t = time.perf_counter()
            data = b""
            s.settimeout(3)
            while chunk := s.recv(1000):  # ends when the server closes TCP
                data += chunk
                s.sendall(b"\0")  # a dribbling peer must not keep it open
            assert time.perf_counter() - t < 1.0
            assert FrameDecoder("client").feed(data)[0].payload[:2] == (1002).to_bytes(2, "big")
        finally:
            s.close()


def test_a_peer_that_never_reads_is_dropped_at_the_write_deadline():
    import socket
    import time

    from netcourse.apps.wsserver import Hub
    from netcourse.runtime.waiting import wait_until

    hub = Hub()
    with serve(make_ws_handler(hub, max_size=1 << 20, write_timeout=0.5)) as srv:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((srv.host, srv.port))
        s.sendall(client_request(srv.host, srv.port, base64.b64encode(bytes(16)).decode()))
        try:
            s.setblocking(False)
            frame = encode(Frame(Opcode.BINARY, bytes(60_000)), mask=True)
            deadline = time.monotonic() + 10
            while hub.count and time.monotonic() < deadline:  # echo requests it never reads the answers to
                try:
                    s.send(frame)
                except BlockingIOError:
                    time.sleep(0.05)
                except OSError:
                    break
            assert wait_until(lambda: hub.count == 0, 5)
        finally:
            s.close()
