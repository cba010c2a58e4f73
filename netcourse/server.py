"""Background servers for notebook cells.

``serve(app)`` runs an ``aiohttp.web.Application`` — or, for lessons about raw sockets, a plain asyncio
stream handler ``async def handler(reader, writer)`` — on 127.0.0.1, on a port the operating system
picks, in a daemon thread that owns its own event loop. The notebook's own event loop (Jupyter runs
one in every kernel) is never touched, so the same call works in plain cells and in cells that use
top-level ``await``.

    >>> with serve(make_hello_app()) as srv:          # doctest: +SKIP
    ...     urllib.request.urlopen(srv.url + "/hello").read()

Lifetime rules:

- A server stops when its ``with`` block ends, when ``.stop()`` is called, when the notebook cell that
  started it runs again (so re-running a cell never leaves the old server listening), or at the latest
  when the interpreter exits (``stop_all`` is registered with ``atexit``).
- Stopping closes the listening socket and every open connection, then joins the thread.
- Start-up errors are raised in the caller, as ``ServerStartError`` (or ``PortInUseError``).
- Nothing is ever printed from the server's thread: errors inside handlers are collected in
  ``Server.errors`` instead of landing in whichever cell happens to run next.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import errno
import ipaddress
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, Union

from aiohttp import web

from .errors import NetcourseTimeout, PortInUseError, ServerStartError, ServerStoppedError

__all__ = ["Server", "serve", "stop_all", "live_servers", "run_async", "wait_until"]

T = TypeVar("T")
StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
AppLike = Union[web.Application, StreamHandler]

LOOPBACK = "127.0.0.1"

_registry_lock = threading.Lock()
_registry: dict[int, "Server"] = {}
_counter = 0


class _ErrorCollector(logging.Handler):
    """Keeps a server's log records in a list instead of printing them from its thread."""

    def __init__(self, sink: list[str]) -> None:
        super().__init__(level=logging.WARNING)
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f": {record.exc_info[1]!r}"
        self._sink.append(text)


class Server:
    """One server running in a background thread with its own event loop.

    Args:
        app: an ``aiohttp.web.Application``, or an ``async def handler(reader, writer)`` for a raw
            TCP stream server.
        host: address to bind. Loopback unless the caller names another one.
        port: port to bind; 0 (the default) lets the operating system choose a free one.
        name: a label shown in ``repr`` and in thread names.
        start_timeout: seconds to wait for the server to start listening.
        shutdown_timeout: seconds that in-flight handlers get to finish when the server stops.
        handler_cancellation: cancel an aiohttp handler when its client disconnects (aiohttp's own
            default is not to, so a long-poll handler would wait on for a client that is gone).

    Attributes:
        host: the bound address.
        port: the bound port (the real one, also when 0 was asked for).
        url: ``http://host:port``.
        errors: messages of errors raised inside handlers, newest last.
    """

    def __init__(
        self,
        app: AppLike,
        *,
        host: str = LOOPBACK,
        port: int = 0,
        name: str | None = None,
        start_timeout: float = 5.0,
        shutdown_timeout: float = 0.5,
        handler_cancellation: bool = True,
    ) -> None:
        global _counter
        if not isinstance(app, web.Application) and not callable(app):
            raise TypeError(
                "serve() needs an aiohttp.web.Application or an async handler(reader, writer); "
                f"got {type(app).__name__}"
            )
        with _registry_lock:
            _counter += 1
            self._id = _counter
        self.app = app
        self.host = host
        self.port = port
        self.name = name or (
            "aiohttp app" if isinstance(app, web.Application) else getattr(app, "__name__", "handler")
        )
        self.start_timeout = start_timeout
        self.shutdown_timeout = shutdown_timeout
        self.handler_cancellation = handler_cancellation
        self.errors: list[str] = []
        self.owner: frozenset[str] = frozenset()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._runner: web.AppRunner | None = None
        self._tcp_server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._logger = logging.getLogger(f"netcourse.server.{self._id}")
        self._logger.propagate = False
        self._logger.handlers[:] = [_ErrorCollector(self.errors)]
        self._state = "new"  # new -> running -> stopped

    # -- public ------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the server is listening."""
        return self._state == "running"

    @property
    def url(self) -> str:
        """Base URL of the server, e.g. ``http://127.0.0.1:40123``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The server's own event loop (running in its thread)."""
        if self._loop is None or not self.running:
            raise ServerStoppedError(f"{self!r} is not running.")
        return self._loop

    def start(self) -> "Server":
        """Start listening; returns self. Raises ``ServerStartError`` if the server cannot start."""
        if self._state != "new":
            raise ServerStartError(f"{self!r} was already started once; create a new server instead.")
        _adopt_for_current_cell(self)
        self._thread = threading.Thread(
            target=self._thread_main, name=f"netcourse-server-{self._id}", daemon=True
        )
        self._thread.start()
        if not self._started.wait(self.start_timeout):
            self._state = "stopped"
            self._request_loop_stop()
            self._thread.join(self.shutdown_timeout + 2.0)
            raise ServerStartError(
                f"The server did not start listening within {self.start_timeout} s. "
                "Is its on_startup code waiting for something?"
            )
        if self._start_error is not None:
            self._thread.join(self.shutdown_timeout + 2.0)
            self._state = "stopped"
            exc = self._start_error
            if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
                raise PortInUseError(self.host, self.port) from exc
            if isinstance(exc, ServerStartError):
                raise exc
            raise ServerStartError(
                f"The server could not start: {type(exc).__name__}: {exc}"
            ) from exc
        self._state = "running"
        with _registry_lock:
            _registry[self._id] = self
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening, close every connection and join the thread. Safe to call twice.

        Args:
            timeout: seconds to wait for the thread to finish.
        """
        with _registry_lock:
            _registry.pop(self._id, None)
        if self._state != "running":
            self._state = "stopped"
            return
        self._state = "stopped"
        self._request_loop_stop()
        assert self._thread is not None
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise NetcourseTimeout(f"{self!r} did not stop within {timeout} s.")

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run a coroutine on the server's loop and return its result (from synchronous code).

        Args:
            coro: the coroutine to run.
            timeout: seconds to wait for it; on timeout the coroutine is cancelled.
        """
        try:
            loop = self.loop
        except ServerStoppedError:
            coro.close()
            raise
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise NetcourseTimeout(f"The coroutine did not finish within {timeout} s.") from exc

    async def arun(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Like ``run`` but awaitable, for cells that use top-level ``await``."""
        try:
            loop = self.loop
        except ServerStoppedError:
            coro.close()
            raise
        future = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError as exc:
            raise NetcourseTimeout(f"The coroutine did not finish within {timeout} s.") from exc

    def __enter__(self) -> "Server":
        if self._state == "new":
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> "Server":
        if self._state == "new":
            await asyncio.get_running_loop().run_in_executor(None, self.start)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.stop)

    def __repr__(self) -> str:
        where = self.url if self.port else f"{self.host}:?"
        return f"<Server {self.name} {where} {self._state}>"

    # -- the server's thread -----------------------------------------------------------------------

    def _request_loop_stop(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:  # closed in between
                pass

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(self._on_loop_error)
        try:
            try:
                loop.run_until_complete(self._astart())
            except BaseException as exc:  # reported to the caller of start()
                self._start_error = exc
                return
            finally:
                self._started.set()
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(self._acleanup())
                _cancel_all_tasks(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    async def _astart(self) -> None:
        if isinstance(self.app, web.Application):
            runner = web.AppRunner(
                self.app,
                access_log=None,
                logger=self._logger,
                shutdown_timeout=self.shutdown_timeout,
                handler_cancellation=self.handler_cancellation,
            )
            self._runner = runner
            await runner.setup()
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            server = site._server  # the asyncio Server behind the site
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]
        else:
            handler = self.app
            writers = self._writers

            async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                writers.add(writer)
                try:
                    await handler(reader, writer)
                except ConnectionError:
                    pass  # the peer went away: normal for a lesson server
                finally:
                    writers.discard(writer)
                    writer.close()

            self._tcp_server = await asyncio.start_server(tracked, self.host, self.port)
            self.port = self._tcp_server.sockets[0].getsockname()[1]

    async def _acleanup(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            try:
                await asyncio.wait_for(runner.cleanup(), self.shutdown_timeout + 2.0)
            except Exception as exc:  # keep stopping; report it
                self.errors.append(f"error while stopping: {exc!r}")
        if self._tcp_server is not None:
            server, self._tcp_server = self._tcp_server, None
            server.close()
            for writer in list(self._writers):  # open connections end with the server
                writer.transport.abort()
            try:
                await asyncio.wait_for(server.wait_closed(), self.shutdown_timeout)
            except asyncio.TimeoutError:
                pass

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        message = context.get("message", "error in the server's event loop")
        self.errors.append(f"{message}: {exc!r}" if exc else message)


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def serve(
    app: AppLike,
    *,
    host: str = LOOPBACK,
    port: int = 0,
    name: str | None = None,
    start_timeout: float = 5.0,
    shutdown_timeout: float = 0.5,
    handler_cancellation: bool = True,
) -> Server:
    """Start ``app`` in the background and return its running ``Server``.

    Use it as a context manager (``with serve(app) as srv:``) so the server stops at the end of the
    block, or keep the returned server and call ``.stop()``. The arguments are those of ``Server``.
    The address is 127.0.0.1 unless ``host`` names another; ``port=0`` lets the OS pick a free port.
    """
    _check_host(host)
    return Server(
        app,
        host=host,
        port=port,
        name=name,
        start_timeout=start_timeout,
        shutdown_timeout=shutdown_timeout,
        handler_cancellation=handler_cancellation,
    ).start()


def _check_host(host: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError as exc:
        raise ServerStartError(
            f"host must be an IP address such as {LOOPBACK!r} or '::1', not {host!r}."
        ) from exc


def live_servers() -> list[Server]:
    """The servers that are running now, oldest first."""
    with _registry_lock:
        return [s for _, s in sorted(_registry.items())]


def stop_all(timeout: float = 5.0) -> int:
    """Stop every running server; returns how many were stopped. Runs at interpreter exit too."""
    servers = live_servers()
    for server in servers:
        try:
            server.stop(timeout)
        except Exception:  # at exit, keep going
            pass
    return len(servers)


atexit.register(stop_all)


# -- re-running a notebook cell stops the servers its previous run left behind ----------------------
#
# A cell is known by its id (JupyterLab and nbclient send one) and by a hash of its source. Before a
# cell runs, every server that an earlier run of the same cell started is stopped.

_current_cell: frozenset[str] = frozenset()
_hook_installed = False


def _cell_keys(cell_id: str | None, source: str | None) -> frozenset[str]:
    keys = set()
    if cell_id:
        keys.add(f"id:{cell_id}")
    if source is not None:
        keys.add(f"src:{hash(source)}")
    return frozenset(keys)


def _on_pre_run_cell(info: Any) -> None:
    """IPython hook: before a cell runs, stop the servers that its previous run started."""
    global _current_cell
    _current_cell = _cell_keys(getattr(info, "cell_id", None), getattr(info, "raw_cell", None))
    for server in live_servers():
        if server.owner & _current_cell:
            try:
                server.stop()
            except Exception:
                pass


def _adopt_for_current_cell(server: Server) -> None:
    install_ipython_hook()
    server.owner = _current_cell


def install_ipython_hook() -> None:
    """Register the cell re-run hook with IPython, if we run inside it. Called on import."""
    global _hook_installed, _current_cell
    if _hook_installed:
        return
    _hook_installed = True
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    shell.events.register("pre_run_cell", _on_pre_run_cell)
    # The cell that is running now (the one importing netcourse) passed its hook already.
    history = shell.user_ns.get("In") or [""]
    _current_cell = _cell_keys(None, history[-1])


def run_async(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    """Run a coroutine to completion on a fresh event loop in a worker thread, and return its result.

    For client code in synchronous helpers called from notebook cells, where the kernel's own loop is
    already running (so ``asyncio.run`` would fail). The thread is joined before returning.

    Args:
        coro: the coroutine.
        timeout: seconds; on timeout the coroutine is cancelled and ``NetcourseTimeout`` raised.
    """
    outcome: dict[str, Any] = {}
    loop = asyncio.new_event_loop()

    async def guarded() -> T:
        return await asyncio.wait_for(coro, timeout)

    def main() -> None:
        try:
            outcome["value"] = loop.run_until_complete(guarded())
        except BaseException as exc:  # handed to the caller
            outcome["error"] = exc
        finally:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=main, name="netcourse-client", daemon=True)
    thread.start()
    thread.join(timeout + 5.0)
    if thread.is_alive():
        raise NetcourseTimeout(f"The client code did not finish within {timeout} s.")
    if "error" in outcome:
        exc = outcome["error"]
        if isinstance(exc, asyncio.TimeoutError):
            raise NetcourseTimeout(f"The client code did not finish within {timeout} s.") from exc
        raise exc
    return outcome["value"]


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.005) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
