"""Notebook 11: one process, how many connections? Every connection a server holds is a file descriptor, and a
process may open only so many (``ulimit -n``; Linux's usual soft limit is 1,024). Past it, ``accept()`` fails
with EMFILE ("Too many open files"), while the kernel goes on completing TCP handshakes into the listen queue:
the client is connected, and nobody answers.

``fd_limit(max_files, clients)`` starts an echo server in a child process (``apps.fdlimited``) under a soft
limit, connects ``clients`` clients, and counts who got an answer; the same with the limit raised shows the fix
(``ulimit -n``, systemd's ``LimitNOFILE=``, or ``resource.setrlimit`` up to the hard limit).
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from ...errors import ServerStartError

__all__ = ["FdLimit", "fd_limit"]


START_TIMEOUT = 10.0


@dataclass
class FdLimit:
    """Clients against a server process with ``max_files`` descriptors."""

    max_files: int
    clients: int
    connected: int  # the TCP handshake completed (the kernel did that)
    answered: int  # the server's process echoed within the wait
    emfile: int  # times the server's accept() failed for want of descriptors and it paused accepting

    def __repr__(self) -> str:
        return (f"limit {self.max_files:>5} descriptors, {self.clients} clients: {self.connected} connected, "
                f"{self.answered} answered, {self.clients - self.answered} never answered; the server's accept() "
                f"failed with EMFILE and it paused accepting {self.emfile} times")


def fd_limit(max_files: int = 64, clients: int = 100, wait: float = 0.5) -> FdLimit:
    """Connect ``clients`` clients to an echo server whose process may open ``max_files`` descriptors; each sends
    a line and waits up to ``wait`` seconds (all of them at once) for its echo."""
    proc = subprocess.Popen([sys.executable, "-m", "netcourse.apps.fdlimited", "--max-files", str(max_files)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    socks: list[socket.socket] = []
    try:
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("READY "):
            raise ServerStartError(f"the limited server did not start: {line.strip() or proc.stderr.read()!r}")
        port = int(line.split()[1])
        connected = 0
        for _ in range(clients):
            s = socket.socket()
            s.settimeout(2)
            socks.append(s)
            try:
                s.connect(("127.0.0.1", port))
                s.sendall(b"hello\n")
                s.setblocking(False)
                connected += 1
            except OSError:
                pass
        answered: set[socket.socket] = set()
        deadline = time.monotonic() + wait
        while len(answered) < connected and time.monotonic() < deadline:
            waiting = [s for s in socks if s not in answered and s.fileno() >= 0]
            readable, _, _ = select.select(waiting, [], [], max(0.0, deadline - time.monotonic()))
            for s in readable:
                try:
                    if s.recv(100):
                        answered.add(s)
                except OSError:
                    answered.discard(s)
    finally:
        for s in socks:
            s.close()
        emfile = _stop(proc)
    return FdLimit(max_files, clients, connected, len(answered), emfile)


def _stop(proc: subprocess.Popen) -> int:
    """Stop the server (its stdin closes) and count the EMFILE lines it printed."""
    try:
        proc.stdin.close()
        proc.wait(timeout=5)
    except (subprocess.TimeoutExpired, OSError):
        proc.kill()
        proc.wait(timeout=5)
    errors = proc.stderr.read() if proc.stderr else ""
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    return errors.count("EMFILE")
