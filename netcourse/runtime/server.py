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
  when the interpreter exits (``runtime.registry.stop_all`` is registered with ``atexit``).
- Stopping closes the listening socket and every open connection, then joins the thread.
- Start-up errors are raised in the caller, as ``ServerStartError`` (or ``PortInUseError``), and a
  start that fails leaves nothing listening, whatever the timing.
- ``registry.live_servers()`` lists every server whose thread is alive, including one that failed to stop in
  time (its ``errors`` say why), so nothing runs unseen.
- Nothing is ever printed from the server's thread: errors inside handlers are collected in
  ``Server.errors`` (the newest ``MAX_ERRORS``) instead of landing in whichever cell runs next.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import ipaddress
import socket
import ssl as _ssl
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, Union

from aiohttp import web

from ..errors import (
    NetcourseTimeout,
    PortInUseError,
    ServerStartError,
    ServerStoppedError,
)
from . import cellhook, netns, registry
from .admission import HEADER_TIMEOUT, MAX_CONNECTIONS, Admission
from .privates import aiohttp_progress, check_private_apis
from .tlslayer import tls_factory
from .waiting import cancel_all_tasks, within

__all__ = ["Server", "serve", "MAX_ERRORS"]

T = TypeVar("T")
StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
AppLike = Union[web.Application, StreamHandler]

LOOPBACK = "127.0.0.1"
MAX_ERRORS = 100  # a server keeps at most this many error messages, the newest




MAX_HEAD_LINE = 64 * 1024  # bytes: aiohttp's own limit on one head line, above every app's head limit
KEEPALIVE_TIMEOUT = 30.0  # seconds an idle keep-alive connection stays open (aiohttp's default: an hour)


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
        max_connections: open connections the server holds at once, exactly; past it a newcomer makes
            room by closing the connection that has owed a head, body or handshake longest, else the
            oldest idle one, else the oldest busy one (``runtime.admission``).
        header_timeout: seconds an aiohttp app's client has to send a request head, from its first
            byte (never applied to a body or an upgraded connection).
        namespace: path of a network namespace (``/run/netns/NAME``) the server's thread enters
            before it binds; None for the machine's own. Used by the emulated link.
        ssl: an ``ssl.SSLContext`` (server side) to serve TLS; ``url`` then starts with ``https``.
        ssl_handshake_timeout: seconds a client has to finish the TLS handshake; a client that stops
            half-way is disconnected after it and holds nothing longer.

    Attributes:
        host: the bound address.
        port: the bound port (the real one, also when 0 was asked for).
        url: ``http://host:port``.
        errors: messages of errors raised inside handlers or while stopping, newest last.
        rejected: requests so malformed that aiohttp answered them 4xx itself (counted, not errors).
        state: "new", "starting", "running", "stopping" or "stopped".
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
        max_connections: int = MAX_CONNECTIONS,
        header_timeout: float = HEADER_TIMEOUT,
        namespace: str | None = None,
        ssl: Any = None,
        ssl_handshake_timeout: float = 5.0,
    ) -> None:
        _check_arguments(app, host, port, ssl)
        self._id = registry.next_id()
        self.app = app
        self.host = host
        self.port = port
        self.name = name or (
            "aiohttp app" if isinstance(app, web.Application) else getattr(app, "__name__", "handler")
        )
        self.start_timeout = start_timeout
        self.shutdown_timeout = shutdown_timeout
        self.handler_cancellation = handler_cancellation
        self.namespace = namespace
        self.ssl = ssl
        self.ssl_handshake_timeout = ssl_handshake_timeout
        self.admission = Admission(
            max_connections=max_connections,
            header_timeout=header_timeout,
            progress=aiohttp_progress if isinstance(app, web.Application) else None,
        )
        self.errors: list[str] = []
        self.rejected = 0  # malformed requests answered 4xx (not errors of the server)
        self.owner: str | None = None
        self.state = "new"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._abort = threading.Event()  # set when start() gave up: the thread must not serve
        self._start_task: asyncio.Task[None] | None = None
        self._serving: asyncio.Future[None] | None = None
        self._listen_sock: socket.socket | None = None
        self._start_error: BaseException | None = None
        self._runner: web.AppRunner | None = None
        self._tcp_server: asyncio.AbstractServer | None = None
        self._cleanup_began = False  # the app's on_cleanup handlers have started
        self._state_lock = threading.Lock()

    # -- public ------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the server is listening."""
        return self.state == "running"

    @property
    def url(self) -> str:
        """Base URL of the server, e.g. ``http://127.0.0.1:40123``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.ssl is not None else 'http'}://{host}:{self.port}"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The server's own event loop (running in its thread)."""
        if self._loop is None or not self.running:
            raise ServerStoppedError(f"{self!r} is not running.")
        return self._loop

    def record_error(self, text: str) -> None:
        """Keep one error message (the newest ``MAX_ERRORS`` are kept)."""
        self.errors.append(text)
        if len(self.errors) > MAX_ERRORS:
            del self.errors[: len(self.errors) - MAX_ERRORS]

    def start(self) -> "Server":
        """Start listening; returns self. Raises ``ServerStartError`` if the server cannot start."""
        check_private_apis()  # before anything changes: a failed check leaves the server new, not half-started
        with self._state_lock:
            if self.state != "new":
                raise ServerStartError(f"{self!r} was already started once; create a new server instead.")
            self.state = "starting"
        # A server started from a widget callback or a helper thread belongs to no cell: re-running
        # whichever cell ran last must not stop it.
        self.owner = cellhook.current_cell() if threading.current_thread() is threading.main_thread() else None
        self._thread = threading.Thread(
            target=self._thread_main, name=f"netcourse-server-{self._id}", daemon=True
        )
        registry.add(self._id, self)  # registered before the thread exists; the thread removes itself
        self._thread.start()
        if not self._started.wait(self.start_timeout):
            self._give_up_start()
            raise ServerStartError(
                f"The server did not start listening within {self.start_timeout} s, so it was stopped. "
                "Is its on_startup code waiting for something?"
            )
        if self._start_error is not None:
            self._give_up_start()
            exc = self._start_error
            if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
                raise PortInUseError(self.host, self.port) from exc
            if isinstance(exc, ServerStartError):
                raise exc
            raise ServerStartError(f"The server could not start: {type(exc).__name__}: {exc}") from exc
        if self.state == "starting":
            self.state = "running"
        return self

    def _give_up_start(self) -> None:
        """After a failed or late start: make sure the thread ends without serving."""
        self._abort.set()
        self.state = "stopping"
        self._request_loop_stop()
        self._join(self.shutdown_timeout + 1.0)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening, close every connection and join the thread. Safe to call twice.

        Args:
            timeout: seconds to wait for the thread to finish. If it does not, the server stays in
                ``live_servers()`` with the reason in ``errors``, and ``NetcourseTimeout`` is raised.
        """
        if self.state in ("new", "stopped"):
            self.state = "stopped"
            return
        self._abort.set()
        self.state = "stopping"
        self._request_loop_stop()
        if threading.current_thread() is not self._thread:
            self._join(timeout)
            if self.state != "stopped":
                raise NetcourseTimeout(
                    f"{self!r} did not stop within {timeout} s; it is still listed in live_servers()."
                )

    def _join(self, timeout: float) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.record_error(f"the server's thread did not end within {timeout} s of being stopped")
        else:
            self.state = "stopped"

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run a coroutine on the server's loop and return its result (from synchronous code).

        Args:
            coro: the coroutine to run.
            timeout: seconds to wait for it; past that the coroutine is cancelled and
                ``NetcourseTimeout`` raised. Exceptions of the coroutine itself pass unchanged.
        """
        try:
            loop = self.loop
        except ServerStoppedError:
            coro.close()
            raise
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        done, _ = concurrent.futures.wait([future], timeout)
        if not done:
            future.cancel()
            raise NetcourseTimeout(f"The coroutine did not finish within {timeout} s.")
        return future.result()

    async def arun(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Like ``run`` but awaitable, for cells that use top-level ``await``."""
        try:
            loop = self.loop
        except ServerStoppedError:
            coro.close()
            raise
        future = asyncio.run_coroutine_threadsafe(coro, loop)

        async def result() -> T:
            return await asyncio.wrap_future(future)

        try:
            return await within(result(), timeout)
        finally:
            if not future.done():
                future.cancel()

    def __enter__(self) -> "Server":
        if self.state == "new":
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> "Server":
        if self.state == "new":
            await asyncio.get_running_loop().run_in_executor(None, self.start)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.stop)

    def __repr__(self) -> str:
        where = self.url if self.port else f"{self.host}:?"
        return f"<Server {self.name} {where} {self.state}>"

    # -- the server's thread -----------------------------------------------------------------------

    def _request_loop_stop(self) -> None:
        """Ask the server's thread to stop: cancel a start in progress, end the serving wait.

        The loop itself is never stopped from outside (``loop.stop()`` would interrupt a start half
        way and leave its listening socket open): the thread ends its own waits.
        """
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._end_waits)
            except RuntimeError:  # closed in between
                pass

    def _end_waits(self) -> None:
        if self._start_task is not None and not self._start_task.done():
            self._start_task.cancel()
        if self._serving is not None and not self._serving.done():
            self._serving.set_result(None)

    def _thread_main(self) -> None:
        registry.owns_thread(self)
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(self._on_loop_error)
        self._start_task = loop.create_task(self._astart())
        self._serving = loop.create_future()  # done when the server is asked to stop
        self._loop = loop
        try:
            try:
                loop.run_until_complete(self._start_task)
            except BaseException as exc:  # reported to the caller of start()
                self._start_error = exc
            finally:
                self._started.set()
            if self._start_error is None and not self._abort.is_set():
                loop.run_until_complete(self._serving)
        finally:
            try:
                loop.run_until_complete(self._acleanup())
                cancel_all_tasks(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())  # threads of run_in_executor
            except BaseException as exc:  # keep going: the loop must close
                self.record_error(f"error while stopping: {exc!r}")
            finally:
                asyncio.set_event_loop(None)
                loop.close()
                registry.remove(self._id)
                self.state = "stopped"

    async def _astart(self) -> None:
        if self.namespace is not None:
            netns.enter(self.namespace)  # this thread only; its sockets live in the namespace
        # The listening socket is ours, made before asyncio sees it, so clean-up can always close it:
        # a start cancelled inside loop.create_server() would otherwise leave it listening.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._listen_sock = socket.create_server((self.host, self.port), family=family)
        self.port = self._listen_sock.getsockname()[1]
        if isinstance(self.app, web.Application):
            self.app.on_cleanup.insert(0, self._note_cleanup)
            runner = web.AppRunner(
                self.app,
                access_log=None,
                logger=registry.LOGGER,
                shutdown_timeout=self.shutdown_timeout,
                handler_cancellation=self.handler_cancellation,
                keepalive_timeout=KEEPALIVE_TIMEOUT,
                # aiohttp refuses a header line past 8,190 bytes with a bare 400; a course app's guard
                # (apps.safety) measures the whole head and answers 431 with the reason instead.
                max_line_size=MAX_HEAD_LINE,
                max_field_size=MAX_HEAD_LINE,
            )
            self._runner = runner
            await runner.setup()
            assert runner.server is not None
            loop = asyncio.get_running_loop()
            self._tcp_server = await loop.create_server(self._with_tls(runner.server), sock=self._listen_sock)
        else:
            handler = self.app

            async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                try:
                    await handler(reader, writer)
                except ConnectionError:
                    pass  # the peer went away: normal for a lesson server
                finally:
                    writer.close()

            loop = asyncio.get_running_loop()

            def stream_protocol() -> asyncio.StreamReaderProtocol:  # what asyncio.start_server builds
                return asyncio.StreamReaderProtocol(asyncio.StreamReader(), tracked)

            self._tcp_server = await loop.create_server(self._with_tls(stream_protocol), sock=self._listen_sock)

    async def _note_cleanup(self, app: web.Application) -> None:
        self._cleanup_began = True

    def _with_tls(self, factory: Callable[[], Any]) -> Callable[[], Any]:
        """The protocol factory, guarded by admission, and wrapped in TLS when the server has an ``ssl`` context.

        asyncio's own TLS (``create_server(ssl=...)``) closes a failed handshake without sending the alert
        OpenSSL wrote (CPython gh-98078): the peer sees only EOF, never *why*. RFC 8446 §6.2 says the side
        that detects an error sends the alert, so the course's servers flush it first. Building the TLS
        protocol here (not with ``TCPSite``) also lets admission count a connection from its first byte:
        a client stalled half-way through a handshake holds a slot, and is among the first to go.
        """
        guarded = self.admission.wrap(factory)
        if self.ssl is None:
            return guarded
        return tls_factory(guarded, context=self.ssl, handshake_timeout=self.ssl_handshake_timeout,
                           admission=self.admission)

    async def _acleanup(self) -> None:
        if self._tcp_server is not None:
            self._tcp_server.close()  # stop accepting before the app shuts down
        if self._runner is not None:
            runner, self._runner = self._runner, None
            try:
                await within(runner.cleanup(), self.shutdown_timeout + 2.0, "The app's clean-up")
            except Exception as exc:  # keep stopping; report it
                self.record_error(f"error while stopping: {exc!r}")
                # What would not close is cut, and the app's on_cleanup (which closes its databases)
                # still runs, even if on_shutdown was what hung.
                self.admission.abort_all()
                if not self._cleanup_began and isinstance(self.app, web.Application):
                    try:
                        await within(self.app.cleanup(), 2.0, "The app's on_cleanup")
                    except Exception as exc2:
                        self.record_error(f"error while stopping: {exc2!r}")
        # A connection whose client stopped reading never finishes a graceful close (its send buffer
        # never drains): every connection still open ends now, with a reset.
        self.admission.abort_all()
        if self._tcp_server is not None:
            server, self._tcp_server = self._tcp_server, None
            server.close()
            try:
                await within(server.wait_closed(), self.shutdown_timeout, "Closing the listener")
            except NetcourseTimeout as exc:
                self.record_error(str(exc))
        if self._listen_sock is not None:
            self._listen_sock.close()  # closing twice is harmless

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        message = context.get("message", "error in the server's event loop")
        self.record_error(f"{message}: {exc!r}" if exc else message)


def serve(app: AppLike, **options: Any) -> Server:
    """Start ``app`` in the background and return its running ``Server``.

    Use it as a context manager (``with serve(app) as srv:``) so the server stops at the end of the
    block, or keep the returned server and call ``.stop()``. The keyword options are ``Server``'s
    (one signature, one place): the address is 127.0.0.1 unless ``host`` names another, and
    ``port=0`` lets the OS pick a free port.
    """
    return Server(app, **options).start()


def _check_arguments(app: Any, host: str, port: Any, ssl: Any) -> None:
    """serve()'s arguments, refused with a message a learner can act on."""
    if not isinstance(app, web.Application) and not callable(app):
        raise TypeError(
            "serve() needs an aiohttp.web.Application or an async handler(reader, writer); "
            f"got {type(app).__name__}"
        )
    _check_host(host)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
        raise ServerStartError(f"port must be a number from 0 to 65535 (0: let the OS choose), not {port!r}.")
    if isinstance(app, web.Application) and app.frozen:
        raise ServerStartError(
            "This aiohttp Application has been served once already, and aiohttp runs an app only "
            "once. Build a fresh one (call its make_..._app() function again) for each serve()."
        )
    if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
        raise ServerStartError(f"ssl= takes an ssl.SSLContext made for a server, not {type(ssl).__name__}.")


def _check_host(host: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError as exc:
        raise ServerStartError(
            f"host must be an IP address such as {LOOPBACK!r} or '::1', not {host!r}."
        ) from exc
