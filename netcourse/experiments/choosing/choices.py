"""Notebook 11: the learner chooses. A prediction of the rate where short polling gets cheaper per message than an
open WebSocket (checked against the stored rate sweep), and a question that asks for a transport for each of four
workloads, with a diagnosis for each wrong pick (from the decision table and the measurements behind it).
"""

from __future__ import annotations

from ...course.exercises import Exercise, Prediction
from .sweeps import crossover

__all__ = ["predict_crossover", "WORKLOADS", "PICKS", "exercise_pick_a_transport"]


def predict_crossover(interval: float = 0.25, rtt_ms: float = 50.0) -> Prediction:
    """🔮 Above what rate does short polling carry a message in fewer bytes than an open WebSocket?"""
    period = interval + rtt_ms / 1000

    def explain(given: float, measured: float) -> str:
        return (f"About {measured:.0f} messages a second. A poll costs a request and an answer, a few hundred bytes "
                f"with TCP's ACKs, every {period * 1000:.0f} ms (the interval plus a round trip) whether it carries "
                "anything or not; a WebSocket costs one frame per message. Short polling wins once a poll carries "
                f"enough messages to share that cost: a few per poll, so a rate of several divided by {period:g} s. "
                "It wins only because its server sends everything pending in one answer; section 3's batched "
                "WebSocket shows what the comparison looks like at the same latency.")

    return Prediction(
        f"Short polling asks every {interval * 1000:.0f} ms; an open WebSocket sends one frame per message; the "
        f"link's round trip is {rtt_ms:g} ms, and the messages are 100 bytes. Counting every byte on the wire once "
        "everyone is connected: above what rate (messages per second) does short polling carry a message in "
        "fewer bytes than the WebSocket?",
        measure=lambda sweeps: crossover(sweeps) or float("nan"), unit="msg/s", tolerance=0.5, floor=1.0,
        explain=explain, says="the bench's sweep measured", spread="about half the measured rate either way: "
        "the right order of magnitude, which is what this question is about",
        mistakes=[(lambda g, m: g < m / 2, "Too low: at that rate most polls come back empty, and an empty poll "
                   "still costs a request and an answer. Count the polls per message: one over (rate × period)."),
                  (lambda g, m: g > 1.5 * m, "Too high: a WebSocket frame is not free either: TCP's ACK and 66 "
                   "bytes of headers come with each. Polling wins as soon as a few messages share a poll.")],
    )


WORKLOADS = (
    "a live price ticker pushes 50 updates a second to browsers; each must arrive within 40 ms of publication "
    "across a 50 ms round trip; the browser never sends anything",
    "a payment provider's servers tell your server that a charge succeeded (the provider offers no event log to "
    "read); your server may be down for an hour, and the notice must not be lost",
    "a game's native client gets the other players' positions 30 times a second; a late position is worthless, "
    "and one lost now and then is harmless",
    "an internal dashboard shows a figure that changes a few times an hour; staff open it behind a corporate "
    "proxy that inspects TLS, buffers responses and refuses Upgrade",
)


PICKS = (  # what each workload accepts, and why the usual wrong picks are wrong
    ({"sse", "websocket"}, {
        "long polling": "long polling's median at 50 a second was about a round trip (section 1): most messages "
                        "arrive while no request is held, and wait for the next one. Only a push over an open "
                        "connection delivers in half a round trip (25 ms).",
        "short polling": "a message waits for the next poll: on average half the poll period, far over 40 ms.",
        "webhooks": "a browser cannot be a webhook receiver: it has no public URL (notebook 07).",
        "udp": "a page cannot open a raw UDP socket (WebRTC and WebTransport wrap it).",
        "raw tcp": "a page cannot open a raw TCP connection.",
    }),
    ({"webhooks"}, {
        "websocket": "your server would have to hold a connection open to the provider; while it is down for an "
                     "hour nothing is connected, and a WebSocket keeps no log (section 4).",
        "sse": "an event stream needs your server to be the client, connected; down for an hour, it misses what "
               "the provider's log does not keep for it.",
        "short polling": "possible if the provider offers a log to poll, but the usual contract is the push: the "
                         "provider's outbox retries for days (notebook 07's schedule).",
        "long polling": "your server would have to be up and asking; the provider's retries are what survive an "
                        "hour's outage (section 4: 'delivered when back').",
    }),
    ({"udp"}, {
        "raw tcp": "TCP delivers every byte in order: a lost segment holds back the positions behind it until it "
                   "is resent (head-of-line blocking: notebook 02, and this notebook's loss sweep). Fresh positions "
                   "wait for a stale one.",
        "websocket": "a WebSocket runs over TCP: a lost segment holds back every later position until it is "
                     "resent, and a native client does not need the browser's transport.",
        "sse": "SSE runs over TCP (head-of-line blocking) and carries text to browsers; a native game client "
               "needs neither.",
    }),
    ({"short polling", "long polling"}, {
        "sse": "a buffering proxy holds the event stream's pieces back (notebook 06): the page sees nothing "
               "until the buffer fills or the stream ends.",
        "websocket": "the proxy refuses Upgrade, so the handshake never completes.",
        "webhooks": "the dashboard is a page in a browser, not a server with a public URL.",
    }),
)


_NAMES = {"sse": "sse", "server-sent events": "sse", "eventsource": "sse", "http streaming": "sse",
          "websocket": "websocket", "websockets": "websocket", "ws": "websocket",
          "webhook": "webhooks", "webhooks": "webhooks", "udp": "udp", "raw tcp": "raw tcp", "tcp": "raw tcp",
          "short polling": "short polling", "polling": "short polling", "long polling": "long polling"}


_SHOWN = {"sse": "SSE", "websocket": "WebSocket", "udp": "UDP", "raw tcp": "raw TCP"}


def _picks(given) -> list[str] | None:
    if isinstance(given, str):
        given = [part for part in given.replace(";", ",").split(",")]
    try:
        names = [_NAMES.get(str(g).strip().lower(), str(g).strip().lower()) for g in given]
    except TypeError:
        return None
    return names if len(names) == len(PICKS) else None


def _first_wrong(given) -> tuple[int, str] | None:
    names = _picks(given)
    if names is None:
        return None
    for i, (name, (ok, _)) in enumerate(zip(names, PICKS)):
        if name not in ok:
            return i, name
    return None


def _mistakes() -> list[tuple]:
    """One anticipated mistake per (workload, wrong pick): the first wrong pick in an answer gets its diagnosis."""
    out = []
    for i, (_, wrong) in enumerate(PICKS):
        for name, why in wrong.items():
            out.append((lambda given, i=i, name=name: _first_wrong(given) == (i, name),
                        f"workload {i + 1} ({WORKLOADS[i].split(';')[0]}) is not {_SHOWN.get(name, name)}: {why}"))
    return out


def exercise_pick_a_transport() -> Exercise:
    """❓ One transport for each of four workloads, answered from the decision table."""
    listing = " ".join(f"({n}) {w}." for n, w in enumerate(WORKLOADS, 1))
    return Exercise(
        f"Pick a transport for each workload, from the decision table and the sections behind it: {listing} "
        "Answer with four names in order, e.g. ['WebSocket', 'short polling', 'raw TCP', 'SSE'].",
        answer=["SSE", "webhooks", "UDP", "short polling"],
        check=lambda given: _picks(given) is not None and _first_wrong(given) is None,
        hint="For each workload ask, in this order: who connects to whom (a browser? a server with a public URL?), "
        "how late a message may be (half a round trip, a round trip, a poll period), what must survive an absence, "
        "and what sits in between (proxies).",
        mistakes=_mistakes(),
        explanation="(1) SSE: a push over an open connection arrives in half a round trip, and the browser never "
        "sends (a WebSocket works too). (2) Webhooks: the provider's outbox retries until your server is back. "
        "(3) UDP: no retransmission to wait for, and a lost position is simply replaced by the next (UDP delivers "
        "a late datagram too: the game drops a stale one by its sequence number). (4) Short "
        "polling: plain requests pass any proxy, and a few changes an hour need no open connection (long polling "
        "works too: each answer is a whole response, which a buffering proxy passes on, and a server answers an "
        "empty hold well before a proxy's idle timeout).",
        ask="Which workload would change its answer if the link lost 5 % of its packets? Which if it had a "
        "million clients?",
    )
