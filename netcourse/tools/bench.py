"""``make bench``: measure the runtime's speed and completeness, and print a table.

Figures are measured, never asserted: the tests check behaviour, this prints numbers.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import threading
import time
from pathlib import Path

from ..clients.sse import stream_events
from ..runtime.server import serve
from ..traffic.sniffer import capture, capture_permitted
from .loadbench import tiny_app

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def runtime_rows(runtimebench) -> list[tuple[str, str, str]]:
    """The runtime under abuse and over a session (issue 24): the cap, a slow reader, a login flood, three rounds."""
    rows = []
    long = runtimebench.long_lived_at_real_scale()
    rows.append(("WebSocket through serve() at 0, 6, 13, 21 s; a 14 s streamed upload (10 s head deadline)",
                 f"echoes {', '.join(long['echoes'])}; upload answered {long['upload']}; {long['evicted']} evicted",
                 "4 echoes, 14000 bytes, 0 evicted"))
    cap = runtimebench.cap_under_a_burst()
    rows.append(("1,200 connections at once against the 512 cap",
                 f"{cap['open']} open ({cap['established']} in the kernel), peak {cap['peak']}, {cap['evicted']} "
                 f"evicted; a good client answered in {cap['good_ms']:.1f} ms", "exactly 512; good client served"))
    slow = runtimebench.slow_chat_reader()
    rows.append(("chat socket that stops reading, 3,000 posts of 20 kB",
                 f"dropped (1013) at post {slow['dropped_at']}; server memory +{slow['grown_mb']:.1f} MB; "
                 f"stop() {slow['stop_s']:.2f} s, {slow['errors']} errors", "dropped; bounded; stop clean"))
    flood = runtimebench.login_flood_lag()
    rows.append(("server loop lag during 200 wrong logins from 40 threads",
                 f"median {flood['median_ms']:.1f} ms, max {flood['max_ms']:.1f} ms "
                 f"({flood['logins_per_s']:.0f} logins/s)", "sockets not stalled (was 204 ms)"))
    for nb in ("03_polling", "05_websockets", "08_offline_messaging"):
        rows.append((f"{nb}: every cell 3 times in one kernel", runtimebench.session_growth(nb),
                     "flat after round 1 (memory reported)"))
    return rows


def server_start_stop_ms(runs: int = 50) -> float:
    """Median milliseconds for serve() + stop() of a tiny app."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        srv = serve(tiny_app())
        srv.stop()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def capture_ready_ms(runs: int = 20) -> float:
    """Median milliseconds from capture() entry until its sniffer is listening."""
    times = []
    for _ in range(runs):
        with capture(9, mode="live") as cap:
            pass
        times.append(cap.ready_s * 1000)
    return statistics.median(times)


def capture_completeness(datagrams: int = 10_000) -> tuple[int, int, float]:
    """Send a burst of small UDP datagrams on loopback; return (sent, captured once, seconds)."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        port = rx.getsockname()[1]
        t = time.perf_counter()
        with capture(port, mode="live") as cap:
            for i in range(datagrams):
                tx.sendto(b"%08d" % i, ("127.0.0.1", port))
        elapsed = time.perf_counter() - t
    finally:
        rx.close()
        tx.close()
    seen = {bytes(p["UDP"].payload) for p in cap.packets}
    return datagrams, min(len(seen), len(cap.packets)), elapsed


def notebook_seconds(name: str = "00_start_here.ipynb") -> float:
    """Wall seconds to execute a notebook headless (nbclient, fresh kernel)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    t = time.perf_counter()
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return time.perf_counter() - t


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
    import asyncio

    from ..protocols.chunked import ChunkedDecoder, encode_chunked
    from ..protocols.sse import SSEDecoder, encode

    rows = []
    for size, count in ((40, 50_000), (4096, 1_000)):
        wire = encode_chunked([b"x" * size] * count)
        pieces = [wire[i:i + 65536] for i in range(0, len(wire), 65536)]

        def ours() -> None:
            d = ChunkedDecoder(max_size=1 << 24)
            for p in pieces:
                d.feed(p)

        figure = f"{_mb_per_s(ours, len(wire)):,.1f} MB/s"
        try:
            from aiohttp import http_parser

            class _Protocol:
                transport = None

                def pause_reading(self, *a, **k) -> None:
                    pass

                def resume_reading(self, *a, **k) -> None:
                    pass

            response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + wire
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
        except Exception as exc:  # aiohttp's parser is internal API: say so rather than fail the bench
            figure += f"; aiohttp's parser not measured ({type(exc).__name__})"
        rows.append((f"chunked decode, {count:,} chunks of {size:,} B", figure, "report"))
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

        text_pieces = [p.decode() for p in pieces]  # every piece ends inside ASCII: safe to decode alone

        def sse_theirs() -> None:
            lines, d = SSELineDecoder(), TheirSSE()
            for p in text_pieces:
                for line in lines.decode(p):
                    d.decode(line)

        figure += f"; httpx-sse {_mb_per_s(sse_theirs, len(stream)):,.1f} MB/s"
    except ImportError:
        figure += "; httpx-sse not installed"
    rows.append(("SSE decode, 50,000 events of ~60 B", figure, "report"))
    rows.append(("events per second through one SSE connection (aiohttp server, course client)",
                 f"{_sse_events_per_second():,.0f}", "report"))
    return rows


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
    import os
    import tempfile

    from ..apps.webhooks import COURSE_ALLOW, Receiver, Sender
    from ..experiments.webhooks.common import SECRET
    from ..runtime.waiting import run_async

    rows = []
    with tempfile.TemporaryDirectory() as d:
        receiver = Receiver(os.path.join(d, "in.db"), SECRET)
        with serve(receiver.app()) as srv:
            sender = Sender(os.path.join(d, "out.db"), allow=COURSE_ALLOW, concurrency=50)
            sender.add_endpoint(srv.url + "/webhook", SECRET)
            for i in range(2000):
                sender.publish("bench", {"n": i})
            t = time.perf_counter()
            run_async(sender.run(limit=120), 180)
            seconds = time.perf_counter() - t
        rows.append(("webhooks end to end: the course's sender and receiver, deliveries per second (2,000, 50 in flight)",
                     f"{receiver.accepted / seconds:,.0f}", "report"))
    with tempfile.TemporaryDirectory() as d:  # the receiver alone: pre-signed POSTs from a plain client
        import aiohttp

        from ..protocols.webhooks import headers_for

        receiver = Receiver(os.path.join(d, "in.db"), SECRET)
        with serve(receiver.app()) as srv:
            bodies = [json.dumps({"type": "bench", "data": {"n": i}}).encode() for i in range(2000)]
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
        rows.append(("webhook receiver alone: verified, stored deliveries per second (2,000 pre-signed, 50 in flight)",
                     f"{receiver.accepted / seconds:,.0f}", "report"))
    with tempfile.TemporaryDirectory() as d:
        receiver = Receiver(os.path.join(d, "in.db"), SECRET, fail_rate=0.3, seed=11)
        with serve(receiver.app()) as srv:
            sender = Sender(os.path.join(d, "out.db"), allow=COURSE_ALLOW, concurrency=50, scale=0.0001,
                            max_attempts=10)
            sender.add_endpoint(srv.url + "/webhook", SECRET)
            published = {sender.publish("bench", {"n": i}) for i in range(10_000)}
            run_async(sender.run(limit=600), 700)
            deadline = time.monotonic() + 30
            while receiver.processed < len(published) and time.monotonic() < deadline:
                time.sleep(0.1)
            stored = receiver.stored()
        processed_ids = {m for m, (_, done) in stored.items() if done is not None}
        lost = len(published - processed_ids)  # published, yet never processed at the receiver
        processed = len(processed_ids)
        twice = sum(1 for n in receiver.worked.values() if n > 1)  # ids whose work ran more than once
        rows.append(("10,000 webhooks, receiver failing 30 % at random",
                     f"{lost} lost, {twice} processed twice, {processed:,} processed; {receiver.failed_on_purpose:,} "
                     f"failures, {receiver.duplicates} duplicates acknowledged", "0 lost, 0 twice"))
    return rows


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


def transport_rows() -> list[tuple[str, str, str]]:
    """Notebook 10: one table, every transport on one workload; the sweeps the notebook's knobs read; the
    fan-out through Redis to 1,000 and 10,000 subscribers (both saved in netcourse/measured/)."""
    from ..apps.broker import find_redis_server
    from ..experiments.choosing.harness import Workload
    from ..experiments.choosing.memory import memory_per_client
    from ..experiments.choosing.scaleout import bench_fan_out
    from ..experiments.choosing.sweeps import crossover, measure_sweeps
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
    data = measure_sweeps()
    rate = crossover(data)
    rows.append(("sweeps for notebook 10's knobs (rate, clients, size, RTT)",
                 f"saved; short polling cheaper per message than WebSocket above "
                 f"{rate:.1f} msg/s" if rate else "saved; no crossover in range", "report"))
    if find_redis_server()[0] is None:
        rows.append(("fan-out through Redis", "skipped: no redis-server here", "report"))
        return rows
    for r in bench_fan_out():
        rows.append((f"fan-out through Redis to {r['subscribers']:,} subscribers on 2 nodes",
                     f"{r['received']:,}/{r['expected']:,} received; last reached {r['fan_out_ms']:.0f} ms, "
                     f"median {r['p50_ms']:.0f} ms", "report"))
    return rows


def course_seconds(workers: int = 2) -> float:
    """Wall seconds to execute every notebook headless, ``workers`` at a time (each in its own kernel)."""
    from concurrent.futures import ThreadPoolExecutor

    names = [nb.name for nb in sorted(NOTEBOOKS.glob("*.ipynb"))]
    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(notebook_seconds, names))
    return time.perf_counter() - t


def knob_rows() -> list[tuple[str, str, str]]:
    """Each notebook's slowest knob redraw in a real browser (JupyterLab in Chromium), if there is one."""
    from .browser import Course, find_chromium

    if find_chromium() is None:
        return [("knob redraw in the browser", "skipped: no Chromium", "≤ 1 s")]
    try:
        import playwright  # noqa: F401
    except ImportError:
        return [("knob redraw in the browser", "skipped: no Playwright", "≤ 1 s")]
    rows = []
    with Course() as course:
        for nb in sorted(NOTEBOOKS.glob("*.ipynb")):
            run = course.run(nb.stem)
            times = [m.seconds for m in run.moves if m.seconds is not None]
            stuck = sum(1 for m in run.moves if m.seconds is None)
            worst = f"slowest {max(times):.2f} s of {len(run.moves)} moves" if times else "no moves"
            rows.append((f"knob redraw in the browser, {nb.stem}", worst + (f", {stuck} unchanged" if stuck else ""), "≤ 1 s"))
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


def main(idle_seconds: float = 3600.0) -> int:
    from . import runtimebench

    # The hour-long idle chat socket runs beside everything else (its own server and thread).
    idle: dict = {}
    idler = threading.Thread(target=lambda: idle.update(runtimebench.idle_chat_socket(idle_seconds)),
                             name="netcourse-bench-idle", daemon=True)
    idler.start()
    rows = [("server start+stop, median", f"{server_start_stop_ms():.1f} ms", "≤ 20 ms")]
    if capture_permitted():
        rows.append(("capture ready, median", f"{capture_ready_ms():.1f} ms", "≤ 50 ms"))
        sent, got, secs = capture_completeness()
        rows.append(
            (f"capture completeness at {sent:,} datagrams", f"{got / sent:.2%} ({got:,}; {secs:.2f} s)", "100%")
        )
    else:
        rows.append(("capture ready / completeness", "skipped: no capture rights", "—"))
    measured, theory, long_ms, n = short_poll_vs_theory()
    rows.append((f"short-poll mean latency, T = 0.2 s, {n} messages", f"{measured:.1f} ms vs theory {theory:.0f} ms ({measured / theory - 1:+.1%})", "within 10%"))
    rows.append(("long-poll mean latency, same run", f"{long_ms:.2f} ms", "≈ 1 round trip"))
    for size, frames in ((125, 20_000), (16_384, 2_000), (1_048_576, 20)):
        r = codec_throughput(size, frames)
        for op in ("encode", "decode"):
            ours, theirs = r[f"netcourse {op}"], r.get(f"websockets {op}")
            ratio = f" ({ours / theirs:.2f}× websockets' {theirs:,.0f})" if theirs else ""
            rows.append((f"WebSocket codec {op}, {size:,}-byte frames", f"{ours:,.0f} MB/s{ratio}", "report"))
    import resource

    from ..experiments.websockets.held import idle_connections

    most = (resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 200) // 2  # both ends live in this process
    for n in (100, 1_000, 10_000):
        try:
            cost = idle_connections(n, timeout=120)
        except (OSError, ValueError) as exc:
            rows.append((f"{n:,} idle WebSocket connections", f"skipped: {exc}", "report"))
            if most < n:
                n = most
                cost = idle_connections(n, timeout=120)
            else:
                continue
        rows.append((f"{n:,} idle WebSocket connections: memory / broadcast",
                     f"{cost.python_bytes_per_connection / 1024:.1f} KiB of Python heap each (both ends); broadcast {cost.broadcast_s * 1000:.1f} ms", "report"))
    from . import linkbench, loadbench

    rows.extend(linkbench.rows())
    rows.extend(heartbeat_rows())
    rows.extend(streaming_rows())
    rows.extend(webhook_rows())
    rows.extend(offline_rows())
    rows.extend(tls_rows())
    rows.extend(transport_rows())

    rows.append(("capture under a UDP flood, 20 runs per filter (namespace)", loadbench.flood_capture(), "0 silent losses"))
    answered, asked, median_s, closed = loadbench.slow_clients()
    rows.append(("1,100 slow-header clients: normal requests", f"{answered}/{asked} answered, median {median_s * 1000:.1f} ms; {closed:,} dawdlers closed", "all answered"))
    med, worst, reached, evicted = loadbench.broadcast_with_a_stalled_peer()
    rows.append(("broadcast 64 KiB to 1,000 peers + 1 stalled", f"median {med:.1f} ms, max {worst:.1f} ms; last reached {reached:,}; evicted {evicted}", "bounded; stalled one evicted"))
    for client, ms in loadbench.close_times().items():
        rows.append((f"WebSocket close with {client}'s client, median", f"{ms:.1f} ms", "< 50 ms"))
    targets = {"00_start_here": "≤ 10 s"}  # every other notebook: ≤ 20 s
    total = 0.0
    for nb in sorted(NOTEBOOKS.glob("*.ipynb")):
        seconds = notebook_seconds(nb.name)
        total += seconds
        rows.append((f"wall time to execute {nb.stem} headless", f"{seconds:.1f} s", targets.get(nb.stem, "≤ 20 s")))
    rows.append(("wall time to execute the whole course headless, one after another", f"{total:.1f} s", "≤ 60 s (all 11 notebooks)"))
    rows.append(("wall time to execute the whole course headless, 2 at a time", f"{course_seconds(2):.1f} s", "≤ 60 s (all 11 notebooks)"))
    rows.extend(knob_rows())
    rows.extend(runtime_rows(runtimebench))
    idler.join()
    rows.append((f"chat socket held idle {idle_seconds / 60:g} min, pinged every 30 s",
                 f"held {idle.get('held_s', 0) / 60:.1f} min, {idle.get('pongs')} pongs, a message after it "
                 f"{'arrived' if idle.get('arrived') else 'DID NOT ARRIVE'}; evicted {idle.get('evicted')}",
                 "alive; 0 evicted"))
    width = [max(len(r[i]) for r in rows + [("figure", "measured", "target")]) for i in range(3)]
    print(f"{'figure'.ljust(width[0])}  {'measured'.ljust(width[1])}  target")
    print(f"{'-' * width[0]}  {'-' * width[1]}  {'-' * width[2]}")
    for a, b, c in rows:
        print(f"{a.ljust(width[0])}  {b.ljust(width[1])}  {c}")
    return 0
