"""``python -m netcourse doctor``: can this machine run the course? A preflight for classrooms.

Each check gives OK, WARN (the course runs, with a limitation) or FAIL (the course cannot run).
The command exits 1 when any check fails.
"""

from __future__ import annotations

import sys
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

__all__ = ["Check", "Report", "run_checks"]

REQUIRED = ["jupyterlab", "ipywidgets", "matplotlib", "scapy", "aiohttp", "nbval", "trustme", "cryptography", "redis"]
MIN_PYTHON = (3, 11)  # pyproject.toml's requires-python


@dataclass(frozen=True)
class Check:
    """One line of the report: a name, a status ("OK", "WARN" or "FAIL") and what was found."""

    name: str
    status: str
    detail: str


class Report:
    """All checks; ``ok`` is False when any failed. Shows as a table."""

    def __init__(self, checks: list[Check]) -> None:
        self.checks = checks

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings allowed)."""
        return all(c.status != "FAIL" for c in self.checks)

    def __repr__(self) -> str:
        width = max(len(c.name) for c in self.checks)
        lines = [f"{'check'.ljust(width)}  status  detail", f"{'-' * width}  ------  ------"]
        lines += [f"{c.name.ljust(width)}  {c.status.ljust(6)}  {c.detail}" for c in self.checks]
        verdict = "The course can run here." if self.ok else "The course cannot run here: fix the FAIL lines."
        return "\n".join(lines + ["", verdict])


def _python() -> Check:
    v = sys.version_info
    status = "OK" if v >= MIN_PYTHON else "FAIL"
    return Check("python", status, f"{v.major}.{v.minor}.{v.micro} (needs {MIN_PYTHON[0]}.{MIN_PYTHON[1]}+)")


def _package(name: str) -> Check:
    try:
        return Check(name, "OK", metadata.version(name))
    except metadata.PackageNotFoundError:
        return Check(name, "FAIL", "not installed: run `make lab` or `pip install -e .`")


def _loopback() -> Check:
    from aiohttp import web

    from ..runtime.server import serve

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    from ..apps.safety import safe_app

    app = safe_app()
    app.router.add_get("/", ok)
    try:
        with serve(app, name="doctor") as srv:
            with urllib.request.urlopen(srv.url + "/", timeout=5) as resp:
                body = resp.read()
        if body != b"ok":
            return Check("loopback server", "FAIL", f"unexpected answer {body!r}")
        return Check("loopback server", "OK", "served and fetched a page on 127.0.0.1")
    except Exception as exc:
        return Check("loopback server", "FAIL", f"{type(exc).__name__}: {exc}")


def _capture() -> Check:
    from ..experiments.registry import known_scenarios
    from ..traffic.recordings import recording_paths
    from ..traffic.sniffer import HOW_TO_ENABLE, capture_permitted

    if capture_permitted():
        return Check("packet capture", "OK", "live capture permitted")
    names = list(known_scenarios())
    missing = [n for n in names if not all(p.exists() for p in recording_paths(n))]
    if missing:
        return Check("packet capture", "FAIL", f"not permitted, and recordings missing for {missing}")
    return Check("packet capture", "WARN", f"replay ({len(names)} recordings shipped). {HOW_TO_ENABLE}")


def _kernel_filter() -> Check:
    import socket as _socket

    from ..traffic import bpf
    from ..traffic.rawsocket import ETH_P_ALL
    from ..traffic.sniffer import capture_permitted

    if not capture_permitted():
        return Check("kernel packet filter", "OK", "not needed: captures are replayed")
    try:
        with _socket.socket(_socket.AF_PACKET, _socket.SOCK_RAW, _socket.htons(ETH_P_ALL)) as s:
            bpf.attach(s, bpf.port_filter({9}))
            bpf.packet_statistics(s)
    except OSError as exc:
        return Check("kernel packet filter", "WARN", f"could not attach ({exc}): packets are filtered in Python")
    return Check("kernel packet filter", "OK", "the course's BPF program attaches; drops are counted")


def _capability() -> Check:
    """Warn when cap_net_raw sits on an interpreter shared with the rest of the machine."""
    import os

    real = Path(os.path.realpath(sys.executable))
    try:
        has_caps = bool(os.getxattr(real, "security.capability"))
    except (OSError, AttributeError):
        has_caps = False
    if not has_caps:
        why = ("not needed: running as root" if os.geteuid() == 0 else
               "not set: captures replay the course's recordings (`make allow-capture` gives live capture)")
        return Check("capture capability", "OK", f"{why} ({real.name} has no file capabilities)")
    venv = Path(sys.prefix).resolve()
    if venv in real.parents:
        return Check("capture capability", "OK", f"on the course's own interpreter copy {real}")
    return Check(
        "capture capability",
        "WARN",
        f"file capabilities sit on the shared interpreter {real}: every user and program running it may "
        f"sniff loopback, Jupyter tokens included. Remove them (sudo setcap -r {real}) and use "
        "`make allow-capture`, which puts them on a private copy.",
    )


def _link_modes() -> Check:
    from ..network.link import modes

    tap = modes()["tap"]
    if tap is None:
        return Check("emulated link", "OK", "tap mode (namespaces + userspace wire) and relay mode")
    return Check("emulated link", "OK", f"relay mode (tap mode cannot run: {tap})")


def _lab_widgets() -> Check:
    try:
        import jupyterlab_widgets  # noqa: F401
    except ImportError:
        return Check("lab widgets extension", "FAIL", "jupyterlab_widgets not installed: sliders won't show")
    share = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "@jupyter-widgets" / "jupyterlab-manager"
    if not share.exists():
        return Check("lab widgets extension", "WARN", f"package present but extension not found in {share.parent}")
    return Check("lab widgets extension", "OK", f"jupyterlab_widgets {metadata.version('jupyterlab_widgets')}")


def _tls() -> Check:
    import shutil
    import ssl

    tshark = shutil.which("tshark")
    detail = f"{ssl.OPENSSL_VERSION}; " + (f"tshark at {tshark} (notebook 09's cross-check)" if tshark else
                                           "no tshark: notebook 09 runs; its Wireshark cross-check test skips")
    return Check("TLS", "OK" if ssl.HAS_TLSv1_3 else "WARN", detail if ssl.HAS_TLSv1_3 else "no TLS 1.3 in this OpenSSL")


def _redis() -> Check:
    from ..apps.broker import find_redis_server

    binary, where = find_redis_server()
    if binary is None:
        return Check("Redis", "WARN", f"{where}: notebook 11's scale-out shows its recorded run")
    return Check("Redis", "OK", f"{where}: notebook 11's scale-out runs live")


def run_checks() -> Report:
    """Run every check and return the report."""
    checks = [_python()] + [_package(n) for n in REQUIRED]
    checks += [_loopback(), _capture(), _kernel_filter(), _capability(), _link_modes(), _lab_widgets(), _tls(), _redis()]
    return Report(checks)


def main() -> int:
    """Print the report; 0 if the course can run, 1 otherwise."""
    report = run_checks()
    print(report)
    return 0 if report.ok else 1
