"""What every course server refuses: requests a web page in the learner's browser could forge.

A course server listens on 127.0.0.1 while the learner's browser is open on the same machine, and
any page the browser shows may send requests to ``127.0.0.1:<port>``:

- **DNS rebinding.** A page on ``evil.example`` makes its own name resolve to 127.0.0.1, and then
  talks to the course server *as the same origin*: the browser's same-origin policy no longer
  helps. What gives it away is the ``Host`` header, which still says ``evil.example``
  (RFC 9110 §7.2). So a request whose Host does not name this server (a loopback name, or the
  address it was reached at) is refused with **421 Misdirected Request** (RFC 9110 §15.5.20);
  Jupyter Server guards itself the same way.
- **Cross-site requests.** A page may POST a form or a ``text/plain`` body without any CORS
  preflight. Browsers send ``Origin`` with such requests (RFC 6454 §7; Fetch standard), so a
  state-changing request whose Origin is not this server's own is refused with **403**. Requests
  without an Origin (the course's own Python clients) pass.

``safe_app()`` builds an aiohttp application with this guard and small limits: a request head of at
most ``MAX_HEAD`` bytes (431 past it, RFC 6585 §5), a body of at most ``max_body`` (413) that must
arrive within ``BODY_TIMEOUT`` (408; while it arrives the connection *owes* it, so past the connection
cap it is among the first closed, see ``runtime.admission``). Every app in ``apps`` and every HTTP app
a lesson serves is made with it. The raw WebSocket server applies the same Host and Origin checks
with ``host_problem`` and ``origin_problem``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..protocols.httpwire import head_size
from ..runtime.admission import owing

__all__ = ["safe_app", "guard", "host_problem", "origin_problem", "own_origins", "head_problem", "MAX_BODY",
           "MAX_HEAD"]

MAX_BODY = 64 * 1024  # bytes: the largest request body a course app reads
MAX_HEAD = 8 * 1024  # bytes: the largest request head (start line and header fields) a course app reads
BODY_TIMEOUT = 10.0  # seconds a request body may take to arrive
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}  # RFC 9110 §9.2.1: they change nothing


def own_origins(port: int) -> set[str]:
    """The origins of pages served by this server itself: ``http://127.0.0.1:<port>`` and its aliases."""
    return {f"http://{name}:{port}" for name in LOOPBACK_NAMES}


def host_problem(host: str | None, port: int, *, local_address: str | None = None) -> str | None:
    """Why a ``Host`` header is refused, or None if it names this server.

    The name must be a loopback name (127.0.0.1, localhost, [::1]) or the address the request
    arrived at (on an emulated link, 192.0.2.2). The port is not compared: a rebinding page cannot
    choose the *name* the browser sends, which is what gives it away (Jupyter checks the same way),
    and a relay in front of the server legitimately changes the port.
    """
    if host is None:
        return "the request has no Host header (HTTP/1.1 requires one, RFC 9112 §3.2)"
    name, port_text = host.lower(), ""
    if name.startswith("["):
        end = name.find("]") + 1
        name, port_text = name[:end], name[end:]
    elif ":" in name:
        name, port_text = name.rsplit(":", 1)
        port_text = ":" + port_text
    if port_text and not (port_text[:1] == ":" and port_text[1:].isascii() and port_text[1:].isdigit()
                          and len(port_text) <= 6):
        return f"Host {host!r} is not a host name with an optional port (RFC 9110 §7.2)"
    allowed = set(LOOPBACK_NAMES) | ({local_address, f"[{local_address}]"} if local_address else set())
    if name not in allowed:
        return f"Host {host!r} is not this server (127.0.0.1:{port}): refused against DNS rebinding"
    return None


def origin_problem(origins: list[str], port: int) -> str | None:
    """Why the ``Origin`` header(s) of a state-changing request are refused, or None if acceptable."""
    if len(origins) > 1:
        return "more than one Origin header"
    if origins and origins[0].lower() not in own_origins(port):
        return f"Origin {origins[0]!r} is another site: a page may not change this server's state"
    return None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def head_problem(request: web.BaseRequest) -> str | None:
    """Why a request's head is too large, or None: its start line and fields, as sent, over ``MAX_HEAD``."""
    size = head_size(f"{request.method} {request.raw_path} HTTP/{request.version.major}.{request.version.minor}",
                     request.raw_headers)
    if size > MAX_HEAD:
        return f"the request head is {size:,} bytes; this server reads at most {MAX_HEAD:,}"
    return None


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a foreign Host (421) on every request, and a foreign Origin (403) on state-changing ones."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    address, port = (sockname[0], sockname[1]) if sockname else (None, 0)
    hosts = request.headers.getall("Host", [])
    # An absolute-form target ("GET http://name/path") names the host itself, and wins over the Host
    # header (RFC 9112 §3.2.2); aiohttp's request.host follows that rule.
    absolute = request.raw_path.lower().startswith(("http://", "https://"))
    host = request.host if absolute else (hosts[0] if len(hosts) == 1 else None)
    problem = "more than one Host header" if len(hosts) > 1 else host_problem(host, port, local_address=address)
    if problem:
        return _refuse(421, problem)
    problem = head_problem(request)
    if problem:
        return _refuse(431, problem)
    if request.method not in SAFE_METHODS:
        problem = origin_problem(request.headers.getall("Origin", []), port)
        if problem:
            return _refuse(403, problem)
    if request.can_read_body:  # the whole body now, with a deadline: nobody may dribble it forever
        try:
            with owing(request.transport, "a request body"):
                await asyncio.wait_for(request.read(), BODY_TIMEOUT)
        except asyncio.TimeoutError:
            return _refuse(408, f"the request body did not arrive within {BODY_TIMEOUT:g} s")
        except web.RequestPayloadError as exc:  # bad chunking or a body that does not decompress
            return _refuse(400, f"the request body is malformed: {exc}")
    return await handler(request)


def _refuse(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status, headers={"Server": "netcourse"})


def safe_app(*, max_body: int = MAX_BODY) -> web.Application:
    """A new aiohttp application with the guard, and bodies limited to ``max_body`` bytes (413 past it)."""
    return web.Application(middlewares=[guard], client_max_size=max_body)
