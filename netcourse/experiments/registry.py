"""Named scenarios: the experiments whose captures the course records and ships.

A scenario is an experiment function registered under a name with ``@scenario("name")``. It runs real
servers and clients and captures with ``capture(port, scenario="name")``. When the learner may
capture, the packets are live; when not, the same call replays ``recordings/name.pcap``, which
``python -m netcourse record`` (as root) re-records by running every registered function.

The registry lives here, above the capture layer: ``traffic`` finds recordings by name and never
imports this module.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import CaptureNotPermitted, UnknownScenarioError
from ..traffic.recordings import check_scenario_name, recording
from ..traffic.sniffer import HOW_TO_ENABLE, called_with, capture_permitted

__all__ = ["scenario", "known_scenarios", "record_all"]

F = TypeVar("F", bound=Callable[..., Any])

_registry: dict[str, Callable[[], Any]] = {}


def scenario(name: str) -> Callable[[F], F]:
    """Register an experiment function (callable with no arguments) under a scenario name.

    The recording is made with the function's defaults; a call with other arguments that ends up
    replaying it says so in the replay notice (which arguments the packets shown do not reflect).
    """
    check_scenario_name(name)

    def register(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            changed = ", ".join(f"{k}={v!r}" for k, v in bound.arguments.items()
                                if k != "timeout" and signature.parameters[k].default is not inspect.Parameter.empty
                                and v != signature.parameters[k].default)
            if not changed:
                return fn(*args, **kwargs)
            with called_with(name, changed):
                return fn(*args, **kwargs)

        other = _registry.get(name)
        if other is not None and other is not fn:
            if f"{other.__module__}.{other.__qualname__}" != f"{fn.__module__}.{fn.__qualname__}":
                raise ValueError(f"scenario {name!r} is registered twice")
        _registry[name] = run
        return run  # type: ignore[return-value]

    return register


def _load_experiments() -> None:
    from .. import experiments

    for info in pkgutil.walk_packages(experiments.__path__, f"{experiments.__name__}."):
        if not info.name.rsplit(".", 1)[-1].startswith("_"):  # a lesson's modules, and its package's
            importlib.import_module(info.name)


def known_scenarios() -> dict[str, Callable[[], Any]]:
    """Every registered scenario: name -> experiment function."""
    _load_experiments()
    return dict(sorted(_registry.items()))


def record_all(directory: Path | None = None, names: list[str] | None = None) -> list[str]:
    """Run every registered experiment (or those named) with live capture, saving the recordings.

    Returns the names recorded. Needs capture rights.
    """
    if not capture_permitted():
        raise CaptureNotPermitted(f"Recording needs live capture rights. {HOW_TO_ENABLE}")
    todo = known_scenarios()
    if names:
        unknown = [n for n in names if n not in todo]
        if unknown:
            raise UnknownScenarioError(unknown[0], list(todo))
        todo = {n: todo[n] for n in names}
    done = []
    with recording(directory):
        for name, fn in todo.items():
            fn()
            done.append(name)
    return done
