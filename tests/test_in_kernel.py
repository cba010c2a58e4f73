"""serve() inside a real Jupyter kernel: re-running a cell, top-level await, nothing printed stray."""

from __future__ import annotations

import sys

import pytest

jupyter_client = pytest.importorskip("jupyter_client")

pytestmark = pytest.mark.slow  # each test talks to a real kernel process

SETUP = """
from aiohttp import web
import netcourse
from netcourse.runtime.registry import live_servers, stop_all
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


def run(kc, code: str, cell_id: str | None = None) -> tuple[str, list[dict]]:
    """Execute one cell (with a cell id, as JupyterLab sends it, when given); return (stdout, other
    messages) and fail on errors."""
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

    if cell_id is None:
        reply = kc.execute_interactive(code, timeout=60, output_hook=hook)
    else:
        msg = kc.session.msg(
            "execute_request",
            {"code": code, "silent": False, "store_history": True, "user_expressions": {},
             "allow_stdin": False, "stop_on_error": True},
            metadata={"cellId": cell_id},
        )
        kc.shell_channel.send(msg)
        while True:
            io = kc.get_iopub_msg(timeout=60)
            if io["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
                continue
            if io["msg_type"] == "status" and io["content"]["execution_state"] == "idle":
                break
            hook(io)
        reply = kc.get_shell_msg(timeout=60)
        while reply["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
            reply = kc.get_shell_msg(timeout=60)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert not [m for m in other if m["msg_type"] == "error"], other
    return "".join(out), other


@pytest.mark.slow
def test_rerunning_a_cell_stops_the_server_it_started_before(kernel):
    run(kernel, SETUP)
    run(kernel, START)
    run(kernel, START)  # the same cell, run again
    out, _ = run(kernel, "print(ports, [s.port for s in live_servers()])")
    first, second = eval(out.split("] [")[0] + "]"), eval("[" + out.split("] [")[1])
    assert len(first) == 2 and second == [first[1]]
    out, _ = run(kernel, "from netcourse.runtime.tcpinfo import listening_ports\nprint(ports[0] in listening_ports())")
    assert out.strip() == "False"
    run(kernel, "stop_all()")


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
        "print(live_servers())",
    )
    assert out.split() == ["True", "5", "6", "[]"]
    assert not other  # nothing on stderr, no stray displays


def test_cells_are_told_apart_by_id_not_by_source(kernel):
    run(kernel, SETUP)
    run(kernel, "stop_all(); ports.clear()")
    run(kernel, START, cell_id="cell-a")
    run(kernel, START, cell_id="cell-b")  # another cell with the same source: a's server must live
    out, _ = run(kernel, "print(sorted(s.port for s in live_servers()) == sorted(ports), len(ports))")
    assert out.split() == ["True", "2"]
    run(kernel, START, cell_id="cell-a")  # cell a again: only a's first server stops
    out, _ = run(kernel, "print(sorted(s.port for s in live_servers()) == sorted(ports[1:]))")
    assert out.strip() == "True"
    run(kernel, "stop_all()")


def test_a_server_started_by_the_importing_cell_is_stopped_when_that_cell_reruns(kernel):
    code = "from netcourse.runtime.server import serve as _s; from netcourse.runtime.registry import live_servers as _l\nfirst = _s(make_app())\nfirst_ports = globals().setdefault('first_ports', []); first_ports.append(first.port)"
    run(kernel, SETUP)
    run(kernel, "stop_all()")
    run(kernel, code, cell_id="cell-import")
    run(kernel, code, cell_id="cell-import")
    out, _ = run(kernel, "print([s.port for s in live_servers()] == first_ports[-1:])")
    assert out.strip() == "True"
    run(kernel, "stop_all()")
