"""Bounded waiting: run client coroutines from synchronous cells, and poll for a condition.

Jupyter already runs an event loop in every kernel, so a helper called from a cell may never call
``asyncio.run()``. ``run_async`` runs a coroutine on a fresh loop in a worker thread instead, and every
wait here has a deadline (seconds), so no cell can hang.

Only the deadline of the helper itself is reported as a timeout: a ``TimeoutError`` that the
coroutine raises on its own (on Python 3.11+ ``asyncio.TimeoutError is TimeoutError``) reaches the
caller unchanged.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..errors import NetcourseTimeout

__all__ = ["run_async", "wait_until", "within", "cancel_all_tasks"]

T = TypeVar("T")


async def within(coro: Coroutine[Any, Any, T], timeout: float, what: str = "The coroutine") -> T:
    """Await ``coro`` for at most ``timeout`` seconds; past that, cancel it and raise ``NetcourseTimeout``.

    Unlike ``asyncio.wait_for``, an exception the coroutine raises itself (a ``TimeoutError`` too)
    is passed on as it is: only this deadline says "did not finish".
    """
    task = asyncio.ensure_future(coro)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise NetcourseTimeout(f"{what} did not finish within {timeout} s.")
    return task.result()


def cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel every unfinished task of a loop that is not running, and let them finish."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def run_async(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    """Run a coroutine to completion on a fresh event loop in a worker thread, and return its result.

    For client code in synchronous helpers called from notebook cells, where the kernel's own loop is
    already running (so ``asyncio.run`` would fail). The thread is joined before returning.

    Args:
        coro: the coroutine.
        timeout: seconds; past it the coroutine is cancelled and ``NetcourseTimeout`` raised.
    """
    outcome: dict[str, Any] = {}
    loop = asyncio.new_event_loop()

    def main() -> None:
        try:
            outcome["value"] = loop.run_until_complete(within(coro, timeout, "The client code"))
        except BaseException as exc:  # handed to the caller
            outcome["error"] = exc
        finally:
            try:
                cancel_all_tasks(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    thread = threading.Thread(target=main, name="netcourse-client", daemon=True)
    thread.start()
    thread.join(timeout + 5.0)
    if thread.is_alive():
        raise NetcourseTimeout(
            f"The client code did not finish within {timeout} s, and blocks its thread "
            "(a blocking call inside a coroutine?)."
        )
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.005) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; returns whether it became true.

    Callers must use the result: a ``False`` is a condition that never came, to report or raise.
    """
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
