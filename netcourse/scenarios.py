"""Named capture scenarios, and the recordings the course ships for learners without capture rights.

A scenario is an experiment function registered under a name with ``@scenario("name")``. It runs real
servers and clients and captures with ``capture(port, scenario="name")``. When the learner may
capture, the packets are live; when not, the same call replays ``recordings/name.pcap``, which
``python -m netcourse record`` (as root) re-records by running every registered function.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from .errors import RecordingMissing, UnknownScenarioError

__all__ = ["scenario", "known_scenarios", "recording_paths", "load_meta", "recorded_when", "recording", "record_all"]

F = TypeVar("F", bound=Callable[..., Any])

RECORDINGS = Path(__file__).parent / "recordings"

_registry: dict[str, Callable[[], Any]] = {}
_recording_dir: Path | None = None


def scenario(name: str) -> Callable[[F], F]:
    """Register an experiment function (callable with no arguments) under a scenario name."""

    def register(fn: F) -> F:
        if name in _registry and _registry[name] is not fn:
            other = _registry[name]
            if f"{other.__module__}.{other.__qualname__}" != f"{fn.__module__}.{fn.__qualname__}":
                raise ValueError(f"scenario {name!r} is registered twice")
        _registry[name] = fn
        return fn

    return register


def _load_experiments() -> None:
    from . import experiments

    for info in pkgutil.iter_modules(experiments.__path__):
        importlib.import_module(f"{experiments.__name__}.{info.name}")


def known_scenarios() -> dict[str, Callable[[], Any]]:
    """Every registered scenario: name -> experiment function."""
    _load_experiments()
    return dict(sorted(_registry.items()))


def check_name(name: str) -> None:
    """Raise ``UnknownScenarioError`` (listing the known names) unless ``name`` is registered."""
    known = known_scenarios()
    if name not in known:
        raise UnknownScenarioError(name, list(known))


def recording_paths(name: str, directory: Path | None = None) -> tuple[Path, Path]:
    """(pcap, json) paths of a scenario's recording."""
    base = (directory or RECORDINGS) / name
    return base.with_suffix(".pcap"), base.with_suffix(".json")


def load_meta(name: str) -> dict[str, Any]:
    """The JSON metadata of a shipped recording; ``RecordingMissing`` if there is none."""
    pcap, meta = recording_paths(name)
    if not pcap.exists() or not meta.exists():
        raise RecordingMissing(
            f"Scenario {name!r} has no recording in {RECORDINGS}. "
            "A maintainer records it with `python -m netcourse record` (as root)."
        )
    return json.loads(meta.read_text())


def recorded_when(meta: dict[str, Any]) -> str:
    """A recording's time for people: "2026-11-26 12:20:18 UTC"."""
    return str(meta["recorded_at"]).replace("T", " ").replace("Z", " UTC")


def recording_target() -> Path | None:
    """Where captures are being recorded to right now, or None."""
    return _recording_dir


@contextmanager
def recording(directory: Path | None = None) -> Iterator[Path]:
    """While active, every live capture with a scenario name saves itself into ``directory``."""
    global _recording_dir
    previous = _recording_dir
    _recording_dir = Path(directory or RECORDINGS)
    _recording_dir.mkdir(parents=True, exist_ok=True)
    try:
        yield _recording_dir
    finally:
        _recording_dir = previous


def record_all(directory: Path | None = None, names: list[str] | None = None) -> list[str]:
    """Run every registered experiment (or those named) with live capture, saving the recordings.

    Returns the names recorded. Needs capture rights.
    """
    from .capture import capture_permitted

    if not capture_permitted():
        from .errors import CaptureNotPermitted

        raise CaptureNotPermitted("Recording needs live capture rights: run it as root.")
    todo = known_scenarios()
    if names:
        for n in names:
            check_name(n)
        todo = {n: todo[n] for n in names}
    done = []
    with recording(directory):
        for name, fn in todo.items():
            fn()
            done.append(name)
    return done
