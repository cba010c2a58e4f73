"""HTTP/1.1 messages as bytes on the wire: where the head ends and the body begins (sans-I/O).

Used to split a captured TCP stream into HTTP headers (overhead) and body (payload). It handles the
three ways RFC 9112 §6 lets a message say where its body ends: Content-Length, chunked
transfer coding, and (responses only) the connection closing.

No socket, asyncio, aiohttp or scapy here: it works on bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .chunked import ChunkedDecoder, ChunkedParseError, Data

__all__ = ["Head", "HttpMessage", "HttpParseError", "parse_head", "split_head", "parse_messages"]

CRLF = b"\r\n"
HEAD_END = b"\r\n\r\n"  # RFC 9112 §2.1: the head ends with an empty line


class HttpParseError(ValueError):
    """The bytes are not a well-formed HTTP/1.1 message.

    Attributes:
        status: the HTTP status a server should answer with (400, or 431 for a head over the limit).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


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


def parse_messages(stream: bytes, *, responses: bool) -> list[HttpMessage]:
    """Split one direction of an HTTP/1.1 connection into messages.

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
        fields = {k.lower(): v for k, v in headers}
        status = lines[0].split(" ", 2)
        no_body = responses and len(status) > 1 and (status[1].startswith("1") or status[1] in ("204", "304"))
        if no_body:
            body, body_end = b"", body_start
        elif "chunked" in fields.get("transfer-encoding", "").lower():
            body, body_end = _dechunk(stream, body_start)
        elif "content-length" in fields:
            text = fields["content-length"]
            if not (text.isascii() and text.isdigit()):
                raise HttpParseError(f"bad Content-Length {text!r}")
            length = int(text)
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
