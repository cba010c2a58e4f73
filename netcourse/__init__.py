"""netcourse: a hands-on networking course. Real servers, real clients, real packets on loopback.

The three calls a notebook uses most are here at the top, loaded lazily (PEP 562), so that
``import netcourse.protocols.wsframe`` pulls in no asyncio, aiohttp or scapy:

- ``serve(app)``: run an aiohttp app (or a raw stream handler) in the background on 127.0.0.1.
- ``capture(port, scenario=...)``: capture the loopback packets of a block of code, or replay the
  course's recording when live capture is not permitted.
- ``tcp_info(sock)``: the kernel's own counters for a connection, no privileges needed.

The package's folders are its layers, and every import points down this list::

    tools/        python -m netcourse doctor | bench
    experiments/  one module per notebook, and the scenario registry
    course/       plots, exercises, images
    apps/         the servers lessons talk to
    network/      the emulated link: namespaces and a userspace wire, or a relay
    traffic/      capture (sniffer), recordings, packet table, bytes per layer
    runtime/      serve(), cell hook, bounded waits, sockets, TCP_INFO, notices
    protocols/    sans-I/O, standard library only
    errors.py     every error, one tree (importable from any layer)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["serve", "capture", "tcp_info", "link"]

_LAZY = {
    "serve": "netcourse.runtime.server",
    "capture": "netcourse.traffic.sniffer",
    "tcp_info": "netcourse.runtime.tcpinfo",
    "link": "netcourse.network.link",
}

if TYPE_CHECKING:
    from .network.link import link
    from .runtime.server import serve
    from .runtime.tcpinfo import tcp_info
    from .traffic.sniffer import capture


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'netcourse' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
