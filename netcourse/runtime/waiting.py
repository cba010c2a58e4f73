"""Bounded waiting: run work in a thread of its own, client coroutines from synchronous cells, poll for a condition.

Jupyter already runs an event loop in every kernel, so a helper called from a cell may never call
``asyncio.run()``. ``run_async`` runs a coroutine on a fresh loop in a worker thread instead, and every
wait here has a deadline (seconds), so no cell can hang. ``in_thread`` is the one thread runner under it
(and under the emulated link's two ends: it enters a network namespace first when asked).

Only the deadline of the helper itself is reported as a timeout: a ``TimeoutError`` that the
coroutine raises on its own (on Python 3.11+ ``asyncio.TimeoutError is TimeoutError``) reaches the
caller unchanged.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..errors import NetcourseTimeout
from . import netns

__all__ = ["in_thread", "run_async", "wait_until", "within", "cancel_all_tasks"]

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


def in_thread(fn: Callable[[], T], timeout: float, *, namespace: str | None = None,
              name: str = "netcourse-worker") -> T:
    """Call ``fn()`` in a fresh thread and return its result; the one thread runner of the course.

    Args:
        fn: the work; its exception reaches the caller unchanged.
        timeout: seconds to wait for the thread; past it ``NetcourseTimeout`` is raised (the thread, a
            daemon, is left to finish on its own: a thread cannot be killed).
        namespace: the path of a network namespace the thread enters first (``runtime.netns``); the
            sockets ``fn`` creates live there. None: the machine's own network.
        name: the thread's name.
    """
    outcome: dict[str, Any] = {}

    def main() -> None:
        try:
            if namespace is not None:
                netns.enter(namespace)
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the caller
            outcome["error"] = exc

    thread = threading.Thread(target=main, name=name, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        where = f" inside the namespace {namespace}" if namespace else ""
        raise NetcourseTimeout(f"The work{where} did not finish within {timeout} s, and blocks its thread "
                               "(a blocking call inside a coroutine?).")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def run_async(coro: Coroutine[Any, Any, T], timeout: float = 60.0, *, namespace: str | None = None) -> T:
    """Run a coroutine to completion on a fresh event loop in a worker thread, and return its result.

    For client code in synchronous helpers called from notebook cells, where the kernel's own loop is
    already running (so ``asyncio.run`` would fail). The thread is joined before returning.

    Args:
        coro: the coroutine.
        timeout: seconds; past it the coroutine is cancelled and ``NetcourseTimeout`` raised.
        namespace: a network namespace to run it in (the emulated link's near end), or None.
    """

    def main() -> T:
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(within(coro, timeout, "The client code"))
        finally:
            try:
                cancel_all_tasks(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    try:
        return in_thread(main, timeout + 5.0, namespace=namespace, name="netcourse-client")
    finally:
        if inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
            coro.close()  # never started (the namespace could not be entered): no "never awaited" warning


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
