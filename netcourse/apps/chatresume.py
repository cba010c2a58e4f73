"""The chat's resume cursors (notebook 08): what a client says it holds, and what a socket has been sent since.

A client resumes with ``{"resume": {conversation: last id it holds there}}``, a cursor per conversation (a
conversation it does not name, one it joined since, starts at 0), or ``{"resume_after": N}``, one cursor for
all: then a conversation joined later never gets its history, since its old ids are below N (the membership
trap). ``read_resume`` checks either form against the log's newest id; ``Cursors`` follows one socket.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Cursors", "read_resume", "MAX_CONVERSATIONS", "FORM"]

MAX_CONVERSATIONS = 1000  # cursors one resume may carry
FORM = '{"resume": {"<conversation>": <last id you hold there>, ...}} or {"resume_after": <last id you hold>}'


@dataclass
class Cursors:
    """Where one socket stands: per conversation when the client sent cursors per conversation, else one for all.

    Attributes:
        everywhere: the cursor of every conversation without one of its own (0 for a per-conversation resume).
        own: cursors per conversation, the client's and those moved since.
        by_conversation: True when the client resumed with a cursor per conversation.
    """

    everywhere: int = 0
    own: dict[str, int] = field(default_factory=dict)
    by_conversation: bool = False

    def after(self, conversation: str) -> int:
        """The id after which ``conversation`` has not been sent yet."""
        return self.own.get(conversation, self.everywhere)

    def moved(self, conversation: str, msg_id: int) -> None:
        """``msg_id`` of ``conversation`` went out: its cursor moves (the one cursor, for a resume with one)."""
        if self.by_conversation:
            self.own[conversation] = max(msg_id, self.own.get(conversation, 0))
        else:
            self.everywhere = max(self.everywhere, msg_id)

    def lowest(self) -> int:
        """Where a replay's scan of the log starts."""
        return min([self.everywhere, *self.own.values()])


def read_resume(data: Any, newest: int) -> Cursors | str:
    """The cursors in a client's first message (parsed JSON), or why they are refused."""
    if isinstance(data, dict) and "resume" in data:
        value = data["resume"]
        if not isinstance(value, dict) or len(value) > MAX_CONVERSATIONS:
            return f"resume must map conversations to the last id held in each (at most {MAX_CONVERSATIONS})"
        for name, last in value.items():
            if not isinstance(name, str) or not 0 < len(name) <= 200:
                return "resume's keys must be conversation names"
            if isinstance(last, bool) or not isinstance(last, int) or not 0 <= last <= newest:
                return f"resume[{name[:40]!r}] must be an id from 0 to the log's newest ({newest})"
        return Cursors(0, dict(value), True)
    if not isinstance(data, dict) or "resume_after" not in data:
        return f"the first message must be {FORM}"
    value = data["resume_after"]
    if isinstance(value, bool) or not isinstance(value, int):
        return f"resume_after must be an integer, not {str(value)[:20]!r}"
    if value < 0:
        return "resume_after cannot be negative"
    if value > newest:
        return f"resume_after {value} is ahead of the log (its newest id is {newest})"
    return Cursors(value)
