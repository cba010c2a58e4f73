"""Notebook 08, section 6: the handshake under attack (no, forged, expired cookies; a foreign Origin), a token in
a URL ending up in an access log, and bad input refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import time
from dataclasses import dataclass

from ...clients.chat import handshake_as, login
from ...clients.websocket import Address, RawClient
from ...protocols.wsconn import CloseReceived, Message
from ...protocols.wsframe import Frame, Opcode
from ...runtime.server import serve
from .common import chat_server, publish

__all__ = ["Attack", "auth_attacks", "bad_inputs"]


@dataclass(frozen=True)
class Attack:
    """One attempt on the socket's authentication, and the answer."""

    case: str
    answer: str


def auth_attacks() -> tuple[list[Attack], float, list[str]]:
    """Handshakes without, with forged, expired and cross-site credentials; a revoked session's open socket
    (seconds until the server closed it); and where a token in the URL ends up (an access log)."""
    import sqlite3 as _sqlite3

    out: list[Attack] = []
    with chat_server() as (server, srv, d):
        own = f"http://127.0.0.1:{srv.port}"
        status, cookie, _ = login(srv.host, srv.port, "ada", "correct horse")
        out.append(Attack("no cookie", handshake_as(srv.host, srv.port, "", cookie=None, origin=own).status_line))
        out.append(Attack("a forged cookie", handshake_as(srv.host, srv.port, "", cookie="A" * 43, origin=own).status_line))
        _, old, _ = login(srv.host, srv.port, "ada", "correct horse")
        with contextlib.closing(_sqlite3.connect(server.db_path)) as db:
            from ...apps.chatlog import token_hash

            db.execute("UPDATE sessions SET expires = ? WHERE token_hash = ?", (time.time() - 1, token_hash(old)))
            db.commit()
        out.append(Attack("an expired cookie", handshake_as(srv.host, srv.port, "", cookie=old, origin=own).status_line))
        out.append(Attack("a valid cookie from another site's page (Origin: http://evil.example)",
                          handshake_as(srv.host, srv.port, "", cookie=cookie, origin="http://evil.example").status_line))
        out.append(Attack("a valid cookie, own origin", handshake_as(srv.host, srv.port, "", cookie=cookie,
                                                                      origin=own).status_line))
        # a revoked session whose socket is open
        with RawClient(Address(srv.host, srv.port), origin=own, extra_headers=(f"Cookie: session={cookie}",)) as ws:
            ws.send(Frame(Opcode.TEXT, b'{"resume_after": 0}'))
            deadline = time.monotonic() + 3
            while not server.sockets and time.monotonic() < deadline:
                time.sleep(0.005)
            asyncio.run_coroutine_threadsafe(server.revoke("ada"), srv.loop).result(5)
            ws.sock.settimeout(2)
            try:
                events = ws.receive(1)
            except socket.timeout:
                events = []  # no close frame within 2 s: reported as "still open"
        closed = [e for e in events if isinstance(e, CloseReceived)]
        out.append(Attack("the session revoked while its socket is open",
                          f"closed with {closed[0].code} '{closed[0].reason}'" if closed else "still open"))
        revoked_after = server.closed_for_revocation[0] if server.closed_for_revocation else float("nan")
    leaks = _token_in_url_leaks()
    return out, revoked_after, leaks


def _token_in_url_leaks() -> list[str]:
    """A server that writes an ordinary access log (the request line, query string included, as the common
    log format does), asked for /ws?token=…: the line it writes."""
    from aiohttp import web


    lines: list[str] = []

    @web.middleware
    async def access_log(request: web.Request, handler):
        response = await handler(request)
        lines.append(f'{request.remote} - - "{request.method} {request.path_qs} HTTP/1.1" {response.status} '
                     f'"{request.headers.get("Referer", "-")}"')
        return response

    async def ws(request: web.Request) -> web.Response:
        return web.Response(status=426, text="upgrade required")

    app = web.Application(middlewares=[access_log])
    app.router.add_get("/ws", ws)
    with serve(app, name="access-log demo") as srv:
        conn = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
        conn.request("GET", "/ws?token=s3cr3t-session-token")
        conn.getresponse().read()
        conn.close()
    return lines


def bad_inputs() -> list[tuple[str, str]]:
    """Each kind of bad input, sent to a live server: (what was sent, what came back)."""
    out: list[tuple[str, str]] = []
    with chat_server() as (server, srv, d):
        own = f"http://127.0.0.1:{srv.port}"
        cookie = login(srv.host, srv.port, "ada", "correct horse")[1]
        for value in ("-1", '"7"', "1.5", "true", "999"):
            with RawClient(Address(srv.host, srv.port), origin=own, extra_headers=(f"Cookie: session={cookie}",)) as ws:
                ws.send(Frame(Opcode.TEXT, ('{"resume_after": %s}' % value).encode()))
                ws.sock.settimeout(3)
                events = ws.receive(2)
            error = next((json.loads(e.payload).get("error", "") for e in events if isinstance(e, Message)), "")
            code = next((e.code for e in events if isinstance(e, CloseReceived)), None)
            out.append((f"resume_after {value}", f"close {code}: {error}"))
        with RawClient(Address(srv.host, srv.port), origin=own, extra_headers=(f"Cookie: session={cookie}",)) as ws:
            ws.send(Frame(Opcode.TEXT, b'{"resume_after": 0}'))
            ws.send(Frame(Opcode.TEXT, b"x" * (server.max_message + 1)))
            ws.sock.settimeout(3)
            events = ws.receive(1)
        code = next((e.code for e in events if isinstance(e, CloseReceived)), None)
        out.append((f"a frame of {server.max_message + 1:,} bytes (limit {server.max_message:,})", f"close {code}"))
        conn = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
        conn.request("POST", "/login", body="user=ada", headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        out.append(("a login that is not JSON", f"{resp.status}: {resp.read().decode()[:70]}"))
        conn.close()
        name = "robert'); DROP TABLE messages;--"
        server.add_user(name, "pw", ("general",))
        status = login(srv.host, srv.port, name, "pw")[0]
        publish(server, srv, 1)
        out.append((f"a user named {name!r}", f"login {status}; the messages table still works ({server.last_id()} message)"))
    return out
