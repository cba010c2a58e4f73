"""An HTTP/2 server for ``serve()``: cleartext with prior knowledge (RFC 9113 §3.3), the protocol's state kept by
the ``h2`` library, the bytes moved here (as notebook 05's WebSocket server moves its codec's).

    with serve(make_h2_handler()) as srv:      # then an HTTP/2 client: clients.http2.fetch(...)

| request | answer |
| --- | --- |
| ``GET /r/<name>?size=N`` | ``N`` bytes (default 2,000, at most 1 MiB), ``text/plain`` |
| ``GET /events?count=N&gap=S`` | an event stream (notebook 06's format): ``N`` events (at most 1,000), ``S`` s apart (at most 5) |
| ``CONNECT /ws`` with ``:protocol: websocket`` | a WebSocket on the stream (RFC 8441), echoing every message |
| anything else | 404 (a method other than GET: 405) |

One connection carries many requests at once, each on a stream of its own (§5); the server sends what each
stream's flow-control window allows (§5.2) and waits for WINDOW_UPDATE frames for the rest.

Limits, each answered the way RFC 9113 says (a GOAWAY or RST_STREAM with its error code, §7):

- the client's preface and SETTINGS within ``PREFACE_TIMEOUT`` seconds, or the connection is closed (a
  stalled handshake holds a slot in ``serve()``'s admission as "an HTTP/2 preface", and goes first); a
  connection with nothing to do for ``IDLE_TIMEOUT`` seconds gets GOAWAY NO_ERROR;
- at most ``MAX_STREAMS`` streams open at once (SETTINGS_MAX_CONCURRENT_STREAMS): h2 answers one more with
  GOAWAY PROTOCOL_ERROR, ending the connection (RFC 9113 §5.1.2 also allows refusing just that stream);
- a header list of at most ``MAX_HEADER_LIST`` bytes (SETTINGS_MAX_HEADER_LIST_SIZE, enforced by the decoder);
  header values are kept as bytes, so no encoding can fail;
- at most ``MAX_RESETS`` streams reset by the client on one connection: past that, GOAWAY
  ENHANCE_YOUR_CALM (the "rapid reset" flood of 2023, CVE-2023-44487, opened and cancelled streams faster
  than servers could notice); the same past ``MAX_CONTROL`` PING, SETTINGS or empty DATA frames in
  ``CONTROL_WINDOW`` seconds (the floods of CVE-2019-9512, -9515 and -9518);
- bytes that break the protocol: GOAWAY with h2's error code (PROTOCOL_ERROR, FRAME_SIZE_ERROR, ...);
- a slow reader holds at most ``MAX_BUFFERED`` bytes of its connection's send buffer (frames of at most
  16 KiB, whatever the client allows); a client that reads nothing for ``WRITE_TIMEOUT`` seconds is dropped
  (a reset: its buffer would never drain), and a resource not sent within ``RESPONSE_TIMEOUT`` seconds (a
  client doling out its window a byte at a time) is given up with RST_STREAM CANCEL;
- an event stream lasts at most ``MAX_STREAM_SECONDS`` (count × gap); numbers in a query that are not finite
  ("nan", "inf") are the defaults.
"""

from __future__ import annotations

import asyncio
import math
import re
from urllib.parse import parse_qs, urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from ..errors import FrameError
from ..protocols.wsframe import Frame as WsFrame
from ..protocols.wsframe import FrameDecoder, Opcode, close_payload
from ..protocols.wsframe import encode as ws_encode
from ..runtime.admission import owing
from ..runtime.sockets import no_delay

__all__ = ["make_h2_handler", "make_h1_app", "PREFACE_TIMEOUT", "IDLE_TIMEOUT", "MAX_STREAMS", "MAX_HEADER_LIST",
           "MAX_RESETS", "MAX_CONTROL", "MAX_SIZE"]

PREFACE_TIMEOUT = 5.0
IDLE_TIMEOUT = 60.0
MAX_STREAMS = 100
MAX_HEADER_LIST = 16 * 1024
MAX_RESETS = 200
MAX_CONTROL = 1000  # PING, SETTINGS and empty DATA frames a connection may send in CONTROL_WINDOW seconds
CONTROL_WINDOW = 10.0
MAX_SIZE = 1 << 20
MAX_STREAM_SECONDS = 60.0  # an event stream's count × gap
MAX_CHUNK = 16_384  # DATA payload per frame, whatever larger size the peer allows
MAX_BUFFERED = 256 * 1024  # bytes waiting in a connection's send buffer before its streams wait
WRITE_TIMEOUT = 10.0
RESPONSE_TIMEOUT = 30.0  # a resource's whole answer, however the client doles out its window
PREFACE_DEBT = "an HTTP/2 preface"
_RESOURCE = re.compile(r"^/r/[A-Za-z0-9._-]{1,64}$")
_BODY = memoryview(b"x" * MAX_SIZE)  # every answer is a slice of one body, not a copy per request


class _Connection:
    """One client's connection: the h2 state machine, the socket, and the streams being answered."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)  # bytes: no decoding to fail
        self.h2 = h2.connection.H2Connection(config)
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
            SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
            SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,  # RFC 8441 §3: WebSockets may be opened on a stream
        })
        self.h2.decoder.max_header_list_size = MAX_HEADER_LIST  # the setting above is advertised; this enforces it
        self.windows: dict[int, asyncio.Event] = {}  # stream -> set when its window may have opened
        self.sockets: dict[int, FrameDecoder] = {}  # stream -> the WebSocket on it (RFC 8441)
        self.tasks: set[asyncio.Task] = set()
        self.resets = 0
        self.control: list[float] = []  # when each recent PING, SETTINGS or empty DATA frame came
        self.closing = False
        self._write_scheduled = False
        self.remote_settings_seen = False

    def _write_now(self) -> None:
        self._write_scheduled = False
        data = self.h2.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    async def flush(self) -> None:
        """Write what h2 has queued, once per turn of the loop: the frames every stream produced in the same turn
        leave in one write (with Nagle off, each write would be a TCP segment of its own, and ten tiny segments
        fill a new connection's whole first window, RFC 6928). Waits while the send buffer is full; a client
        that does not read for ``WRITE_TIMEOUT`` seconds is dropped."""
        if not self._write_scheduled:
            self._write_scheduled = True
            asyncio.get_running_loop().call_soon(self._write_now)
        await asyncio.sleep(0)
        await self.room()

    async def room(self) -> None:
        """Wait until the send buffer holds less than ``MAX_BUFFERED`` bytes (``WRITE_TIMEOUT`` at most)."""
        if self.writer.transport.get_write_buffer_size() > MAX_BUFFERED:
            try:
                await asyncio.wait_for(self.writer.drain(), WRITE_TIMEOUT)
            except asyncio.TimeoutError:
                self.closing = True
                self.writer.transport.abort()  # it does not read: its buffer would never drain
                raise ConnectionResetError("the client stopped reading") from None

    async def goaway(self, code: int) -> None:
        self.closing = True
        self.h2.close_connection(error_code=code)
        self._write_now()
        await asyncio.wait_for(self.writer.drain(), WRITE_TIMEOUT)

    async def run(self) -> None:
        self.h2.initiate_connection()
        await self.flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PREFACE_TIMEOUT
        with owing(self.writer.transport, PREFACE_DEBT):  # §3.4: the preface, then the client's SETTINGS
            while not self.remote_settings_seen:
                left = deadline - loop.time()
                if left <= 0:
                    return  # a stalled handshake: drop the connection
                try:
                    data = await asyncio.wait_for(self.reader.read(65536), left)
                except asyncio.TimeoutError:
                    return
                if not data or not await self.receive(data):
                    return
        while not self.closing:
            try:
                data = await asyncio.wait_for(self.reader.read(65536), IDLE_TIMEOUT)
            except asyncio.TimeoutError:
                if self.tasks or self.sockets:
                    continue  # answers on their way, or WebSockets open: not idle
                await self.goaway(ErrorCodes.NO_ERROR)  # idle: the client may open a new connection (§6.8)
                return
            if not data or not await self.receive(data):
                return

    async def receive(self, data: bytes) -> bool:
        """Feed bytes to h2 and act on its events; False when the connection is over."""
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.closing = True
            if self.h2.state_machine.state != h2.connection.ConnectionState.CLOSED:  # else h2 queued its GOAWAY
                try:
                    self.h2.close_connection(error_code=getattr(exc, "error_code", None) or ErrorCodes.PROTOCOL_ERROR)
                except h2.exceptions.H2Error:
                    pass
            await self.flush()
            return False
        now = asyncio.get_running_loop().time()
        for event in events:
            if isinstance(event, (h2.events.PingReceived, h2.events.RemoteSettingsChanged)) or (
                    isinstance(event, h2.events.DataReceived) and not event.data):
                self.control.append(now)
            if isinstance(event, h2.events.RemoteSettingsChanged):
                self.remote_settings_seen = True
            elif isinstance(event, h2.events.RequestReceived):
                headers = dict(event.headers)
                if headers.get(b":method") == b"CONNECT":
                    self.open_websocket(event.stream_id, headers)
                    continue
                task = asyncio.get_running_loop().create_task(self.answer(event.stream_id, headers))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            elif isinstance(event, h2.events.DataReceived):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)  # §6.9
                if event.stream_id in self.sockets:
                    self.websocket_data(event.stream_id, event.data)
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id in self.sockets:
                del self.sockets[event.stream_id]  # the client ended its side without a close frame
                self.h2.end_stream(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.sockets.pop(event.stream_id, None)
                self.resets += 1
                self._wake(event.stream_id)
                if self.resets > MAX_RESETS:
                    await self.goaway(ErrorCodes.ENHANCE_YOUR_CALM)
                    return False
            elif isinstance(event, h2.events.WindowUpdated):
                self._wake(event.stream_id)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.closing = True
        while self.control and self.control[0] < now - CONTROL_WINDOW:
            self.control.pop(0)
        if len(self.control) > MAX_CONTROL:  # PING, SETTINGS or empty DATA floods (CVE-2019-9512, -9515, -9518)
            await self.goaway(ErrorCodes.ENHANCE_YOUR_CALM)
            return False
        await self.flush()
        return not self.closing

    def open_websocket(self, stream_id: int, headers: dict[bytes, bytes]) -> None:
        """RFC 8441 §4-5: a CONNECT with ``:protocol: websocket`` opens a WebSocket on this stream (an echo, as
        notebook 05's server); 200 accepts it (no Sec-WebSocket-Accept: the stream is already the client's)."""
        if (headers.get(b":protocol") != b"websocket" or headers.get(b":path") != b"/ws"
                or headers.get(b"sec-websocket-version") != b"13"):
            self.h2.send_headers(stream_id, [(b":status", b"400")], end_stream=True)
            return
        self.sockets[stream_id] = FrameDecoder("server", max_size=1 << 16)
        self.h2.send_headers(stream_id, [(b":status", b"200"), (b"server", b"netcourse")])

    def websocket_data(self, stream_id: int, data: bytes) -> None:
        """Frames from the client (masked, RFC 6455 §5.3): echo each message, answer a ping, close on close."""
        try:
            frames = self.sockets[stream_id].feed(data)
        except FrameError as exc:
            self.h2.send_data(stream_id, ws_encode(WsFrame(Opcode.CLOSE, close_payload(exc.close_code, str(exc)[:100]))),
                              end_stream=True)
            del self.sockets[stream_id]
            return
        for frame in frames:
            if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION):
                self.h2.send_data(stream_id, ws_encode(WsFrame(frame.opcode, frame.payload, fin=frame.fin)))
            elif frame.opcode == Opcode.PING:
                self.h2.send_data(stream_id, ws_encode(WsFrame(Opcode.PONG, frame.payload)))
            elif frame.opcode == Opcode.CLOSE:  # the close handshake, then the stream ends (RFC 8441 §5)
                self.h2.send_data(stream_id, ws_encode(WsFrame(Opcode.CLOSE, frame.payload[:2])), end_stream=True)
                del self.sockets[stream_id]
                return

    def _wake(self, stream_id: int) -> None:
        if stream_id == 0:
            for event in self.windows.values():
                event.set()
        elif stream_id in self.windows:
            self.windows[stream_id].set()

    async def answer(self, stream_id: int, headers: dict[bytes, bytes]) -> None:
        try:
            await self._answer(stream_id, headers)
        except asyncio.TimeoutError:  # the client held back its window too long: give the stream up
            try:
                self.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
                await self.flush()
            except (h2.exceptions.H2Error, ConnectionError):
                pass
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, ConnectionError):
            pass  # the client reset the stream or went away: nothing more to send
        finally:
            self.windows.pop(stream_id, None)

    async def _answer(self, stream_id: int, headers: dict[bytes, bytes]) -> None:
        method = headers.get(b":method", b"").decode("latin-1")
        parts = urlsplit(headers.get(b":path", b"").decode("latin-1"))
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if method != "GET":
            await self.respond(stream_id, 405, b"only GET here\n")
        elif _RESOURCE.match(parts.path):
            size = _number(query.get("size"), 2000, 0, MAX_SIZE)
            await asyncio.wait_for(self.respond(stream_id, 200, _BODY[:size]), RESPONSE_TIMEOUT)
        elif parts.path == "/events":
            gap = _number(query.get("gap"), 0.2, 0, 5.0, float)
            count = _number(query.get("count"), 5, 0, 1000)
            if gap and count * gap > MAX_STREAM_SECONDS:
                count = int(MAX_STREAM_SECONDS / gap)
            await self.stream_events(stream_id, count, gap)
        else:
            await self.respond(stream_id, 404, b"not found\n")

    async def respond(self, stream_id: int, status: int, body: bytes | memoryview, content_type: str = "text/plain") -> None:
        self.h2.send_headers(stream_id, [(b":status", str(status).encode()), (b"content-type", content_type.encode()),
                                         (b"content-length", str(len(body)).encode()), (b"server", b"netcourse")])
        await self.send_body(stream_id, body, end=True)

    async def send_body(self, stream_id: int, body: bytes | memoryview, *, end: bool) -> None:
        """Send ``body`` as far as the stream's and the connection's windows allow, waiting for
        WINDOW_UPDATE frames for the rest (§5.2), in frames of at most ``MAX_CHUNK`` bytes."""
        window = self.windows.setdefault(stream_id, asyncio.Event())
        view = memoryview(body)
        while view:
            allowed = min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size,
                          MAX_CHUNK, len(view))
            if allowed <= 0:
                window.clear()
                await asyncio.wait_for(window.wait(), WRITE_TIMEOUT)
                continue
            await self.room()  # no more than MAX_BUFFERED bytes queued for a client that reads slowly
            last = end and allowed == len(view)  # END_STREAM rides the last DATA frame, as servers do (§6.1)
            self.h2.send_data(stream_id, bytes(view[:allowed]), end_stream=last)
            view = view[allowed:]
            await self.flush()
            if last:
                return
        if end:  # an empty body: END_STREAM on an empty DATA frame
            self.h2.end_stream(stream_id)
            await self.flush()

    async def stream_events(self, stream_id: int, count: int, gap: float) -> None:
        self.h2.send_headers(stream_id, [(b":status", b"200"), (b"content-type", b"text/event-stream"),
                                         (b"cache-control", b"no-cache"), (b"server", b"netcourse")])
        await self.flush()
        for i in range(1, count + 1):
            await self.send_body(stream_id, f"id: {i}\ndata: event {i}\n\n".encode(), end=False)
            if i < count:
                await asyncio.sleep(gap)
        self.h2.end_stream(stream_id)
        await self.flush()

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _number(raw: str | None, default, low, high, kind=int):
    """A query parameter as a number within [low, high]; the default when absent, malformed or not finite."""
    try:
        value = kind(raw) if raw is not None else default
    except ValueError:
        return default
    if not math.isfinite(value):  # "nan" and "inf" parse as floats, and a NaN timer breaks the loop's heap
        return default
    return min(max(value, low), high)


def make_h2_handler():
    """A stream handler for ``serve()`` that speaks HTTP/2 (prior knowledge) on every connection (Nagle off, as
    aiohttp's server does: a HEADERS frame and its first DATA frame are two writes)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(reader, writer)
        try:
            await conn.run()
        except (ConnectionError, asyncio.TimeoutError, h2.exceptions.H2Error):
            pass
        finally:
            await conn.close()
            if writer.transport.get_write_buffer_size():
                writer.transport.abort()  # close() would wait for a buffer a silent client never drains
            else:
                writer.close()

    return no_delay(handler)


def make_h1_app():
    """The same resources over HTTP/1.1 (aiohttp, the course's guard), for comparison: ``GET /r/<name>?size=N``, and
    ``GET /events?count=N&gap=S``, the same event stream."""
    from aiohttp import web

    from .safety import safe_app

    async def resource(request: web.Request) -> web.Response:
        size = _number(request.query.get("size"), 2000, 0, MAX_SIZE)
        return web.Response(body=b"x" * size, content_type="text/plain", headers={"Server": "netcourse"})

    async def events(request: web.Request) -> web.StreamResponse:
        count = _number(request.query.get("count"), 5, 0, 1000)
        gap = _number(request.query.get("gap"), 0.2, 0, 5.0, float)
        if gap and count * gap > MAX_STREAM_SECONDS:
            count = int(MAX_STREAM_SECONDS / gap)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        for i in range(1, count + 1):
            await resp.write(f"id: {i}\ndata: event {i}\n\n".encode())
            if i < count:
                await asyncio.sleep(gap)
        await resp.write_eof()
        return resp

    app = safe_app()
    app.router.add_get(r"/r/{name:[A-Za-z0-9._-]{1,64}}", resource)
    app.router.add_get("/events", events)
    return app
