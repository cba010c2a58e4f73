"""Notebook 10's predictions and questions: each computed from the run or capture it is asked about."""

from __future__ import annotations

import hpack

from ...course.exercises import Exercise, Prediction
from ...traffic.packets import C2S, S2C
from .frames import Exchange
from .pages import H1_CONNECTIONS

__all__ = ["predict_h1_page", "predict_quic_first_byte", "exercise_body_framing", "exercise_fresh_block",
           "exercise_amplification", "exercise_tail_under_loss"]


def predict_h1_page(resources: int = 30) -> Prediction:
    """Round trips for a page of small resources over HTTP/1.1 with six connections."""
    rounds = -(-resources // H1_CONNECTIONS)

    def explain(given: float, measured: float) -> str:
        return (f"One round trip opens the connections (all six at once), then each connection carries one request "
                f"and its answer per round trip: {resources} resources / {H1_CONNECTIONS} connections = {rounds} "
                f"rounds, {rounds + 1} round trips in all. HTTP/1.1 has no way to send the next request's answer "
                "before the previous one's ends on the same connection (RFC 9112 §9.3.2): that is HTTP/1.1's own "
                "head-of-line blocking, and the reason browsers open six connections.")

    return Prediction(
        f"The page has {resources} small resources (2,000 bytes each) on one host, 100 ms round trip away. "
        f"Over HTTP/1.1 the client opens up to {H1_CONNECTIONS} connections, as browsers do, and sends a request "
        "on a connection only when its previous answer has ended. How many round trips until the last resource "
        "is in hand?",
        measure=lambda pages: pages["HTTP/1.1"].round_trips, unit="round trips", tolerance=0.1, floor=0.3,
        explain=explain, step=lambda pages: 1.0,
        spread="each round trip is the unit; the link adds a few ms of processing on top",
        mistakes=[
            (lambda g, m: abs(g - resources) < 3, "That is one request at a time on one connection. The client "
             f"opened {H1_CONNECTIONS}, and each carries its own request in the same round trip."),
            (lambda g, m: abs(g - rounds) < 0.5, "The requests are right; the connections' own opening "
             "(the TCP handshake, one round trip) comes first."),
            (lambda g, m: g <= 2.5, "That is what HTTP/2 would need if nothing else limited it: every request at "
             "once. HTTP/1.1 sends one request per connection per round trip."),
        ],
    )


def predict_quic_first_byte(rtt_ms: float = 100.0) -> Prediction:
    """Milliseconds from nothing to the first answer byte over a fresh QUIC connection."""

    def explain(given: float, measured: float) -> str:
        return (f"One round trip for QUIC's handshake, which carries TLS 1.3's in its CRYPTO frames (RFC 9001 §4): "
                f"the client's Initial holds the ClientHello, the server's answer holds everything up to its "
                f"Finished. The request leaves with the client's Finished, one more round trip: 2 × {rtt_ms:g} ms. "
                "TCP + TLS 1.3 needs one more, since TCP's handshake must end before TLS's can start.")

    return Prediction(
        f"A client with no history asks for a page over HTTP/3, across a {rtt_ms:g} ms round trip. How many "
        "milliseconds from its first packet to the first byte of the answer?",
        measure=lambda fb: fb.seconds["HTTP/3, QUIC"] * 1000, unit="ms", tolerance=0.15, floor=10.0,
        explain=explain, step=lambda fb: fb.rtt_ms,
        spread="a round trip is the unit; the handshake's CPU time adds a few ms",
        mistakes=[
            (lambda g, m: abs(g - 3 * rtt_ms) < rtt_ms / 2, "Three round trips is TCP + TLS 1.3 (notebook 09). QUIC "
             "has no separate transport handshake: its first packets carry TLS's."),
            (lambda g, m: abs(g - rtt_ms) < rtt_ms / 2, "One round trip is 0-RTT: a client that kept a ticket from an "
             "earlier connection. This client has none."),
        ],
    )


def exercise_body_framing(exchange: Exchange) -> Exercise:
    """Bytes of frame header that stream 3's body cost, from the decoded capture."""
    data = [f for f in exchange.frames.get(S2C, []) if f.stream == 3 and f.name == "DATA"]
    answer = 9 * len(data)
    carrying = [f for f in data if f.payload]
    body = sum(len(f.payload) for f in data)
    return Exercise(
        f"Stream 3 is app.js, {body:,} bytes. In your capture, how many bytes of HTTP/2 frame header did its body "
        "cost on the wire (every DATA frame on stream 3 counts)?",
        answer=answer, unit="B", kind="capture", source=exchange,
        hint="Every frame starts with the same fixed-size header (RFC 9113 §4.1), and no DATA frame may be "
        "larger than the receiver's SETTINGS_MAX_FRAME_SIZE.",
        recipe="Count stream 3's DATA frames in the S→C lines (exchange.lines('S→C')), the empty one with END_STREAM "
        "too, and multiply by the header's 9 bytes.",
        mistakes=[
            (9 * len(carrying), "The server also sent an empty DATA frame with END_STREAM: it costs a header too."),
            (9 * (len(data) + 1), "The HEADERS frame carries the answer's head, not its body: leave it out."),
            (len(data), "That is the number of frames; each header is 9 bytes."),
        ],
        explanation=f"{len(data)} DATA frames × 9 bytes = {answer} bytes, on a {body:,}-byte body. The body is cut at "
        "16,384 bytes, the default SETTINGS_MAX_FRAME_SIZE (§6.5.2) the client never raised; this is how other "
        "streams' frames interleave with it instead of waiting behind it.",
    )


def exercise_fresh_block(exchange: Exchange) -> Exercise:
    """The third request's header block if it had been the first on its connection."""
    third = exchange.blocks[2]
    answer = len(hpack.Encoder().encode(third.fields))
    return Exercise(
        f"In your capture the third request (stream {third.stream}) was sent as a small HPACK block. Had it been "
        "the first request on a new connection (an empty dynamic table, the same encoder), how many bytes would "
        "its header block have been? Within 2 bytes counts.",
        answer=answer, unit="B", tolerance=2, kind="capture", source=exchange,
        hint="What the third block could point at, the first one had to spell out. Compare the fields of the "
        "first and third requests: which ones differ?",
        recipe="hpack.Encoder().encode(exchange.blocks[2].fields) encodes them with a fresh table; or reason from "
        "the first request's block: only the :path differs, and by two characters.",
        mistakes=[
            (third.size, "That is what it cost with the table the first two requests filled."),
            (third.plain, "That is the fields written as HTTP/1.1 lines. HPACK still compresses a first request: "
             "static-table indexes for :method and :scheme, and Huffman codes for the strings."),
        ],
        explanation=f"{answer} bytes fresh against {third.size} on the warm connection: :authority and user-agent "
        "became one-byte references to the dynamic table (RFC 7541 §2.3.3), :method and :scheme are in the static "
        "table from the start, and only the new :path is spelled out, Huffman-coded (§5.2).",
    )


def exercise_amplification(flight) -> Exercise:
    """How much the server may send before the client's address is validated (RFC 9000 §8.1)."""
    first = next(d for d in flight.datagrams if d.direction == C2S)
    answer = 3 * first.size
    return Exercise(
        "Before the client's address is validated, a QUIC server may send at most three times the bytes it has "
        "received from that address (RFC 9000 §8.1). With only the client's first datagram received (in your "
        "capture), how many bytes may the server send?",
        answer=answer, unit="B", kind="capture", source=flight,
        hint="The limit counts what arrived in UDP payloads, and the client's first datagram is padded on purpose.",
        recipe="The first C→S line's size, times 3.",
        mistakes=[
            (first.size, "That is one times: the limit is three times what the server received."),
            (3 * 1252, "Count the UDP payload only, not the IP and UDP headers."),
        ],
        explanation=f"3 × {first.size:,} = {answer:,} bytes. The padding to 1,200 bytes (§14.1) is what makes this "
        "room: a forger who sends a small spoofed Initial cannot make the server flood its victim with much more.",
    )


def exercise_tail_under_loss(runs: list) -> Exercise:
    """Which version's slow tail (p95) grew most from no loss to 2 % loss, in the stored runs."""
    at = {round(r.loss, 3): r for r in runs}
    growth = {v: at[0.02].quantile(v, 0.95) / at[0.0].quantile(v, 0.95) for v in at[0.0].done}
    answer = max(growth, key=growth.get)
    letters = dict(zip("abc", growth))
    pick = next(k for k, v in letters.items() if v == answer)
    worded = "; ".join(f"{v} × {g:.1f}" for v, g in growth.items())
    return Exercise(
        "Predict before you look at the figure: from no loss to 2 % loss, whose slowest 5 % of resources (p95) "
        "slows down the most, as a ratio to its own p95 without loss? (a) HTTP/1.1 (b) HTTP/2 (c) HTTP/3. "
        "Then check against the measured runs.",
        answer=pick, normalise=lambda s: s.strip().lower().strip("()"),
        hint="One TCP connection delivers bytes in order whichever stream they belong to; QUIC delivers each "
        "stream in order, not the streams. Then ask how quickly each implementation recovers from a loss.",
        recipe="Compare runs[...].quantile(version, 0.95) at loss 0.02 with loss 0.0 for each version.",
        mistakes=[(k, f"Measured: {worded}.") for k in letters if k != pick][:2],
        explanation=f"Measured p95 growth: {worded}. Theory says HTTP/2 suffers most (every stream waits for a "
        "lost segment on its one connection) and HTTP/3 least. The section below says why this run may disagree.",
    )
