"""``make bench``: measure the runtime's speed and completeness, and print a table.

Figures are measured, never asserted: the tests check behaviour, this prints numbers.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from pathlib import Path

from ..runtime.server import serve
from ..traffic.sniffer import capture, capture_permitted
from .lessonbench import (
    codec_throughput,
    heartbeat_rows,
    http2_rows,
    offline_rows,
    short_poll_vs_theory,
    streaming_rows,
    tls_rows,
    transport_rows,
    webhook_rows,
)
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
    rows.append(("a chat socket's ping round trip, quiet and during that flood",
                 f"{flood['ping_quiet_ms']:.2f} ms quiet; during: median {flood['ping_during_ms']:.2f} ms, max "
                 f"{flood['ping_during_max_ms']:.1f} ms ({flood['pings_during']} pings)", "report"))
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



def capture_rows() -> list[tuple[str, str, str]]:
    rows = [("server start+stop, median", f"{server_start_stop_ms():.1f} ms", "≤ 20 ms")]
    if not capture_permitted():
        return rows + [("capture ready / completeness", "skipped: no capture rights", "—")]
    rows.append(("capture ready, median", f"{capture_ready_ms():.1f} ms", "≤ 50 ms"))
    sent, got, secs = capture_completeness()
    return rows + [(f"capture completeness at {sent:,} datagrams", f"{got / sent:.2%} ({got:,}; {secs:.2f} s)", "100%")]


def polling_and_codec_rows() -> list[tuple[str, str, str]]:
    measured, theory, long_ms, n = short_poll_vs_theory()
    rows = [(f"short-poll mean latency, T = 0.2 s, {n} messages",
             f"{measured:.1f} ms vs theory {theory:.0f} ms ({measured / theory - 1:+.1%})", "within 10%"),
            ("long-poll mean latency, same run", f"{long_ms:.2f} ms", "≈ 1 round trip")]
    for size, frames in ((125, 20_000), (16_384, 2_000), (1_048_576, 20)):
        r = codec_throughput(size, frames)
        for op in ("encode", "decode"):
            ours, theirs = r[f"netcourse {op}"], r.get(f"websockets {op}")
            ratio = f" ({ours / theirs:.2f}× websockets' {theirs:,.0f})" if theirs else ""
            rows.append((f"WebSocket codec {op}, {size:,}-byte frames", f"{ours:,.0f} MB/s{ratio}", "report"))
    return rows


def idle_connection_rows() -> list[tuple[str, str, str]]:
    import resource

    from ..experiments.websockets.held import idle_connections

    rows = []
    most = (resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 200) // 2  # both ends live in this process
    for n in (100, 1_000, 10_000):
        try:
            cost = idle_connections(n, timeout=120)
        except (OSError, ValueError) as exc:
            rows.append((f"{n:,} idle WebSocket connections", f"skipped: {exc}", "report"))
            if most >= n:
                continue
            n = most
            cost = idle_connections(n, timeout=120)
        rows.append((f"{n:,} idle WebSocket connections: memory / broadcast",
                     f"{cost.python_bytes_per_connection / 1024:.1f} KiB of Python heap each (both ends); "
                     f"broadcast {cost.broadcast_s * 1000:.1f} ms", "report"))
    return rows


def load_rows() -> list[tuple[str, str, str]]:
    from . import loadbench

    rows = [("capture under a UDP flood, 20 runs per filter (namespace)", loadbench.flood_capture(), "0 silent losses")]
    answered, asked, median_s, closed = loadbench.slow_clients()
    rows.append(("1,100 slow-header clients: normal requests",
                 f"{answered}/{asked} answered, median {median_s * 1000:.1f} ms; {closed:,} dawdlers closed", "all answered"))
    med, worst, reached, evicted = loadbench.broadcast_with_a_stalled_peer()
    rows.append(("broadcast 64 KiB to 1,000 peers + 1 stalled",
                 f"median {med:.1f} ms, max {worst:.1f} ms; last reached {reached:,}; evicted {evicted}",
                 "bounded; stalled one evicted"))
    for client, ms in loadbench.close_times().items():
        rows.append((f"WebSocket close with {client}'s client, median", f"{ms:.1f} ms", "< 50 ms"))
    return rows


def notebook_rows() -> list[tuple[str, str, str]]:
    targets = {"00_start_here": "≤ 10 s"}  # every other notebook: ≤ 20 s
    rows, total = [], 0.0
    for nb in sorted(NOTEBOOKS.glob("*.ipynb")):
        seconds = notebook_seconds(nb.name)
        total += seconds
        rows.append((f"wall time to execute {nb.stem} headless", f"{seconds:.1f} s", targets.get(nb.stem, "≤ 20 s")))
    rows.append(("wall time to execute the whole course headless, one after another", f"{total:.1f} s",
                 "≤ 60 s (all 11 notebooks)"))
    rows.append(("wall time to execute the whole course headless, 2 at a time", f"{course_seconds(2):.1f} s",
                 "≤ 60 s (all 11 notebooks)"))
    return rows


def print_table(rows: list[tuple[str, str, str]]) -> None:
    width = [max(len(r[i]) for r in rows + [("figure", "measured", "target")]) for i in range(3)]
    print(f"{'figure'.ljust(width[0])}  {'measured'.ljust(width[1])}  target")
    print(f"{'-' * width[0]}  {'-' * width[1]}  {'-' * width[2]}")
    for a, b, c in rows:
        print(f"{a.ljust(width[0])}  {b.ljust(width[1])}  {c}")


def main(idle_seconds: float = 3600.0) -> int:
    from . import linkbench, runtimebench

    # The hour-long idle chat socket runs beside everything else (its own server and thread).
    idle: dict = {}
    def hold() -> None:
        try:
            idle.update(runtimebench.idle_chat_socket(idle_seconds))
        except Exception as exc:  # the row says what went wrong instead of "held 0.0 min"
            idle["error"] = f"{type(exc).__name__}: {exc}"

    idler = threading.Thread(target=hold, name="netcourse-bench-idle", daemon=True)
    idler.start()
    rows = capture_rows() + polling_and_codec_rows() + idle_connection_rows() + linkbench.rows()
    for lesson in (heartbeat_rows, streaming_rows, webhook_rows, offline_rows, tls_rows, http2_rows, transport_rows):
        rows.extend(lesson())
    rows += load_rows() + notebook_rows() + knob_rows() + runtime_rows(runtimebench)
    idler.join()
    rows.append((f"chat socket held idle {idle_seconds / 60:g} min, pinged every 30 s",
                 f"FAILED: {idle['error']}" if "error" in idle else
                 f"held {idle.get('held_s', 0) / 60:.1f} min, {idle.get('pongs')} pongs, a message after it "
                 f"{'arrived' if idle.get('arrived') else 'DID NOT ARRIVE'}; "
                 f"{'still open' if idle.get('closed') is None else 'closed by the server: ' + str(idle['closed'])}; "
                 f"evicted {idle.get('evicted')}",
                 "alive; 0 evicted"))
    print_table(rows)
    return 0
