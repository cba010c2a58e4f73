"""Notebook 10's predictions and questions: each computed from the run or capture it is asked about."""

from __future__ import annotations

from ...course.exercises import Exercise, Prediction
from ...traffic.packets import C2S, S2C
from .frames import Exchange
from .pages import H1_CONNECTIONS

__all__ = ["predict_h1_page", "predict_quic_first_byte", "exercise_body_framing", "exercise_path_bytes",
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
    body = sum(len(f.payload) for f in data)
    return Exercise(
        f"Stream 3 is app.js, {body:,} bytes. In your capture, how many bytes of HTTP/2 frame header did its body "
        "cost on the wire?",
        answer=answer, unit="B", kind="capture", source=exchange,
        hint="Every frame starts with the same fixed-size header (RFC 9113 §4.1), and no DATA frame may be "
        "larger than the receiver's SETTINGS_MAX_FRAME_SIZE.",
        recipe="Count stream 3's DATA frames in the S→C lines (exchange.lines('S→C')) and multiply by the header's "
        "9 bytes.",
        mistakes=[
            (9, "One frame cannot carry it: the body is larger than the largest frame the client accepts "
             "(MAX_FRAME_SIZE in its SETTINGS)."),
            (answer + 9, "The HEADERS frame carries the answer's head, not its body: leave it out."),
            (len(data), "That is the number of frames; each header is 9 bytes."),
        ],
        explanation=f"{len(data)} DATA frames × 9 bytes = {answer} bytes on a {body:,}-byte body. The body is cut at "
        "16,384 bytes, the default SETTINGS_MAX_FRAME_SIZE (§6.5.2), which the client never raised; this is how "
        "other streams' frames can go between its pieces instead of waiting behind the whole body.",
    )


def exercise_path_bytes(exchange: Exchange) -> Exercise:
    """How many bytes of the third request's header block carry its :path."""
    third = exchange.blocks[2]
    others = [n for n, _ in third.fields if n != ":path"]
    answer = third.size - len(others)
    path = dict(third.fields)[":path"]
    return Exercise(
        f"In your capture, request 3 (stream {third.stream}) went out as a {third.size}-byte HPACK block for five "
        "fields. How many of those bytes carry its :path?",
        answer=answer, unit="B", kind="capture", source=exchange,
        hint="Which of the five fields were already in a table, the static one or the one requests 1 and 2 filled? "
        "A field found whole in a table is sent as its index.",
        recipe="An indexed field is one byte here (RFC 7541 §6.1: a 7-bit index, and every index used is below "
        "127). The four fields other than :path were in a table: the block's size minus 4.",
        mistakes=[
            (len(path), "That is the path's length in characters. On the wire it is Huffman-coded (§5.2), shorter, "
             "and it needs a byte for its name's index and one for its length."),
            (third.size, "That is the whole block; the other four fields cost a byte each."),
            (third.size - 2, "Only :method and :scheme are in the static table; :authority and user-agent are in the "
             "dynamic table since request 1, one byte each too."),
        ],
        explanation=f"{third.size} − 4 = {answer} bytes: a byte naming the field (:path is in the static table, so "
        "only its name is indexed), a length byte, and the Huffman-coded path, which is added to the dynamic table "
        "for later requests (literal with incremental indexing, §6.2.1). A request that repeats a path costs one byte "
        "for it.",
    )


def exercise_amplification(flight) -> Exercise:
    """The room the server had left under the anti-amplification limit (RFC 9000 §8.1) after its first flight."""
    client = [i for i, d in enumerate(flight.datagrams) if d.direction == C2S]
    first, second = client[0], client[1] if len(client) > 1 else len(flight.datagrams)
    received = flight.datagrams[first].size
    sent = sum(d.size for d in flight.datagrams[first:second] if d.direction == S2C)
    answer = 3 * received - sent
    return Exercise(
        "Until the client's address is validated, a QUIC server may send at most three times the bytes it has "
        "received from that address (RFC 9000 §8.1). In your capture, after the server's answer to the client's "
        "first datagram, how many more bytes could it have sent before it had to wait for the client?",
        answer=answer, unit="B", kind="capture", source=flight,
        hint="The limit counts the UDP payload received so far; subtract what the server has already spent of it.",
        recipe="3 × the first C→S datagram's size, minus the sizes of the S→C datagrams before the client's second "
        "one.",
        mistakes=[
            (3 * received, "That is the whole allowance; the server had already sent part of it."),
            (3 * (received + 28) - sent, "Count UDP payloads only, not the IP and UDP headers (20 + 8 bytes)."),
            (2 * received - sent, "Three times what was received, not twice."),
        ],
        explanation=f"3 × {received:,} − {sent:,} = {answer:,} bytes. Here the whole handshake fitted in one "
        "datagram; a server with a long certificate chain can hit the limit and must wait for the client's next "
        "datagram. The client's padding to 1,200 bytes (§14.1) is what gives it room: a forger who sends a small "
        "spoofed Initial cannot make the server flood its victim with much more.",
    )


_VERSION_LETTERS = {"http/1.1": "a", "http1.1": "a", "http/2": "b", "http2": "b", "h2": "b"}


def exercise_tail_under_loss(runs: list, loss: float = 0.05) -> Exercise:
    """Of the two TCP versions, whose slow tail (p95) grew more from no loss to ``loss``, in the stored runs."""
    at = {round(r.loss, 3): r for r in runs}
    growth = {v: at[round(loss, 3)].quantile(v, 0.95) / at[0.0].quantile(v, 0.95) for v in ("HTTP/1.1", "HTTP/2")}
    answer = "a" if growth["HTTP/1.1"] > growth["HTTP/2"] else "b"
    worded = " and ".join(f"{v}'s by × {g:.1f}" for v, g in growth.items())

    def letter(text: str) -> str:
        text = text.strip().lower().strip("().")
        return _VERSION_LETTERS.get(text, text)

    return Exercise(
        f"Predict, then check against the measured runs: from no loss to {loss:.0%} loss, whose slowest 5 % of resources "
        "(p95) slows down more, as a ratio to its own p95 without loss: (a) HTTP/1.1 on six connections or (b) "
        "HTTP/2 on one?",
        answer=answer, normalise=letter,
        hint="A lost segment holds up every byte behind it on its connection. How many resources are behind it "
        "on one connection, and how many on one of six?",
        recipe=f"For each version, its p95 in the run at {loss:.0%} loss over its p95 without loss: "
        "run.quantile(version, 0.95).",
        mistakes=[("a" if answer == "b" else "b", f"Measured: {worded}."),
                  ("c", "HTTP/3 is not one of the two choices here; it comes after the figure.")],
        explanation=f"Measured: {worded}. "
        + ("On one connection a loss stalls every stream behind it: head-of-line blocking at the transport."
           if answer == "b" else "Here the six connections' tail grew more: see the notes below the figure."),
    )
