"""An HTTP/2 client on one connection (prior knowledge, RFC 9113 §3.3), the protocol's state kept by ``h2``.

``fetch(host, port, paths)`` opens one TCP connection, sends every request at once, each on a stream of its own
(1, 3, 5, ...), and reads the answers as they come, interleaved. It returns a ``Page``: when each answer
ended, its status and size, and, read back from the bytes it sent with ``protocols.h2frame``, the size of
each request's HEADERS frame (HPACK's dynamic table makes the second and later ones small, RFC 7541 §2.3).

Like a browser, it opens HTTP/2's flow-control windows wide at the start (RFC 9113 §6.9.2): a stream may have
``STREAM_WINDOW`` bytes in flight, the connection ``CONNECTION_WINDOW``. With the protocol's default of 65,535
bytes for the whole connection, a page would be held to 64 KiB per round trip whatever TCP allowed.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from ..errors import NetcourseError
from ..protocols.h2frame import FrameDecoder, FrameType
from ..protocols.wsframe import Frame as WsFrame
from ..protocols.wsframe import FrameDecoder as WsDecoder
from ..protocols.wsframe import Opcode, close_payload
from ..protocols.wsframe import encode as ws_encode

__all__ = ["Page", "fetch", "websocket_echo", "STREAM_WINDOW", "CONNECTION_WINDOW"]

STREAM_WINDOW = 6 * 1024 * 1024  # SETTINGS_INITIAL_WINDOW_SIZE: what Chrome announces
CONNECTION_WINDOW = 15 * 1024 * 1024  # the connection's window after the first WINDOW_UPDATE (Chrome: about 15 MiB)


@dataclass
class Page:
    """What one connection fetched.

    Attributes:
        started: ``time.perf_counter()`` before connecting.
        done: path -> seconds from ``started`` until its last byte; ``first``: until its first body byte.
        status, size: path -> the answer's status and body bytes.
        header_blocks: request HEADERS payload sizes (HPACK-encoded), in the order sent.
        frames: one line per frame the client sent (``h2frame.Frame.describe``).
        connections: connections opened (one).
        handshake: HTTP/3 only: seconds from ``started`` until QUIC's handshake completed.
    """

    started: float
    done: dict[str, float] = field(default_factory=dict)
    first: dict[str, float] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    size: dict[str, int] = field(default_factory=dict)
    header_blocks: list[int] = field(default_factory=list)
    frames: list[str] = field(default_factory=list)
    connections: int = 1
    handshake: float = float("nan")

    @property
    def seconds(self) -> float:
        """Until the last answer ended."""
        return max(self.done.values(), default=float("nan"))


async def fetch(host: str, port: int, paths: list[str], *, authority: str | None = None,
                timeout: float = 30.0) -> Page:
    """GET every path over one HTTP/2 connection, all at once; see the module's docstring."""
    if not paths:
        raise ValueError("fetch() needs at least one path")
    page = Page(time.perf_counter())
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as browsers do
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    sent = FrameDecoder(preface=True)
    streams: dict[int, str] = {}

    def send() -> None:
        data = conn.data_to_send()
        if data:
            for frame in sent.feed(data):
                page.frames.append(frame.describe())
                if frame.type == FrameType.HEADERS:
                    page.header_blocks.append(len(frame.payload))
            writer.write(data)

    try:
        conn.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            h2.settings.SettingCodes.ENABLE_PUSH: 0})  # browsers no longer accept server push
        conn.initiate_connection()
        conn.increment_flow_control_window(CONNECTION_WINDOW - 65_535)  # WINDOW_UPDATE on stream 0 (§6.9)
        for path in paths:
            stream_id = conn.get_next_available_stream_id()
            streams[stream_id] = path
            conn.send_headers(stream_id, [(":method", "GET"), (":scheme", "http"), (":path", path),
                                          (":authority", authority or f"{host}:{port}"), ("user-agent", "netcourse")],
                              end_stream=True)
            page.size[path] = 0
        send()
        await writer.drain()
        deadline = asyncio.get_running_loop().time() + timeout
        while len(page.done) < len(paths):
            left = deadline - asyncio.get_running_loop().time()
            data = await asyncio.wait_for(reader.read(65536), max(0.0, left))
            if not data:
                raise NetcourseError(f"the server closed the connection with {len(paths) - len(page.done)} answers missing")
            for event in conn.receive_data(data):
                path = streams.get(getattr(event, "stream_id", 0))
                if isinstance(event, h2.events.ResponseReceived) and path:
                    page.status[path] = int(dict(event.headers).get(":status", "0"))
                elif isinstance(event, h2.events.DataReceived) and path:
                    page.first.setdefault(path, time.perf_counter() - page.started)
                    page.size[path] += len(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)) and path:
                    page.done[path] = time.perf_counter() - page.started
                    if isinstance(event, h2.events.StreamReset):
                        page.status.setdefault(path, 0)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    raise NetcourseError(f"the server ended the connection: GOAWAY {event.error_code!r}")
            send()
            await writer.drain()
        conn.close_connection()
        send()
    except asyncio.TimeoutError:
        raise NetcourseError(f"{len(paths) - len(page.done)} of {len(paths)} answers did not come within {timeout:g} s") from None
    finally:
        writer.close()
    return page


async def websocket_echo(host: str, port: int, text: str = "hello", *, warm: bool = True,
                         timeout: float = 30.0) -> tuple[float, float]:
    """A WebSocket over HTTP/2 (RFC 8441): on one connection (``warm``: one request answered on it first, so it
    is already open), a CONNECT with ``:protocol: websocket``, then one masked TEXT message, echoed.

    Returns (seconds from the CONNECT until the 200, seconds until the echo arrived)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    authority = f"{host}:{port}".encode()
    decoder = WsDecoder("client")

    async def until(done) -> None:
        writer.write(conn.data_to_send())
        await writer.drain()
        while not done():
            data = await asyncio.wait_for(reader.read(65536), timeout)
            if not data:
                raise NetcourseError("the server closed the connection")
            for event in conn.receive_data(data):
                state["events"].append(event)
                if isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    if event.stream_id == state.get("ws"):
                        state["frames"] += decoder.feed(event.data)
            writer.write(conn.data_to_send())
            await writer.drain()

    state: dict = {"events": [], "frames": []}
    try:
        conn.initiate_connection()
        if warm:
            conn.send_headers(1, [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/r/warm?size=10"),
                                  (b":authority", authority)], end_stream=True)
            await until(lambda: any(isinstance(e, h2.events.StreamEnded) and e.stream_id == 1 for e in state["events"]))
        else:  # RFC 8441 §3: not before the server's SETTINGS said it may
            await until(lambda: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in state["events"]))
        if not conn.remote_settings.enable_connect_protocol:
            raise NetcourseError("the server does not offer WebSockets over HTTP/2 (SETTINGS_ENABLE_CONNECT_PROTOCOL)")
        stream = state["ws"] = conn.get_next_available_stream_id()
        start = time.perf_counter()
        conn.send_headers(stream, [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"http"),
                                   (b":path", b"/ws"), (b":authority", authority), (b"sec-websocket-version", b"13")])
        await until(lambda: any(isinstance(e, h2.events.ResponseReceived) and e.stream_id == stream
                                for e in state["events"]))
        status = next(dict(e.headers)[b":status"] for e in state["events"]
                      if isinstance(e, h2.events.ResponseReceived) and e.stream_id == stream)
        if status != b"200":
            raise NetcourseError(f"the WebSocket was refused: {status.decode()}")
        opened = time.perf_counter() - start
        conn.send_data(stream, ws_encode(WsFrame(Opcode.TEXT, text.encode()), mask=True))
        await until(lambda: any(f.opcode == Opcode.TEXT for f in state["frames"]))
        echoed = time.perf_counter() - start
        conn.send_data(stream, ws_encode(WsFrame(Opcode.CLOSE, close_payload(1000)), mask=True), end_stream=True)
        writer.write(conn.data_to_send())
        await writer.drain()
        return opened, echoed
    except asyncio.TimeoutError:
        raise NetcourseError(f"no answer within {timeout:g} s") from None
    finally:
        writer.close()
