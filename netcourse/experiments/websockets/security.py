"""Notebook 05, section 8: how the course's server treats misbehaving clients: a foreign Origin, unmasked
frames, oversized messages, bad UTF-8, a protocol error; each answered with its status or close code.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...apps.wsserver import make_ws_handler
from ...clients.websocket import ORIGIN, RawClient
from ...protocols.httpwire import parse_head
from ...protocols.wsconn import CloseReceived
from ...protocols.wsframe import Frame, Opcode
from ...runtime.server import serve

__all__ = ["SecurityOutcome", "security"]


@dataclass(frozen=True)
class SecurityOutcome:
    """How the course's server treated one misbehaving client: HTTP status or close code."""

    case: str
    outcome: str

    def __repr__(self) -> str:
        return f"{self.case:<44} → {self.outcome}"


def security() -> list[SecurityOutcome]:
    """Try the attacks and mistakes the course's server must refuse."""
    out = []
    handler = make_ws_handler(allowed_origins={ORIGIN}, max_size=1024)
    with serve(handler, name="ws strict") as srv:
        with RawClient(srv, origin="http://evil.example") as evil:
            status = parse_head(evil.response).start_line
        out.append(SecurityOutcome("handshake from another site's page (Origin)", status))
        for case, frame, masked in (
            ("unmasked client frame", Frame(Opcode.TEXT, b"hi"), False),
            ("message over the 1 KiB limit", Frame(Opcode.BINARY, bytes(2000)), True),
            ("text frame that is not UTF-8", Frame(Opcode.TEXT, b"\xc3\x28"), True),
        ):
            with RawClient(srv) as c:
                c.send(frame, masked=masked)
                events = c.receive(1)
            code = events[0].code if events and isinstance(events[0], CloseReceived) else None
            out.append(SecurityOutcome(case, f"close {code}"))
    return out
