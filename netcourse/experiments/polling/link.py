"""Notebook 03, sections 6 and 7: polling across a link (one transit for a held long poll, three for the rest of a
burst), the theory knob, and the questions computed from your capture.
"""

from __future__ import annotations

from ...course.exercises import Exercise, Prediction
from ...network.link import link
from .compare import PollingRun, run_pollers

__all__ = ["on_a_link", "held_delivery_ms", "predict_held_delivery", "exercise_connections", "hold_times_ms", "exercise_hold_time", "exercise_expected_latency", "theory_knob"]


def on_a_link(
    rtt_ms: float = 100.0,
    interval: float = 0.5,
    *,
    wait: float = 10.0,
    rate: float = 3.0,
    duration: float = 6.0,
    burst: int = 3,
    seed: int = 4,
) -> PollingRun:
    """One short poller and one long poller across an emulated link of ``rtt_ms``.

    Messages come in bursts of ``burst`` (1 ms apart), so the long poller's worst case shows: the
    first of a burst rides the held request's answer; the rest wait for the next request to travel
    to the server and its answer to travel back (RFC 6202 §2.2).
    """
    with link(rtt_ms=rtt_ms) as net:
        net.announce()
        return run_pollers([("short", interval), ("long", wait)], rate=rate, duration=duration, seed=seed,
                    burst=burst, wait=wait, net=net)


def held_delivery_ms(run: PollingRun) -> float:
    """Median delivery time (ms) of the messages that found the long poller's request held at the server.

    For each request (but the first, which also waited for the connection's handshake), the message that
    released it is the earliest published of those its answer carried. It found the request held if it was
    published after the request had reached the server (one transit, RTT/2, after it was sent). Messages
    that came along in the same answer (the rest of a burst) are left out: they did not wait for a held
    request, they rode with the first. The client's clock times everything.
    """
    poller = run.poller("long")
    published = dict(run.published)
    transit = run.rtt / 2
    lat = []
    for p in poller.polls[1:]:
        carried = [i for i, t in poller.received if t == p.answered and i in published]
        if not carried:
            continue
        first = min(carried, key=lambda i: published[i])
        if published[first] >= p.sent + transit:
            lat.append(p.answered - published[first])
    lat.sort()
    return lat[len(lat) // 2] * 1000 if lat else float("nan")


def predict_held_delivery(rtt_ms: float = 100.0) -> Prediction:
    """Predict a held long poll's delivery time across a link."""
    def explain(given: float, measured: float) -> str:
        why = (f"The request is already at the server, so the answer only has to travel back: one transit, half "
               f"the round trip, {rtt_ms / 2:g} ms (plus a millisecond of server work).")
        if abs(given - rtt_ms) <= 0.2 * rtt_ms:
            why += " A whole round trip would be a request sent *after* the message was published."
        return why

    return Prediction(
        f"Across a {rtt_ms:g} ms link (round trip), a long poll is held at the server when a message is "
        "published. How many milliseconds until the client has the message?",
        measure=held_delivery_ms, unit="ms", tolerance=0.25, floor=5.0, explain=explain,
    )


def exercise_connections(run: PollingRun) -> Exercise:
    """TCP connections the pollers opened, from the learner's own capture."""
    rows = run.capture.table()
    opened = sum(1 for r in rows if r.flags == "S")
    requests = sum(1 for r in rows if r.app.startswith("GET "))
    return Exercise(
        f"Your capture holds {requests} HTTP requests from {len(run.pollers)} pollers. How many TCP connections "
        "did they open to carry them? (Count them in the packets; don't guess.)",
        answer=opened,
        hint="A connection starts with a SYN: count the rows whose flags are exactly 'S'.",
        explanation=f"{opened}: each poller opened one connection and sent every request on it, because an "
        "HTTP/1.1 connection stays open unless someone says Connection: close (RFC 9112 §9.3). With a "
        f"connection per request it would have been {requests} handshakes, each costing a round trip.",
        kind="capture",
    )


def hold_times_ms(rows) -> list[float]:
    """Milliseconds each long-poll request (a GET with ``wait=``) waited for its answer, from a capture."""
    out = []
    pending: dict[str, float] = {}  # client endpoint -> time its long poll was sent
    for r in rows:
        if r.app.startswith("GET ") and "wait=" in r.app:
            pending[r.src] = r.t
        elif r.app[:3].isdigit() and r.dst in pending:
            out.append((r.t - pending.pop(r.dst)) * 1000)
    return out


def exercise_hold_time(run: PollingRun) -> Exercise:
    """The long poller's mean hold time, from the learner's own capture."""
    holds = hold_times_ms(run.capture.table())
    mean = sum(holds) / len(holds) if holds else 0.0
    return Exercise(
        "How long, on average, did the server hold the long poller's requests before answering, in "
        "milliseconds? Take every request that carries wait= (the last, wait=0, too) and compute it from "
        "your capture (within 1 ms).",
        answer=round(mean, 1),
        tolerance=1.0,
        hint="The long poller's requests are the rows whose app starts with 'GET ' and contains 'wait='. "
        "Pair each with the next row whose app is a status ('200 OK') going back to the same endpoint "
        "(r.dst == request.src), and average the differences of t.",
        explanation=f"{mean:.0f} ms over {len(holds)} requests: each waited until the next message was "
        f"published, or the run ended; together the holds tile the {run.duration:g}-second run (about "
        f"{run.duration * 1000 / max(len(holds), 1):.0f} ms each). Every one of those milliseconds, the server "
        "held a request and a connection open.",
        kind="capture",
    )


def exercise_expected_latency() -> Exercise:
    """Short polling's mean latency."""
    return Exercise(
        "A client short-polls every 2 seconds; messages arrive at random times. Ignoring the network, "
        "what is the average delay, in seconds, between a message's arrival and its delivery?",
        answer=1.0,
        tolerance=0.05,
        hint="A message lands at a random moment between two polls; how long until the next poll, on average?",
        explanation="Half the interval, 1 s on average, and up to the full 2 s: the random arrival is "
        "uniformly placed within the interval.",
    )


def theory_knob(measured: PollingRun | None = None, rtt_ms: int = 100, interval: float = 0.5):
    """Section 7's knob: expected latency for a round trip and interval, with ``measured``'s dots when they match."""
    from ...course.plots.polling import polling_theory

    return polling_theory(rtt_ms, interval, measured=measured)
