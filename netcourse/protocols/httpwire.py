"""HTTP/1.1 messages as bytes on the wire: where the head ends and the body begins (sans-I/O).

Used to split a captured TCP stream into HTTP headers (overhead) and body (payload). It handles the
three ways RFC 9112 §6 lets a message say where its body ends: Content-Length, chunked
transfer coding, and (responses only) the connection closing.

No socket, asyncio, aiohttp or scapy here: it works on bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HttpMessage", "parse_messages", "HttpParseError"]

CRLF = b"\r\n"
HEAD_END = b"\r\n\r\n"  # RFC 9112 §2.1: the head ends with an empty line


class HttpParseError(ValueError):
    """The bytes are not a well-formed HTTP/1.1 message."""


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
    body = bytearray()
    pos = start
    while True:
        line_end = data.find(CRLF, pos)
        if line_end < 0:
            raise HttpParseError("chunked body ends inside a chunk-size line")
        size_text = data[pos:line_end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as exc:
            raise HttpParseError(f"bad chunk size {size_text!r}") from exc
        pos = line_end + 2
        if size == 0:
            trailer_end = data.find(CRLF, pos)
            while trailer_end > pos:  # skip trailer fields up to the empty line
                pos = trailer_end + 2
                trailer_end = data.find(CRLF, pos)
            if trailer_end < 0:
                raise HttpParseError("chunked body has no final CRLF")
            return bytes(body), trailer_end + 2
        if len(data) < pos + size + 2:
            raise HttpParseError("chunked body is shorter than its chunk sizes say")
        body += data[pos : pos + size]
        pos += size + 2


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
        head = stream[pos:end].decode("latin-1")
        lines = head.split("\r\n")
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise HttpParseError(f"header line without a colon: {line!r}")
            headers.append((name.strip(), value.strip()))
        body_start = end + len(HEAD_END)
        fields = {k.lower(): v for k, v in headers}
        status = lines[0].split(" ", 2)
        no_body = responses and len(status) > 1 and (status[1].startswith("1") or status[1] in ("204", "304"))
        if no_body:
            body, body_end = b"", body_start
        elif "chunked" in fields.get("transfer-encoding", "").lower():
            body, body_end = _dechunk(stream, body_start)
        elif "content-length" in fields:
            length = int(fields["content-length"])
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
