"""HTTP/1.1's chunked transfer coding (RFC 9112 §7.1), sans-I/O: an encoder and an incremental decoder.

A response whose length is not known when it starts is sent in chunks, each prefixed by its size in hex:

    5\\r\\nHello\\r\\n          a chunk: size line, data, CRLF
    7;note=x\\r\\n, world\\r\\n  a chunk extension after ';' (parsed, then ignored, as most recipients do)
    0\\r\\n                   the last chunk: size 0
    Expires: never\\r\\n      optional trailer fields
    \\r\\n                    the end

``ChunkedDecoder().feed(data)`` accepts the bytes in any pieces (one byte at a time, or all at once) and
returns events: ``Chunk`` when a size line is complete, ``Data`` for the chunk's bytes as they arrive,
``Trailers`` and then ``End``. Bytes after the end are kept in ``unused`` (the next message on the
connection). Input that breaks the grammar raises ``ChunkedParseError`` naming the problem; the limits
(size-line length, chunk size, trailer size) are keyword options.

The decoder is strict where leniency has caused request smuggling: a line must end in CRLF (not a bare LF),
and the size is hex digits only (no sign, no "0x", no spaces before it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import ChunkedParseError, latching

__all__ = [
    "Chunk", "Data", "Trailers", "End", "ChunkedDecoder", "encode_chunk", "encode_chunked",
    "dechunk", "LAST_CHUNK",
]

CRLF = b"\r\n"
LAST_CHUNK = b"0\r\n\r\n"  # the last chunk with no trailers: what ends almost every chunked body

HEX = frozenset(b"0123456789abcdefABCDEF")
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'  # RFC 9110 §5.6.4
_EXTENSION = re.compile(rf"[ \t]*;[ \t]*({_TOKEN})(?:[ \t]*=[ \t]*({_TOKEN}|{_QUOTED}))?")
_FIELD = re.compile(rf"({_TOKEN}):[ \t]*([\t \x21-\x7e\x80-\xff]*?)[ \t]*")  # no CR, LF, NUL or controls


@dataclass(frozen=True)
class Chunk:
    """A chunk's size line was read: ``size`` bytes of data follow (0: the last chunk)."""

    size: int
    extensions: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True)
class Data:
    """Bytes of the current chunk's data (a chunk may arrive as several ``Data``)."""

    data: bytes


@dataclass(frozen=True)
class Trailers:
    """The trailer fields after the last chunk (often none)."""

    fields: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class End:
    """The chunked body is complete."""


Event = Chunk | Data | Trailers | End
_AGAIN = object()  # internal: a step consumed bytes without completing an event


class ChunkedDecoder:
    """Decode a chunked body incrementally.

    Args:
        max_line: longest size line (extensions included) or trailer line, in bytes, CRLF excluded.
        max_size: largest chunk size accepted, in bytes.
        max_trailers: most bytes of trailer section accepted.

    Attributes:
        done: True once ``End`` was returned.
        unused: bytes fed after the end (they belong to whatever follows on the connection).
        wire_bytes: bytes of the body consumed so far (framing included).
    """

    def __init__(self, *, max_line: int = 1024, max_size: int = 1 << 24, max_trailers: int = 8192) -> None:
        if min(max_line, max_size, max_trailers) < 1:
            raise ValueError("the limits must be positive")
        self.max_line = max_line
        self.max_size = max_size
        self.max_trailers = max_trailers
        self.done = False
        self.failed: ChunkedParseError | None = None  # set once feed() has raised: it stays failed
        self.unused = b""
        self.wire_bytes = 0
        self._buffer = bytearray()
        self._state = "size"  # size, data, data-crlf, trailers
        self._left = 0  # data bytes left in the current chunk
        self._trailers: list[tuple[str, str]] = []
        self._trailer_bytes = 0
        self._chunks = 0

    @latching
    def feed(self, data: bytes) -> list[Event]:
        """Take more bytes; return the events they complete."""
        if self.done:
            self.unused += bytes(data)
            return []
        self._buffer += data
        events: list[Event] = []
        while not self.done:
            before = len(self._buffer)
            event = self._step()
            self.wire_bytes += before - len(self._buffer)
            if event is _AGAIN:  # a step that produced no event (a CRLF, a trailer line): go on
                continue
            if event is None:
                break
            events.append(event)
            if isinstance(event, Trailers):
                events.append(End())
        if self.done:
            self.unused, self._buffer = bytes(self._buffer), bytearray()
        return events

    def _line(self, what: str, limit: int) -> bytes | None:
        """One CRLF-terminated line from the buffer (without the CRLF), or None if it is not all here."""
        end = self._buffer.find(CRLF)
        if end < 0:
            lf = self._buffer.find(b"\n")
            if lf >= 0:
                raise ChunkedParseError(f"the {what} ends in a bare LF, not CRLF (byte {lf} of it)")
            pending = len(self._buffer) - (1 if self._buffer.endswith(b"\r") else 0)  # a CR may begin the CRLF
            if pending > limit:
                raise ChunkedParseError(f"the {what} is longer than {limit} bytes and still not ended by CRLF")
            return None
        if end > limit:
            raise ChunkedParseError(f"the {what} is {end} bytes, over the limit of {limit}")
        line = bytes(self._buffer[:end])
        if b"\n" in line:
            raise ChunkedParseError(f"the {what} contains a bare LF")
        del self._buffer[: end + 2]
        return line

    def _step(self) -> Event | None:
        if self._state == "size":
            line = self._line(f"size line of chunk {self._chunks + 1}", self.max_line)
            if line is None:
                return None
            return self._size_line(line)
        if self._state == "data":
            if not self._buffer:
                return None
            piece = bytes(self._buffer[: self._left])
            del self._buffer[: len(piece)]
            self._left -= len(piece)
            if self._left == 0:
                self._state = "data-crlf"
            return Data(piece)
        if self._state == "data-crlf":
            if len(self._buffer) < 2:
                if self._buffer and self._buffer[:1] != b"\r":
                    raise ChunkedParseError(f"chunk {self._chunks} is longer than its size line says "
                                            f"(expected CRLF after its data, got {bytes(self._buffer[:2])!r})")
                return None
            if self._buffer[:2] != CRLF:
                raise ChunkedParseError(f"chunk {self._chunks} is longer than its size line says "
                                        f"(expected CRLF after its data, got {bytes(self._buffer[:2])!r})")
            del self._buffer[:2]
            self._state = "size"
            return _AGAIN
        # trailers: field lines up to an empty line
        line = self._line("trailer section", min(self.max_line, self.max_trailers))
        if line is None:
            return None
        if line == b"":
            self.done = True
            return Trailers(tuple(self._trailers)) if self._trailers else End()
        self._trailer_bytes += len(line) + 2
        if self._trailer_bytes > self.max_trailers:
            raise ChunkedParseError(f"the trailer section is over the limit of {self.max_trailers} bytes")
        match = _FIELD.fullmatch(line.decode("latin-1"))
        if match is None:
            raise ChunkedParseError(f"bad trailer field line {line[:60]!r}")
        self._trailers.append((match.group(1), match.group(2)))
        return _AGAIN

    def _size_line(self, line: bytes) -> Event:
        digits = len(line) - len(line.lstrip(b"0123456789abcdefABCDEF"))
        size_text, rest = line[:digits], line[digits:]
        if not size_text:
            raise ChunkedParseError(f"chunk {self._chunks + 1}: the size {line[:20]!r} is not hexadecimal")
        significant = size_text.lstrip(b"0")
        if len(significant) > len(f"{self.max_size:x}") or int(size_text, 16) > self.max_size:
            raise ChunkedParseError(f"chunk {self._chunks + 1}: size 0x{size_text[:20].decode()} is over the limit "
                                    f"of {self.max_size} bytes")
        extensions = self._extensions(rest)
        size = int(size_text, 16)
        self._chunks += 1
        if size == 0:
            self._state = "trailers"
        else:
            self._state, self._left = "data", size
        return Chunk(size, extensions)

    def _extensions(self, rest: bytes) -> tuple[tuple[str, str | None], ...]:
        text = rest.decode("latin-1")
        out = []
        pos = 0
        while pos < len(text):
            match = _EXTENSION.match(text, pos)
            if match is None:
                raise ChunkedParseError(f"chunk {self._chunks + 1}: the size is not hexadecimal, or a bad chunk "
                                        f"extension: {rest[:40]!r}")
            out.append((match.group(1), match.group(2)))
            pos = match.end()
        return tuple(out)


def encode_chunk(piece: bytes) -> bytes:
    """One chunk: hex size, CRLF, the data, CRLF. An empty piece would be the last chunk: refused."""
    if not piece:
        raise ValueError("an empty chunk means 'the end' (use LAST_CHUNK)")
    return b"%x\r\n%s\r\n" % (len(piece), piece)


def encode_chunked(pieces: Iterable[bytes], *, trailers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A whole chunked body: one chunk per non-empty piece, the last chunk, any trailers, the final CRLF."""
    body = b"".join(encode_chunk(p) for p in pieces if p)
    fields = b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in trailers)
    return body + b"0\r\n" + fields + CRLF


def dechunk(data: bytes, **limits: int) -> bytes:
    """The body carried by a complete chunked encoding; raises ``ChunkedParseError`` if it is cut short or
    followed by anything."""
    decoder = ChunkedDecoder(**limits)
    body = b"".join(e.data for e in decoder.feed(data) if isinstance(e, Data))
    if not decoder.done:
        raise ChunkedParseError("the chunked body is cut short: no last chunk and final CRLF")
    if decoder.unused:
        raise ChunkedParseError(f"{len(decoder.unused)} bytes follow the end of the chunked body")
    return body
