"""The course's WebSocket server and client against independent implementations, on the wire."""

from __future__ import annotations

import base64

import aiohttp
import pytest
from aiohttp import web

from netcourse import serve
from netcourse.experiments import websockets as lab
from netcourse.runtime.waiting import run_async
from netcourse.protocols.wsframe import Frame, FrameDecoder, Opcode, accept_key, encode
from netcourse.apps.wsserver import HandshakeError, handshake_request, make_ws_handler, parse_handshake

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
        client = lab.RawClient(srv)
        try:
            assert client.accepted and client.accept_header == accept_key(client.key)
            client.send(Frame(Opcode.TEXT, "héllo".encode()))
            client.send(Frame(Opcode.BINARY, bytes(range(256)) * 300))  # 76,800 bytes: 64-bit length
            client.send(Frame(Opcode.PING, b"p"))
            frames = client.receive(3)
        finally:
            client.close()
    got = {f.opcode: f.payload for f in frames}
    assert got[Opcode.TEXT] == "héllo".encode()
    assert got[Opcode.BINARY] == bytes(range(256)) * 300
    assert got[Opcode.PONG] == b"p"


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
    good = handshake_request("127.0.0.1", 1, key, origin="http://a")
    assert parse_handshake(good[:-2], {"http://a"}) == key
    with pytest.raises(HandshakeError) as e:
        parse_handshake(good[:-2], {"http://b"})
    assert e.value.status == 403
    for broken, status in (
        (good.replace(b"GET", b"PUT"), 400),
        (good.replace(b"Upgrade: websocket", b"Upgrade: h2c"), 400),
        (good.replace(b"Version: 13", b"Version: 8"), 426),
        (good.replace(key.encode(), b"short"), 400),
    ):
        with pytest.raises(HandshakeError) as e:
            parse_handshake(broken, None)
        assert e.value.status == status


def test_security_outcomes():
    outcomes = {o.case: o.outcome for o in lab.security()}
    assert outcomes["handshake from another site's page (Origin)"].startswith("HTTP/1.1 403")
    assert outcomes["unmasked client frame"] == "close 1002"
    assert outcomes["message over the 1 KiB limit"] == "close 1009"
    assert outcomes["text frame that is not UTF-8"] == "close 1007"


def test_handshake_and_control_frames_scenarios():
    run = lab.handshake()
    assert run.accept == accept_key(run.key)
    assert run.reply[0] == Frame(Opcode.TEXT, b"Hello")
    assert run.sent.hex() == "818537fa213d7f9f4d5158"  # RFC 6455 §5.7, on our wire
    ctl = lab.control_frames()
    assert [f.opcode for f in ctl.client_frames] == [Opcode.PING, Opcode.TEXT, Opcode.CONTINUATION, Opcode.CONTINUATION, Opcode.CLOSE]
    assert [f.opcode for f in ctl.server_frames] == [Opcode.PONG, Opcode.TEXT, Opcode.CLOSE]
    assert ctl.server_frames[1].payload == b"Hello, world"


def test_explain_overhead_latency_and_idle_cost():
    view = lab.explain(encode(Frame(Opcode.TEXT, b"Hello"), mask_key=bytes.fromhex("37fa213d")))
    names = [f[0] for f in view.fields]
    assert names == ["FIN", "RSV1", "RSV2", "RSV3", "opcode", "MASK", "payload len", "masking key", "payload"]
    assert "37fa213d" in repr(view) and "<table>" in view._repr_html_()
    long_view = lab.explain(encode(Frame(Opcode.BINARY, bytes(70000))))
    assert ("extended length", "70000 (64 bits)", 16, 64) in long_view.fields
    o = lab.overhead(20)
    assert (o.ws_client, o.ws_server) == (6, 2) and o.http_total > 150
    lat = lab.latency(20)
    assert all(len(v) == 20 for v in lat.values())
    cost = lab.idle_connections(50)
    assert cost.connections == 50 and cost.python_bytes_per_connection > 1000 and cost.broadcast_s < 10


def test_exercises():
    assert lab.exercise_decode().check("Hello")
    assert lab.exercise_accept().check(accept_key("x3JJHMbDL1EzLkh9GBhXDw=="))
