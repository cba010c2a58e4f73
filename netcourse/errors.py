"""Every error netcourse raises, in one place.

Each one says, in words a learner understands, what went wrong and what to do next.
The tree::

    NetcourseError
    ├── ServerError
    │   ├── ServerStartError        the server could not start (its cause is chained)
    │   │   └── PortInUseError      the port asked for is taken by another program
    │   └── ServerStoppedError      the server is not running (any more)
    ├── CaptureError
    │   ├── CaptureNotPermitted     no rights to capture and no recording to replay instead
    │   ├── CaptureStartTimeout     the sniffer did not start listening in time
    │   ├── UnknownScenarioError    a scenario name the course has no recording of
    │   └── RecordingMissing        the scenario is known but its recording is not shipped
    ├── LinkError                   the emulated link could not be set up or used
    │   └── NamespaceError          a network namespace could not be made, entered or removed
    ├── NetcourseTimeout            something the course waited for did not happen in time
    └── ExerciseError               an exercise was used the wrong way
"""

from __future__ import annotations


class NetcourseError(Exception):
    """Base class of every error netcourse raises."""


class ServerError(NetcourseError):
    """A background server could not do what was asked."""


class ServerStartError(ServerError):
    """The server failed while starting; ``__cause__`` holds the original exception."""


class PortInUseError(ServerStartError):
    """The address and port asked for are already taken by another socket."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        super().__init__(
            f"Port {port} on {host} is already in use by another program or server. "
            f"Stop that program, or pass port=0 (the default) to let the operating system "
            f"choose a free port."
        )


class ServerStoppedError(ServerError):
    """The server has been stopped, so it cannot run anything."""


class CaptureError(NetcourseError):
    """Packet capture could not do what was asked."""


class CaptureNotPermitted(CaptureError):
    """Live capture needs root or CAP_NET_RAW, and there is no recording to fall back on."""


class CaptureStartTimeout(CaptureError):
    """The sniffer did not report that it was listening within the allowed time."""


class UnknownScenarioError(CaptureError):
    """A scenario name that the course does not know."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = sorted(known)
        listing = ", ".join(self.known) or "(none)"
        super().__init__(f"Unknown capture scenario {name!r}. Known scenarios: {listing}.")


class RecordingMissing(CaptureError):
    """The scenario is known, but its recording is not in the package."""


class LinkError(NetcourseError):
    """The emulated link could not be set up, or was used the wrong way."""


class NamespaceError(LinkError):
    """A network namespace could not be made, entered or removed."""


class NetcourseTimeout(NetcourseError, TimeoutError):
    """A wait ran past its timeout (seconds)."""


class ExerciseError(NetcourseError):
    """An exercise was set up or called the wrong way."""
