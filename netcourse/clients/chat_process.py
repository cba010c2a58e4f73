"""The offline client in a process of its own (started by ``experiments.offline.fault_soak``): it syncs, reconnecting
with capped exponential back-off and full jitter, until it is killed or its stdin closes. It prints "ready"
once imported and starts when a line arrives on its stdin (the soak keeps one such spare warm). Its only
state is its SQLite file: a SIGKILL at any instant loses nothing that was committed.

    python -m netcourse.clients.chat_process DB HOST PORT USER PASSWORD
"""

from __future__ import annotations

import os
import select
import sys


def main(argv: list[str]) -> int:
    from ..clients.chat import ChatClient, LocalStore
    from ..runtime.backoff import Backoff

    db, host, port, user, password = argv
    backoff = Backoff(0.02, 0.3)
    print("ready", flush=True)
    line = b""  # a warm spare: imported and waiting, so a killed client is replaced in milliseconds
    while not line.endswith(b"\n"):
        byte = os.read(sys.stdin.fileno(), 1)
        if not byte:
            return 0
        line += byte
    store = LocalStore(db)  # opened only now: the process it replaces may have just been killed mid-write
    client = ChatClient(store, host, int(port), user, password)
    while True:
        if select.select([sys.stdin], [], [], 0)[0] and not os.read(sys.stdin.fileno(), 1):
            return 0  # the parent closed our stdin: stop
        try:
            client.connect(idle=0.5, limit=2.0)
            backoff.reset()
        except Exception:  # refused, reset, timed out: the server is restarting or the link is cut
            client.cookie = None if backoff.failures > 3 else client.cookie  # log in again after a while
            import time

            time.sleep(backoff.next())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
