"""A learner's session: every code cell of a notebook, run again and again in one kernel, as a learner who
plays with the course does. Nothing the course starts may pile up from one round to the next.

    python -m netcourse.tools.soak 08_offline_messaging 3      # prints one line per round

Each round runs the notebook's code cells top to bottom in the same kernel (the stored outputs are ignored:
what counts is what the kernel holds afterwards). After each round the kernel process is read from /proc:
its threads, open file descriptors, listening TCP sockets, child processes (zombies too) and resident
memory. The test suite checks that nothing but memory grows after the first round; ``make bench`` prints
the figures, memory included.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Round", "kernel_state", "rounds"]

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@dataclass(frozen=True)
class Round:
    """What the kernel holds after one round (round 0: a fresh kernel, before any cell).

    Attributes:
        threads, fds, listening, children: counts, read from /proc.
        rss_mb: resident memory, MiB.
        seconds: how long the round took.
        errors: cells that raised (their first line).
    """

    round: int
    threads: int
    fds: int
    listening: int
    children: int
    rss_mb: float
    seconds: float
    errors: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (f"round {self.round}: {self.threads} threads, {self.fds} fds, {self.listening} listening, "
                f"{self.children} children, {self.rss_mb:.0f} MiB, {self.seconds:.1f} s"
                + (f", {len(self.errors)} failing cells" if self.errors else ""))


def kernel_state(pid: int) -> tuple[int, int, int, int, float]:
    """(threads, fds, listening TCP sockets, child processes, RSS MiB) of process ``pid``."""
    from ..runtime.tcpinfo import tcp_sockets

    tasks = os.listdir(f"/proc/{pid}/task")
    inodes = set()
    fds = os.listdir(f"/proc/{pid}/fd")
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    listening = sum(1 for e in tcp_sockets() if e.state == "LISTEN" and e.inode in inodes)
    children = 0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children += len(f.read().split())
        except OSError:
            pass
    rss = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return len(tasks), len(fds), listening, children, rss


def _code_cells(notebook: Path) -> list[tuple[str, str]]:
    cells = json.loads(notebook.read_text())["cells"]
    return [(c.get("id", str(i)), "".join(c["source"])) for i, c in enumerate(cells)
            if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def rounds(notebook: str, count: int = 3, *, cell_timeout: float = 300.0) -> list[Round]:
    """Run ``notebook``'s code cells ``count`` times in one fresh kernel; the kernel's state before and after
    each round (so ``count + 1`` entries)."""
    from jupyter_client.manager import KernelManager

    path = NOTEBOOKS / (notebook if notebook.endswith(".ipynb") else notebook + ".ipynb")
    cells = _code_cells(path)
    km = KernelManager(kernel_name="python3")
    km.kernel_spec.argv[0] = sys.executable  # this venv's Python
    km.start_kernel(cwd=str(path.parent), env={**os.environ, "MPLBACKEND": "Agg"})
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        pid = km.provisioner.process.pid  # type: ignore[union-attr]
        out = [Round(0, *kernel_state(pid), 0.0)]
        for n in range(1, count + 1):
            t = time.monotonic()
            errors = []
            for cell_id, code in cells:
                reply = kc.execute_interactive(code, timeout=cell_timeout, output_hook=lambda msg: None)
                if reply["content"]["status"] != "ok":
                    errors.append(f"{cell_id}: {reply['content'].get('ename')}: {reply['content'].get('evalue', '')[:80]}")
            time.sleep(0.5)  # what a cell's last connections leave in the kernel settles
            out.append(Round(n, *kernel_state(pid), time.monotonic() - t, tuple(errors)))
        return out
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def main(argv: list[str] | None = None) -> int:
    args = (argv if argv is not None else sys.argv[1:]) or ["08_offline_messaging"]
    count = int(args[1]) if len(args) > 1 else 3
    for r in rounds(args[0], count):
        print(repr(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
