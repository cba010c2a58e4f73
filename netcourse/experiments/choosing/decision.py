"""Notebook 11: one message on the wire per push transport (captured), the exercises, and the decision table
built from the measurements of ``experiments.choosing``.
"""

from __future__ import annotations

import asyncio
import html
import time
from dataclasses import dataclass

import aiohttp

from ...apps import polling as polling_app
from ...apps import streaming as streaming_app
from ...apps.wsserver import Hub, make_ws_handler
from ...course.exercises import Exercise
from ...protocols.wsframe import Opcode
from ...runtime.server import serve
from ...runtime.sockets import no_delay
from ...runtime.waiting import run_async
from ...traffic.packets import C2S, S2C
from ...traffic.sniffer import Capture, capture
from ..registry import scenario
from .harness import TransportRun

__all__ = ["OneMessage", "one_message_each", "segment_carrying",
           "exercise_long_poll_bytes", "exercise_websocket_bytes", "decision_table", "DecisionTable", "format_table",
           "rows_of", "notes_checked",
           "FACTS"]

MESSAGE = "order 1042 shipped"


@dataclass
class OneMessage:
    """One message delivered by long polling, SSE and WebSocket to one client each, captured.

    Attributes:
        capture: the capture (live, or replayed from the recording).
        ports: transport -> the server port it listened on (in the capture).
    """

    capture: Capture
    ports: dict[str, int]


@scenario("one_message_each")
def one_message_each() -> OneMessage:
    """Three servers, one client each; the same short message published once to each, captured."""
    log_poll, log_sse, hub = polling_app.MessageLog(), polling_app.MessageLog(), Hub()
    with serve(polling_app.make_app(log_poll), name="long poll") as lp, \
            serve(streaming_app.make_app(log_sse), name="sse") as sse, \
            serve(no_delay(make_ws_handler(hub)), name="websocket") as ws:
        ports = {"long polling": lp.port, "SSE": sse.port, "WebSocket": ws.port}
        with capture(*ports.values(), scenario="one_message_each") as cap:

            async def main() -> None:
                async with aiohttp.ClientSession() as session:
                    async def poll() -> None:
                        async with session.get(f"{lp.url}/messages", params={"after": "0", "wait": "5"}) as r:
                            await r.read()

                    async def stream() -> None:
                        async with session.get(f"{sse.url}/events") as r:
                            async for chunk in r.content.iter_any():
                                if MESSAGE.encode() in chunk:
                                    return

                    async def websocket() -> None:
                        async with session.ws_connect(f"http://127.0.0.1:{ws.port}/") as conn:
                            async for msg in conn:
                                if msg.type == aiohttp.WSMsgType.TEXT:
                                    return

                    tasks = [asyncio.create_task(c()) for c in (poll, stream, websocket)]
                    deadline = time.monotonic() + 5
                    while (hub.count < 1 or log_poll.waiting < 1) and time.monotonic() < deadline:
                        await asyncio.sleep(0.01)
                    await asyncio.sleep(0.1)  # the SSE stream is open too
                    lp.loop.call_soon_threadsafe(log_poll.append, MESSAGE)
                    sse.loop.call_soon_threadsafe(log_sse.append, MESSAGE)
                    asyncio.run_coroutine_threadsafe(hub.broadcast(MESSAGE.encode(), Opcode.TEXT), ws.loop)
                    await asyncio.wait_for(asyncio.gather(*tasks), 10)

            run_async(main(), 20)
    ports = dict(zip(ports, cap.server_ports)) if not cap.live else ports  # a replay has the recording's ports
    return OneMessage(cap, ports)


def segment_carrying(one: OneMessage, transport: str) -> int:
    """TCP payload bytes of the server's segment that carried the message, for one transport."""
    from scapy.layers.inet import TCP

    port = one.ports[transport]
    for pkt, row in zip(one.capture.packets, one.capture.table()):
        if row.direction == S2C and row.src.endswith(f":{port}") and row.payload:
            if MESSAGE.encode() in bytes(pkt[TCP].payload)[: row.payload]:
                return row.payload
    return 0


def _payloads(one: OneMessage, transport: str) -> tuple[int, int, int]:
    """(request head, response, both) payload bytes of a transport's exchange for the message: for the long
    poller, the request that was held and the answer that carried the message; for the WebSocket, the
    upgrade request and its 101."""
    rows = [r for r in rows_of(one, transport) if r.payload]
    request = next((r.payload for r in rows if r.direction == C2S and r.app.startswith("GET ")), 0)
    response = next((r.payload for r in rows if r.direction == S2C and r.app[:3].isdigit()), 0)
    return request, response, request + response


def exercise_websocket_bytes(one: OneMessage) -> Exercise:
    """The WebSocket's one-off cost: the upgrade's bytes, both directions, from the learner's capture."""
    request, response, both = _payloads(one, "WebSocket")
    return Exercise(
        "Opening the WebSocket cost bytes that long polling pays on every message: an HTTP request and a "
        "response. From your capture: how many bytes of TCP payload did the WebSocket's opening handshake "
        "carry, both directions together (the upgrade request and the 101)?",
        answer=both,
        kind="capture", source=one,
        unit="B",
        hint="The ladder leaves the sizes out; the capture's rows have them. Which two packets carry HTTP on the "
        "WebSocket's connection?",
        recipe="in rows_of(one, 'WebSocket'), add the payload of the C→S row whose app starts with 'GET ' and "
        "of the S→C row that starts with '101'.",
        mistakes=[
            (request, "that is the upgrade request alone; the 101 response is part of the handshake too."),
            (response, "that is the 101 response alone; add the request that asked for the upgrade."),
        ],
        explanation=f"{both} bytes: a {request}-byte upgrade request and a {response}-byte 101. Paid once per "
        "connection; after it, each message costs a frame header of 2 to 14 bytes.",
    )


def exercise_long_poll_bytes(one: OneMessage) -> Exercise:
    """When the WebSocket's handshake has paid for itself against long polling, from the learner's capture."""
    _, _, handshake = _payloads(one, "WebSocket")
    request, response, per_poll = _payloads(one, "long polling")
    frame = segment_carrying(one, "WebSocket")
    saved = per_poll - frame
    n = handshake // saved + 1 if saved > 0 else 0
    return Exercise(
        "Long polling paid for this message with one request and one response; the WebSocket paid its "
        "handshake once (your last answer) and then one frame. From your capture, and assuming every later "
        "message costs the same: after how many messages has the WebSocket carried fewer bytes of TCP payload "
        "in all than the long poller?",
        answer=n,
        kind="capture", source=one,
        hint="Write each transport's total after n messages: a one-off cost plus n times a per-message cost. "
        "Where does the WebSocket's line cross under the long poller's?",
        recipe="per message, long polling = its GET's payload + its answer's payload; the WebSocket = the "
        "frame's payload (segment_carrying(one, 'WebSocket')). The WebSocket is ahead once handshake + "
        "n × frame < n × per-message poll: the smallest such n.",
        mistakes=[
            (lambda v: v == handshake // max(frame, 1) + 1,
             "that counts only the frame against the handshake; the long poller pays its request *and* its "
             "response for every message."),
            (0, "the handshake is paid before the first message: the WebSocket starts behind."),
        ],
        explanation=f"After {n}: the handshake cost {handshake} bytes; each message then costs {frame} bytes "
        f"on the WebSocket and {per_poll} on the long poller (a {request}-byte request, a {response}-byte "
        f"answer), saving {saved} a message. In bytes, a WebSocket pays for itself almost at once; its costs "
        "are elsewhere: reconnection and catch-up are the client's job, and scale-out needs a broker (sections 4 and 6).",
    )


# -- the decision table -------------------------------------------------------------------------------

# What is not a measurement, said once. Bidirectional: can the client send on the same channel?
# Browser: can a page use it directly? Proxies: notebook 06 (buffering) and 07 (firewalls).
FACTS = {
    "short polling": {"bidirectional": "no: a request per send", "browser": "yes (fetch)", "proxies": "yes, plain HTTP",
                      "security": "HTTPS; a cookie or token on every request"},
    "long polling": {"bidirectional": "no: a request per send", "browser": "yes (fetch)", "proxies": "yes, if held requests are allowed to last",
                     "security": "HTTPS; a cookie or token on every request"},
    "SSE": {"bidirectional": "no: server to client only", "browser": "yes (EventSource)", "proxies": "only if they do not buffer (06)",
            "security": "HTTPS; cookies only (EventSource sets no headers)"},
    "WebSocket": {"bidirectional": "yes", "browser": "yes (WebSocket)", "proxies": "needs Upgrade support",
                  "security": "WSS; auth once at the handshake, and the server must check Origin (05, 08)"},
    "raw TCP": {"bidirectional": "yes", "browser": "no", "proxies": "no: a port of its own",
                "security": "TLS if you add it; auth is your protocol's"},
    "UDP": {"bidirectional": "yes", "browser": "no (WebRTC/WebTransport wrap it)", "proxies": "no",
            "security": "DTLS or QUIC if you add them; spoofable source addresses"},
    "webhooks": {"bidirectional": "no: server to server", "browser": "no: the receiver needs a public URL", "proxies": "the receiver must be reachable (07)",
                 "security": "HTTPS and a signature on each delivery; replay and SSRF checks (07)"},
}


class DecisionTable(list):
    """Rows of (criterion, {transport: cell}); shows itself as a table (HTML, and text)."""

    def __repr__(self) -> str:
        return format_table(self)

    def _repr_html_(self) -> str:
        names = list(self[0][1])
        head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
        body = "".join("<tr><th style='text-align:left'>" + html.escape(label) + "</th>"
                       + "".join(f"<td>{html.escape(cells[n])}</td>" for n in names) + "</tr>" for label, cells in self)
        return f"<table class='netcourse-decision'><thead><tr><th></th>{head}</tr></thead><tbody>{body}</tbody></table>"


def decision_table(link_runs: dict[str, TransportRun], away_runs: dict[str, TransportRun],
                   sweeps: dict | None = None) -> DecisionTable:
    """Rows of (criterion, {transport: cell}), each cell from a measurement (or ``FACTS``, marked as such)."""
    names = list(link_runs)
    w = next(iter(link_runs.values())).workload
    at = f"{w.rate:g}/s, poll every {w.interval:g} s"
    rows = [
        (f"median latency ({at})", {n: f"{link_runs[n].percentile(50):.0f} ms" for n in names}),
        (f"{_tail_label(link_runs)} latency ({at})", {n: f"{link_runs[n].tail()[1]:.0f} ms" for n in names}),
        (f"bytes per message ({at})", {n: f"{link_runs[n].bytes_per_message:.0f} B" for n in names}),
    ]
    if sweeps is not None:
        rate_sweep = sweeps["sweeps"]["rate"]
        poll = sweeps["base"].get("interval", 1.0)
        low, high = min(rate_sweep[names[0]], key=float), max(rate_sweep[names[0]], key=float)
        base = next((k for k in rate_sweep[names[0]] if float(k) == sweeps["base"].get("rate", 10.0)), high)
        rows.append((f"set-up per client, once (bench sweep, {float(base):g}/s)",
                     {n: f"{rate_sweep[n][base]['setup_bytes_per_client']:.0f} B" if n in rate_sweep else "-"
                      for n in names}))
        for key in (low, high):
            label = f"steady bytes per message (bench sweep: {float(key):g}/s, poll every {poll:g} s)"
            rows.append((label, {n: f"{rate_sweep[n][key]['steady_bytes_per_msg']:.0f} B" if n in rate_sweep else "-"
                                 for n in names}))

    def away_cell(n: str) -> str:
        if n not in away_runs:
            return "-"
        run = away_runs[n]
        cell = f"{run.caught_up}/{run.while_away}"
        if n == "UDP" and run.caught_up:
            cell += " (in flight, not recovered)"
        return cell

    rows.append(("missed while away, delivered when back (the course's servers, as built here)",
                 {n: away_cell(n) for n in names}))
    for fact, label in (("bidirectional", "bidirectional (protocol)"), ("proxies", "through proxies (protocol; 06, 07)"),
                        ("browser", "in a browser (protocol)"),
                        ("security", "protected by (protocol; 05, 07, 08, 09)")):
        rows.append((label, {n: FACTS[n][fact] for n in names}))
    return DecisionTable(rows)


def format_table(rows: list[tuple[str, dict[str, str]]]) -> str:
    """The decision table as aligned text, one column per transport."""
    names = list(rows[0][1])
    width = [max(len(r[0]) for r in rows)] + [max(len(n), *(len(r[1][n]) for r in rows)) for n in names]
    lines = ["  ".join([" " * width[0]] + [n.ljust(w) for n, w in zip(names, width[1:])])]
    for label, cells in rows:
        lines.append("  ".join([label.ljust(width[0])] + [cells[n].ljust(w) for n, w in zip(names, width[1:])]))
    return "\n".join(lines)



def notes_checked(link_runs: dict[str, TransportRun], away_runs: dict[str, TransportRun], scale: dict,
                  sweeps: dict | None = None) -> list[tuple[str, str]]:
    """The notes' claims about each transport, each with what this notebook measured (and, given the stored
    sweeps, what the bench's steady state says about bytes per message)."""
    r, away = link_runs, away_runs
    without, with_broker = scale["without"], scale["with"]
    rtt = next(iter(r.values())).workload.rtt_ms
    return [
        ("Short polling: 'send after some small amount of time'",
         f"{r['short polling'].units_per_message:.2f} requests per message; median {r['short polling'].percentile(50):.0f} ms, "
         f"{r['short polling'].tail()[0]} {r['short polling'].tail()[1]:.0f} ms: a message waits for the next poll (on average half of the "
         f"{r['short polling'].workload.interval * 1000:.0f} ms interval plus a round trip between polls), then the way back"),
        ("Long polling: 'after receive data, immediately send another request'",
         f"median {r['long polling'].percentile(50):.0f} ms, {r['long polling'].tail()[0]} {r['long polling'].tail()[1]:.0f} ms: at "
         f"{r['long polling'].workload.rate:g} messages a second most arrive while the next request is on its way, "
         "and wait for it: about a round trip"),
        ("WebSocket pro: 'low latency'",
         f"median {r['WebSocket'].percentile(50):.0f} ms on a {rtt:g} ms link (half a round trip), against "
         f"{r['short polling'].percentile(50):.0f} ms for short polling and {r['long polling'].percentile(50):.0f} ms for long polling"),
        ("WebSocket pro: 'reduced overhead of http requests'",
         f"{r['WebSocket'].bytes_per_message:.0f} bytes per message against {r['long polling'].bytes_per_message:.0f} for long "
         f"polling and {r['webhooks'].bytes_per_message:.0f} for webhooks, but {r['short polling'].bytes_per_message:.0f} for "
         "short polling, which batches: true per request, and per message only at low rates"
         + _per_message_verdict(sweeps)),
        ("WebSocket con: 'client responsible for connections'",
         f"a client away and back got {away['WebSocket'].caught_up} of the {away['WebSocket'].while_away} messages it missed: "
         "reconnecting is the client's job, and catching up needs a cursor (notebooks 03 and 08)"),
        ("WebSocket con: 'scalability problem'",
         "two processes without a broker: node B's clients got "
         + ", ".join(f"{run.received['B']} of {run.expected_per_node['B']} ({t})" for t, run in without.items())
         + "; with Redis pub/sub, " + ", ".join(f"{run.received['B']} of {run.expected_per_node['B']}"
                                               for run in with_broker.values())
         + ". Not a WebSocket problem: every held connection (an event stream, a long poll) is tied to one process"),
        ("HTTP streaming: 'one way communication over HTTP', 'native browser support'",
         f"SSE: median {r['SSE'].percentile(50):.0f} ms, {r['SSE'].bytes_per_message:.0f} bytes per message; back after an "
         f"absence, Last-Event-ID gave {away['SSE'].caught_up} of {away['SSE'].while_away} missed messages"),
        ("UDP: 'lighter header -> faster/low latency'",
         f"8 header bytes against TCP's 20 (32 here, with Linux's timestamp option); {r['UDP'].bytes_per_message:.0f} against {r['raw TCP'].bytes_per_message:.0f} bytes "
         f"per message (raw TCP, ACKs included). Median on the link {r['UDP'].percentile(50):.1f} ms against "
         f"{r['raw TCP'].percentile(50):.1f} ms: both half a round trip. The header is not where speed comes from; no "
         "handshake and no waiting for retransmissions are (notebook 02 measures both; no loss is applied here)"),
        ("Webhooks pitfall: 'failures: ensure delivery through retries'",
         f"a receiver answering 503 while away got {away['webhooks'].caught_up} of {away['webhooks'].while_away} later, "
         "by the sender's retries; the price is the dearest delivery per message at moderate and high rates"),
    ]


def rows_of(one: OneMessage, transport: str):
    """The capture's rows of one transport's connection (by its server port), for a ladder of its own."""
    from ...traffic.packets import PacketTable

    port = f":{one.ports[transport]}"
    return PacketTable(r for r in one.capture.table() if r.src.endswith(port) or r.dst.endswith(port))


def _tail_label(runs: dict) -> str:
    """"p99" when every run has the samples for it, else "largest" (see ``TransportRun.tail``)."""
    return "p99" if all(run.tail()[0] == "p99" for run in runs.values()) else "largest"


def _per_message_verdict(sweeps: dict | None) -> str:
    """What the stored rate sweep says of bytes per message: the crossover, and the batched WebSocket."""
    if sweeps is None:
        return ""
    from .sweeps import BATCHED, crossover

    rate = sweeps["sweeps"]["rate"]
    poll = sweeps["base"].get("interval", 0.25)
    at = crossover(sweeps)
    lowest = min(rate["short polling"], key=float)
    polling_wins_everywhere = (rate["short polling"][lowest]["steady_bytes_per_msg"]
                               <= rate["WebSocket"][lowest]["steady_bytes_per_msg"])
    if at:
        text = f" (steady state, section 3: below about {at:.0f} messages a second with a poll every {poll:g} s)"
    elif polling_wins_everywhere:
        text = f" (steady state, section 3: at none of the rates measured, with a poll every {poll:g} s)"
    else:
        text = f" (steady state, section 3: at every rate measured, with a poll every {poll:g} s)"
    if BATCHED not in rate:
        return text
    keys = sorted(rate[BATCHED], key=float)
    cheaper = [k for k in keys if rate[BATCHED][k]["steady_bytes_per_msg"] < rate["short polling"][k]["steady_bytes_per_msg"]]
    where = ("at every rate measured" if len(cheaper) == len(keys) else
             f"at {len(cheaper)} of the {len(keys)} rates measured" if cheaper else "at none of the rates measured")
    mid = keys[len(keys) // 2]
    return text + (f"; but at the same latency, a WebSocket server that batches on short polling's clock carries a "
                   f"message in fewer bytes {where} ({rate[BATCHED][mid]['steady_bytes_per_msg']:.0f} against "
                   f"{rate['short polling'][mid]['steady_bytes_per_msg']:.0f} at {float(mid):g}/s)")

