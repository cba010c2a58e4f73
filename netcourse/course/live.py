"""A live connection a learner drives with buttons (notebook 04, section 1 by hand): ``LivePipe``.

It starts a ticking beat server (``apps.beat``) and connects a ``clients.beat.BeatClient`` to it in a worker
thread; the widgets show both directions of the one connection as they happen. Widgets are wired here, in
``course/``, the one layer that draws for the learner.
"""

from __future__ import annotations

import threading
import time

from ..apps.beat import make_beat_handler
from ..clients.beat import BeatClient
from ..protocols.beat import Frame, Kind
from ..runtime.server import serve

__all__ = ["LivePipe"]


class LivePipe:
    """Section 1 by hand: a connection to a ticking beat server, with a button that sends a message.

    **Connect** starts a beat server (ticking every ``tick`` s) and connects to it; **Send a message** writes
    a MSG frame, which the server echoes; the log shows both directions as they happen, on one connection.
    It closes itself after ``seconds``, on **Close**, or when anything fails, and the server stops with it:
    nothing outlives the pipe. Without a widget front end (a test, a script), call ``connect()``,
    ``click()`` and ``close()``.

    Attributes:
        lines: the log, oldest first: (seconds since connecting, direction "→" or "←", frame text).
        status: what the pipe is doing now, in words.
    """

    def __init__(self, seconds: float = 30.0, tick: float = 1.0, *, shown: int = 12) -> None:
        if not 0 < seconds <= 120 or not 0.05 <= tick <= 10:
            raise ValueError("seconds must be in (0, 120] and tick in [0.05, 10]")
        self.seconds, self.tick, self.shown = seconds, tick, shown
        self.lines: list[tuple[float, str, str]] = []
        self.status = "not connected"
        self._outbox: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._clicks = 0
        self._open = False
        self._widget = None

    # the buttons' actions
    def connect(self) -> None:
        """Open the connection (in a background thread that ends by itself after ``seconds``)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self.lines = []
        self._clicks = 0
        with self._lock:
            self._outbox = []
        self._open = True
        self._thread = threading.Thread(target=self._run, name="live pipe", daemon=True)
        self._set_status("connecting …")
        self._thread.start()

    def click(self) -> None:
        """Queue one message for the connection (what the Send button does)."""
        self._clicks += 1
        with self._lock:
            self._outbox.append(f"click {self._clicks}")

    def close(self, timeout: float = 5.0) -> None:
        """Close the connection and stop the server; returns when both are gone."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        start = time.monotonic()
        try:
            with serve(make_beat_handler(tick=self.tick, idle_timeout=None), name="live pipe") as srv:
                with BeatClient(srv.host, srv.port) as client:
                    start = time.monotonic()
                    self._set_status(f"connected to 127.0.0.1:{srv.port}; closes by itself after {self.seconds:g} s")
                    while not self._stop.is_set() and time.monotonic() - start < self.seconds:
                        with self._lock:
                            outgoing, self._outbox = self._outbox, []
                        for text in outgoing:
                            client.send(Kind.MSG, text.encode())
                            self._log(time.monotonic() - start, "→", f"MSG {text!r}")
                        for frame in client.receive(0.05):
                            self._log(time.monotonic() - start, "←", _describe(frame))
                    client.send(Kind.CLOSE, b"bye")
            outcome = f"closed after {time.monotonic() - start:.1f} s; the server has stopped"
        except Exception as exc:  # shown to the learner, never left as a dangling thread
            outcome = f"closed: {type(exc).__name__}: {exc}"
        self._open = False
        self._set_status(outcome)

    def _log(self, t: float, direction: str, text: str) -> None:
        self.lines.append((t, direction, text))
        self._redraw()

    def _set_status(self, text: str) -> None:
        self.status = text
        self._redraw()

    # the widget
    def _redraw(self) -> None:
        if self._widget is None:
            return
        import html

        _, status, log = self._widget.children
        status.value = f"<b>{html.escape(self.status)}</b>"
        rows = [f"{t:6.2f} s  {'client → server' if d == '→' else 'server → client'}  {html.escape(x)}"
                for t, d, x in self.lines[-self.shown:]]
        log.value = "<pre style='margin:0'>" + ("\n".join(rows) or "(nothing yet)") + "</pre>"
        buttons = self._widget.children[0].children
        buttons[0].disabled = self._open
        buttons[1].disabled = buttons[2].disabled = not self._open

    def widget(self):
        """The buttons, the status line and the log, as an ipywidgets box."""
        from ipywidgets import HTML, Button, HBox, VBox

        if self._widget is None:
            connect = Button(description="Connect", icon="plug")
            send = Button(description="Send a message", icon="paper-plane", disabled=True)
            close = Button(description="Close", icon="times", disabled=True)
            connect.on_click(lambda _: self.connect())
            send.on_click(lambda _: self.click())
            close.on_click(lambda _: self.close())
            self._widget = VBox([HBox([connect, send, close]), HTML(), HTML()])
            self._widget.add_class("netcourse-live")  # the browser test finds it by this
            self._redraw()
        return self._widget

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = dict(self.widget()._repr_mimebundle_(include=include, exclude=exclude) or {})
        bundle["text/plain"] = (f"🔌 A live pipe (run the notebook to use it): Connect, then Send a message while "
                                f"the server ticks every {self.tick:g} s; it closes itself after {self.seconds:g} s.")
        return bundle


def _describe(frame: Frame) -> str:
    body = frame.body.decode(errors="replace")
    if frame.kind is Kind.TICK:
        return f"TICK {body} (nobody asked)"
    if frame.kind is Kind.MSG:
        return f"MSG {body!r} (the echo)"
    return f"{frame.kind.name} {body!r}"
