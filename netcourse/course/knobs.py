"""Knobs: controls that redraw one picture in place, readable with or without a running kernel.

``ipywidgets.interact`` draws its output *inside* the widget, so a notebook read on GitHub, nbviewer or a
static HTML export shows only the widget's text repr (``interactive(children=(IntSlider(…``). A ``Knob``
instead displays the picture for the default values as an ordinary output, which every renderer shows,
and the controls above it. Moving a control redraws that same output in place (a display update), so a
live session never shows two copies.

    Knob(plots.port_budget, low=IntSlider(32768, 1024, 65535), high=IntSlider(60999, 1024, 65535),
         time_wait_s=IntSlider(60, 1, 240))

``fn`` is a plain function of the controls' values (plus any ``fixed`` arguments): a test calls it with
several values, and the browser test moves the controls.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..errors import NetcourseError

__all__ = ["Knob", "Remeasure"]


class _Controls:
    """The controls, shown as widgets where widgets render and as one line of text elsewhere."""

    def __init__(self, box: Any, label: str) -> None:
        self.box = box
        self.label = label

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = self.box._repr_mimebundle_(include=include, exclude=exclude)
        bundle = dict(bundle) if bundle else {}
        bundle["text/plain"] = f"🎛️ Knob ({self.label}): run the notebook to turn it; the picture below is its default."
        return bundle


class Knob:
    """Controls that redraw one output in place.

    Args:
        fn: ``fn(**fixed, **values) -> anything displayable`` (a Figure, a table, text).
        fixed: arguments passed unchanged on every call (e.g. a measurement the picture is drawn from).
        **controls: one ipywidgets control per argument of ``fn`` that the learner may change.

    Attributes:
        last_seconds: how long the last redraw took (fn plus display), seconds.
    """

    def __init__(self, fn: Callable[..., Any], *, fixed: dict[str, Any] | None = None, **controls: Any) -> None:
        if not controls:
            raise ValueError("a knob needs at least one control")
        self.fn = fn
        self.fixed = dict(fixed or {})
        self.controls = controls
        self.last_seconds = 0.0
        self._handle = None
        for control in controls.values():
            control.observe(self._changed, names="value")

    def values(self) -> dict[str, Any]:
        """The controls' current values, by argument name."""
        return {name: control.value for name, control in self.controls.items()}

    def render(self) -> Any:
        """Call ``fn`` with the current values; a refused value becomes a sentence, not a traceback."""
        try:
            picture = self.fn(**self.fixed, **self.values())
        except (NetcourseError, ValueError, OSError) as exc:
            return _Message(f"⚠️ {exc}")
        return _Message(picture) if isinstance(picture, str) else picture

    def _changed(self, change: dict) -> None:
        start = time.perf_counter()
        try:
            picture = self.render()
        except Exception as exc:  # a widget callback's traceback would go to a log nobody reads
            picture = _Message(f"⚠️ The knob failed: {type(exc).__name__}: {exc}")
        if self._handle is not None:
            self._handle.update(picture)
        self.last_seconds = time.perf_counter() - start

    def _ipython_display_(self) -> None:
        from IPython.display import display
        from ipywidgets import HBox, Layout

        names = ", ".join(getattr(c, "description", "") or n for n, c in self.controls.items())
        box = HBox(list(self.controls.values()), layout=Layout(flex_flow="row wrap"))
        box.add_class("netcourse-knob")
        display(_Controls(box, names))
        self._handle = display(self.render(), display_id=True)


class _Message:
    """A sentence shown in place of a picture."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class Remeasure:
    """A button that runs a measurement again, live, and redraws its picture in place.

    The picture first shown is ``draw(stored)`` (a measurement made earlier and labelled as such); a click
    runs ``measure()`` (a few seconds), then shows ``draw(result)`` instead, and says how long it took.

    Args:
        measure: ``fn() -> result``: the live measurement. It must end by itself.
        draw: ``fn(result) -> anything displayable``.
        stored: the earlier result drawn before any click.
        label: the button's text.
    """

    def __init__(self, measure: Callable[[], Any], draw: Callable[[Any], Any], *, stored: Any, label: str) -> None:
        self.measure, self.draw, self.stored, self.label = measure, draw, stored, label
        self.last: Any = None
        self.last_seconds = 0.0
        self._handle = None
        self._button = None

    def click(self, _button: Any = None) -> None:
        """Measure again and redraw (what the button does; callable from a test)."""
        if self._button is not None:
            self._button.disabled = True
            self._button.description = "measuring…"
        start = time.perf_counter()
        try:
            self.last = self.measure()
            picture = self.draw(self.last)
        except Exception as exc:  # shown in the cell, not lost in a log
            picture = _Message(f"⚠️ The measurement failed: {type(exc).__name__}: {exc}")
        self.last_seconds = time.perf_counter() - start
        if self._handle is not None:
            self._handle.update(picture)
        if self._button is not None:
            self._button.disabled = False
            self._button.description = f"{self.label} (last: {self.last_seconds:.1f} s)"

    def _ipython_display_(self) -> None:
        from IPython.display import display
        from ipywidgets import Button

        self._button = Button(description=self.label, layout={"width": "auto"})
        self._button.add_class("netcourse-remeasure")
        self._button.on_click(self.click)
        display(_Controls(self._button, self.label))
        self._handle = display(self.draw(self.stored), display_id=True)
