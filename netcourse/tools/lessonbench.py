"""``make bench`` rows for the lessons: each notebook's mechanisms measured at a size the notebook does not run
(heartbeats over many trials, streaming and codec throughput, webhook delivery under failures, catch-up of a
long log, TLS handshakes per second, every transport on one workload). Figures, never asserted.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time

from ..clients.sse import stream_events
from ..runtime.server import serve

__all__ = ["heartbeat_rows", "streaming_rows", "webhook_rows", "offline_rows", "tls_rows", "http2_rows", "transport_rows",
           "short_poll_vs_theory", "codec_throughput"]


def heartbeat_rows() -> list[tuple[str, str, str]]:
    """Detection time against the configured setting, for the three mechanisms of notebook 04."""
    from ..experiments.heartbeats.detection import compare_heartbeats
    from ..experiments.heartbeats.reconnect import reconnect_storm
    from ..experiments.heartbeats.tcp import keepalive_detection, user_timeout_detection
    from ..protocols.beat import detection_bounds

    rows = []
    for det in compare_heartbeats(0.2, 0.3, trials=20, seed=7):
        lo, hi = detection_bounds(det.interval, det.timeout)
        rows.append((f"{det.mechanism} (interval {det.interval:g} s, timeout {det.timeout:g} s), 20 frozen peers",
                     f"mean {det.mean:.3f} s, worst {det.worst:.3f} s", f"within {lo:g}–{hi:g} s"))
    storm = reconnect_storm()
    for name in storm.attempts:
        rows.append((f"100 clients reconnecting, {name}: new connections in the busiest 25 ms; last one back",
                     f"{storm.peak(name, connected=True)}; {storm.back_after(name) * 1000:.0f} ms", "fewer with jitter"))
    ka = keepalive_detection(1, 1, 3)
    rows.append(("TCP keepalive (idle 1 s, 3 probes 1 s apart), vanished peer",
                 "needs the tap link (root)" if ka.seconds is None else f"{ka.seconds:.2f} s, {len(ka.probes())} probes",
                 "4 s"))
    ut = user_timeout_detection(1000)
    rows.append(("TCP_USER_TIMEOUT 1000 ms, data into a vanished peer",
                 "needs the tap link (root)" if ut.seconds is None else f"{ut.seconds:.2f} s", "≥ 1 s (next RTO tick)"))
    return rows


def _mb_per_s(fn, data_bytes: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return data_bytes / 1e6 / best


def streaming_rows() -> list[tuple[str, str, str]]:
    """Notebook 06: parse throughput of the course's chunked and SSE decoders beside aiohttp's chunked parser
    and httpx-sse's decoder, and events per second through one SSE connection."""
    rows = [_chunked_row(size, count) for size, count in ((40, 50_000), (4096, 1_000))]
    rows.append(("SSE decode, 50,000 events of ~60 B", _sse_decode_figure(), "report"))
    rows.append(("events per second through one SSE connection (aiohttp server, course client)",
                 f"{_sse_events_per_second():,.0f}", "report"))
    return rows


def _chunked_row(size: int, count: int) -> tuple[str, str, str]:
    from ..protocols.chunked import ChunkedDecoder, encode_chunked

    wire = encode_chunked([b"x" * size] * count)
    pieces = [wire[i:i + 65536] for i in range(0, len(wire), 65536)]

    def ours() -> None:
        d = ChunkedDecoder(max_size=1 << 24)
        for p in pieces:
            d.feed(p)

    figure = f"{_mb_per_s(ours, len(wire)):,.1f} MB/s"
    try:
        figure += _aiohttp_chunked_figure(wire)
    except Exception as exc:  # aiohttp's parser is internal API: say so rather than fail the bench
        figure += f"; aiohttp's parser not measured ({type(exc).__name__})"
    return (f"chunked decode, {count:,} chunks of {size:,} B", figure, "report")


def _aiohttp_chunked_figure(wire: bytes) -> str:
    """aiohttp's own response parsers (Python and C) on the same chunked body."""
    import asyncio

    from aiohttp import http_parser

    class _Protocol:
        transport = None

        def pause_reading(self, *a, **k) -> None:
            pass

        def resume_reading(self, *a, **k) -> None:
            pass

    response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + wire
    figure = ""
    loop = asyncio.new_event_loop()
    try:
        for name in ("HttpResponseParserPy", "HttpResponseParserC"):
            cls = getattr(http_parser, name, None)
            if cls is None:
                continue

            def theirs(cls=cls) -> None:
                parser = cls(_Protocol(), loop, 1 << 16, max_line_size=8190, max_field_size=8190)
                for i in range(0, len(response), 65536):
                    parser.feed_data(response[i:i + 65536])

            figure += f"; aiohttp {name.replace('HttpResponseParser', '')} {_mb_per_s(theirs, len(wire)):,.1f}"
    finally:
        loop.close()
    return figure


def _sse_decode_figure() -> str:
    from ..protocols.sse import SSEDecoder, encode

    stream = b"".join(encode(data=f"event {i} " + "." * 40, id=str(i)) for i in range(50_000))
    pieces = [stream[i:i + 65536] for i in range(0, len(stream), 65536)]

    def sse_ours() -> None:
        d = SSEDecoder()
        for p in pieces:
            d.feed(p)

    figure = f"{_mb_per_s(sse_ours, len(stream)):,.1f} MB/s"
    try:
        from httpx_sse._decoders import SSEDecoder as TheirSSE
        from httpx_sse._decoders import SSELineDecoder
    except ImportError:
        return figure + "; httpx-sse not installed"
    text_pieces = [p.decode() for p in pieces]  # every piece ends inside ASCII: safe to decode alone

    def sse_theirs() -> None:
        lines, d = SSELineDecoder(), TheirSSE()
        for p in text_pieces:
            for line in lines.decode(p):
                d.decode(line)

    return figure + f"; httpx-sse {_mb_per_s(sse_theirs, len(stream)):,.1f} MB/s"


def _sse_events_per_second(count: int = 10_000) -> float:  # drop= allows at most 10,000
    import asyncio

    import aiohttp

    from ..apps.polling import MessageLog
    from ..apps.streaming import make_app
    from ..runtime.server import serve
    from ..runtime.waiting import run_async

    log = MessageLog(limit=count + 1)
    with serve(make_app(log, keepalive=30)) as srv:

        async def publish() -> None:
            for i in range(count):
                log.append(f"event {i}")
                if i % 100 == 0:
                    await asyncio.sleep(0)

        async def read() -> float:
            got, first = 0, None
            async with aiohttp.ClientSession() as session:
                async for now, _ in stream_events(session, srv.url + f"/events?drop={count}",
                                                  on_open=lambda: asyncio.run_coroutine_threadsafe(publish(), srv.loop)):
                    got += 1
                    first = now if first is None else first
                    if got >= count:
                        break
            return got / (time.perf_counter() - first)

        return run_async(read(), 120)


def webhook_rows() -> list[tuple[str, str, str]]:
    """Notebook 07: verified deliveries per second at the receiver, and 10,000 events against a receiver that
    fails 30 % of requests at random: none lost, none processed twice."""
    return [
        ("webhooks end to end: the course's sender and receiver, deliveries per second (2,000, 50 in flight)",
         f"{_webhooks_end_to_end():,.0f}", "report"),
        ("webhook receiver alone: verified, stored deliveries per second (2,000 pre-signed, 50 in flight)",
         f"{_webhook_receiver_alone():,.0f}", "report"),
        ("10,000 webhooks, receiver failing 30 % at random", _webhooks_under_failures(), "0 lost, 0 twice"),
    ]


def _webhooks_end_to_end(events: int = 2000) -> float:
    import os
    import tempfile

    from ..apps.webhooks import COURSE_ALLOW, Receiver, Sender
    from ..experiments.webhooks.common import SECRET
    from ..runtime.waiting import run_async

    with tempfile.TemporaryDirectory() as d:
        receiver = Receiver(os.path.join(d, "in.db"), SECRET)
        with serve(receiver.app()) as srv:
            sender = Sender(os.path.join(d, "out.db"), allow=COURSE_ALLOW, concurrency=50)
            sender.add_endpoint(srv.url + "/webhook", SECRET)
            for i in range(events):
                sender.publish("bench", {"n": i})
            t = time.perf_counter()
            run_async(sender.run(limit=120), 180)
            return receiver.accepted / (time.perf_counter() - t)


def _webhook_receiver_alone(events: int = 2000) -> float:
    """The receiver alone: pre-signed POSTs from a plain client."""
    import os
    import tempfile

    import aiohttp

    from ..apps.webhooks import Receiver
    from ..experiments.webhooks.common import SECRET
    from ..protocols.webhooks import headers_for
    from ..runtime.waiting import run_async

    with tempfile.TemporaryDirectory() as d:
        receiver = Receiver(os.path.join(d, "in.db"), SECRET)
        with serve(receiver.app()) as srv:
            bodies = [json.dumps({"type": "bench", "data": {"n": i}}).encode() for i in range(events)]
            now = int(time.time())
            signed = [(b, {**headers_for(SECRET, f"msg_{i}", b, timestamp=now), "Content-Type": "application/json"})
                      for i, b in enumerate(bodies)]

            async def blast() -> float:
                gate = asyncio.Semaphore(50)
                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as session:
                    async def one(body: bytes, headers: dict) -> None:
                        async with gate, session.post(srv.url + "/webhook", data=body, headers=headers) as r:
                            await r.read()

                    t = time.perf_counter()
                    await asyncio.gather(*(one(b, h) for b, h in signed))
                    return time.perf_counter() - t

            seconds = run_async(blast(), 180)
        return receiver.accepted / seconds


def _webhooks_under_failures(events: int = 10_000) -> str:
    import os
    import tempfile

    from ..apps.webhooks import COURSE_ALLOW, Receiver, Sender
    from ..experiments.webhooks.common import SECRET
    from ..runtime.waiting import run_async

    with tempfile.TemporaryDirectory() as d:
        receiver = Receiver(os.path.join(d, "in.db"), SECRET, fail_rate=0.3, seed=11)
        with serve(receiver.app()) as srv:
            sender = Sender(os.path.join(d, "out.db"), allow=COURSE_ALLOW, concurrency=50, scale=0.0001,
                            max_attempts=10)
            sender.add_endpoint(srv.url + "/webhook", SECRET)
            published = {sender.publish("bench", {"n": i}) for i in range(events)}
            run_async(sender.run(limit=600), 700)
            deadline = time.monotonic() + 30
            while receiver.processed < len(published) and time.monotonic() < deadline:
                time.sleep(0.1)
            stored = receiver.stored()
    processed_ids = {m for m, (_, done) in stored.items() if done is not None}
    lost = len(published - processed_ids)  # published, yet never processed at the receiver
    twice = sum(1 for n in receiver.worked.values() if n > 1)  # ids whose work ran more than once
    return (f"{lost} lost, {twice} processed twice, {len(processed_ids):,} processed; {receiver.failed_on_purpose:,} "
            f"failures, {receiver.duplicates} duplicates acknowledged")


def offline_rows() -> list[tuple[str, str, str]]:
    """Notebook 08: catch-up throughput, and the fault soak at its full size."""
    from ..experiments.offline.catchup import catch_up
    from ..experiments.offline.faults import fault_soak

    rows = []
    for n in (10_000, 100_000):
        run = catch_up(n)
        traced = catch_up(n, trace_memory=True)  # tracemalloc slows the run: its own, for the peak only
        rows.append((f"offline client catching up {n:,} messages (pages of 500)",
                     f"{run.per_second:,.0f} messages/s; server DB {run.server_db_bytes / 1e6:.1f} MB, client DB "
                     f"{run.client_db_bytes / 1e6:.1f} MB; Python heap peak {traced.peak_kib:,.0f} KiB", "report"))
    one_page = catch_up(10_000, page=10_000, trace_memory=True)
    rows.append(("the same 10,000 in one page (no paging)", f"Python heap peak {one_page.peak_kib:,.0f} KiB",
                 "report"))
    soak = fault_soak(20_000, 200, rate=500, settle=30)
    rows.append(("fault soak: 20,000 messages, 200 faults (SIGKILL, server crash, cut mid-frame)",
                 f"{len(soak.lost)} lost, {soak.duplicated} stored twice, {soak.repeats} received twice; "
                 f"{soak.during_stream} faults while streaming; "
                 f"{'stored in the server order' if soak.in_order else 'order or set DIFFERS'}", "0 lost, 0 duplicated"))
    return rows


def tls_rows() -> list[tuple[str, str, str]]:
    """Notebook 09: handshakes per second (full and resumed) and the record layer's throughput."""
    from ..experiments.tls.cost import handshake_cpu, handshakes_per_second, throughput

    rate = handshakes_per_second(3.0)
    cpu = handshake_cpu(200)
    bulk = throughput(256)
    return [
        ("TLS 1.3 handshakes per second, one client, loopback (full / resumed)",
         f"{rate['full']:,.0f} / {rate['resumed']:,.0f}", "report"),
        ("TLS 1.3 handshake CPU in memory, client + server (full / resumed)",
         f"{cpu.full_client_ms + cpu.full_server_ms:.2f} / {cpu.resumed_client_ms + cpu.resumed_server_ms:.2f} ms",
         "report"),
        (f"bulk transfer {bulk.megabytes} MB over loopback: plain TCP / TLS 1.3",
         f"{bulk.plain_mb_s:,.0f} / {bulk.tls_mb_s:,.0f} MB/s", "report"),
    ]


def http2_rows() -> list[tuple[str, str, str]]:
    """Notebook 10 (HTTP/2 and HTTP/3): a page of 30 small resources over HTTP/1.1 and HTTP/2 at 100 ms
    and the first byte over TCP + TLS and QUIC, on each link this machine can run (the relay always; the tap link
    as root); as root, the page at 0, 1, 2 and 5 % loss over the three versions (stored for the notebook)."""
    from ..experiments.http2.handshakes import first_byte
    from ..experiments.http2.hol import measure_hol
    from ..experiments.http2.pages import page_load
    from ..network.link import modes

    rows = []
    runnable = [m for m, why in modes().items() if why is None]
    for mode in runnable:
        for version, run in page_load(100, mode=mode).items():
            rows.append((f"30 resources of 2,000 B over {version}, 100 ms round trip ({mode} link)",
                         f"{run.seconds * 1000:,.0f} ms ({run.round_trips:.1f} round trips), "
                         f"{run.connections} connection{'s' if run.connections != 1 else ''}", "report"))
        handshakes = first_byte(100, mode=mode)
        rows.append((f"first byte of a fresh connection, 100 ms round trip ({mode} link)",
                     "; ".join(f"{way} {handshakes.round_trips(way):.1f} RTT" for way in handshakes.seconds), "report"))
    if "tap" not in runnable:
        rows.append(("per-resource completion under loss (HTTP/1.1, /2, /3)", "skipped: TCP loss needs the tap link (root)",
                     "report"))
        return rows
    for hol in measure_hol(5):  # stored for the notebook
        rows.append((f"30 resources of 10,000 B at {hol.loss:.0%} loss, 100 ms, {hol.runs} runs: p50 / p95 per resource",
                     "; ".join(f"{v} {hol.quantile(v, 0.5) * 1000:,.0f} / {hol.quantile(v, 0.95) * 1000:,.0f} ms"
                               for v in hol.done), "report"))
    return rows


def transport_rows() -> list[tuple[str, str, str]]:
    """Notebook 11: one table, every transport on one workload; section 1's workload repeated five times (each
    figure's median and range); the sweeps the notebook's knobs read; the fan-out through Redis to 1,000 and
    10,000 subscribers; a node with 1,000 clients killed or drained (saved in netcourse/measured/)."""
    from ..apps.broker import find_redis_server
    from ..experiments.choosing.harness import Workload
    from ..experiments.choosing.memory import memory_per_client
    from ..experiments.choosing.crowds import bench_fan_out
    from ..experiments.choosing.sweeps import measure_sweeps
    from ..experiments.choosing.transports import compare

    workload = Workload(clients=20, messages=100, rate=50, size=100, rtt_ms=50, interval=0.25)
    runs = compare(workload)
    held = {h.transport: h for h in memory_per_client(1000)}
    rows = []
    for name, run in runs.items():
        memory = f"{held[name].bytes_per_client / 1024:.1f} KiB" if name in held else "-"
        rows.append((f"{name}: 20 clients, 100 msgs at 50/s, 100 B, 50 ms RTT",
                     f"p50 {run.percentile(50):.1f} ms, p99 {run.percentile(99):.1f} ms; {run.bytes_per_message:.0f} B/msg; "
                     f"{run.cpu_us_per_message:.0f} µs CPU/msg; {memory} per held client (of 1,000); "
                     f"{run.delivered}/{run.expected} delivered", "report"))
    from ..experiments.choosing.repeats import measure_repeats, spreads

    repeats = measure_repeats()
    for name, figures in spreads(repeats).items():
        lat, size, cpu = figures["p50_ms"], figures["bytes_per_msg"], figures["cpu_us_per_msg"]
        rows.append((f"{name}: notebook 11's section 1, {repeats['runs']} runs (median, lowest–highest)",
                     f"p50 {lat.median:.1f} ms ({lat.low:.1f}–{lat.high:.1f}); {size.median:.0f} B/msg "
                     f"({size.low:.0f}–{size.high:.0f}); {cpu.median:.0f} µs CPU/msg ({cpu.low:.0f}–{cpu.high:.0f})",
                     "report"))
    data = measure_sweeps()
    rows.extend(sweep_rows(data))
    rows.extend(loss_rows())
    if find_redis_server()[0] is None:
        rows.append(("fan-out through Redis", "skipped: no redis-server here", "report"))
        return rows
    for r in bench_fan_out():
        rows.append((f"fan-out through Redis to {r['subscribers']:,} subscribers on 2 nodes, read by {r['readers']} processes",
                     f"{r['received']:,}/{r['expected']:,} received; first reached {r['first_ms']:.1f} ms, "
                     f"median {r['p50_ms']:.0f} ms, last {r['fan_out_ms']:.0f} ms", "report"))
    from ..experiments.choosing.failover import measure_failovers

    for how, run in measure_failovers(1000, residents=50).items():
        rows.append((f"a node with 1,000 WebSocket clients {how}; they move to the other node",
                     f"without a connection: median {run.outage(0.5):.0f} ms, longest {run.outage(1.0):.0f} ms; "
                     f"{sum(run.missed):,} messages missed (10/s); at most {run.joins_peak} handshakes in 25 ms; "
                     f"{run.slow_opens} opened after a retransmission; the other node's own clients' p99 "
                     f"{run.residents_ms['during']['p99']:.0f} ms during the moves "
                     f"(before: {run.residents_ms['before']['p99']:.0f} ms)", "report"))
    return rows


def short_poll_vs_theory(interval: float = 0.2, rate: float = 20.0, duration: float = 10.0) -> tuple[float, float, float, int]:
    """Short polling's measured mean delivery latency against theory (interval / 2).

    Returns (measured mean ms, theory ms, long-poll mean ms, messages).
    """
    from ..experiments.polling.compare import compare

    run = compare(intervals=(interval,), wait=10, rate=rate, duration=duration, seed=11, record=False)
    name = f"short {interval:g} s"
    short = run.latencies(name)
    long_ = run.latencies("long")
    return statistics.mean(short) * 1000, interval / 2 * 1000, statistics.mean(long_) * 1000, len(short)


def codec_throughput(size: int, frames: int) -> dict[str, float]:
    """MB/s to encode (masked) and decode ``frames`` frames of ``size`` bytes: ours and websockets'."""
    from ..protocols.wsframe import Frame, FrameDecoder, Opcode, encode

    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    mb = size * frames / 1e6
    out: dict[str, float] = {}
    t = time.perf_counter()
    wire = b"".join(encode(Frame(Opcode.BINARY, payload), mask=True) for _ in range(frames))
    out["netcourse encode"] = mb / (time.perf_counter() - t)
    t = time.perf_counter()
    decoded = FrameDecoder("server", max_size=size + 1).feed(wire)
    out["netcourse decode"] = mb / (time.perf_counter() - t)
    assert len(decoded) == frames
    try:
        from websockets.frames import Frame as WFrame
        from websockets.frames import Opcode as WOpcode
        from websockets.streams import StreamReader
    except ImportError:
        return out
    t = time.perf_counter()
    wwire = b"".join(WFrame(WOpcode.BINARY, payload).serialize(mask=True) for _ in range(frames))
    out["websockets encode"] = mb / (time.perf_counter() - t)
    t = time.perf_counter()
    reader = StreamReader()
    reader.feed_data(wwire)
    for _ in range(frames):
        parser = WFrame.parse(reader.read_exact, mask=True, max_size=size + 1)
        try:
            next(parser)
        except StopIteration:
            pass
    out["websockets decode"] = mb / (time.perf_counter() - t)
    return out


def sweep_rows(data: dict) -> list[tuple[str, str, str]]:
    """The rate sweep as ``make bench`` prints it: each transport's steady-state bytes per message and median
    latency at each rate (median of the runs, lowest–highest), the seeds of the arrivals, and the crossovers."""
    from ..experiments.choosing.sweeps import BATCHED, crossover

    rate = data["sweeps"]["rate"]
    runs = data["runs"]["rate"]
    rows = []
    for name, points in rate.items():
        cells = []
        for key in sorted(points, key=float):
            p = points[key]
            (b_lo, b_hi), (l_lo, l_hi) = p["spread"]["steady_bytes_per_msg"], p["spread"]["p50_ms"]
            cells.append(f"{float(key):g}/s: {p['steady_bytes_per_msg']:.0f} B ({b_lo:.0f}–{b_hi:.0f}), "
                         f"p50 {p['p50_ms']:.0f} ms ({l_lo:.0f}–{l_hi:.0f})")
        rows.append((f"rate sweep, {name}: steady bytes/msg and p50, {runs} runs (Poisson seeds 1–{runs}, "
                     f"{data['polls']} polls a run)", "; ".join(cells), "report"))
    for push in ("WebSocket", BATCHED):
        at = crossover(data, push=push)
        rows.append((f"steady-state crossover: short polling cheaper per message than {push}",
                     f"above {at:.1f} msg/s" if at else "at no measured rate", "report"))
    return rows


def loss_rows() -> list[tuple[str, str, str]]:
    """Every transport across the tap link at 0, 1 and 5 % loss (saved for notebook 11), or why not here."""
    from ..experiments.choosing.loss import measure_loss
    from ..network.link import modes

    if modes()["tap"] is not None:
        return [("loss on every transport (tap link)", f"skipped: {modes()['tap']}", "report")]
    data = measure_loss()
    rows = []
    for name, by_loss in data["results"].items():
        cells = [f"{float(k):.0%}: p50 {f['p50_ms']:.0f} ms, p99 {f['p99_ms']:.0f} ms, "
                 f"{f['delivered']}/{f['expected']} delivered" for k, f in by_loss.items()]
        rows.append((f"loss sweep, {name} ({data['runs']} runs pooled, tap link)", "; ".join(cells), "report"))
    return rows

