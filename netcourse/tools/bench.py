"""``make bench``: measure the runtime's speed and completeness, and print a table.

Figures are measured, never asserted: the tests check behaviour, this prints numbers.
"""

from __future__ import annotations

import socket
import statistics
import time
from pathlib import Path

from aiohttp import web

from ..apps.safety import safe_app
from ..traffic.sniffer import capture, capture_permitted
from ..runtime.server import serve

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def tiny_app() -> web.Application:
    """An app whose GET / answers \"ok\": the smallest thing to serve."""
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = safe_app()
    app.router.add_get("/", ok)
    return app


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
    from ..experiments import heartbeats

    rows = []
    for det in heartbeats.compare_heartbeats(0.2, 0.3, trials=20, seed=7):
        lo, hi = heartbeats.detection_bounds(det.interval, det.timeout)
        rows.append((f"{det.mechanism} (interval {det.interval:g} s, timeout {det.timeout:g} s), 20 frozen peers",
                     f"mean {det.mean:.3f} s, worst {det.worst:.3f} s", f"within {lo:g}–{hi:g} s"))
    storm = heartbeats.reconnect_storm()
    for name in storm.attempts:
        rows.append((f"100 clients reconnecting, {name}: new connections in the busiest 25 ms; last one back",
                     f"{storm.peak(name, connected=True)}; {storm.back_after(name) * 1000:.0f} ms", "fewer with jitter"))
    ka = heartbeats.keepalive_detection(1, 1, 3)
    rows.append(("TCP keepalive (idle 1 s, 3 probes 1 s apart), vanished peer",
                 "needs the tap link (root)" if ka.seconds is None else f"{ka.seconds:.2f} s, {len(ka.probes())} probes",
                 "4 s"))
    ut = heartbeats.user_timeout_detection(1000)
    rows.append(("TCP_USER_TIMEOUT 1000 ms, data into a vanished peer",
                 "needs the tap link (root)" if ut.seconds is None else f"{ut.seconds:.2f} s", "≥ 1 s (next RTO tick)"))
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
    from ..experiments.polling import compare

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


def main() -> int:
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
    from ..experiments.websockets import idle_connections

    import resource

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
    width = [max(len(r[i]) for r in rows + [("figure", "measured", "target")]) for i in range(3)]
    print(f"{'figure'.ljust(width[0])}  {'measured'.ljust(width[1])}  target")
    print(f"{'-' * width[0]}  {'-' * width[1]}  {'-' * width[2]}")
    for a, b, c in rows:
        print(f"{a.ljust(width[0])}  {b.ljust(width[1])}  {c}")
    return 0
