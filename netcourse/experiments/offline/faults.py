"""Notebook 08, section 4: a fault soak. A client in a child process, killed by SIGKILL; the server crashed and
restarted; frames cut in half: while messages stream, then the client's database against the server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from ...apps.chat import ChatServer
from ...course.exercises import Prediction
from ...errors import NetcourseError
from ...runtime.server import serve
from ...runtime.sockets import port_for_a_restart

__all__ = ["FAULT_KINDS", "Soak", "fault_soak", "predict_repeats", "FAULT_COUNTS", "soak_grid", "soak_knob"]


FAULT_KINDS = ("client killed (SIGKILL)", "server crashed and restarted", "connection cut mid-frame")


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
    """

    published: list[int]
    held: list[int]
    faults: list[tuple[float, str, int]]
    repeats: int = 0
    streaming_until: float = 0.0
    cut_frames: list[tuple[int, bool]] = field(default_factory=list)

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


def fault_soak(messages: int = 300, faults: int = 6, *, seed: int = 8, rate: float = 400.0,
               settle: float = 8.0) -> Soak:
    """Publish ``messages`` at ``rate`` per second to a user whose client runs in a child process, and inflict
    ``faults`` faults while they stream, each at a random message count, of a random kind: SIGKILL the client
    (a warm spare process takes over at once), crash the server (every connection aborted without a close
    frame, then the server started again on the same port and database), or cut the connection in the middle
    of the next message frame. The publisher waits at each fault's count until the fault is done, so every
    fault lands mid-stream. Then the client catches up, and its database is compared with the server's."""
    if not 1 <= messages <= 100_000 or not 0 <= faults <= messages // 2 or rate <= 0:
        raise ValueError("need 1 <= messages <= 100000, 0 <= faults <= messages / 2 and rate > 0")
    rng = random.Random(seed)
    at = sorted(rng.sample(range(1, messages), faults))  # fault i strikes after at[i] messages
    with tempfile.TemporaryDirectory(prefix="netcourse-chat-") as d:
        server = ChatServer(os.path.join(d, "server.db"), page=50)
        server.add_user("ada", "pw-ada", ("general",))
        server.add_user("bob", "pw-bob", ("general",))
        port = port_for_a_restart()  # the server goes and comes back here: never a client's source port
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        client_db = os.path.join(d, "ada.db")
        children: list[subprocess.Popen] = []

        def spawn() -> subprocess.Popen:
            # In a session of its own: a notebook's interrupt (SIGINT to the kernel's process group) reaches
            # this function, whose clean-up kills and reaps the child, not the child half-way.
            proc = subprocess.Popen([sys.executable, "-m", "netcourse.clients.chat_process", client_db,
                                     "127.0.0.1", str(port), "ada", "pw-ada"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                    start_new_session=True)
            children.append(proc)
            return proc

        def go(proc: subprocess.Popen) -> subprocess.Popen:
            ready = threading.Thread(target=proc.stdout.readline, daemon=True)  # "ready", within a deadline
            ready.start()
            ready.join(20)
            if ready.is_alive() or proc.poll() is not None:
                raise NetcourseError("the client process did not start within 20 s")
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            return proc

        def stop(proc: subprocess.Popen) -> None:
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)
            for stream in (proc.stdin, proc.stdout):
                if stream:
                    with contextlib.suppress(OSError):
                        stream.close()

        log: list[tuple[float, str, int]] = []
        due: queue.Queue[int] = queue.Queue()  # publisher -> faults: "message n is next"
        resume: queue.Queue[bool] = queue.Queue()  # faults -> publisher: "done, go on"
        stopping = threading.Event()
        srv = None
        pub: threading.Thread | None = None
        published = 0
        last_publish: list[float] = []
        try:  # everything this run starts is started inside it: an interrupt anywhere releases all of it
            srv = serve(server.app(), name="chat", port=port)
            spare = spawn()
            client = go(spawn())
            start = time.monotonic()

            def publisher() -> None:
                nonlocal published
                pending, next_at = list(at), time.monotonic()
                while published < messages and not stopping.is_set():
                    if pending and published == pending[0]:
                        pending.pop(0)
                        due.put(published)
                        with contextlib.suppress(queue.Empty):
                            resume.get(timeout=30)
                        next_at = time.monotonic()
                    time.sleep(max(0.0, next_at - time.monotonic()))
                    coro = server.post("bob", "general", f"m{published}")
                    try:  # the server may be restarting: try again shortly
                        asyncio.run_coroutine_threadsafe(coro, srv.loop).result(5)
                        published += 1
                        next_at += 1 / rate
                        last_publish[:] = [time.monotonic()]
                    except Exception:
                        coro.close()  # never started: the loop was stopping
                        time.sleep(0.01)

            pub = threading.Thread(target=publisher, daemon=True)
            pub.start()
            for _ in at:
                n = due.get(timeout=messages / rate + 60)
                kind = rng.choice(FAULT_KINDS)
                log.append((time.monotonic() - start, kind, n))
                if kind == FAULT_KINDS[0]:
                    stop(client)  # SIGKILL: no clean-up of any kind in the child
                    resume.put(True)
                    client, spare = go(spare), spawn()
                elif kind == FAULT_KINDS[1]:
                    asyncio.run_coroutine_threadsafe(server.cut_all(), srv.loop).result(5)  # the kernel's FINs
                    srv.stop()
                    srv = serve(server.app(), name="chat", port=port)
                    resume.put(True)
                else:
                    server.arm_cut_mid_frame()  # the next frame the server sends goes out half, then the cut
                    resume.put(True)
            pub.join(messages / rate + 60)
            if pub.is_alive():
                raise NetcourseError("the publisher did not finish")
            streaming_until = last_publish[0] - start if last_publish else 0.0
            expected = server.ids_for("ada")
            deadline = time.monotonic() + settle
            held: list[int] = []
            while time.monotonic() < deadline:
                with contextlib.closing(sqlite3.connect(client_db, timeout=5)) as db:
                    held = [r[0] for r in db.execute("SELECT id FROM arrivals ORDER BY seq")]
                if len(held) >= len(expected):
                    break
                time.sleep(0.1)
            with contextlib.closing(sqlite3.connect(client_db, timeout=5)) as db:
                repeats = db.execute("SELECT repeats FROM wire").fetchone()[0]
        finally:
            stopping.set()  # the publisher stops too, whatever happened
            resume.put(False)
            for proc in children:
                stop(proc)
            if srv is not None:
                srv.stop()
            if pub is not None:
                pub.join(6)  # its one wait on the server is bounded by 5 s
        return Soak(expected, held, log, repeats, streaming_until, list(server.cut_mid_frame))


def predict_repeats(messages: int = 200, faults: int = 20) -> Prediction:
    """How many messages reach the client's database twice, across a soak's faults."""
    def explain(given: float, measured: float) -> str:
        return ("None arrive twice at the database. A SIGKILL mid-batch rolls back the uncommitted rows together "
                "with their count; a frame cut in half is never a message; a crashed server had sent only what "
                "the client may or may not have committed. Each time, the client resumes after MAX(id) of what "
                "it committed, and the server sends only ids above it. Faults cost messages in flight, which "
                "come again; never a stored one.")

    return Prediction(
        f"{messages} messages stream to the offline client while {faults} faults strike: SIGKILLs of the client, "
        "crashes of the server, connections cut in the middle of a frame. How many messages will come over the "
        "wire again *after* the client had already stored them (the repeats INSERT OR IGNORE would absorb)?",
        measure=lambda run: run.repeats, unit="messages", tolerance=0.0, explain=explain,
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
