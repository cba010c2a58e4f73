"""Notebook 08, sections 1 and 2: login and the cookie-carrying handshake captured; a client offline while 50
messages are published, back, replayed, then live; the same across a 100 ms link.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
from dataclasses import dataclass

from ...apps.chat import ChatServer
from ...clients.chat import ChatClient, LocalStore, login
from ...clients.websocket import Address, RawClient
from ...course.exercises import Exercise, Prediction, as_number
from ...errors import NetcourseError
from ...network.link import link
from ...protocols.httpwire import split_head
from ...protocols.wsconn import Message
from ...protocols.wsframe import Frame, Opcode
from ...traffic.packets import C2S, S2C
from ...traffic.sniffer import Capture, capture
from ...traffic.wire import tcp_payload_streams
from ..registry import scenario
from .common import chat_server, publish, server_last

__all__ = ["exercise_seam", "HappyPath", "happy_path", "exercise_login_to_socket", "exercise_cookie_bytes", "OfflineRun", "offline_and_back", "predict_resume_first_ms", "LinkResume", "resume_across_a_link"]


@dataclass
class HappyPath:
    """Login, the handshake with its cookie, resume, replay and live messages, captured.

    Attributes:
        set_cookie: the Set-Cookie header of the login's answer, from the capture.
        handshake: the WebSocket handshake request's head, from the capture.
        replayed, live: messages the client got from the backlog, and pushed after it.
        same: the client's database equals what the server says the user may read.
        capture: the packets (in replay: the recording).
    """

    set_cookie: str
    handshake: str
    replayed: int
    live: int
    same: bool
    capture: Capture


@scenario("chat_happy_path")
def happy_path(backlog: int = 5, live: int = 3) -> HappyPath:
    """ada logs in, opens the WebSocket with her cookie, resumes after 0, gets the backlog, then live messages."""
    with chat_server() as (server, srv, d):
        publish(server, srv, backlog)
        store = LocalStore(os.path.join(d, "ada.db"))
        client = ChatClient(store, srv.host, srv.port, "ada", "correct horse")
        with capture(srv.port, scenario="chat_happy_path") as cap:
            first = client.connect(idle=0.2)

            pusher = threading.Thread(target=publish, args=(server, srv, live), kwargs={"gap": 0.05})
            pusher.start()
            second = client.connect(idle=0.4)
            pusher.join()
        same = store.ids() == server.ids_for("ada")
        store.close()
    streams = tcp_payload_streams(cap.packets, cap.table())
    responses, requests = streams[S2C], streams[C2S]
    set_cookie = next((line.decode("latin-1") for line in responses.split(b"\r\n")
                       if line.lower().startswith(b"set-cookie:")), "")
    start = requests.find(b"GET /ws")
    found = split_head(requests[start:]) if start >= 0 else None
    return HappyPath(set_cookie, found[0].decode("latin-1") if found else "", first, second, same, cap)


def exercise_login_to_socket(run: HappyPath) -> Exercise:
    """Time from the login's answer to the socket's 101, read from the learner's capture."""
    rows = run.capture.table()
    login = next((r for r in rows if r.direction == S2C and r.app.startswith("204")), None)
    upgraded = next((r for r in rows if r.direction == S2C and r.app.startswith("101")), None)
    if login is None or upgraded is None:
        raise NetcourseError("the capture holds no login answer or no 101: run happy_path() again")
    ms = round((upgraded.t - login.t) * 1000, 3)
    first_101 = upgraded.t * 1000
    return Exercise(
        "In your capture, find the server's answer to the login (204, the one carrying Set-Cookie) and its first "
        "'101 Switching Protocols'. How many milliseconds passed from the first to the second (within 0.05 ms)?",
        answer=ms, tolerance=0.05, unit="ms",
        hint="The ladder leaves the times out on purpose. The capture's rows have them: happy.capture.table(), "
        "rows with .t (seconds), .direction and .app (what the payload was).",
        recipe="subtract the t of the S→C row whose app starts with '204' from that of the one starting with "
        "'101', and multiply by 1000.",
        mistakes=[(lambda v: abs(float(as_number(v, "ms")) - ms / 1000) < 0.0005 and ms > 0.5,
                   "that is in seconds: the t column is seconds, the question asks for milliseconds."),
                  (lambda v: abs(float(as_number(v, "ms")) - first_101) <= 0.05 and abs(first_101 - ms) > 0.1,
                   "that is the 101's time since the capture began; measure from the 204 that answered the login.")],
        explanation=f"{ms:.2f} ms on loopback: the client opened a second TCP connection and sent the handshake "
        "with the cookie, and the server checked the session and the Origin before answering 101. "
        "Authentication at set-up costs this once per connection, not per message; across a real distance "
        "it is two round trips (section 2 measures them at 100 ms).",
        kind="capture", source=run,
    )


def exercise_cookie_bytes(run: HappyPath, bits: int = 320) -> Exercise:
    """What a cookie costs the handshake: the captured line's structure, carried over to a longer token."""
    line = next((l for l in run.handshake.split("\r\n") if l.lower().startswith("cookie:")), "")
    captured = len(line) + 2 if line else 0
    prefix = len("Cookie: session=")
    chars = -(-bits // 6)  # base64 without padding: 6 bits a character, rounded up
    padded = 4 * -(-bits // 24)
    size = prefix + chars + 2
    return Exercise(
        "Your capture's WebSocket handshake carries the session as `Cookie: session=<token>`, a 256-bit token in "
        f"base64url without padding (count its characters in happy.handshake). A server that used {bits}-bit "
        "tokens, encoded the same way: how many bytes would that header line take, its CRLF included?",
        answer=size,
        unit="B",
        hint="How many bits does one base64 character carry? Check the idea on your capture's 256-bit token "
        "first; then add the header's name and the CRLF.",
        recipe=f"{bits} / 6 = {bits / 6:.1f}, so {chars} characters (no padding); 'Cookie: session=' is {prefix} bytes; "
        "CRLF is 2.",
        mistakes=[
            (captured, "that is your capture's line, with a 256-bit token; the question asks for "
             f"{bits}-bit tokens."),
            (prefix + padded + 2, "that counts base64 padding ('='); the question says without padding (Python's "
             "token_urlsafe, which the course's server uses, leaves it out; RFC 4648 §3.2 lets a format do so)."),
            (prefix + bits // 4 + 2, "that is the token in hex (4 bits a character); base64 carries 6."),
            (prefix + bits // 8 + 2, f"that is the token's raw {bits // 8} bytes; a cookie carries text, here base64url."),
            (size - 2, "add the CRLF that ends the line."),
        ],
        explanation=f"{size} bytes: {chars} characters of token ({bits} / 6, rounded up), the {prefix} bytes of "
        f"'Cookie: session=' and CRLF; your capture's 256-bit token took 43 and its line {captured}. Paid once per "
        "connection: authentication happens at the handshake, not on every message (the notes' 'auth when the "
        "socket is set up'). The price: a session revoked later must be enforced by closing the socket, not by "
        "refusing the next message.",
        kind="capture", source=run,
    )


@dataclass
class OfflineRun:
    """A client that went offline while messages were published, and came back.

    Attributes:
        before: messages it held before going offline.
        arrivals: (ms since it reconnected, id, "replayed" or "live") for everything after.
        same: its database equals the server's view of what it may read.
    """

    before: int
    arrivals: list[tuple[float, int, str]]
    same: bool

    @property
    def replayed(self) -> int:
        return sum(1 for _, _, k in self.arrivals if k == "replayed")

    def __repr__(self) -> str:
        live = len(self.arrivals) - self.replayed
        return (f"held {self.before} before going offline; on reconnecting: {self.replayed} replayed, then {live} "
                f"live; the local database {'equals' if self.same else 'DIFFERS from'} the server's")


def offline_and_back(held: int = 20, offline: int = 50, live: int = 10, gap: float = 0.03) -> OfflineRun:
    """The client syncs ``held`` messages, goes offline, ``offline`` are published, it reconnects and then
    ``live`` more arrive ``gap`` s apart. Every arrival after the reconnect is timed and labelled."""
    with chat_server(page=20) as (server, srv, d):
        publish(server, srv, held)
        store = LocalStore(os.path.join(d, "ada.db"))
        client = ChatClient(store, srv.host, srv.port, "ada", "correct horse")
        client.connect(idle=0.2)
        before = len(store.ids())
        publish(server, srv, offline)  # the client is offline: nothing connected
        cut = server_last(server)
        cookie = client.cookie
        arrivals: list[tuple[float, int, str]] = []

        with RawClient(Address(srv.host, srv.port), origin=f"http://127.0.0.1:{srv.port}", nodelay=True,
                       extra_headers=(f"Cookie: session={cookie}",)) as ws:
            t0 = time.perf_counter()
            ws.send(Frame(Opcode.TEXT, json.dumps({"resume_after": store.last_id()}).encode()))
            pusher = threading.Thread(target=publish, args=(server, srv, live), kwargs={"gap": gap})
            started = False
            while True:
                ws.sock.settimeout(0.5)
                try:
                    events = ws.receive()
                except socket.timeout:
                    break
                batch = [json.loads(e.payload) for e in events if isinstance(e, Message)]
                store.store_many(batch)
                now = (time.perf_counter() - t0) * 1000
                arrivals += [(now, m["id"], "replayed" if m["id"] <= cut else "live") for m in batch]
                if not started and any(m["id"] >= cut for m in batch):
                    pusher.start()  # the backlog is in: now publish live ones
                    started = True
            if started:
                pusher.join()
        same = store.ids() == server.ids_for("ada")
        store.close()
    return OfflineRun(before, arrivals, same)


def predict_resume_first_ms(rtt_ms: float = 100.0) -> Prediction:
    """Predict when the first replayed message shows, for a client coming back across a link."""
    def explain(given: float, measured: float) -> str:
        return (f"Count connections and requests: the login is a TCP handshake and a POST (2 round trips); the "
                f"socket is a second connection, its handshake and the upgrade (2 more); then resume_after goes out "
                f"and the first page of the replay comes back (1 more): 5 round trips, about {5 * rtt_ms:g} ms, before "
                "anything shows.")

    return Prediction(
        f"ada's client comes back across a {rtt_ms:g} ms link (round trip): it logs in (a POST that sets the "
        "session cookie), opens its WebSocket with that cookie, and sends resume_after. How many milliseconds "
        "after it starts does the first replayed message arrive?",
        measure=lambda run: run.first_message_ms, unit="ms", tolerance=0.15, floor=10.0, explain=explain,
        step=lambda run: rtt_ms, spread="the answer moves in whole round trips, so the band stays under half of one",
        mistakes=[(lambda g, m: abs(g - 3 * rtt_ms) < rtt_ms / 2, "Three round trips skip the login, as a client that "
                   "kept its cookie could; this one logs in first: a connection and a POST."),
                  (lambda g, m: abs(g - 4 * rtt_ms) < rtt_ms / 2, "Four is one connection for both, or leaves out the "
                   "last step; the login and the socket are two connections here, each with its handshake, and "
                   "resume_after must reach the server before the replay can start back."),
                  (lambda g, m: g < 1.5 * rtt_ms, "The socket is not open yet: the client logs in and opens it first.")],
    )


@dataclass
class LinkResume:
    """Coming back across an emulated link: ms from the start to each step of a reconnection."""

    rtt_ms: float
    login_ms: float
    handshake_ms: float
    first_message_ms: float
    all_ms: float
    messages: int
    mode: str

    def __repr__(self) -> str:
        return (f"across a {self.rtt_ms:g} ms round trip ({self.mode}): logged in after {self.login_ms:.0f} ms, "
                f"socket open after {self.handshake_ms:.0f} ms, first replayed message after "
                f"{self.first_message_ms:.0f} ms, all {self.messages} after {self.all_ms:.0f} ms")


def resume_across_a_link(rtt_ms: float = 100.0, backlog: int = 50) -> LinkResume:
    """A client that was offline comes back across an emulated link: login (a TCP connection and a request),
    the WebSocket handshake (another connection and the upgrade), then resume_after and the replay."""

    with tempfile.TemporaryDirectory(prefix="netcourse-chat-") as d, link(rtt_ms=rtt_ms) as net:
        server = ChatServer(os.path.join(d, "server.db"), page=50,
                            allowed_origins=None)
        server.add_user("ada", "correct horse", ("general",))
        server.add_user("bob", "battery staple", ("general",))
        srv = net.serve(server.app(), name="chat")
        net.announce()
        publish(server, srv, backlog)
        server.allowed_origins = {f"http://127.0.0.1:{srv.port}", f"http://{srv.host}:{srv.port}"}

        def client() -> tuple[float, float, float, float, int]:
            t0 = time.perf_counter()
            status, cookie, _ = login(srv.host, srv.port, "ada", "correct horse")
            t_login = time.perf_counter()
            with RawClient(Address(srv.host, srv.port), origin=f"http://127.0.0.1:{srv.port}", nodelay=True,
                           extra_headers=(f"Cookie: session={cookie}",)) as ws:
                t_open = time.perf_counter()
                ws.send(Frame(Opcode.TEXT, b'{"resume_after": 0}'))
                got, first = 0, None
                while got < backlog:
                    ws.sock.settimeout(5)
                    events = ws.receive()
                    n = sum(1 for e in events if isinstance(e, Message))
                    if n and first is None:
                        first = time.perf_counter()
                    got += n
                t_all = time.perf_counter()
            ms = lambda t: (t - t0) * 1000  # noqa: E731
            return ms(t_login), ms(t_open), ms(first or t_all), ms(t_all), got

        login_ms, open_ms, first_ms, all_ms, got = net.near(client, 30)
        mode = net.mode
    return LinkResume(rtt_ms, login_ms, open_ms, first_ms, all_ms, got, mode)


def exercise_seam() -> Exercise:
    """The replay/live seam done in the wrong order: what happens to a message published in between."""
    return Exercise(
        "A server gets the order wrong: it reads the backlog first (up to id 70), sends it, and only then "
        "registers the socket for live messages. Message 71 is published after the read and before the "
        "registration. How many times does this connection deliver message 71?",
        answer=0,
        check=lambda v: str(v).strip().lower() in ("0", "0 times", "none", "never", "zero", "no times"),
        hint="Follow message 71: is it in what the server read from the database, and is the socket on the "
        "list of those that get live messages when 71 is published?",
        recipe="the read ended at 70, so 71 is not in the backlog; the socket was not registered yet, so "
        "71's live copy went to everyone else.",
        mistakes=[
            (1, "where would the one copy come from? 71 is not in the backlog (read before it existed) and the "
             "socket was not yet registered when it was published."),
            (2, "two copies is the risk of the *right* order (register first), which the server then removes by "
             "skipping ids it has sent. Here neither path carries 71."),
        ],
        explanation="None: 71 falls in the gap between the read and the registration, and the client only gets "
        "it after its next reconnection (if ever: its cursor moves past 71 when 72 arrives). Register first, "
        "then read: 71 is then in the live queue and perhaps in the backlog as well, and skipping ids already "
        "sent makes it exactly once.",
    )
