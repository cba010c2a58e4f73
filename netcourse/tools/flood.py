"""Capture under a flood: a capture must be complete, or say it is not. Never silently short.

Runs inside a private network namespace (``unshare --net``, root), so the flood disturbs nothing
else on the machine: another process floods the namespace's loopback with UDP datagrams to a port
that is not the lesson's, as fast as it can, while the lesson's capture records ``datagrams``
datagrams to its own port, ``runs`` times. Each run reports what was sent, what was captured, and
whether the capture called itself complete.

    sudo python -m netcourse.tools.flood 20          # prints one JSON line per run
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

__all__ = ["FloodRun", "run_in_namespace", "can_run"]

# The flooder: sends to one port as fast as Python can, and stops by itself after `seconds`.
FLOODER = """
import socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload, target, deadline, sent = b"x" * 64, ("127.0.0.1", port), time.monotonic() + seconds, 0
while time.monotonic() < deadline:
    for _ in range(1000):
        s.sendto(payload, target)
    sent += 1000
print(sent)
"""


@dataclass(frozen=True)
class FloodRun:
    """One capture under flood.

    Attributes:
        kernel_filter: whether the course's BPF program filtered in the kernel.
        sent: datagrams sent to the lesson's port.
        captured: of those, how many the capture holds.
        complete: whether the capture called itself complete.
        kernel_drops: packets of ours the kernel reported dropped.
        flood_rate: datagrams per second the flooder sent meanwhile.
    """

    kernel_filter: bool
    sent: int
    captured: int
    complete: bool
    kernel_drops: int | None
    flood_rate: float

    @property
    def silent_loss(self) -> bool:
        """Short, yet called complete: the one outcome that must never happen."""
        return self.captured < self.sent and self.complete


def can_run() -> str | None:
    """None if the flood test can run here; otherwise why not."""
    if not sys.platform.startswith("linux"):
        return "it needs Linux network namespaces"
    if os.geteuid() != 0:
        return "it needs root to create a private network namespace"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"the `{tool}` command is not installed"
    return None


def _one_run(kernel_filter: bool, datagrams: int) -> FloodRun:
    from ..traffic.sniffer import capture

    flood_rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    flood_rx.bind(("127.0.0.1", 0))
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    seconds = 3.0
    flooder = subprocess.Popen(
        [sys.executable, "-c", FLOODER, str(flood_rx.getsockname()[1]), str(seconds)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(0.3)  # let the flood get going
        port = rx.getsockname()[1]
        with capture(port, mode="live", bpf=kernel_filter, show_notice=False) as cap:
            for i in range(datagrams):
                tx.sendto(b"%08d" % i, ("127.0.0.1", port))
        out, _ = flooder.communicate(timeout=seconds + 10)
        flood_rate = int(out.strip() or 0) / seconds
    finally:
        if flooder.poll() is None:
            flooder.kill()
            flooder.wait()
        for s in (flood_rx, rx, tx):
            s.close()
    captured = sum(
        1 for p in cap.packets if p.haslayer("UDP") and p["UDP"].dport == port and len(bytes(p["UDP"].payload)) == 8
    )
    return FloodRun(kernel_filter, datagrams, captured, cap.complete, cap.kernel_drops, flood_rate)


def main(argv: list[str]) -> int:
    """Inside the namespace: bring lo up, then one JSON line per run."""
    runs = int(argv[0]) if argv else 20
    datagrams = int(argv[1]) if len(argv) > 1 else 5000
    filters = [f == "1" for f in (argv[2] if len(argv) > 2 else "1")]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True)
    for _ in range(runs):
        for kernel_filter in filters:
            print(json.dumps(asdict(_one_run(kernel_filter, datagrams))), flush=True)
    return 0


def run_in_namespace(runs: int = 20, datagrams: int = 5000, *, filters: str = "1", timeout: float = 600) -> list[FloodRun]:
    """Run the flood test in a fresh private network namespace; returns every run's outcome.

    Args:
        runs: captures per filter mode.
        datagrams: datagrams each capture must hold.
        filters: "1" kernel BPF filter only, "0" Python filter only, "10" both.
    """
    why = can_run()
    if why is not None:
        raise RuntimeError(f"the flood test cannot run here: {why}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run(
        ["unshare", "--net", sys.executable, "-m", "netcourse.tools.flood", str(runs), str(datagrams), filters],
        capture_output=True, text=True, timeout=timeout, env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the flood test failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return [FloodRun(**json.loads(line)) for line in proc.stdout.splitlines() if line.startswith("{")]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
