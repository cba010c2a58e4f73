"""A learner presses Stop: the heaviest experiments, interrupted mid-run, leave nothing behind.

A real SIGINT is sent to the main thread while the experiment runs (what JupyterLab's interrupt does to the
kernel); then no server, thread, file descriptor, listening socket or child process of the run may remain.
Findings 7 and 8 of ../shared/reviews/attack.md (``idle_connections`` left 400-500 sockets; the fault soak left a
chat server listening, zombies and file descriptors) each failed here before their fix.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
from collections.abc import Callable

import pytest

from netcourse.runtime.registry import live_servers
from netcourse.runtime.waiting import wait_until

from .conftest import own_listening_ports

pytestmark = pytest.mark.slow


def _children() -> list[int]:
    """This process's child processes, zombies included."""
    found = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                found += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return found


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("netcourse")}


def _interrupt(fn: Callable[[], object], after: float) -> KeyboardInterrupt | None:
    """Run ``fn``, sending SIGINT to this (main) thread ``after`` seconds in; the interrupt if it landed in it."""
    armed = threading.Event()
    armed.set()
    main = threading.main_thread().ident

    def handler(signum, frame):
        if armed.is_set():
            raise KeyboardInterrupt
    old = signal.signal(signal.SIGINT, handler)
    timer = threading.Timer(after, lambda: armed.is_set() and signal.pthread_kill(main, signal.SIGINT))
    timer.start()
    try:
        fn()
        return None
    except KeyboardInterrupt as exc:
        return exc
    finally:
        armed.clear()
        timer.cancel()
        signal.signal(signal.SIGINT, old)


def _cases() -> dict[str, tuple[Callable[[], object], float]]:
    from netcourse.experiments.choosing import memory, scaleout, transports
    from netcourse.experiments.choosing.harness import Workload
    from netcourse.experiments.heartbeats import deaths, reconnect
    from netcourse.experiments.offline import faults, naive
    from netcourse.experiments.webhooks import firewall, noise
    from netcourse.experiments.websockets import held

    return {
        "05 idle_connections(1000)": (lambda: held.idle_connections(1000), 0.4),
        "08 fault_soak, starting": (lambda: faults.fault_soak(messages=300, faults=6), 0.2),
        "08 fault_soak, streaming": (lambda: faults.fault_soak(messages=2000, faults=6), 1.5),
        "08 naive_variants": (lambda: naive.naive_variants(), 0.8),
        "07 behind_a_firewall": (lambda: firewall.behind_a_firewall(), 0.8),
        "07 noise": (lambda: noise.noise("one", events=5000), 0.3),
        "04 peer_deaths": (lambda: deaths.peer_deaths(), 0.5),
        "04 reconnect_storm": (lambda: reconnect.reconnect_storm(), 0.4),
        "10 compare": (lambda: transports.compare(Workload(rtt_ms=0.0)), 0.8),
        "10 memory_per_client": (lambda: memory.memory_per_client(200), 0.3),
        "10 fan_out": (lambda: scaleout.fan_out(clients=20, messages=10, broker=False), 0.6),
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_an_interrupted_experiment_leaves_nothing_behind(case):
    fn, after = _cases()[case]
    gc.collect()
    fds, listening, threads = _fds(), own_listening_ports(), _threads()
    # Kept alive through the checks, as IPython keeps sys.last_traceback: the run's frames stay referenced, so
    # only an explicit clean-up, never the garbage collector, can have released what they hold.
    landed = _interrupt(fn, after)
    assert landed is not None, f"{case} finished before the interrupt: interrupt it earlier"
    gc.collect()
    assert wait_until(lambda: not live_servers(), 10), live_servers()
    assert wait_until(lambda: _threads() <= threads, 10), _threads() - threads
    assert wait_until(lambda: not _children(), 10), _children()
    assert wait_until(lambda: own_listening_ports() <= listening, 5), own_listening_ports() - listening
    assert wait_until(lambda: _fds() <= fds + 2, 10), (fds, _fds())  # +2: lazily opened files (selectors, logs)


def _check_in_kernel() -> str:
    """What the kernel runs after the interrupt: the same ``_children`` as this module's, and the checks."""
    import inspect

    return ("import os, threading\nfrom netcourse.runtime.registry import live_servers\n"
            "from netcourse.runtime.waiting import wait_until\n" + inspect.getsource(_children) + """
print("servers", wait_until(lambda: not live_servers(), 10))
print("children", wait_until(lambda: not _children(), 10), _children())
print("threads", wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith("netcourse")], 10))
""")


def test_jupyters_interrupt_in_a_real_kernel_leaves_nothing_behind():
    """What the learner's Stop button does: jupyter_client signals the kernel's whole process group (killpg), so
    the fault soak's child processes get the SIGINT too, not only the kernel's main thread. The cell must end
    with KeyboardInterrupt, and the kernel must hold no server, child process or course thread afterwards."""
    import sys
    import time

    jupyter_client = pytest.importorskip("jupyter_client")
    km = jupyter_client.manager.KernelManager(kernel_name="python3")
    km.kernel_spec.argv[0] = sys.executable
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        kc.execute_interactive("from netcourse.experiments.offline.faults import fault_soak", timeout=60)
        msg_id = kc.execute("fault_soak(messages=3000, faults=6)")
        time.sleep(2.0)  # the soak is under way: its chat server and client children run
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=60)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = kc.get_shell_msg(timeout=60)
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt", \
            reply["content"].get("ename")
        out: list[str] = []
        kc.execute_interactive(_check_in_kernel(), timeout=60, output_hook=lambda m: out.append(
            m["content"].get("text", "")) if m["msg_type"] == "stream" else None)
        text = "".join(out)
        assert "servers True" in text and "children True" in text and "threads True" in text, text
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
