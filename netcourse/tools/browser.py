"""Drive the course in a real browser, as a learner would: JupyterLab in Chromium, Run All, then every knob.

Used by ``tests/test_browser.py`` (which asserts what a learner must see) and by ``make bench`` (which
prints how long each knob took to redraw). Playwright drives Debian's ``chromium`` (no browser download):
JupyterLab runs on 127.0.0.1 with a random token, on a temporary copy of the notebooks, with its own
settings, workspace and runtime folders, and is stopped at the end whatever happens.

Playwright is a test dependency; this module imports it only when a ``Course`` is opened.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["find_chromium", "Course", "NotebookRun", "KnobMove", "ROOT"]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/lib/chromium/chromium", "/snap/bin/chromium")

# JupyterLab settings for a test run: every cell rendered (no virtual scrolling), no news pop-up.
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}


def find_chromium() -> str | None:
    """The path of a Chromium the system provides (``NETCOURSE_CHROMIUM`` first), or None."""
    candidates = [os.environ.get("NETCOURSE_CHROMIUM", "")] + list(CHROMIUM_PATHS) + [shutil.which("chromium") or ""]
    return next((p for p in candidates if p and os.access(p, os.X_OK)), None)


@dataclass
class KnobMove:
    """One control moved by the browser, and what the picture did.

    Attributes:
        notebook: the notebook's name.
        knob: which knob (its controls' names).
        control: the control moved ("slider 1", "text 1", ...).
        seconds: from the key press to the new picture on screen (None: it did not change).
        failure: the knob's own error message, when it showed one instead of a picture.
    """

    notebook: str
    knob: str
    control: str
    seconds: float | None
    failure: str | None = None


@dataclass
class NotebookRun:
    """What the browser saw in one notebook after Run All and the knob moves."""

    name: str
    run_seconds: float
    code_cells: int = 0
    executed_cells: int = 0
    stderr_outputs: list[str] = field(default_factory=list)
    fallback_texts: list[str] = field(default_factory=list)  # "interactive(" or "Loading widget" shown
    knobs_expected: int = 0
    knobs_drawn: int = 0
    solutions: int = 0
    solutions_open: list[int] = field(default_factory=list)  # solution cells whose source or output shows
    moves: list[KnobMove] = field(default_factory=list)
    live: list[str] = field(default_factory=list)  # per live widget: "ok", or what went wrong
    screenshots: list[Path] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Course:
    """A JupyterLab on a temporary copy of the course, and a headless Chromium pointed at it.

    Use as a context manager; everything (server, kernels, browser, temporary files) is stopped and
    removed on exit.

    Args:
        chromium: the browser executable (default: ``find_chromium()``).
        shots: folder for screenshots of each knob (created).
        timeout: seconds allowed for one notebook's Run All.
    """

    def __init__(self, chromium: str | None = None, *, shots: Path | None = None, timeout: float = 120.0) -> None:
        self.chromium = chromium or find_chromium()
        if self.chromium is None:
            raise FileNotFoundError("no Chromium found: install Debian's `chromium` package (apt install chromium)")
        self.shots = shots
        self.timeout = timeout
        self._tmp: Path | None = None
        self._server: subprocess.Popen | None = None
        self._pw = None
        self._browser = None

    # -- set-up and clean-up ----------------------------------------------------------------------

    def __enter__(self) -> "Course":
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        from playwright.sync_api import sync_playwright

        self._tmp = Path(tempfile.mkdtemp(prefix="netcourse-browser-"))
        course = self._tmp / "course"
        shutil.copytree(ROOT / "notebooks", course / "notebooks")
        shutil.copytree(ROOT / "images", course / "images")
        # The learner's copy, made by the code `make lab` runs: every notebook with its outputs cleared.
        from .learnercopy import ensure_copy

        ensure_copy(course / "notebooks", course / "my-notebooks")
        for rel, value in SETTINGS.items():
            path = self._tmp / "settings" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(self._tmp / "runtime"), JUPYTER_CONFIG_DIR=str(self._tmp / "config"))
        env.pop("MPLBACKEND", None)  # a test run's Agg would turn every figure into "<Figure ...>" text
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={course}",
               f"--LabApp.user_settings_dir={self._tmp / 'settings'}", f"--LabApp.workspaces_dir={self._tmp / 'ws'}"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        self._log = open(self._tmp / "server.log", "w")
        self._server = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            if self._server.poll() is not None:
                raise RuntimeError(f"JupyterLab did not start:\n{self.server_log()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("JupyterLab did not listen within 60 s") from None
                time.sleep(0.2)
        self._pw = sync_playwright().start()
        # No sandbox: it needs root or user namespaces, which containers and CI users often lack; the
        # browser only ever loads the course's own JupyterLab on 127.0.0.1.
        self._browser = self._pw.chromium.launch(executable_path=self.chromium, args=["--no-sandbox", "--disable-gpu"])

    def server_log(self) -> str:
        return (self._tmp / "server.log").read_text() if self._tmp and (self._tmp / "server.log").exists() else ""

    def close(self) -> None:
        for step in (lambda: self._browser and self._browser.close(), lambda: self._pw and self._pw.stop()):
            try:
                step()
            except Exception:
                pass
        if self._server is not None and self._server.poll() is None:
            self._server.terminate()  # also shuts down the kernels it started
            try:
                self._server.wait(20)
            except subprocess.TimeoutExpired:
                self._server.kill()
                self._server.wait(5)
        if getattr(self, "_log", None):
            self._log.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # -- one notebook -------------------------------------------------------------------------------

    def run(self, name: str, *, move_knobs: bool = True, folder: str = "my-notebooks") -> NotebookRun:
        """Open ``<folder>/<name>.ipynb`` (the learner's copy by default: no outputs, as ``make lab`` opens
        it), Run All from empty, check what shows, then move every control. ``folder="notebooks"`` opens
        the executed reference instead, cleared first."""
        nb_json = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
        cells = nb_json["cells"]
        page = self._browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"http://127.0.0.1:{self.port}/lab/tree/{folder}/{name}.ipynb?token={self.token}&reset")
            page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=60_000)
            self._wait_idle(page, 60)
            result_outputs = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output").count()
            if folder == "my-notebooks" and result_outputs:
                raise AssertionError(f"the learner's copy of {name} opened with {result_outputs} outputs on show")
            self._command(page, "Edit", "editmenu:clear-all")
            start = time.monotonic()
            self._run_all(page)
            code = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and "".join(c["source"]).strip()]
            result = NotebookRun(name, 0.0, code_cells=len(code))
            # A worked answer's input is collapsed, and so is its prompt: count the prompts on show.
            shown = [i for i in code if not cells[i].get("metadata", {}).get("jupyter", {}).get("source_hidden")]
            self._wait_all_ran(page, len(shown), self.timeout)
            result.run_seconds = time.monotonic() - start
            self._inspect(page, cells, result)
            self._inspect_saved(page, name, result, folder)
            if move_knobs:
                self._move_knobs(page, result)
                self._drive_live(page, result)
            return result
        finally:
            page.close()

    @staticmethod
    def _command(page, menu: str, command: str) -> None:
        page.click(f".lm-MenuBar-itemLabel:text-is('{menu}')")
        page.click(f".lm-Menu-item[data-command='{command}']")
        page.wait_for_timeout(100)

    def _run_all(self, page, attempts: int = 3) -> None:
        """Run All, and make sure it took: now and then (2 of about 60 runs here) JupyterLab walked through the
        cells without executing any, its kernel idle; then the command is given again."""
        started = r"""() => Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt'))
            .some(p => /\[(\*|\d+)\]/.test(p.textContent))"""
        for attempt in range(attempts):
            self._command(page, "Run", "runmenu:run-all")
            try:
                page.wait_for_function(started, timeout=15_000, polling=100)
                return
            except Exception:
                if attempt == attempts - 1:
                    raise AssertionError(f"Run All executed no cell, {attempts} times") from None
                self._wait_idle(page, 60)

    @staticmethod
    def _wait_idle(page, seconds: float) -> None:
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=seconds * 1000)

    def _wait_all_ran(self, page, code_cells: int, seconds: float) -> None:
        script = """(n) => {
            const prompts = Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt'));
            const numbers = prompts.map(p => p.textContent.trim()).filter(t => /^\\[\\d+\\]:$/.test(t));
            return numbers.length >= n && !prompts.some(p => p.textContent.includes('*'));
        }"""
        try:
            page.wait_for_function(script, arg=code_cells, timeout=seconds * 1000, polling=250)
        except Exception as exc:  # say which cells had not run, and keep a picture of the page
            prompts = page.evaluate("""() => Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell'))
                .map((c, i) => [i, (c.querySelector('.jp-InputPrompt') || {}).textContent || '',
                                (c.querySelector('.jp-InputArea-editor') || {}).textContent || ''])""")
            waiting = [f"cell {i} {p.strip()} {src[:60]!r}" for i, p, src in prompts if not re.match(r"^\[\d+\]:$", p.strip())]
            shot = "no screenshot"
            if self.shots is not None:
                self.shots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(self.shots / "timeout.png"), full_page=True)
                shot = f"screenshot: {self.shots / 'timeout.png'}"
            raise AssertionError(f"Run All did not finish within {seconds:g} s; cells not run or still running: "
                                 f"{waiting[:6]} ({shot})") from exc
        page.wait_for_timeout(500)  # widgets render just after the last reply

    def _inspect(self, page, cells: list[dict], result: NotebookRun) -> None:
        info = page.evaluate("""() => {
            const cells = Array.from(document.querySelectorAll('.jp-Notebook .jp-Cell'));
            return cells.map(c => ({
                stderr: Array.from(c.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')).map(e => e.textContent.slice(0, 300)),
                text: Array.from(c.querySelectorAll('.jp-OutputArea-output')).map(e => e.textContent).join('\\n').slice(0, 2000),
                knobs: c.querySelectorAll('.netcourse-knob').length,
                inputHidden: !!c.querySelector('.jp-InputPlaceholder'),
                outputHidden: !!c.querySelector('.jp-OutputPlaceholder'),
                // outputs a reader sees: visible, and not a closed <details> of a worked answer
                visibleOutputs: Array.from(c.querySelectorAll('.jp-OutputArea-output')).filter(e => e.offsetParent !== null)
                    .filter(e => !(e.querySelector('details.netcourse-solution') && !e.querySelector('details.netcourse-solution[open]')))
                    .length,
            }));
        }""")
        if len(info) != len(cells):
            raise AssertionError(f"{result.name}: the page shows {len(info)} cells, the file has {len(cells)}")
        for i, (cell, seen) in enumerate(zip(cells, info)):
            source = "".join(cell["source"])
            result.stderr_outputs += [f"[{i}] {t}" for t in seen["stderr"]]
            for marker in ("interactive(", "Loading widget", "Error displaying widget", "<Figure size"):
                if marker in seen["text"]:
                    result.fallback_texts.append(f"[{i}] {marker}")
            if cell["cell_type"] == "code" and "Knob(" in source:
                result.knobs_expected += 1
                result.knobs_drawn += min(seen["knobs"], 1)
            if "solution" in cell.get("metadata", {}).get("tags", []):
                result.solutions += 1
                if not seen["inputHidden"] or seen["visibleOutputs"]:
                    result.solutions_open.append(i)

    def _inspect_saved(self, page, name: str, result: NotebookRun, folder: str = "my-notebooks") -> None:
        """Save the notebook from the browser and read what the kernel really ran, hidden cells included."""
        path = self._tmp / "course" / folder / f"{name}.ipynb"
        before = path.stat().st_mtime_ns
        self._command(page, "File", "docmanager:save")
        deadline = time.monotonic() + 20
        while path.stat().st_mtime_ns == before and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        saved = json.loads(path.read_text())
        for i, cell in enumerate(saved["cells"]):
            if cell["cell_type"] != "code" or not "".join(cell["source"]).strip():
                continue
            result.executed_cells += cell.get("execution_count") is not None
            for out in cell.get("outputs", []):
                if out["output_type"] == "error":
                    result.stderr_outputs.append(f"[{i}] {out.get('ename')}: {out.get('evalue')}")
                elif out["output_type"] == "stream" and out.get("name") == "stderr":
                    result.stderr_outputs.append(f"[{i}] {''.join(out.get('text', ''))[:300]}")

    def _move_knobs(self, page, result: NotebookRun) -> None:
        knobs = page.locator(".jp-Cell:has(.netcourse-knob)")
        for k in range(knobs.count()):
            cell = knobs.nth(k)
            cell.scroll_into_view_if_needed()
            label = cell.locator(".netcourse-knob").inner_text().replace("\n", " ")[:60]
            controls = self._controls(cell)
            for control_name, act in controls:
                before = self._picture(cell)
                t0 = time.monotonic()
                act()
                seconds, failure = None, None
                deadline = t0 + 15
                while time.monotonic() < deadline:
                    now = self._picture(cell)
                    if now != before:
                        seconds = time.monotonic() - t0
                        if "The knob failed" in now:
                            failure = now[now.index("The knob failed"):][:300]
                        break
                    page.wait_for_timeout(25)
                result.moves.append(KnobMove(result.name, label, control_name, seconds, failure))
            if self.shots is not None:
                self.shots.mkdir(parents=True, exist_ok=True)
                path = self.shots / f"{result.name}-knob{k + 1}.png"
                cell.screenshot(path=str(path))
                result.screenshots.append(path)

    def _drive_live(self, page, result: NotebookRun) -> None:
        """Use every live widget (``netcourse-live``: Connect, Send a message, Close) as a learner would, and
        check that the connection's log shows the server's pushes, the message's echo, then the close."""
        widgets = page.locator(".netcourse-live")
        for k in range(widgets.count()):
            box = widgets.nth(k)
            box.scroll_into_view_if_needed()
            steps = [("Connect", "nobody asked"), ("Send a message", "(the echo)"), ("Close", "closed")]
            outcome = "ok"
            for button, expect in steps:
                box.locator(f"button:has-text('{button}')").click()
                try:
                    page.wait_for_function("([el, text]) => el.textContent.includes(text)",
                                           arg=[box.element_handle(), expect], timeout=10_000, polling=100)
                except Exception:
                    outcome = f"after {button!r}, no {expect!r} within 10 s: {box.inner_text()[:300]!r}"
                    break
            result.live.append(outcome)
            if self.shots is not None:
                self.shots.mkdir(parents=True, exist_ok=True)
                path = self.shots / f"{result.name}-live{k + 1}.png"
                box.screenshot(path=str(path))

    @staticmethod
    def _picture(cell) -> str:
        """What the knob's picture shows now: the outputs after the controls."""
        return cell.evaluate("""c => Array.from(c.querySelectorAll('.jp-OutputArea-child'))
            .filter(o => !o.querySelector('.netcourse-knob'))
            .map(o => { const img = o.querySelector('img'); return img ? img.src.slice(-200) + img.src.length : o.textContent; })
            .join('|')""")

    @staticmethod
    def _controls(cell):
        """(name, action) for every control of a knob: a key press or a keystroke that changes its value."""
        out = []
        handles = cell.locator(".netcourse-knob .noUi-handle")
        for i in range(handles.count()):
            handle = handles.nth(i)

            def nudge(h=handle):  # one step right, or left when already at the top
                at_top = h.evaluate("e => e.getAttribute('aria-valuenow') === e.getAttribute('aria-valuemax')")
                h.focus()
                h.press("ArrowLeft" if at_top else "ArrowRight")

            out.append((f"slider {i + 1}", nudge))
        texts = cell.locator(".netcourse-knob input[type='text']")
        for i in range(texts.count()):
            box = texts.nth(i)

            def retype(b=box):  # change the last character to another valid one (hex stays hex)
                value = b.input_value()
                last = value[-1:] or "a"
                digits = "0123456789abcdef"
                other = digits[(digits.index(last) + 1) % 16] if last in digits else chr(ord(last) + 1)
                b.click()
                b.press("End")
                b.press("Backspace")
                b.type(other)

            out.append((f"text {i + 1}", retype))
        selects = cell.locator(".netcourse-knob select")
        for i in range(selects.count()):
            sel = selects.nth(i)
            out.append((f"dropdown {i + 1}", lambda s=sel: s.select_option(
                index=(s.evaluate("e => e.selectedIndex") + 1) % s.evaluate("e => e.options.length"))))
        boxes = cell.locator(".netcourse-knob input[type='checkbox']")
        for i in range(boxes.count()):
            box = boxes.nth(i)
            out.append((f"checkbox {i + 1}", lambda b=box: b.click()))
        return out
