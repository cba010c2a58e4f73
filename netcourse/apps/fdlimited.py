"""An echo server in a process of its own, under a file-descriptor limit: notebook 11's "one process, how many
connections?".

    python -m netcourse.apps.fdlimited --max-files 64

It lowers its own soft ``RLIMIT_NOFILE`` to ``--max-files`` (every socket is a file descriptor), serves a TCP
echo on 127.0.0.1, prints ``READY <port>`` once listening, and stops when its standard input closes (the parent
ended or died) or on SIGTERM. When ``accept()`` fails for want of descriptors (EMFILE, "Too many open files"),
asyncio logs it and stops accepting for a second; this process prints ``EMFILE`` on its standard error once
per such pause, so that the parent can count them. The kernel has meanwhile completed the TCP handshake and queued the
connection: the client is connected, and nobody answers.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import sys
import threading

from .echo import tcp_echo

__all__ = ["main"]


class _CountEmfile(logging.Handler):
    """Prints EMFILE once per pause: asyncio logs every failed accept() of a burst, then pauses for a second."""

    last = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        exc = record.exc_info[1] if record.exc_info else None
        if "out of system resource" in text or "Too many open files" in text or (
                isinstance(exc, OSError) and exc.errno == 24):
            if record.created - self.last > 0.5:
                print("EMFILE", file=sys.stderr, flush=True)
            self.last = record.created


async def _serve(max_files: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    server = await asyncio.start_server(tcp_echo, "127.0.0.1", 0, backlog=1024)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)

    def watch_stdin() -> None:  # the parent closed our stdin (or died): stop
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netcourse.apps.fdlimited")
    parser.add_argument("--max-files", type=int, required=True, help="the soft limit on open file descriptors")
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if not 16 <= args.max_files <= (hard if hard != resource.RLIM_INFINITY else 1 << 20):
        print(f"--max-files must be from 16 to the hard limit ({hard})", file=sys.stderr)
        return 2
    resource.setrlimit(resource.RLIMIT_NOFILE, (args.max_files, hard))
    logging.getLogger("asyncio").addHandler(_CountEmfile())
    asyncio.run(_serve(args.max_files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
