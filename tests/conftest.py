"""Shared fixtures. Tests run real servers and real sockets on loopback only."""

from __future__ import annotations

import functools
import os
import threading

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest
from aiohttp import web

from netcourse.runtime.registry import live_servers, stop_all
from netcourse.traffic.sniffer import capture_permitted

LIVE = capture_permitted()
live = pytest.mark.skipif(not LIVE, reason="needs live capture rights (root or CAP_NET_RAW)")


def retried(times: int = 3):
    """For a test that asserts a wall-clock window: a busy 2-core CI machine can stretch one run's timers, so
    the claim must hold in one of ``times`` runs (as the link's RTT test does). Only an AssertionError is
    retried; the last one is raised. The figures themselves are measured by ``make bench``, not here."""

    def wrap(test):
        @functools.wraps(test)
        def run(*args, **kwargs):
            for attempt in range(1, times + 1):
                try:
                    return test(*args, **kwargs)
                except AssertionError:
                    if attempt == times:
                        raise
                    stop_all()  # what the failed attempt started, before the next
        return run

    return wrap


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_ok_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", _ok)
    return app


@pytest.fixture
def ok_app() -> web.Application:
    return make_ok_app()


@pytest.fixture
def file_limit():
    """Raise this process's open-file limit for one test, and put it back afterwards (runtime.sockets.file_limit).

    An ordinary user's soft limit is often 1,024; a burst test holds both ends of 1,200 connections.
    Call the fixture with the number of descriptors the test needs; it skips when the hard limit is lower."""
    import contextlib

    from netcourse.runtime.sockets import file_limit as raised

    with contextlib.ExitStack() as stack:
        def need(n: int) -> None:
            try:
                stack.enter_context(raised(n))
            except ValueError as exc:
                pytest.skip(str(exc))

        yield need


@pytest.fixture(autouse=True)
def no_server_left_behind():
    """Every test must stop what it starts: no live server, no extra server thread afterwards."""
    before = {t.ident for t in threading.enumerate()}
    yield
    leftover = live_servers()
    stop_all()
    assert not leftover, f"test left servers running: {leftover}"
    extra = [t for t in threading.enumerate() if t.ident not in before and t.name.startswith("netcourse-server")]
    assert not extra, f"test left server threads: {extra}"


def own_listening_ports() -> set[int]:
    """Ports this test process listens on (other processes on the machine do not count)."""
    import os

    from netcourse.runtime.tcpinfo import tcp_sockets

    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return {e.local[1] for e in tcp_sockets() if e.state == "LISTEN" and e.inode in inodes}


def pytest_terminal_summary(terminalreporter):
    """The share of output-ignored notebook cells; after a browser run, where the screenshots are and how long
    each knob took to redraw."""
    import sys

    project = sys.modules.get("tests.test_project") or sys.modules.get("test_project")
    if project is not None:
        terminalreporter.section("nbval: output-ignored cells")
        shares = project.ignored_shares()
        for name, (ignored, code) in shares.items():
            terminalreporter.write_line(f"{name:<32} {ignored:>3} of {code:>3} ({ignored / code:.0%})")
        ignored, code = (sum(x) for x in zip(*shares.values()))
        terminalreporter.write_line(f"{'course':<32} {ignored:>3} of {code:>3} ({ignored / code:.1%})")
    module = sys.modules.get("tests.test_browser") or sys.modules.get("test_browser")
    moves = getattr(module, "MOVES", None)
    if not moves:
        return
    terminalreporter.section("browser: knobs")
    terminalreporter.write_line(f"screenshots of every knob: {module.SHOTS}")
    for m in moves:
        took = "no change" if m.seconds is None else f"{m.seconds:.2f} s"
        terminalreporter.write_line(f"{m.notebook:<28} {m.control:<12} {took:>10}   {m.knob}")
