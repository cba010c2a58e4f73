"""HTTP/1.1 messages as bytes on the wire: where the head ends and the body begins (sans-I/O).

Used to split a captured TCP stream into HTTP headers (overhead) and body (payload). It handles the
three ways RFC 9112 §6 lets a message say where its body ends: Content-Length, chunked
transfer coding, and (responses only) the connection closing.

No socket, asyncio, aiohttp or scapy here: it works on bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import ChunkedParseError, HttpParseError
from .chunked import ChunkedDecoder, Data

__all__ = ["Head", "HttpMessage", "parse_head", "split_head", "parse_messages", "head_size", "response_head_size"]

CRLF = b"\r\n"
HEAD_END = b"\r\n\r\n"  # RFC 9112 §2.1: the head ends with an empty line


@dataclass(frozen=True)
class Head:
    """The head of one HTTP/1.1 message: start line and header fields (RFC 9112 §2.1, §5).

    Attributes:
        start_line: "GET /hello HTTP/1.1" or "HTTP/1.1 200 OK".
        headers: (name, value) pairs in wire order, values without surrounding whitespace.
        size: bytes of the head on the wire, the blank line included.
    """

    start_line: str
    headers: tuple[tuple[str, str], ...]
    size: int

    def header(self, name: str) -> str | None:
        """The value of a header, by case-insensitive name; None if absent.

        Raises:
            HttpParseError: the header appears more than once (ambiguous for the fields the course
                checks, such as Host and Origin).
        """
        values = self.all(name)
        if len(values) > 1:
            raise HttpParseError(f"the {name} header appears {len(values)} times")
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        """Every value of a header, in wire order."""
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def status(self) -> int | None:
        """A response's status code, or None for a request."""
        parts = self.start_line.split(" ", 2)
        if parts[0].startswith("HTTP/") and len(parts) > 1 and parts[1].isascii() and parts[1].isdigit():
            return int(parts[1])
        return None


def split_head(data: bytes, *, max_size: int = 64 * 1024) -> tuple[bytes, bytes] | None:
    """(head, rest) when ``data`` holds a whole head; None while it does not yet.

    Raises:
        HttpParseError: with status 431 when no head end is found within ``max_size`` bytes.
    """
    end = data.find(HEAD_END, 0, max_size + len(HEAD_END))
    if end < 0:
        if len(data) > max_size:
            raise HttpParseError(f"the message head is longer than {max_size} bytes", 431)
        return None
    cut = end + len(HEAD_END)
    return bytes(data[:cut]), bytes(data[cut:])


def parse_head(head: bytes) -> Head:
    """Parse a head that ends with the blank line (as ``split_head`` returns it).

    Field names must be tokens and lines must not start with whitespace (obsolete line folding is
    refused, RFC 9112 §5.2); values must not contain CR, LF or NUL (RFC 9110 §5.5). Bytes are read as
    Latin-1, so nothing fails to decode.
    """
    if not head.endswith(HEAD_END):
        raise HttpParseError("the head does not end with an empty line")
    text = head[: -len(HEAD_END)].decode("latin-1")
    lines = text.split("\r\n")
    if not lines[0]:
        raise HttpParseError("the message has no start line")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or " " in name or "\t" in name:
            raise HttpParseError(f"malformed header line {line!r}")
        if any(c in value for c in "\r\n\x00"):  # RFC 9110 §5.5: a recipient must reject them (or replace)
            raise HttpParseError(f"the {name} header's value contains CR, LF or NUL")
        headers.append((name, value.strip(" \t")))
    return Head(lines[0], tuple(headers), len(head))


@dataclass(frozen=True)
class HttpMessage:
    """One HTTP/1.1 request or response.

    Attributes:
        start_line: "GET /hello HTTP/1.1" or "HTTP/1.1 200 OK".
        headers: (name, value) pairs in wire order.
        head_bytes: bytes of start line, headers and the blank line, in bytes.
        wire_body_bytes: bytes after the head on the wire (chunk framing included), in bytes.
        body: the body, with any chunked framing removed.
    """

    start_line: str
    headers: tuple[tuple[str, str], ...]
    head_bytes: int
    wire_body_bytes: int
    body: bytes

    @property
    def framing_bytes(self) -> int:
        """Bytes of chunked framing (chunk sizes, CRLFs, the last chunk): overhead, not payload."""
        return self.wire_body_bytes - len(self.body)

    def header(self, name: str) -> str | None:
        """The first value of a header, by case-insensitive name."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def _dechunk(data: bytes, start: int) -> tuple[bytes, int]:
    """Decode a chunked body (RFC 9112 §7.1) starting at ``start``; returns (body, end offset)."""
    decoder = ChunkedDecoder()
    try:
        events = decoder.feed(data[start:])
    except ChunkedParseError as exc:
        raise HttpParseError(f"bad chunked body: {exc}") from None
    if not decoder.done:
        raise HttpParseError("the stream ends inside a chunked body")
    return b"".join(e.data for e in events if isinstance(e, Data)), len(data) - len(decoder.unused)


def _framing(head: Head, *, responses: bool) -> tuple[list[str], int | None]:
    """(transfer codings, Content-Length) that frame a message's body, by RFC 9112 §6.3.

    Every Transfer-Encoding line counts (they form one list, RFC 9110 §5.3), and the coding that frames the
    body is the *last* one: ``chunked`` there, or, in a response, the body runs until the connection closes (a
    request without a final ``chunked`` cannot be framed: 400). With Transfer-Encoding present, Content-Length
    is ignored (rule 3). Several Content-Length values must all be the same number (rule 5), else 400.
    """
    codings = [c.strip().lower() for v in head.all("Transfer-Encoding") for c in v.split(",") if c.strip()]
    if codings:
        if codings[-1] != "chunked" and not responses:
            raise HttpParseError(f"Transfer-Encoding {', '.join(codings)!r} does not end in chunked: the request's "
                                 "length cannot be known (RFC 9112 §6.3)")
        return codings, None
    values = {v.strip() for line in head.all("Content-Length") for v in line.split(",")}
    if not values:
        return [], None
    if len(values) > 1 or not all(v.isascii() and v.isdigit() for v in values):
        raise HttpParseError(f"Content-Length {sorted(values)!r} is not one number (RFC 9112 §6.3)")
    return [], int(values.pop())


def parse_messages(stream: bytes, *, responses: bool) -> list[HttpMessage]:
    """Split one direction of an HTTP/1.1 connection into messages (for analysing captures: it is not a client,
    so it does not know which request a response answers; a response to HEAD, or the frames after a 101, are
    not framed here).

    Args:
        stream: the bytes one side sent, in order.
        responses: True for the server's side (a body may then run until the connection closes).

    Returns:
        The messages, in order. A trailing partial message raises ``HttpParseError``.
    """
    messages = []
    pos = 0
    while pos < len(stream):
        end = stream.find(HEAD_END, pos)
        if end < 0:
            raise HttpParseError("the stream ends inside a message head")
        head = parse_head(stream[pos : end + len(HEAD_END)])
        lines = [head.start_line]
        headers = list(head.headers)
        body_start = end + len(HEAD_END)
        status = lines[0].split(" ", 2)
        no_body = responses and len(status) > 1 and (status[1].startswith("1") or status[1] in ("204", "304"))
        codings, length = _framing(head, responses=responses)
        if no_body:
            body, body_end = b"", body_start
        elif codings and codings[-1] == "chunked":
            body, body_end = _dechunk(stream, body_start)
        elif codings:  # a response whose last coding is not chunked: its body runs to the connection's end
            body_end, body = len(stream), stream[body_start:]
        elif length is not None:
            body_end = body_start + length
            if body_end > len(stream):
                raise HttpParseError("the stream ends before Content-Length bytes of body")
            body = stream[body_start:body_end]
        elif responses:
            body_end = len(stream)  # RFC 9112 §6.3 rule 8: read until the connection closes
            body = stream[body_start:]
        else:
            body, body_end = b"", body_start
        messages.append(
            HttpMessage(
                start_line=lines[0],
                headers=tuple(headers),
                head_bytes=body_start - pos,
                wire_body_bytes=body_end - body_start,
                body=body,
            )
        )
        pos = body_end
    return messages


def head_size(first_line: str, raw_headers: Iterable[tuple[bytes | str, bytes | str]]) -> int:
    """Bytes of an HTTP/1.1 head: the first line, "Name: value" lines, the empty line (RFC 9112 §2.1).

    ``raw_headers`` are (name, value) pairs as they were on the wire (aiohttp's ``raw_headers``, bytes or str).
    """
    return len(first_line) + 2 + sum(len(k) + 2 + len(v) + 2 for k, v in raw_headers) + 2


def response_head_size(resp: Any) -> int:
    """Bytes of a client response's head as received, from its version, status, reason and raw header lines
    (an aiohttp ``ClientResponse``, or anything with those attributes)."""
    return head_size(f"HTTP/{resp.version.major}.{resp.version.minor} {resp.status} {resp.reason}", resp.raw_headers)
