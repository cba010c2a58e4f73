"""An event loop in a thread of its own, for what ``serve()`` does not host: UDP endpoints (the link's UDP relay,
a QUIC server). It is listed by ``registry.live_servers()`` like every server, and stopped like them: by
``stop()``, when the notebook cell that started it runs again, or at interpreter exit.

    background = LoopThread("udp relay")
    port = background.start(open_endpoints, close_endpoints)  # async functions: set up (its result comes back),
                                                               # and tear down when the loop ends
    background.run(some_coroutine())                           # more work on that loop, waited for
    background.stop()
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from ..errors import NetcourseTimeout, ServerStartError
from . import cellhook, netns, registry

__all__ = ["LoopThread"]

T = TypeVar("T")
MAX_ERRORS = 100  # the newest kept


class LoopThread:
    """One event loop, one thread. Attributes: ``name``, ``owner`` (the notebook cell that started it),
    ``errors`` (what went wrong, newest last), ``loop``."""

    def __init__(self, name: str, *, namespace: str | None = None) -> None:
        self.name, self.namespace = name, namespace  # a network namespace's path the thread enters first
        self.owner: str | None = None
        self.errors: list[str] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._teardown: Callable[[], Awaitable[Any]] | None = None
        self._id = registry.next_id()

    def _record(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        error = context.get("exception")
        self.errors.append(f"{context.get('message', 'error')}: {error!r}" if error else context.get("message", "error"))
        del self.errors[:-MAX_ERRORS]

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, setup: Callable[[], Awaitable[T]], teardown: Callable[[], Awaitable[Any]] | None = None,
              timeout: float = 5.0) -> T:
        """Start the thread and its loop, run ``setup()`` there and return its result (its error is raised
        here, after the thread has ended). ``teardown()`` runs on the loop when it stops."""
        if self._thread is not None:
            raise ServerStartError(f"{self.name} starts once")
        self._teardown = teardown
        self.owner = cellhook.current_cell() if threading.current_thread() is threading.main_thread() else None
        ready = threading.Event()
        outcome: dict[str, Any] = {}

        def main() -> None:
            registry.owns_thread(self)
            loop = self.loop = asyncio.new_event_loop()
            loop.set_exception_handler(self._record)  # a failed callback lands in ``errors``, not on a terminal
            try:
                try:
                    if self.namespace is not None:
                        netns.enter(self.namespace)  # its sockets live there (the link's far end)
                    outcome["value"] = loop.run_until_complete(setup())
                except BaseException as exc:  # the caller gets it
                    outcome["error"] = exc
                    return
                finally:
                    ready.set()
                loop.run_forever()
                if self._teardown is not None:
                    try:
                        loop.run_until_complete(self._teardown())
                    except Exception as exc:
                        self.errors.append(f"teardown: {exc!r}")
                loop.run_until_complete(asyncio.sleep(0))  # let closed transports release their sockets
            finally:
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.close()
                registry.remove(self._id)

        registry.add(self._id, self)
        self._thread = threading.Thread(target=main, name=f"netcourse-{self.name}", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            self.stop()
            raise ServerStartError(f"{self.name} did not start within {timeout:g} s")
        if "error" in outcome:
            self._thread.join(timeout)
            raise outcome["error"]
        return outcome["value"]

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coro`` on this loop and wait for its result."""
        if not self.running or self.loop is None:
            coro.close()
            raise ServerStartError(f"{self.name} is not running")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise NetcourseTimeout(f"{self.name}: no result within {timeout:g} s") from None

    def stop(self, timeout: float = 5.0) -> None:
        """End the loop (its teardown runs first) and the thread. Safe to call more than once."""
        thread = self._thread
        if thread is None:
            registry.remove(self._id)
            return
        loop = self.loop
        if thread.is_alive() and loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:
                pass  # it closed meanwhile
        thread.join(timeout)
        if thread.is_alive():
            self.errors.append(f"did not stop within {timeout:g} s")
            raise NetcourseTimeout(f"{self.name} did not stop within {timeout:g} s")
