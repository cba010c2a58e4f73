"""Reconnecting politely: capped exponential back-off with full jitter.

Before retry number n (counting from 0: the first retry is n = 0), wait a random time between 0 and
min(cap, base × 2ⁿ) (the "full jitter" of Brooker's AWS Architecture Blog post, 2015). Exponential, so a server that is down is not hammered;
capped, so a client comes back within ``cap`` once it is up; random, so a thousand clients cut off at the
same moment do not all come back at the same moment. Notebook 04 explains it; the offline-messaging client
(notebook 08) is meant to use it. The webhook sender (notebook 07) follows the Standard Webhooks schedule
instead, with the same full jitter.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

__all__ = ["Backoff"]


class Backoff:
    """Delays for successive retries.

    Args:
        base: the first ceiling, seconds.
        cap: the largest ceiling, seconds.
        rng: a ``random.Random`` (seed it for a repeatable run).
        jitter: False waits the ceiling itself every time (plain capped exponential: what notebook 04
            shows going wrong when many clients retry together).

    ``next()`` gives the next delay and counts a failure; ``reset()`` after a success starts over.
    """

    def __init__(self, base: float = 0.1, cap: float = 10.0, *, rng: random.Random | None = None,
                 jitter: bool = True) -> None:
        if not 0 < base <= cap:
            raise ValueError("need 0 < base <= cap")
        self.base = base
        self.cap = cap
        self.failures = 0
        self.jitter = jitter
        self._rng = rng or random.Random()

    def ceiling(self, failures: int | None = None) -> float:
        """The most the next delay may be after ``failures`` failures in a row (default: so far)."""
        n = self.failures if failures is None else failures
        return min(self.cap, self.base * 2 ** min(n, 60))

    def next(self) -> float:
        """The delay before the next attempt, uniform in [0, ceiling] (the ceiling without jitter); counts one
        more failure."""
        delay = self._rng.uniform(0, self.ceiling()) if self.jitter else self.ceiling()
        self.failures += 1
        return delay

    def reset(self) -> None:
        """A success: the next failure starts from ``base`` again."""
        self.failures = 0

    def __iter__(self) -> Iterator[float]:
        while True:
            yield self.next()
