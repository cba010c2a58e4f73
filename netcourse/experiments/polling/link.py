"""Notebook 03, sections 6 and 7: polling across a link (one transit for a held long poll, three for the rest of a
burst), the theory knob, and the questions computed from your capture.
"""

from __future__ import annotations

from ...course.exercises import Exercise, Prediction, as_number
from ...network.link import link
from .compare import PollingRun, run_pollers

__all__ = ["on_a_link", "held_delivery_ms", "burst_second_delivery_ms", "predict_burst_delivery", "exercise_connections", "hold_times_ms", "exercise_hold_time", "exercise_longest_interval", "theory_knob"]


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


def burst_second_delivery_ms(run: PollingRun) -> float:
    """Median delivery time (ms) of the *second* message of the bursts whose first found a request held,
    when the second missed the first's answer.

    The first message of such a burst rode the held request's answer; the second, published a millisecond
    later, missed it. The client's clock times everything."""
    poller = run.poller("long")
    published = dict(run.published)
    received = dict(poller.received)
    transit = run.rtt / 2
    held_first = set()
    for p in poller.polls[1:]:
        carried = [i for i, t in poller.received if t == p.answered and i in published]
        if carried:
            first = min(carried, key=lambda i: published[i])
            if published[first] >= p.sent + transit:
                held_first.add(first)
    order = [i for i, _ in run.published]
    # a second published in the same instant as the first (the loop's timers can bunch) rides along in the
    # first's answer: the question is about one that missed it, so those are left out
    lat = sorted(received[b] - published[b] for a, b in zip(order, order[1:])
                 if a in held_first and b in received and a in received and published[b] - published[a] < 0.010
                 and received[b] > received[a] + 0.001)
    return lat[len(lat) // 2] * 1000 if lat else float("nan")


def predict_burst_delivery(rtt_ms: float = 100.0) -> Prediction:
    """Predict when the second message of a burst reaches a long poller across a link."""
    def explain(given: float, measured: float) -> str:
        return (f"The first message of the burst released the held request; its answer left at once. The second, a "
                f"millisecond later, missed that answer: it waits while the answer crosses to the client "
                f"({rtt_ms / 2:g} ms), the client's next request crosses back ({rtt_ms / 2:g} ms), and that request's "
                f"answer crosses again ({rtt_ms / 2:g} ms): three transits, {1.5 * rtt_ms:g} ms. This is RFC 6202 "
                "§2.2's \"maximal latency\": a message that misses the held request waits over three transits, not one, "
                "and longer if a packet is lost.")

    half = rtt_ms / 2
    return Prediction(
        f"Across a {rtt_ms:g} ms link (round trip), messages come in bursts of three, a millisecond apart. A long "
        "poll is held at the server when a burst starts: the first message leaves at once in its answer, and the "
        "second, a millisecond later, misses that answer. How many milliseconds after it is published does the "
        "client have the second message?",
        measure=burst_second_delivery_ms, unit="ms", tolerance=0.15, floor=5.0, explain=explain,
        step=lambda run: run.rtt * 1000 / 2,
        spread="a transit is the unit here, so the band stays under half of one",
        mistakes=[
            (lambda g, m: abs(g - half) < half / 2,
             "That is the first message's time: it rode the held request's answer, which left before the second existed."),
            (lambda g, m: abs(g - 2 * half) < half / 2,
             "Two transits: count the answer's trip to the client, the new request's trip back, *and* its answer's trip."),
        ],
    )


def exercise_connections(run: PollingRun) -> Exercise:
    """TCP connections the pollers opened, from the learner's own capture."""
    rows = run.capture.table()
    opened = sum(1 for r in rows if r.flags == "S")
    requests = sum(1 for r in rows if r.app.startswith("GET "))
    extra = 3 * (requests - opened)
    return Exercise(
        "Count, in your capture, the HTTP requests and the TCP connections that carried them. Had every request "
        "opened a connection of its own (`Connection: close`), how many *more* packets would the opening "
        "handshakes alone (three packets each) have cost?",
        answer=extra,
        kind="capture", source=run,
        hint="A connection begins with a SYN, a request with a request line; how many handshakes happened, and "
        "how many would one connection per request need?",
        recipe="requests: rows whose app starts with 'GET '; connections: rows whose flags are exactly 'S'; "
        "then 3 × (requests − connections).",
        mistakes=[
            (3 * requests, "that counts a handshake for every request, but some happened anyway: the connections "
             "your capture opened. Count only the extra ones."),
            (requests - opened, "that is the number of extra handshakes; each is three packets (SYN, SYN-ACK, ACK)."),
            (opened, "that is how many connections were opened; the question asks what one per request would add."),
        ],
        explanation=f"{extra}: {requests} requests went over {opened} connections, because an HTTP/1.1 connection "
        "stays open unless someone says Connection: close (RFC 9112 §9.3). One connection per request would "
        f"have needed {requests - opened} more handshakes of 3 packets, each costing a round trip before its "
        "request could leave (and a close of 3 or 4 more packets each, and a TIME_WAIT entry).",
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


def _all_requests_mean_ms(rows) -> float:
    """The mean time from any GET to its answer: the mistake of averaging the short pollers in too."""
    out, pending = [], {}
    for r in rows:
        if r.app.startswith("GET "):
            pending[r.src] = r.t
        elif r.app[:3].isdigit() and r.dst in pending:
            out.append((r.t - pending.pop(r.dst)) * 1000)
    return sum(out) / len(out) if out else float("nan")


def exercise_hold_time(run: PollingRun) -> Exercise:
    """The long poller's mean hold time, from the learner's own capture."""
    holds = hold_times_ms(run.capture.table())
    mean = sum(holds) / len(holds) if holds else 0.0
    tile = run.duration * 1000 / max(len(holds), 1)
    all_mean = _all_requests_mean_ms(run.capture.table())
    return Exercise(
        "How long, on average, did the server hold the long poller's requests before answering, in "
        "milliseconds? Take every request that carries wait= (the last, wait=0, too) and compute it from "
        "your capture (within 1 ms).",
        answer=round(mean, 1),
        tolerance=1.0,
        unit="ms",

        hint="A long poll's hold starts when its request leaves and ends when its answer comes back to the "
        "same client port; the t column is in seconds.",
        recipe="The long poller's requests are the rows whose app starts with 'GET ' and contains 'wait='. "
        "Pair each with the next row whose app is a status ('200 OK') going back to the same endpoint "
        "(r.dst == request.src), and average the differences of t, times 1000.",
        mistakes=[(lambda v: abs(float(as_number(v, "ms")) - tile) <= 1.0 and abs(tile - mean) > 1.0,
                   "that is the run's length over the number of holds: close, because the holds tile the run, but the "
                   "question asks for the mean measured in your capture (within 1 ms)."),
                  (lambda v: abs(float(as_number(v, "ms")) - mean / 1000) <= 0.01,
                   "that is in seconds: the table's t column is seconds, and the question asks for milliseconds."),
                  (lambda v: abs(float(as_number(v, "ms")) - all_mean) <= 1.0 and abs(all_mean - mean) > 1.0,
                   "that averages every request; only the long poller's (those carrying wait=) are held.")],
        explanation=f"{mean:.0f} ms over {len(holds)} requests: each waited until the next message was "
        f"published, or the run ended; together the holds tile the {run.duration:g}-second run (about "
        f"{run.duration * 1000 / max(len(holds), 1):.0f} ms each). Every one of those milliseconds, the server "
        "held a request and a connection open.",
        kind="capture", source=run,
    )


def exercise_longest_interval(target_s: float = 1.0, rtt_ms: float = 200.0) -> Exercise:
    """The longest short-polling interval that meets a mean-latency target across a distance."""
    longest = round(2 * (target_s - rtt_ms / 2000), 3)
    return Exercise(
        f"A product needs messages shown {target_s:g} s after they are published, on average. The client "
        f"short-polls across a {rtt_ms:g} ms round trip on a fixed schedule, a poll every T seconds whatever the "
        "answers, and messages arrive at random times. What is the longest T, in seconds, that meets the target?",
        answer=longest,
        tolerance=0.011,
        unit="s",
        hint="Where does a message wait, and for how long on average, before its answer starts back? Then "
        "add what the network costs the answer.",
        recipe="mean delay = T/2 + RTT/2; set it equal to the target and solve for T.",
        mistakes=[
            (2 * target_s, "that ignores the network: the answer still has to cross to the client, half a round trip."),
            (round(2 * (target_s - rtt_ms / 1000), 3), "only the answer's trip back adds to the wait: the poll that "
             "finds the message left the client long before the message existed."),
            (round(target_s - rtt_ms / 2000, 3), "that keeps the *worst* case (T + RTT/2) under the target; the "
             "question asks for the mean, and a random arrival waits T/2 on average."),
        ],
        explanation=f"A random arrival waits T/2 on average for the next poll to reach the server, then the answer "
        f"crosses once ({rtt_ms / 2:g} ms): T/2 + {rtt_ms / 2000:g} s ≤ {target_s:g} s gives T ≤ {longest:g} s. Its "
        f"worst case is then {longest + rtt_ms / 2000:g} s, and the client makes {1 / longest:.2f} requests a second "
        "whether or not anything happened.",
    )


def theory_knob(measured: PollingRun | None = None, rtt_ms: int = 100, interval: float = 0.5):
    """Section 7's knob: expected latency for a round trip and interval, with ``measured``'s dots when they match."""
    from ...course.plots.polling import polling_theory

    return polling_theory(rtt_ms, interval, measured=measured)
