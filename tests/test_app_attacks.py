"""The other apps under attack: the proxy, the webhook receiver and the Redis fan-out. Each test failed before
its fix (../shared/reviews/attack.md, findings 6, 9 and 14)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from netcourse.apps.proxy import make_proxy
from netcourse.runtime.server import serve


def _exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


async def _fine_upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    kind = head.split(b" ")[1].decode()
    answers = {
        "/cl-and-te": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "/split-te": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxx\r\n0\r\n\r\n",
        "/ok": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    }
    writer.write(answers.get(kind, answers["/ok"]))
    await writer.drain()
    writer.close()


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /ok HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n", b"400"),
    (b"GET /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n", b"400"),
    (b"GET /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n", b"400"),
    (b"GET /ok HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", b"400"),
    (b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 17 * 1024 + b"\r\n\r\n", b"431"),
])
def test_the_proxy_answers_a_clients_malformed_request_with_4xx(request_bytes, status):
    with serve(_fine_upstream) as up, serve(make_proxy(up.host, up.port)) as proxy:
        answer = _exchange(proxy.port, request_bytes)
    assert answer.split(b" ", 2)[1] == status, answer[:80]


def test_the_proxy_frames_cl_plus_te_by_the_transfer_coding_and_drops_the_length():
    with serve(_fine_upstream) as up, serve(make_proxy(up.host, up.port)) as proxy:
        answer = _exchange(proxy.port, b"GET /cl-and-te HTTP/1.1\r\nHost: x\r\n\r\n")
        split = _exchange(proxy.port, b"GET /split-te HTTP/1.1\r\nHost: x\r\n\r\n")
    head, body = answer.split(b"\r\n\r\n", 1)
    assert b"content-length" not in head.lower() and b"Transfer-Encoding: chunked" in head
    from netcourse.protocols.chunked import dechunk

    assert dechunk(body) == b"hello"
    assert split.startswith(b"HTTP/1.1 502") and b"gzip" in split  # the gzip coding is not silently dropped


# -- finding 9: the webhook receiver's 500s --------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    '{"type": "a"}'.encode("utf-16"), '{"type": "a"}'.encode("utf-32"), b"[" * 100_000, b'{"type": "\\ud800"}',
])
def test_signed_but_crafted_bodies_get_400_never_500(tmp_path, body):
    from netcourse.apps.webhooks import Receiver
    from netcourse.protocols.webhooks import headers_for, new_secret

    secret = new_secret()
    receiver = Receiver(str(tmp_path / "inbox.db"), secret)
    with serve(receiver.app()) as srv:
        headers = headers_for(secret, "msg_1", body)
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = (f"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\nConnection: close\r\n{lines}\r\n").encode() + body
        answer = _exchange(srv.port, request)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:120]
    assert not srv.errors, srv.errors


# -- finding 6: fan-out after a Redis restart --------------------------------------------------------------------


DOWN = float(os.environ.get("FANOUT_DOWN", "8"))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_fan_out_resubscribes_after_a_redis_restart_and_says_so(tmp_path):
    from netcourse.apps.broker import redis_broker
    from netcourse.clients.websocket import Address, RawClient
    from netcourse.protocols.wsconn import Message
    from netcourse.protocols.wsframe import Frame, Opcode

    with redis_broker() as broker:
        node = subprocess.Popen([sys.executable, "-m", "netcourse.apps.fanout", "--redis-port", str(broker.port)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            port = int(node.stdout.readline().split()[1])
            with RawClient(Address("127.0.0.1", port), origin=None) as a:
                a.send(Frame(Opcode.TEXT, b"PUB one"))
                a.sock.settimeout(3)
                assert [e.payload for e in a.receive(1) if isinstance(e, Message)] == [b"one"]
            broker.restart(down=DOWN)  # longer than the Redis client's own retries (about 7 s)
            deadline = time.monotonic() + 10
            got: list[bytes] = []
            while time.monotonic() < deadline and not got:
                with RawClient(Address("127.0.0.1", port), origin=None) as b:
                    b.send(Frame(Opcode.TEXT, b"PUB two"))
                    b.sock.settimeout(0.5)
                    try:
                        got = [e.payload for e in b.receive(1) if isinstance(e, Message)]
                    except socket.timeout:
                        time.sleep(0.2)
            assert got == [b"two"]
        finally:
            node.stdin.close()  # the node stops when its standard input closes
            try:
                node.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
            err = node.stderr.read()
            node.stdout.close()
            node.stderr.close()
    assert "re-subscribed" in err, err
