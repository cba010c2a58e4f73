"""Notebook 08, section 4: a fault soak. A client and the server, each in a child process of its own, killed by
SIGKILL (the server then restarted on the same port and database); frames cut in half: while messages stream, then
the client's database against the server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import select
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from ...apps.chat import ChatServer
from ...course.exercises import Prediction
from ...errors import NetcourseError
from ...runtime.sockets import port_for_a_restart

__all__ = ["FAULT_KINDS", "Soak", "SoakRig", "fault_soak", "predict_repeats", "FAULT_COUNTS", "soak_grid", "soak_knob"]


FAULT_KINDS = ("client killed (SIGKILL)", "server killed (SIGKILL) and restarted", "connection cut mid-frame")


@dataclass
class Soak:
    """Messages published while faults hit the client, the server and the connection.

    Attributes:
        published: messages the user should hold (the server's ids for them, in id order).
        held: ids in the client's database at the end, in the order they were first stored.
        faults: (seconds since the start, kind, messages published before it) in order.
        lost: published ids the client does not hold.
        duplicated: ids stored more than once (the client's primary key makes this impossible: counted anyway).
        repeats: messages that came over the wire more than once (after a fault) and were absorbed by dedup.
        in_order: the client first stored the messages in the server's order, and holds exactly the
            server's ids.
        streaming_until: seconds into the run when the last message was published.
        cut_frames: (message id, the half frame reached the kernel) for each frame cut in half.
        server_exits: the exit status of each server process the soak killed (-9: SIGKILL, as a real crash).
    """

    published: list[int]
    held: list[int]
    faults: list[tuple[float, str, int]]
    repeats: int = 0
    streaming_until: float = 0.0
    cut_frames: list[tuple[int, bool]] = field(default_factory=list)
    server_exits: list[int] = field(default_factory=list)

    @property
    def during_stream(self) -> int:
        """Faults that struck while messages were still being published."""
        return sum(1 for t, _, n in self.faults if 0 < n < len(self.published) and t <= self.streaming_until)

    @property
    def lost(self) -> list[int]:
        have = set(self.held)
        return [i for i in self.published if i not in have]

    @property
    def duplicated(self) -> int:
        return len(self.held) - len(set(self.held))

    @property
    def in_order(self) -> bool:
        return self.held == self.published  # ``published`` is in id order: the server's order

    def __repr__(self) -> str:
        kinds: dict[str, int] = {}
        for _, k, _n in self.faults:
            kinds[k] = kinds.get(k, 0) + 1
        return (f"{len(self.published):,} messages, {len(self.faults)} faults, {self.during_stream} of them while "
                f"messages streamed ({', '.join(f'{n} {k}' for k, n in kinds.items()) or 'none'}): "
                f"{len(self.lost)} lost, {self.duplicated} stored twice, {self.repeats} received twice and "
                f"absorbed; {'stored in the server order' if self.in_order else 'ORDER OR SET DIFFERS from the server'}")


class SoakRig:
    """The soak's set-up, to fault by hand: the chat server in a child process, and user ada's client in another
    (each with a warm spare beside it), with databases in a folder of their own. Bob ``publish``es; each fault
    is a method (``kill_client``, ``crash_server``, ``cut_mid_frame``); ``verdict`` compares ada's database with
    the server's. A context manager: leaving it kills and reaps every process, whatever happened (an interrupt
    included)."""

    def __init__(self, *, page: int = 50):
        self.page = page
        self.published = 0  # messages bob has posted
        self.faults: list[tuple[float, str, int]] = []  # (seconds since the start, kind, messages before it)
        self.server: ChatServer | None = None  # the parent's handle on the server's database (users, ids)
        self.server_proc: subprocess.Popen | None = None
        self.spare_server: subprocess.Popen | None = None
        self.client: subprocess.Popen | None = None
        self.spare: subprocess.Popen | None = None
        self._children: list[subprocess.Popen] = []
        self._cuts: list[tuple[int, bool]] = []  # frames cut by server processes since killed
        self._exits: list[int] = []  # exit statuses of the killed server processes
        self._dir: tempfile.TemporaryDirectory | None = None
        self._start = self._last_publish = 0.0

    def __enter__(self) -> SoakRig:
        try:  # everything is started inside: a failure or an interrupt half-way releases what was started
            self._dir = tempfile.TemporaryDirectory(prefix="netcourse-chat-")
            self.server = ChatServer(self._server_db, page=self.page)
            self.server.add_user("ada", "pw-ada", ("general",))
            self.server.add_user("bob", "pw-bob", ("general",))
            self.port = port_for_a_restart()  # the server goes and comes back here: never a client's source port
            self.spare_server = self._spawn_server()
            self.server_proc = _serving(self.spare_server)
            self.spare_server = self._spawn_server()
            self.spare = self._spawn()
            self.client = _go(self._spawn())
        except BaseException:
            self.close()
            raise
        self._start = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for proc in self._children:
            _stop(proc)
        self._children.clear()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def publish(self, n: int = 1, *, rate: float | None = None) -> None:
        """Bob posts ``n`` messages to #general, ``rate`` per second (or as fast as the server takes them)."""
        next_at = time.monotonic()
        for _ in range(n):
            time.sleep(max(0.0, next_at - time.monotonic()))
            _ask(self.server_proc, {"post": ["bob", "general", f"m{self.published}"]})
            self.published += 1
            self._last_publish = time.monotonic()
            next_at += 1 / rate if rate else 0.0

    def strike(self, kind: str) -> None:
        """One fault of this kind (one of ``FAULT_KINDS``), logged with the time and the messages before it."""
        self.faults.append((time.monotonic() - self._start, kind, self.published))
        {FAULT_KINDS[0]: self.kill_client, FAULT_KINDS[1]: self.crash_server, FAULT_KINDS[2]: self.cut_mid_frame}[kind]()

    def kill_client(self) -> None:
        """SIGKILL the client: no clean-up of any kind in it. The warm spare takes over at once."""
        _stop(self.client)
        self.client, self.spare = _go(self.spare), self._spawn()

    def crash_server(self) -> None:
        """SIGKILL the server's process: no close frames, no clean-up; the kernel closes its sockets (the clients
        see a FIN, or an RST where data they sent was unread) and SQLite keeps what was committed. The warm spare
        server then starts on the same port and database, as a supervisor would restart it."""
        state = _ask(self.server_proc, {"cuts": True})
        self._cuts += state["cut_mid_frame"]
        _stop(self.server_proc)
        self._exits.append(self.server_proc.returncode)
        self.server_proc, self.spare_server = _serving(self.spare_server), self._spawn_server()
        for _ in range(state["armed"]):  # a cut armed before the crash still cuts the next frame
            self.cut_mid_frame()

    def cut_mid_frame(self) -> None:
        """The next frame the server sends goes out half, then the connection is cut."""
        _ask(self.server_proc, {"cut": True})

    def held(self) -> list[int]:
        """The ids in ada's database, in the order they were first stored."""
        with contextlib.closing(sqlite3.connect(self._client_db, timeout=5)) as db:
            return [r[0] for r in db.execute("SELECT id FROM arrivals ORDER BY seq")]

    def verdict(self, settle: float = 8.0) -> Soak:
        """Wait up to ``settle`` seconds for ada's client to catch up, then compare its database with the server's."""
        expected = self.server.ids_for("ada")
        deadline = time.monotonic() + settle
        while len(held := self.held()) < len(expected) and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.closing(sqlite3.connect(self._client_db, timeout=5)) as db:
            repeats = db.execute("SELECT repeats FROM wire").fetchone()[0]
        cuts = self._cuts + [tuple(c) for c in _ask(self.server_proc, {"cuts": True})["cut_mid_frame"]]
        return Soak(expected, held, list(self.faults), repeats, self._last_publish - self._start if self.published
                    else 0.0, [tuple(c) for c in cuts], list(self._exits))

    @property
    def _client_db(self) -> str:
        return os.path.join(self._dir.name, "ada.db")

    @property
    def _server_db(self) -> str:
        return os.path.join(self._dir.name, "server.db")

    def _child(self, argv: list[str]) -> subprocess.Popen:
        # In a session of its own: a notebook's interrupt (SIGINT to the kernel's process group) reaches the
        # rig, whose clean-up kills and reaps the child, not the child half-way.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        proc = subprocess.Popen([sys.executable, "-m", *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env, start_new_session=True)
        self._children.append(proc)
        return proc

    def _spawn(self) -> subprocess.Popen:
        return self._child(["netcourse.clients.chat_process", self._client_db, "127.0.0.1", str(self.port),
                            "ada", "pw-ada"])

    def _spawn_server(self) -> subprocess.Popen:
        return self._child(["netcourse.apps.chat_process", self._server_db, str(self.port), str(self.page)])


def _serving(proc: subprocess.Popen) -> subprocess.Popen:
    """Start a warm server process (``_go``) and wait until it listens."""
    _go(proc)
    answer = _read(proc, 10)
    if answer != "serving":
        raise NetcourseError(f"the chat server's process did not start: {answer}")
    return proc


def _ask(proc: subprocess.Popen, command: dict) -> dict:
    """One command to a server process, and its answer."""
    proc.stdin.write((json.dumps(command) + "\n").encode())
    proc.stdin.flush()
    answer = _read(proc, 10)
    if not isinstance(answer, dict) or "error" in answer:
        raise NetcourseError(f"the chat server's process answered {answer!r} to {command}")
    return answer


def _read(proc: subprocess.Popen, timeout: float):
    """One JSON line from a server process, within ``timeout`` seconds."""
    return json.loads(_line(proc, timeout))


def _line(proc: subprocess.Popen, timeout: float) -> bytes:
    """One line from a child's stdout, within ``timeout`` seconds, read straight from the pipe (no thread, no
    buffer: a child writes one line and then waits for its next command, so nothing is left over)."""
    fd, line = proc.stdout.fileno(), b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise NetcourseError(f"a child process said nothing within {timeout:g} s")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise NetcourseError(f"a child process ended (exit code {proc.wait(5)}) before it answered")
        line += chunk
    return line


def _go(proc: subprocess.Popen) -> subprocess.Popen:
    """Wait for a child process's "ready" (20 s at most), then tell it to start."""
    _line(proc, 20)
    proc.stdin.write(b"go\n")
    proc.stdin.flush()
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(5)
    for stream in (proc.stdin, proc.stdout):
        if stream:
            with contextlib.suppress(OSError):
                stream.close()


def fault_soak(messages: int = 300, faults: int = 6, *, seed: int = 8, rate: float = 400.0,
               settle: float = 8.0) -> Soak:
    """Publish ``messages`` at ``rate`` per second to a user whose client runs in a child process, and inflict
    ``faults`` faults while they stream, each at a random message count, of a random kind: SIGKILL the client
    (a warm spare process takes over at once), crash the server (SIGKILL its process, then a warm spare starts on
    the same port and database), or cut the connection in the middle
    of the next message frame. Publishing pauses while a fault is inflicted, so every fault lands mid-stream.
    Then the client catches up, and its database is compared with the server's (``SoakRig`` has the steps)."""
    if not 1 <= messages <= 100_000 or not 0 <= faults <= messages // 2 or rate <= 0:
        raise ValueError("need 1 <= messages <= 100000, 0 <= faults <= messages / 2 and rate > 0")
    rng = random.Random(seed)
    at = sorted(rng.sample(range(1, messages), faults))  # fault i strikes after at[i] messages
    with SoakRig() as rig:
        for count in [*at, messages]:
            rig.publish(count - rig.published, rate=rate)
            if count < messages:
                rig.strike(rng.choice(FAULT_KINDS))
        return rig.verdict(settle)


def predict_repeats(messages: int = 200, faults: int = 20) -> Prediction:
    """How many messages reach the client's database twice, across a soak's faults."""
    def explain(given: float, measured: float) -> str:
        return ("None of the messages the client had committed came over the wire again. A SIGKILL that lands "
                "mid-batch (the soak does not record whether one did) rolls back the uncommitted rows together with "
                "their count; a frame cut in half is never a message; a killed server had sent only what the client "
                "may or may not have committed. Each time, the client resumes after MAX(id) of what it committed, "
                "and the server sends only ids above it. Faults cost messages in flight, which come again; never a "
                "stored one.")

    return Prediction(
        f"{messages} messages stream to the offline client while {faults} faults strike: SIGKILLs of the client, "
        "SIGKILLs of the server (restarted at once), connections cut in the middle of a frame. How many messages will come over the "
        "wire again *after* the client had already stored them (the repeats INSERT OR IGNORE would absorb)?",
        measure=lambda run: run.repeats, unit="messages", tolerance=0.0, explain=explain,
        mistakes=[(lambda g, m: g > 0, "A fault can lose messages in flight, which come again, but never a stored "
                   "one: the cursor is MAX(id) of what the client *committed*, in the same transaction as the rows.")],
    )


FAULT_COUNTS = (0, 5, 20)


def soak_grid(counts: tuple[int, ...] = FAULT_COUNTS, *, messages: int = 200, rate: float = 150.0) -> dict[int, Soak]:
    """The fault soak once per number of faults (each a real run, all at once, each with its own server,
    client processes and databases), for the knob."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(counts)) as pool:
        runs = [pool.submit(fault_soak, messages, n, seed=20 + n, rate=rate, settle=6.0) for n in counts]
        return {n: run.result() for n, run in zip(counts, runs)}


def soak_knob(grid: dict[int, Soak], faults: int = 3):
    from ...course.plots.offline import soak_result

    if faults not in grid:
        raise ValueError(f"no run with {faults} faults; measured: {', '.join(map(str, grid))}")
    return soak_result(grid[faults])
