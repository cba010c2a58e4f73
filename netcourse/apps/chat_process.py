"""The chat server in a process of its own (started by ``experiments.offline.faults``), so that a "server crash" is
a real one: SIGKILL, no clean-up of any kind, the kernel closing its sockets and SQLite left with whatever its
write-ahead log held. It prints "ready" once imported and waits for a line on its stdin before it binds (the soak
keeps one such spare warm, so a restart takes milliseconds, not an interpreter's start-up). Then it obeys one JSON
command per line on stdin and answers one JSON line on stdout:

    {"post": ["bob", "general", "hello"]}   -> {"id": 42}                       bob posts; the id once committed
    {"cut": true}                           -> {"ok": true}                     cut the next frame in half
    {"cuts": true}                          -> {"cut_mid_frame": [[id, bool]], "armed": n}
                                               the frames cut so far, and cuts armed but not yet made

It stops its server and exits when its stdin closes (its parent is gone or done with it).

    python -m netcourse.apps.chat_process DB PORT PAGE
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time


def _line() -> bytes:
    """One line from stdin, read unbuffered (b"" once it closes)."""
    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(sys.stdin.fileno(), 1)
        if not byte:
            return b""
        line += byte
    return line


def _answer(obj: object) -> None:
    os.write(sys.stdout.fileno(), (json.dumps(obj) + "\n").encode())


def main(argv: list[str]) -> int:
    from ..errors import PortInUseError
    from ..runtime.server import serve
    from .chat import ChatServer

    db, port, page = argv[0], int(argv[1]), int(argv[2])
    _answer("ready")  # the client process prints the same word; _go() reads either
    if not _line():
        return 0
    server = ChatServer(db, page=page)
    # The process it replaces was just killed: its port can stay held for a moment. A supervisor retries.
    deadline = time.monotonic() + 3.0
    while True:
        try:
            srv = serve(server.app(), name="chat", port=port)
            break
        except PortInUseError as exc:
            if time.monotonic() > deadline:
                _answer({"error": str(exc)})
                return 1
            time.sleep(0.02)
    _answer("serving")
    try:
        while line := _line():
            command = json.loads(line)
            if "post" in command:
                msg_id = asyncio.run_coroutine_threadsafe(server.post(*command["post"]), srv.loop).result(10)
                _answer({"id": msg_id})
            elif "cut" in command:
                server.arm_cut_mid_frame()
                _answer({"ok": True})
            elif "cuts" in command:
                _answer({"cut_mid_frame": server.cut_mid_frame, "armed": server.cuts_armed})
            else:
                _answer({"error": f"unknown command {sorted(command)}"})
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
