"""Notebook 07, section 3: a receiver that goes down and comes back. Attempts on the Standard Webhooks schedule
(scaled 1/1000), a late answer deduplicated, 410 into dead letters, slow work acknowledged at once, dead
letters replayed, a crashed sender's outbox finished by a new one.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from dataclasses import dataclass

from ...apps.webhooks import COURSE_ALLOW, STANDARD_SCHEDULE, Attempt, Receiver, Sender
from ...course.exercises import Exercise, Prediction
from ...errors import NetcourseError
from ...runtime.server import serve
from ...runtime.sockets import port_for_a_restart
from ...runtime.waiting import run_async
from .common import SECRET, workdir

__all__ = ["Outage", "receiver_down", "SlowWork", "slow_work", "Replayed", "dead_letters_replayed", "planned_times", "predict_attempt_times", "exercise_dedup", "exercise_short_retention", "Restart", "restart_mid_retry"]


@dataclass
class Outage:
    """A receiver that went down and came back, and an endpoint that answered 410 Gone.

    Attributes:
        attempts: every attempt the sender made (``apps.webhooks.Attempt``), ``at`` counted from the first attempt
            (the publication).
        down: (seconds the receiver went down, came back) on the sender's clock.
        published: events published.
        counts: the sender's outbox by status ("delivered", "dead").
        processed: events the receiver processed (exactly once each).
        duplicates: deliveries the receiver recognised as repeats and acknowledged.
        dead_letters: (msg_id, endpoint, attempts, last error) given up on.
        scale: the factor applied to the Standard Webhooks schedule.
        jitter: whether waits were drawn at random below each step.
    """

    attempts: list[Attempt]
    down: tuple[float, float]
    published: int
    counts: dict[str, int]
    processed: int
    duplicates: int
    dead_letters: list
    scale: float
    jitter: bool

    def __repr__(self) -> str:
        return (f"{self.published} events to 2 endpoints: {self.counts.get('delivered', 0)} delivered, "
                f"{self.counts.get('dead', 0)} dead letters; the receiver processed {self.processed}, each once, and "
                f"acknowledged {self.duplicates} duplicate(s) without processing them; {len(self.attempts)} attempts")


def receiver_down(events: int = 3, down_for: float = 0.25, *, scale: float = 0.001, jitter: bool = False,
                  seed: int = 2) -> Outage:
    """Endpoint 1's receiver is down when the events are published and comes back after ``down_for`` s,
    answering its first delivery too late (stored, but the sender has timed out: a duplicate follows).
    Endpoint 2 answers 410 Gone. The sender retries on the Standard Webhooks schedule × ``scale``."""
    if not 1 <= events <= 50 or not 0 < down_for <= 5:
        raise ValueError("need 1 <= events <= 50 and 0 < down_for <= 5 s")
    with workdir() as d:
        inbox = os.path.join(d, "inbox.db")
        gone = Receiver(os.path.join(d, "gone.db"), SECRET, mode="gone")
        with serve(gone.app(), name="gone receiver") as gone_srv:
            port = port_for_a_restart()  # the server goes and comes back here: never a client's source port
            sender = Sender(os.path.join(d, "outbox.db"), allow=COURSE_ALLOW, timeout=0.15, scale=scale,
                            jitter=jitter, seed=seed)
            sender.add_endpoint(f"http://127.0.0.1:{port}/webhook", SECRET)
            sender.add_endpoint(f"{gone_srv.url}/webhook", SECRET)
            for i in range(events):
                sender.publish("order.shipped", {"order": 1000 + i})
            t0 = time.monotonic()
            outcome: dict = {}
            worker = threading.Thread(target=lambda: outcome.setdefault("run", _run(sender, 15)), daemon=True)
            worker.start()
            time.sleep(down_for)
            up = time.monotonic()
            receiver = Receiver(inbox, SECRET, slow_ack=0.3, slow_first=1)
            with serve(receiver.app(), name="webhook receiver", port=port):
                worker.join(20)
                time.sleep(0.05)  # the worker finishes its inbox
            processed, dups = receiver.processed, receiver.duplicates
            if worker.is_alive():
                raise NetcourseError("the sender did not finish within 20 s")
            if isinstance(outcome.get("run"), BaseException):
                raise outcome["run"]
            first = min((a.at for a in sender.attempts), default=0.0)  # the first attempt: publication
            down = (0.0, up - t0 - (first - (t0 - sender._t0)))
            attempts = [Attempt(a.msg_id, a.endpoint, a.number, a.at - first, a.status, a.outcome)
                        for a in sender.attempts]
            return Outage(attempts, down, events, sender.counts(), processed, dups, sender.dead_letters(),
                          scale, jitter)


def _run(sender: Sender, limit: float):
    try:
        return run_async(sender.run(limit=limit), limit + 5)
    except BaseException as exc:  # handed to the caller's thread
        return exc


@dataclass(frozen=True)
class SlowWork:
    """Deliveries to a receiver whose work is slow: ms from publication to the 2xx, and to the work done."""

    events: int
    attempts: int
    acked_ms: list[float]
    processed_ms: list[float]
    work_seconds: float
    sender_timeout: float

    def __repr__(self) -> str:
        return (f"{self.events} events, {self.work_seconds * 1000:.0f} ms of work each, sender timeout "
                f"{self.sender_timeout * 1000:.0f} ms: {self.attempts} attempts; acknowledged after "
                f"{max(self.acked_ms):.0f} ms at most, all processed after {max(self.processed_ms):.0f} ms")


def slow_work(events: int = 4, work_seconds: float = 0.2, timeout: float = 0.15) -> SlowWork:
    """A receiver whose processing takes longer than the sender waits for an answer: it stores the event,
    answers 202 at once, and works from its queue afterwards, so no attempt times out and nothing is retried."""
    if not 1 <= events <= 20 or not 0 < work_seconds <= 1 or timeout <= 0:
        raise ValueError("need 1 <= events <= 20, 0 < work_seconds <= 1 and timeout > 0")
    with workdir() as d:
        receiver = Receiver(os.path.join(d, "inbox.db"), SECRET, work_seconds=work_seconds)
        with serve(receiver.app(), name="webhook receiver") as srv:
            sender = Sender(os.path.join(d, "outbox.db"), allow=COURSE_ALLOW, timeout=timeout, jitter=False)
            sender.add_endpoint(f"{srv.url}/webhook", SECRET)
            ids = [sender.publish("report.requested", {"report": i}) for i in range(events)]
            run_async(sender.run(limit=10), 15)
            deadline = time.monotonic() + events * work_seconds + 5
            while receiver.processed < events and time.monotonic() < deadline:
                time.sleep(0.01)
            stored = receiver.stored()
        with contextlib.closing(sqlite3.connect(sender.db_path)) as db:
            times = {m: (pub, dlv) for m, pub, dlv in db.execute("SELECT msg_id, published, delivered FROM outbox")}
    acked = [(times[m][1] - times[m][0]) * 1000 for m in ids]
    processed = [(stored[m][1] - times[m][0]) * 1000 for m in ids if stored.get(m) and stored[m][1] is not None]
    return SlowWork(events, len(sender.attempts), acked, processed, work_seconds, timeout)


@dataclass(frozen=True)
class Replayed:
    """Messages that ran out of attempts, and an operator's replay once the receiver was back."""

    dead_before: list[tuple[str, int, int, str]]
    replayed: int
    delivered_after: int
    processed: int

    def __repr__(self) -> str:
        why = self.dead_before[0][3].split(":")[0] if self.dead_before else "-"
        return (f"{len(self.dead_before)} dead letter(s) after their attempts ran out ({why}); replayed "
                f"{self.replayed} once the receiver was back: {self.delivered_after} delivered, "
                f"{self.processed} processed")


def dead_letters_replayed(events: int = 2, max_attempts: int = 3) -> Replayed:
    """The receiver stays down for all ``max_attempts`` attempts, so the messages become dead letters. The
    receiver comes back; an operator inspects the dead letters and replays them (``Sender.replay``)."""
    if not 1 <= events <= 20 or not 1 <= max_attempts <= 5:
        raise ValueError("need 1 <= events <= 20 and 1 <= max_attempts <= 5")
    with workdir() as d:
        port = port_for_a_restart()  # the server goes and comes back here: never a client's source port
        sender = Sender(os.path.join(d, "outbox.db"), allow=COURSE_ALLOW, timeout=0.2, jitter=False,
                        max_attempts=max_attempts, schedule=(0, 0.01, 0.02, 0.04, 0.08), scale=1.0)
        sender.add_endpoint(f"http://127.0.0.1:{port}/webhook", SECRET)
        for i in range(events):
            sender.publish("invoice.overdue", {"invoice": i})
        run_async(sender.run(limit=5), 10)
        dead = sender.dead_letters()
        receiver = Receiver(os.path.join(d, "inbox.db"), SECRET)
        with serve(receiver.app(), name="webhook receiver", port=port):
            replayed = sender.replay()
            run_async(sender.run(limit=5), 10)
            deadline = time.monotonic() + 3
            while receiver.processed < events and time.monotonic() < deadline:
                time.sleep(0.01)
            processed = receiver.processed
        return Replayed(dead, replayed, sender.counts().get("delivered", 0), processed)


def planned_times(scale: float = 0.001, attempts: int = 4) -> list[float]:
    """Seconds from publication to each attempt without jitter: the schedule's running sum, scaled."""
    out, t = [], 0.0
    for step in STANDARD_SCHEDULE[:attempts]:
        t += step * scale
        out.append(t)
    return out


def predict_attempt_times(scale: float = 0.001) -> Prediction:
    """Predict when the third attempt leaves, without jitter."""
    plan = planned_times(scale, 3)

    def explain(given: float, measured: float) -> str:
        return (f"The schedule waits 0, then 5 s, then 5 min: attempt 1 at once, attempt 2 at 5 s, attempt 3 at "
                f"5 s + 300 s = 305 s. Scaled by {scale:g}: {plan[1] * 1000:.0f} ms and {plan[2] * 1000:.0f} ms. The "
                "run is 10 to 20 ms later: the sender's outbox loop looks for due messages every 10 ms, and each attempt "
                "goes out at the first look after it is due.")

    return Prediction(
        f"A sender follows the Standard Webhooks schedule (immediately, 5 s, 5 min, 30 min, ...) scaled by {scale:g} "
        "(a second becomes a millisecond), with no jitter. The receiver is down. How many milliseconds after "
        "publication does the third attempt leave?",
        measure=lambda run: 1000 * min(a.at for a in run.attempts if a.number == 3 and a.endpoint == 1) - 1000 * min(
            a.at for a in run.attempts if a.number == 1 and a.endpoint == 1),
        unit="ms", tolerance=0.1, floor=15, explain=explain,
        mistakes=[(lambda g, m: abs(g - 300 * scale * 1000) < 3, "Each wait starts when the previous attempt "
                   "fails, so they add up: 5 s, then 5 min more."),
                  (lambda g, m: abs(g - 5 * scale * 1000) < 3, "That is the second attempt; the third waits 5 min more.")],
    )


def exercise_dedup(keep_s: int = 600, schedule: tuple[int, ...] = STANDARD_SCHEDULE) -> Exercise:
    """Dedup retention against the retry schedule: which attempt comes after the receiver forgot the id."""
    at, times = 0, []
    for delay in schedule:
        at += delay
        times.append(at)
    first_late = next(n for n, t in enumerate(times, start=1) if t > keep_s)
    shown = ", ".join(f"{d:g} s" for d in schedule[:5])
    return Exercise(
        f"A receiver processes each event but answers too slowly, so the sender times out each time and "
        f"retries on the Standard Webhooks schedule (waits of {shown}, …, each counted from the previous "
        f"attempt's failure). The receiver keeps the webhook-ids it has processed for {keep_s // 60} minutes. "
        "Which attempt (1, 2, 3, …) is the first that it processes a second time?",
        answer=first_late,
        hint="An attempt is processed again only if the id has been forgotten by the time it arrives. When does "
        "each attempt arrive, counted from the first?",
        recipe=f"add up the waits: attempt n arrives at the sum of the first n waits (plus the timeouts); find "
        f"the first past {keep_s} s.",
        mistakes=[
            (first_late - 1, f"attempt {first_late - 1} arrives at about {times[first_late - 2]:g} s after the first, "
             f"within the {keep_s} s the id is kept: the receiver acknowledges it without processing."),
            (2, "attempt 2 comes 5 s later: the id is in the inbox, and a 2xx goes back without processing."),
            (len(schedule), "the last attempt is processed again too, but it is not the first: add up the waits."),
        ],
        explanation=f"Attempt {first_late}, about {times[first_late - 1] / 60:.0f} minutes after the first: the "
        f"receiver forgot the id after {keep_s // 60} minutes and processes the event again. Keep ids at least "
        "as long as the sender may retry (Standard Webhooks retries for more than a day), not just as long as "
        "the timestamp tolerance; and answer quickly (queue the work, reply 2xx) so the retries never start.",
    )


def exercise_short_retention(tolerance_s: int = 300, keep_s: int = 180,
                             replays_s: tuple[int, ...] = (240, 480, 720)) -> Exercise:
    """Replay protection: the timestamp tolerance and the id retention together."""
    through = sum(1 for r in replays_s if r <= tolerance_s and r > keep_s)
    shown = ", ".join(f"{r // 60} min" for r in replays_s)
    return Exercise(
        f"A receiver verifies signatures, refuses timestamps more than {tolerance_s} s from its clock, and keeps "
        f"processed webhook-ids for only {keep_s // 60} minutes. An attacker records one genuine delivery and "
        f"replays it, unchanged, {shown} later. How many of the replays are processed?",
        answer=through,
        hint="A replay carries the original signature and timestamp, so the signature always checks out. "
        "Which other check can refuse each replay, at its age?",
        recipe=f"for each replay: refused if older than {tolerance_s} s (timestamp), else refused if younger "
        f"than {keep_s} s (id still kept); count the rest.",
        mistakes=[
            (0, f"the {replays_s[0] // 60}-minute replay passes the timestamp check ({replays_s[0]} s < "
             f"{tolerance_s} s) and the id has been forgotten after {keep_s} s: nothing stops it."),
            (len(replays_s), "the later replays carry a timestamp too old for the tolerance: refused."),
        ],
        explanation=f"{through}: the timestamp stops replays older than {tolerance_s} s, the id stops those "
        f"younger than {keep_s} s, and a replay between the two gets through. Keep ids for at least twice the "
        "tolerance (a timestamp may also be up to the tolerance ahead of the receiver's clock), better for the "
        "whole retry span, so that the two checks overlap.",
    )


@dataclass
class Restart:
    """A sender that crashed mid-retry and a new one that took over its outbox.

    Attributes:
        before: attempts the first sender made (all failed: the receiver was down).
        after: attempts the second sender made, from the same SQLite outbox.
        delivered: events the receiver processed in the end (each once).
        published: events published (by the first sender only).
    """

    before: list[Attempt]
    after: list[Attempt]
    delivered: int
    published: int

    def __repr__(self) -> str:
        return (f"{self.published} events published; the first sender made {len(self.before)} attempts and stopped "
                f"(a crash); a new sender on the same outbox made {len(self.after)}; the receiver processed "
                f"{self.delivered}")


def restart_mid_retry(events: int = 3) -> Restart:
    """The first sender publishes while the receiver is down and dies mid-retry; a second sender process-to-be
    opens the same outbox file and finishes the job once the receiver is up: at least once, despite the crash."""
    with workdir() as d:
        outbox = os.path.join(d, "outbox.db")
        port = port_for_a_restart()  # the server goes and comes back here: never a client's source port
        first = Sender(outbox, allow=COURSE_ALLOW, timeout=0.2, jitter=False)
        first.add_endpoint(f"http://127.0.0.1:{port}/webhook", SECRET)
        for i in range(events):
            first.publish("order.paid", {"order": 2000 + i})
        run_async(first.run(limit=0.1), 5)  # a tenth of a second of retries, then the "crash"
        receiver = Receiver(os.path.join(d, "inbox.db"), SECRET)
        with serve(receiver.app(), name="webhook receiver", port=port):
            second = Sender(outbox, allow=COURSE_ALLOW, timeout=0.2, jitter=False)  # nothing but the file
            run_async(second.run(limit=5), 10)
            time.sleep(0.05)
            done = receiver.processed
        return Restart(first.attempts, second.attempts, done, events)
