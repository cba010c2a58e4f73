"""Every error netcourse raises, in one place.

Each one says, in words a learner understands, what went wrong and what to do next. Protocol errors
also carry what a server sends back (an HTTP status, a WebSocket close code, a TLS alert), so no caller
maps them by hand. This module imports nothing but the standard library, so ``protocols/`` can raise
them and still load alone. The tree::

    NetcourseError
    ├── ServerError
    │   ├── ServerStartError        the server could not start (its cause is chained)
    │   │   └── PortInUseError      the port asked for is taken by another program
    │   └── ServerStoppedError      the server is not running (any more)
    ├── CaptureError
    │   ├── CaptureNotPermitted     no rights to capture and no recording to replay instead
    │   ├── CaptureStartTimeout     the sniffer did not start listening in time
    │   ├── UnknownScenarioError    a scenario name the course has no recording of
    │   └── RecordingMissing        the scenario is known but its recording is not shipped
    ├── LinkError                   the emulated link could not be set up or used
    │   └── NamespaceError          a network namespace could not be made, entered or removed
    ├── NetcourseTimeout            something the course waited for did not happen in time
    ├── ExerciseError               an exercise was used the wrong way
    ├── ProtocolError               bytes that break a protocol's rules; a decoder that raised stays failed
    │   ├── HttpParseError          .status: 400 (431 for a head over the limit)   RFC 9112
    │   │   └── ChunkedParseError   .status: 400                                   RFC 9112 §7.1
    │   ├── HandshakeError          .status: the WebSocket upgrade's refusal        RFC 6455 §4
    │   ├── FrameError              .close_code: 1002, 1007 or 1009                 RFC 6455 §5, §7.4
    │   ├── H2FrameError            .error_code: the GOAWAY's (§7)                  RFC 9113 §4, §6
    │   ├── QuicPacketError         not QUIC: the datagram is dropped               RFC 9000 §17
    │   ├── SSEParseError           a limit the client set (it drops the stream)    WHATWG HTML §9.2
    │   ├── TLSRecordError          .alert: 50 (decode_error)                       RFC 8446 §5, §6.2
    │   ├── BeatProtocolError       the course's heartbeat framing (close the connection)
    │   └── SignatureError          .status: 401                                   Standard Webhooks
    ├── CursorTooOld                .status: 410; a poller's cursor fell off the log
    └── EndpointRefused             a webhook URL a sender must not deliver to (SSRF)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class NetcourseError(Exception):
    """Base class of every error netcourse raises."""


class ServerError(NetcourseError):
    """A background server could not do what was asked."""


class ServerStartError(ServerError):
    """The server failed while starting; ``__cause__`` holds the original exception."""


class PortInUseError(ServerStartError):
    """The address and port asked for are already taken by another socket."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        super().__init__(
            f"Port {port} on {host} is already in use by another program or server. "
            f"Stop that program, or pass port=0 (the default) to let the operating system "
            f"choose a free port."
        )


class ServerStoppedError(ServerError):
    """The server has been stopped, so it cannot run anything."""


class CaptureError(NetcourseError):
    """Packet capture could not do what was asked."""


class CaptureNotPermitted(CaptureError):
    """Live capture needs root or CAP_NET_RAW, and there is no recording to fall back on."""


class CaptureStartTimeout(CaptureError):
    """The sniffer did not report that it was listening within the allowed time."""


class UnknownScenarioError(CaptureError):
    """A scenario name that the course does not know."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = sorted(known)
        listing = ", ".join(self.known) or "(none)"
        super().__init__(f"Unknown capture scenario {name!r}. Known scenarios: {listing}.")


class RecordingMissing(CaptureError):
    """The scenario is known, but its recording is not in the package."""


class LinkError(NetcourseError):
    """The emulated link could not be set up, or was used the wrong way."""


class NamespaceError(LinkError):
    """A network namespace could not be made, entered or removed."""


class NetcourseTimeout(NetcourseError, TimeoutError):
    """A wait ran past its timeout (seconds)."""


class ExerciseError(NetcourseError):
    """An exercise was set up or called the wrong way."""


class ProtocolError(NetcourseError, ValueError):
    """Bytes that break a protocol's rules (or a limit the reader set); the message names the rule.

    Attributes (None where the protocol has no such answer):
        status: the HTTP status a server answers with.
        close_code: the WebSocket close code to close with.
        alert: the TLS alert to send.
        error_code: the HTTP/2 error code to send (in GOAWAY or RST_STREAM).
    """

    status: int | None = None
    close_code: int | None = None
    alert: int | None = None
    error_code: int | None = None


def latching(method: F) -> F:
    """For a decoder's ``feed``: once it has raised a ``ProtocolError``, every later call raises that error again.

    A decoder that has failed has state nobody can trust (half a size line, half a record), so it stays failed
    and the connection must be closed, as h11 and wsproto do. The error is kept in the decoder's ``failed``.
    """

    @functools.wraps(method)
    def feed(self: Any, *args: Any, **kwargs: Any) -> Any:
        failed = getattr(self, "failed", None)
        if failed is not None:
            raise failed.with_traceback(None)
        try:
            return method(self, *args, **kwargs)
        except ProtocolError as exc:
            self.failed = exc
            raise

    return feed  # type: ignore[return-value]


class HttpParseError(ProtocolError):
    """Not a well-formed HTTP/1.1 message; ``status`` is 400, or 431 for a head over the limit (RFC 6585 §5)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ChunkedParseError(HttpParseError):
    """Not a well-formed chunked body (RFC 9112 §7.1); ``status`` is 400."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 400)


class HandshakeError(ProtocolError):
    """The WebSocket opening handshake is not acceptable; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class FrameError(ProtocolError):
    """Bytes that break RFC 6455's framing; ``close_code`` is what to close the connection with (1002 unless
    the message says otherwise: 1007 for bad UTF-8, 1009 for a message over the limit)."""

    def __init__(self, message: str, close_code: int = 1002) -> None:
        super().__init__(message)
        self.close_code = int(close_code)


class H2FrameError(ProtocolError):
    """Bytes that break RFC 9113's framing; ``error_code`` is the HTTP/2 error code (§7) to send in GOAWAY."""

    def __init__(self, message: str, error_code: int = 0x1) -> None:
        super().__init__(message)
        self.error_code = int(error_code)


class QuicPacketError(ProtocolError):
    """Bytes that are not a QUIC packet; an endpoint drops such a datagram (RFC 9000 §5.2, §12.2)."""


class SSEParseError(ProtocolError):
    """An event stream broke a limit the client set (the standard itself rejects nothing)."""


class TLSRecordError(ProtocolError):
    """Bytes that are not a TLS record stream; a TLS endpoint answers with ``alert`` 50, decode_error."""

    alert = 50


class BeatProtocolError(ProtocolError):
    """The peer broke the heartbeat protocol's framing; the connection must be closed."""


class SignatureError(ProtocolError):
    """A webhook delivery that must not be trusted (the message says which check failed); answered 401."""

    status = 401


class CursorTooOld(NetcourseError, LookupError):
    """The messages after this cursor were evicted; ``resync_after`` is where to start again. Answered 410 Gone."""

    status = 410

    def __init__(self, cursor: int, resync_after: int) -> None:
        super().__init__(
            f"after={cursor} is older than the oldest message kept (id {resync_after + 1}): "
            f"messages were lost to you; start again from after={resync_after}"
        )
        self.resync_after = resync_after


class EndpointRefused(NetcourseError, ValueError):
    """The endpoint URL is not one a webhook may be sent to (the message says why)."""
