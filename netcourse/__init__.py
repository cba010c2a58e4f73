"""netcourse: a hands-on networking course. Real servers, real clients, real packets on loopback.

The pieces a notebook uses most:

- ``serve(app)``: run an aiohttp app (or a raw stream handler) in the background on 127.0.0.1.
- ``capture(port, scenario=...)``: capture the loopback packets of a block of code, or replay the
  course's recording when live capture is not permitted.
- ``tcp_info(sock)``: the kernel's own counters for a connection, no privileges needed.
- ``netcourse.plots``: ladder diagrams and bytes-on-the-wire bars.
- ``netcourse.exercises``: self-checking exercises.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .capture import Capture, capture, capture_permitted
from .errors import NetcourseError
from .kernel import tcp_info
from .server import Server, live_servers, serve, stop_all
from .server import install_ipython_hook as _install_ipython_hook

__all__ = [
    "Capture",
    "NetcourseError",
    "Server",
    "capture",
    "capture_permitted",
    "live_servers",
    "serve",
    "stop_all",
    "tcp_info",
]

_install_ipython_hook()
