"""Plots draw what they are given; exercises check answers; the doctor reports and exits right."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from matplotlib.figure import Figure

from netcourse.course.exercises import Exercise, Prediction, as_number
from netcourse.course.plots.ladder import ladder
from netcourse.course.plots.wire import overhead_bar
from netcourse.errors import ExerciseError
from netcourse.tools import doctor
from netcourse.tools.doctor import Check, Report
from netcourse.traffic.packets import C2S, S2C, PacketRow
from netcourse.traffic.wire import WireBytes


def _row(no, direction, flags, payload=0):
    return PacketRow(no, no * 1e-4, direction, "TCP", "a", "b", flags, 0, 1, 14, 20, 32, payload)


def test_ladder_draws_one_arrow_per_packet():
    rows = [_row(1, C2S, "S"), _row(2, S2C, "SA"), _row(3, C2S, "A"), _row(4, C2S, "PA", 10)]
    fig = ladder(rows, title="t")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    arrows = [c for c in ax.get_children() if type(c).__name__ == "Annotation" and c.arrow_patch is not None]
    assert len(arrows) == 4
    # Each arrow goes from the sender's line to the receiver's: client→server arrows point one way,
    # server→client the other.
    directions = [a.xy[0] - a.xyann[0] for a in arrows]
    assert [d > 0 for d in directions] == [True, False, True, True] or [d < 0 for d in directions] == [True, False, True, True]
    labels = [t.get_text() for t in ax.texts]
    assert "PA seq=0 ack=1 len=10" in labels


def test_ladder_summarises_long_captures_and_draws_into_given_axes():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    rows = [_row(i, C2S if i % 2 else S2C, "A") for i in range(1, 61)]
    assert ladder(rows, ax=ax, max_packets=10) is fig
    assert any("50 more packets" in t.get_text() for t in ax.texts)
    plt.close(fig)


def test_overhead_bar_stacks_every_layer():
    w = WireBytes("x", 10, 140, 200, 336, 241, 13, "capture")
    assert w.total == 930 and w.overhead == 917 and round(w.payload_share, 4) == 0.014
    fig = overhead_bar([w, w], share=True)
    bars = fig.axes[0].patches
    assert len(bars) == 5 * 2
    tops = [b.get_y() + b.get_height() for b in bars[-2:]]
    assert tops == pytest.approx([100.0, 100.0])


def test_exercise_checks_numbers_strings_and_placeholders():
    q = Exercise("How many?", answer=3, hint="count", explanation="yes")
    assert q.check(3).right and q.check("3").right and q.check(3.0).right
    wrong = q.check(4)
    assert not wrong and "Hint: count" in repr(wrong)
    assert q.check(...).pending and "Replace ..." in repr(q.check(...))
    assert "How many?" in q._repr_html_()
    s = Exercise("Flag?", answer="SYN", hint="h")
    assert s.check(" SYN ").right and not s.check("syn").right and not s.check(1).right
    key = Exercise("Accept?", answer="s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", hint="h")
    assert not key.check("s3pplmbitxaq9kygzzhzrbk+xoo=").right  # base64: case is part of the value
    hexq = Exercise("Hex, either case?", answer="37fa213d", hint="h", normalise=str.lower)
    assert hexq.check("37FA213D").right
    assert repr(Exercise("Q", answer=1, hint="h", kind="capture")).startswith("🔎")
    with pytest.raises(ExerciseError):
        Exercise("Q", answer=1, hint="h", kind="guess")
    t = Exercise("Share?", answer=0.5, hint="h", tolerance=0.01)
    assert t.check(0.505).right and not t.check(0.6).right
    c = Exercise("Even?", answer=None, hint="h", check=lambda v: v % 2 == 0)
    assert c.check(4).right and not c.check(3).right


def test_exercise_accepts_equivalent_forms_of_one_answer():
    checksum = Exercise("Checksum, in 0x1234 form?", answer=0x3BF1, hint="h")
    for form in (0x3BF1, "0x3bf1", "0x3BF1", hex(0x3BF1), 15345, "15345"):
        assert checksum.check(form).right, form
    word = Exercise("Unmasked?", answer="wire", hint="h")
    assert word.check(b"wire").right and word.check("wire").right and not word.check(b"\xff").right
    key = Exercise("Accept?", answer=b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", hint="h")
    assert key.check("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=").right and key.check(b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=").right
    ms = Exercise("How long?", answer=206, hint="h", tolerance=1, unit="ms")
    for form in (206, "206 ms", "0.206 s", "206000 µs", "206.4"):
        assert ms.check(form).right, form
    assert not ms.check("206 B").right and not ms.check("soon").right and not ms.check(None).right
    assert as_number("1,448 B", "B") == 1448 and as_number("2 KiB", "B") == 2048 and as_number("x") is None


def test_exercise_diagnoses_anticipated_mistakes_and_gives_the_recipe_only_after_a_second_miss():
    q = Exercise("Bytes the client sent?", answer=439, hint="Every frame counts, even a bare ACK.",
                 recipe="sum(row.length for row in table if row.direction == 'C→S')",
                 mistakes=[(439 - 5 * 14, "you left out the 14-byte link header of each frame"),
                           (lambda v: v == 101, "that is the request alone; the handshake and ACKs are bytes too")])
    first = repr(q.check(369))
    assert "14-byte link header" in first and "sum(" not in first
    assert "request alone" in repr(q.check(101))
    q._misses = 0  # a fresh learner
    miss = repr(q.check(500))
    assert "Too high." in miss and "Every frame counts" in miss and "sum(" not in miss
    assert "sum(row.length" in repr(q.check(400)) and "Too low." in repr(q.check(400))
    shaped = Exercise("Even?", answer=None, hint="h", check=lambda v: v % 2 == 0)
    assert not shaped.check("text").right  # a check that raises on a wrongly typed answer says wrong


def test_prediction_one_step_off_is_never_right_and_says_its_band():
    p = Prediction("ms for 200 kB across 50 ms?", measure=lambda r: r["ms"], unit="ms", tolerance=0.2,
                   floor=10, step=lambda r: r["rtt"], spread="runs here vary by a few ms",
                   mistakes=[(lambda g, m: g < m - 25, "one round trip short: count the handshake's")],
                   explain=lambda g, m: "")
    run = {"ms": 311.0, "rtt": 50.0}
    late = p.check(250, run)
    assert not late and "one round trip short" in repr(late) and "±24.5 ms" in repr(late)
    assert "runs here vary" in repr(late)
    assert p.check(300, run).right and p.band(run) == 0.49 * 50


def test_worked_answers_fold_their_verdict():
    q = Exercise("How many?", answer=3, hint="count", explanation="yes")
    folded = q.solve(3)
    assert folded and repr(folded) == repr(q.check(3))  # nbval compares the text
    assert folded._repr_html_().startswith("<details class='netcourse-solution'>") and "<details open" not in folded._repr_html_()
    p = Prediction("ms?", measure=lambda r: r, unit="ms", explain=lambda g, m: "")
    assert p.solve(10, 10.0) and not p.solve(1, 10.0)


def test_prediction_compares_with_the_measurement_and_explains():
    p = Prediction("How many ms?", measure=lambda r: r["ms"], unit="ms", tolerance=0.2, floor=1.0,
                   explain=lambda g, m: f"because {m:g}")
    assert repr(p).startswith("🔮") and "How many ms?" in p._repr_html_()
    assert p.check(..., {"ms": 100}).pending
    right = p.check(110, {"ms": 100.0})
    assert right and "measured 100 ms" in repr(right) and "because 100" in repr(right)
    low = p.check(50, {"ms": 100.0})
    assert not low and "Too low." in repr(low) and "because 100" in repr(low)
    assert not p.check("soon", {"ms": 100.0}) and p.check(1.5, {"ms": 0.6})  # the floor
    assert "438 ms" in repr(p.check(438.432, {"ms": 438.432}))  # three significant figures


def test_doctor_report_table_and_exit_codes(monkeypatch):
    report = doctor.run_checks()
    assert report.ok
    names = [c.name for c in report.checks]
    for expected in ("python", "aiohttp", "scapy", "loopback server", "packet capture", "kernel packet filter", "capture capability", "lab widgets extension"):
        assert expected in names
    assert "The course can run here." in repr(report)
    failing = Report([Check("python", "FAIL", "2.7")])
    assert not failing.ok and "FAIL" in repr(failing)
    monkeypatch.setattr(doctor, "run_checks", lambda: failing)
    assert doctor.main() == 1


@pytest.mark.slow
def test_doctor_command_line():
    proc = subprocess.run([sys.executable, "-m", "netcourse", "doctor"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "packet capture" in proc.stdout and "The course can run here." in proc.stdout


@pytest.mark.slow
def test_images_are_drawn_from_shipped_recordings(tmp_path):
    from netcourse.course.images import generate_all

    paths = generate_all(tmp_path)
    assert paths and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_images_go_to_the_top_level_folder_the_notebooks_link():
    from pathlib import Path

    from netcourse.course.images import IMAGES

    root = Path(__file__).resolve().parent.parent
    assert IMAGES == root / "images"
    linked = {name for nb in (root / "notebooks").glob("*.ipynb") for name in re.findall(r"\.\./images/([\w.]+)", nb.read_text())}
    assert linked and all((IMAGES / name).exists() for name in linked)


def test_doctor_warns_when_the_capability_sits_on_a_shared_interpreter(monkeypatch):
    import os
    import sys

    monkeypatch.setattr(os, "getxattr", lambda path, name: b"\x01\x00\x00\x02", raising=False)
    monkeypatch.setattr(sys, "prefix", "/nonexistent-venv")
    check = doctor._capability()
    assert check.status == "WARN" and "shared interpreter" in check.detail and "make allow-capture" in check.detail
    monkeypatch.setattr(sys, "prefix", os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))))
    assert doctor._capability().status == "OK"


# -- the figures' typed inputs ---------------------------------------------------------------------------------

def _protocol_pairs():
    """Each figure input Protocol (course/plots, which may not import experiments) and the class that fills it."""
    from netcourse.clients.pollers import PollerResult, PollRecord
    from netcourse.course.plots import choosing, connections, heartbeats, offline, polling, streaming, tls, webhooks, wire
    from netcourse.experiments.choosing.harness import TransportRun
    from netcourse.experiments.choosing.failover import Failover
    from netcourse.experiments.choosing.scaleout import FanOut
    from netcourse.experiments.heartbeats.detection import Detection
    from netcourse.experiments.heartbeats.reconnect import Reconnecting, Storm
    from netcourse.experiments.offline.faults import Soak
    from netcourse.experiments.offline.online import OfflineRun
    from netcourse.experiments.polling.compare import PollingRun
    from netcourse.experiments.streaming.buffering import Buffering
    from netcourse.experiments.streaming.chunked import Boundaries
    from netcourse.experiments.tls.cost import Overhead
    from netcourse.experiments.tls.round_trips import RoundTrips
    from netcourse.experiments.tls.versions import Milestone
    from netcourse.experiments.transport.slow_start import Transfer
    from netcourse.experiments.webhooks.noise import Noise
    from netcourse.experiments.webhooks.retries import Outage
    from netcourse.traffic.tlsview import TLSConnection, TLSRecordView
    from netcourse.apps.webhooks import Attempt

    return [
        (polling.Poll, PollRecord), (polling.Poller, PollerResult), (polling.Polls, PollingRun),
        (choosing.TransportCost, TransportRun), (choosing.AwayAndBack, TransportRun), (choosing.Reach, FanOut),
        (choosing.NodeLost, Failover),
        (wire.Latencies, TransportRun), (connections.BulkTransfer, Transfer),
        (heartbeats.Trials, Detection), (heartbeats.Connections, Reconnecting), (heartbeats.StormLog, Storm),
        (offline.Arrivals, OfflineRun), (offline.SoakVerdict, Soak),
        (streaming.Delays, Buffering), (streaming.ByteRanges, Boundaries),
        (tls.Dated, Milestone), (tls.Records, TLSConnection), (tls.LadderRecord, TLSRecordView),
        (tls.FirstBytes, RoundTrips), (tls.EchoBytes, Overhead),
        (webhooks.Attempt, Attempt), (webhooks.AttemptLog, Outage), (webhooks.BurstCost, Noise),
    ]


def test_every_figure_input_is_filled_by_the_class_the_figure_draws():
    """The plots layer names what it reads as Protocols; a rename in an experiment must fail here, not in a cell."""
    import dataclasses
    import typing

    for proto, cls in _protocol_pairs():
        members = {m for m in proto.__dict__ if not m.startswith("_")} | set(typing.get_type_hints(proto))
        fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
        missing = sorted(m for m in members if m not in fields and not hasattr(cls, m))
        assert not missing, f"{cls.__qualname__} lacks {missing}, which plots.{proto.__qualname__} reads"



def test_a_prediction_measured_on_a_recording_says_so():
    class Cap:
        live = False

    class Run:
        capture = Cap()
        n = 70

    p = Prediction("How many?", measure=lambda r: r.n, unit="packets", explain=lambda g, m: "", from_capture=True)
    assert "the course's recording measured 70" in repr(p.check(70, Run()))
    Cap.live = True
    assert "your run measured 70" in repr(p.check(70, Run()))


def test_a_capture_question_on_a_recording_names_the_recording():
    from types import SimpleNamespace

    from netcourse.course.exercises import Exercise

    def question(live: bool) -> Exercise:
        cap = SimpleNamespace(live=live, table=lambda: [])
        run = SimpleNamespace(capture=cap, n=3)
        return Exercise("In your capture, how many?", answer=3, hint="count", kind="capture", source=run)

    replayed, live = question(False), question(True)
    assert repr(replayed).startswith("🔎 From the course's recording: In the course's recording, how many?")
    assert "From the course's recording." in replayed._repr_html_()
    assert repr(live).startswith("🔎 From your capture: In your capture, how many?")
