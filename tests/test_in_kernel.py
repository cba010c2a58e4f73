"""serve() inside a real Jupyter kernel: re-running a cell, top-level await, nothing printed stray."""

from __future__ import annotations

import sys

import pytest

jupyter_client = pytest.importorskip("jupyter_client")

SETUP = """
from aiohttp import web
import netcourse
async def ok(request):
    return web.Response(text="ok")
def make_app():
    app = web.Application()
    app.router.add_get("/", ok)
    return app
ports = []
"""

START = """srv = netcourse.serve(make_app())
ports.append(srv.port)"""


@pytest.fixture(scope="module")
def kernel():
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    km.kernel_spec  # resolve early for a clear error
    km.kernel_spec.argv[0] = sys.executable  # this venv's Python
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    yield kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def run(kc, code: str) -> tuple[str, list[dict]]:
    """Execute one cell; return (stdout, other messages) and fail on errors."""
    out: list[str] = []
    other: list[dict] = []

    def hook(msg: dict) -> None:
        kind = msg["msg_type"]
        if kind == "stream":
            out.append(msg["content"]["text"])
            if msg["content"]["name"] == "stderr":
                other.append(msg)
        elif kind in ("error", "display_data"):
            other.append(msg)

    reply = kc.execute_interactive(code, timeout=60, output_hook=hook)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert not [m for m in other if m["msg_type"] == "error"], other
    return "".join(out), other


def test_rerunning_a_cell_stops_the_server_it_started_before(kernel):
    run(kernel, SETUP)
    run(kernel, START)
    run(kernel, START)  # the same cell, run again
    out, _ = run(kernel, "print(ports, [s.port for s in netcourse.live_servers()])")
    first, second = eval(out.split("] [")[0] + "]"), eval("[" + out.split("] [")[1])
    assert len(first) == 2 and second == [first[1]]
    out, _ = run(kernel, "from netcourse.kernel import listening_ports\nprint(ports[0] in listening_ports())")
    assert out.strip() == "False"
    run(kernel, "netcourse.stop_all()")


def test_top_level_await_cells(kernel):
    run(kernel, SETUP)
    out, other = run(
        kernel,
        "import asyncio\n"
        "async with netcourse.serve(make_app()) as s:\n"
        "    r, w = await asyncio.open_connection(s.host, s.port)\n"
        "    w.write(b'GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n')\n"
        "    data = await r.read()\n"
        "    w.close()\n"
        "    print(data.endswith(b'ok'), await s.arun(asyncio.sleep(0, result=5)))\n"
        "s2 = netcourse.serve(make_app())\n"  # a sync call in an async cell
        "await asyncio.sleep(0)\n"
        "print(s2.run(asyncio.sleep(0, result=6)))\n"
        "s2.stop()\n"
        "print(netcourse.live_servers())",
    )
    assert out.split() == ["True", "5", "6", "[]"]
    assert not other  # nothing on stderr, no stray displays
