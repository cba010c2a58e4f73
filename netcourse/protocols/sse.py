"""Server-Sent Events (the WHATWG HTML standard, §9.2 "Server-sent events"), sans-I/O.

An event stream is UTF-8 text, a response of type ``text/event-stream`` that never has to end. Each event is
a block of ``field: value`` lines closed by a blank line:

    retry: 2000          the client's reconnection delay, ms (digits only; anything else is ignored)
    id: 42               the "last event ID", sent back as ``Last-Event-ID`` when the client reconnects
    event: price         the event's type ("message" when absent)
    data: first line     data lines, joined with "\\n"
    data: second line
    : a comment          ignored (servers send them to keep the connection busy)
                         <- the blank line dispatches the event

``SSEDecoder().feed(data)`` follows the standard's "interpretation" algorithm (§9.2.6) step by step:

- lines end in CRLF, LF or CR, and a CRLF split across two ``feed`` calls is still one line end;
- one leading BOM (U+FEFF) is dropped, once, at the start of the stream;
- a line starting with ":" is a comment;
- "field:value" splits at the first colon; one space after it is removed; a line with no colon is a field
  with an empty value;
- ``data`` appends the value and a LF to the data buffer; ``event`` sets the type; ``id`` sets the last event
  ID unless the value contains NULL (U+0000); ``retry`` sets the reconnection time if the value is ASCII
  digits only; any other field is ignored;
- a blank line dispatches: the last event ID becomes the ``id`` buffer's value; if the data buffer is empty
  nothing is dispatched (the buffers are just reset), otherwise the last LF is removed and an ``Event`` comes out carrying the last event ID as of then;
- the bytes are decoded as UTF-8 with invalid sequences replaced by U+FFFD, as the standard requires;
- an event not closed by a blank line when the stream ends is never dispatched: call ``end_of_stream()``
  when a connection ends, before feeding the next connection's bytes.

``encode(event)`` writes an ``Event`` (or keyword fields) as one block. A line longer than ``max_line``
raises ``SSEParseError``: the standard sets no limit, but a client must (a server could otherwise send one
endless line).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from ..errors import SSEParseError, latching

__all__ = ["Event", "SSEDecoder", "encode", "comment", "MEDIA_TYPE"]

MEDIA_TYPE = "text/event-stream"
_LINE_END = re.compile(r"\r\n|\r|\n")  # the standard's three line endings, CRLF first


@dataclass(frozen=True)
class Event:
    """One dispatched event.

    Attributes:
        data: the data lines joined by "\\n".
        event: the type, "message" unless an ``event`` field said otherwise.
        id: the last event ID as of this event (it carries over from earlier events until an ``id`` changes it).
        retry: the reconnection time, ms, set by a ``retry`` field in this event's block; None if none was.
    """

    data: str
    event: str = "message"
    id: str = ""
    retry: int | None = None


class SSEDecoder:
    """Parse an event stream incrementally.

    Args:
        max_line: longest line accepted, in characters.
        max_event: most characters of data one event may gather (its data lines together).

    Attributes:
        last_event_id: the event source's last event ID, as of the last blank line (what a reconnecting client
            sends as ``Last-Event-ID``; an ``id`` field in an event the stream never finished does not count).
        reconnection_time: ms to wait before reconnecting, as last set by ``retry`` (None: the client's default).
    """

    def __init__(self, *, max_line: int = 1 << 20, max_event: int = 1 << 24) -> None:
        if max_line < 1 or max_event < 1:
            raise ValueError("max_line and max_event must be positive")
        self.max_line = max_line
        self.max_event = max_event
        self._data_size = 0
        self.failed: SSEParseError | None = None  # set once feed() has raised: it stays failed
        self.last_event_id = ""
        self.reconnection_time: int | None = None
        self._id_buffer = ""  # the standard's "last event ID buffer": becomes last_event_id at a blank line
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = False  # past the place where a BOM may stand
        self._line = ""  # the unfinished line
        self._skip_lf = False  # the last character seen was a CR: a LF right after it belongs to it
        self._data: list[str] = []
        self._type = ""
        self._retry: int | None = None

    @latching
    def feed(self, data: bytes) -> list[Event]:
        """Take more bytes of the stream; return the events they complete."""
        text = self._text.decode(data)
        if not self._started and text:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]
        if self._skip_lf and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF whose CR ended the last line of the previous piece
            self._skip_lf = False
        if not text:
            return []
        events: list[Event] = []
        pos = 0
        for end in _LINE_END.finditer(text):
            line = text[pos:end.start()]
            if self._line:
                line, self._line = self._line + line, ""
            event = self._process(line)
            if event is not None:
                events.append(event)
            pos = end.end()
        self._skip_lf = text.endswith("\r")  # a CR at the very end may be the first half of a CRLF
        if pos < len(text):
            self._line += text[pos:]
            if len(self._line) > self.max_line:
                raise SSEParseError(f"a line of over {self.max_line} characters with no line end")
        return events

    def end_of_stream(self) -> None:
        """The connection ended: an unfinished event is discarded (never dispatched), and the decoder is
        ready for the next connection's stream (a fresh UTF-8 decoder, a BOM allowed again). What carries
        over is what a reconnecting client needs: ``last_event_id`` and ``reconnection_time``."""
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = False
        self._line = ""
        self._skip_lf = False
        self._data, self._type, self._retry, self._data_size = [], "", None, 0
        self.failed = None  # a new connection, a new stream: a limit the last one broke is forgotten
        self._id_buffer = self.last_event_id

    def _process(self, line: str) -> Event | None:
        if len(line) > self.max_line:
            raise SSEParseError(f"a line of {len(line)} characters, over the limit of {self.max_line}")
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data_size += len(value) + 1
            if self._data_size > self.max_event:
                raise SSEParseError(f"an event of over {self.max_event} characters of data with no blank line")
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id":
            if "\x00" not in value:
                self._id_buffer = value
        elif name == "retry":
            if value and value.isascii() and value.isdigit():
                self.reconnection_time = self._retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        data, kind, retry = self._data, self._type, self._retry
        self._data, self._type, self._retry, self._data_size = [], "", None, 0
        self.last_event_id = self._id_buffer  # set even when nothing is dispatched (§9.2.6, "dispatch the event")
        if not data:
            return None
        return Event("\n".join(data), kind or "message", self.last_event_id, retry)


def encode(event: Event | None = None, *, data: str = "", event_type: str | None = None, id: str | None = None,
           retry: int | None = None) -> bytes:
    """One event block, UTF-8, ending in the blank line that dispatches it.

    Pass an ``Event`` (its ``event`` written only when not "message", its ``id`` only when not empty), or the
    fields as keywords. A multi-line ``data`` becomes several ``data:`` lines.
    """
    if event is not None:
        data, retry = event.data, event.retry
        event_type = None if event.event == "message" else event.event
        id = event.id or None
    lines = []
    if retry is not None:
        if retry < 0:
            raise ValueError("retry is a number of milliseconds, 0 or more")
        lines.append(f"retry: {int(retry)}")
    if id is not None:
        if any(c in id for c in "\r\n\x00"):
            raise ValueError("an id cannot contain CR, LF or NULL")
        lines.append(f"id: {id}")
    if event_type is not None:
        if any(c in event_type for c in "\r\n"):
            raise ValueError("an event type cannot contain CR or LF")
        lines.append(f"event: {event_type}")
    for part in data.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        lines.append(f"data: {part}")
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def comment(text: str = "") -> bytes:
    """A comment line (ignored by clients; keeps an idle stream's proxies and NATs awake)."""
    if any(c in text for c in "\r\n"):
        raise ValueError("a comment is one line")
    return f":{' ' + text if text else ''}\n".encode("utf-8")
