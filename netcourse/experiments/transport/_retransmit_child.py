"""Runs inside a new network namespace (``unshare --net``); started by ``retransmission.py``.

Brings the namespace's loopback up, starts an echo server, drops the client's data segments with an
nftables rule for ``DROP_FOR`` seconds, and records the capture into the directory given as argument.
Prints nothing on success; exits non-zero with a one-line reason on stderr otherwise.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

DROP_FOR = 0.7  # seconds: long enough for the first retransmission to be dropped too
TABLE = "netcourse_loss"


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    data = await reader.read(100)
    writer.write(data)
    await writer.drain()


def _nft(*args: str) -> None:
    subprocess.run(["nft", *args], check=True, capture_output=True, text=True)


def main(directory: str) -> int:
    from netcourse.runtime.server import serve
    from netcourse.traffic.recordings import recording
    from netcourse.traffic.sniffer import capture

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True)
    with serve(_echo, name="echo") as srv:
        _nft("add", "table", "inet", TABLE)
        _nft("add", "chain", "inet", TABLE, "input", "{ type filter hook input priority 0 ; }")
        # Drop segments that carry data to the server: not a SYN, and longer than IP + TCP headers with
        # timestamps (20 + 32 = 52 bytes). The handshake and pure ACKs still pass.
        _nft("add", "rule", "inet", TABLE, "input", "tcp", "dport", str(srv.port),
             "tcp", "flags", "&", "syn", "==", "0", "ip", "length", "> 52", "drop")
        try:
            with recording(Path(directory)), capture(srv.port, scenario="tcp_retransmission", mode="live") as cap:
                with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
                    sock.sendall(b"are you there?")
                    time.sleep(DROP_FOR)
                    _nft("delete", "table", "inet", TABLE)
                    reply = sock.recv(100)
                    sock.shutdown(socket.SHUT_WR)
                    sock.recv(100)
        finally:
            subprocess.run(["nft", "delete", "table", "inet", TABLE], capture_output=True)
    if reply != b"are you there?" or not cap.complete:
        print("the message did not arrive after the rule was removed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1]))
    except Exception as exc:  # one line for the parent to show
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
