"""JSON from a client, read strictly: what a course app accepts, and the reason it gives for what it refuses.

``json.loads`` alone accepts more than a server should (UTF-16 and UTF-32 bodies, nesting that exhausts Python's
stack with a ``RecursionError``, strings holding lone surrogates that no UTF-8 database can store). The apps that
read JSON (the chat, the webhook receiver) read it through these two functions, so crafted JSON gets a 400 or an
error frame with a reason, never a 500.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["parse_json", "text_field", "unicode_text"]


def parse_json(data: bytes | str) -> Any:
    """JSON, or ``ValueError`` naming what is wrong: not UTF-8 (RFC 8259 §8.1), not JSON, nested too deeply."""
    try:
        return json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
    except RecursionError:  # what json.loads raises for deeply nested input
        raise ValueError("nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(str(exc)) from None


def unicode_text(value: str) -> bool:
    """Whether a string is Unicode text UTF-8 can hold (a JSON "\\ud800" escape gives one that is not)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text_field(value: Any, name: str, limit: int) -> str:
    """A JSON string field of 1 to ``limit`` characters that UTF-8 (and SQLite) can hold, or ``ValueError``."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    if not unicode_text(value):
        raise ValueError(f"{name} holds a lone surrogate (not Unicode text)")
    if not 0 < len(value) <= limit:
        raise ValueError(f"{name} must be 1 to {limit} characters")
    return value
