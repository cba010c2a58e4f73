"""Notebook 10's own steps: the captured HTTP/2 connection read frame by frame, HPACK's table, the questions and
predictions (each right answer derived here another way, each anticipated mistake diagnosed), the stored loss
runs and the knob that draws them, and the figures."""

from __future__ import annotations

import types

import pytest
from matplotlib.figure import Figure

from netcourse.course.plots.http2 import first_byte_bars, header_blocks, page_progress
from netcourse.experiments.http2.frames import PATHS, h2_exchange
from netcourse.experiments.http2.hol import LOSSES, hol_knob, load_hol
from netcourse.experiments.http2.questions import (
    exercise_amplification,
    exercise_body_framing,
    exercise_path_bytes,
    exercise_tail_under_loss,
    predict_h1_page,
    predict_quic_first_byte,
)
from netcourse.protocols.h2frame import FrameType, encode


@pytest.fixture(scope="module")
def exchange():
    return h2_exchange()


def test_the_captured_connection_reads_as_rfc_9113_frames(exchange):
    sent, received = exchange.frames["C→S"], exchange.frames["S→C"]
    assert sent[0].type == FrameType.SETTINGS and received[0].type == FrameType.SETTINGS  # §3.4: SETTINGS first
    assert [f.stream for f in sent if f.type == FrameType.HEADERS] == [1, 3, 5]  # §5.1.1: odd, increasing
    assert any(f.type == FrameType.SETTINGS and "ACK" in f.flag_names() for f in sent)
    assert any(f.type == FrameType.WINDOW_UPDATE for f in sent)
    bodies = {}
    for f in received:
        if f.type == FrameType.DATA:
            assert len(f.payload) <= 16_384  # the default SETTINGS_MAX_FRAME_SIZE, never raised
            bodies[f.stream] = bodies.get(f.stream, 0) + len(f.payload)
    assert bodies == {1 + 2 * i: int(p.rsplit("=", 1)[1]) for i, p in enumerate(PATHS)}
    for f in sent[:3]:  # a frame's first nine bytes: length (24 bits), type, flags, stream (31 bits)
        head = encode(f)[:9]
        assert int.from_bytes(head[:3], "big") == len(f.payload) and head[3] == f.type
        assert int.from_bytes(head[5:9], "big") & 0x7FFF_FFFF == f.stream


def test_hpack_fills_its_table_with_the_first_request_and_the_later_ones_refer_to_it(exchange):
    first, second, third = exchange.blocks
    assert [dict(b.fields)[":path"] for b in exchange.blocks] == PATHS
    assert second.size < first.size / 1.5 and third.size < first.size / 1.5
    for block in exchange.blocks:
        assert block.plain > 2 * block.size  # header lines as HTTP/1.1 would write them
        assert all(size == len(name) + len(value) + 32 for name, value, size in block.table)  # RFC 7541 §4.1
    assert third.table[0][:2] == (":path", PATHS[2])  # the newest entry comes first (§2.3.3)


def test_the_frame_and_hpack_questions_take_their_answers_from_the_capture(exchange):
    framing = exercise_body_framing(exchange)
    frames = [f for f in exchange.frames["S→C"] if f.stream == 3 and f.type == FrameType.DATA]
    assert framing.check(9 * len(frames)) and framing.check(f"{9 * len(frames)} B")
    assert len(frames) == 2 and frames[-1].flags & 0x1  # END_STREAM rides the last DATA frame
    assert "MAX_FRAME_SIZE" in repr(framing.check(9))
    assert "HEADERS" in repr(framing.check(9 * (len(frames) + 1)))

    path = exercise_path_bytes(exchange)
    # another way: replay the first two requests into an HPACK encoder, then encode the third's :path alone
    import hpack

    encoder = hpack.Encoder()
    for block in exchange.blocks[:2]:
        encoder.encode(block.fields)
    alone = len(encoder.encode([(":path", PATHS[2])]))
    assert path.check(alone) and alone == exchange.blocks[2].size - 4
    assert "Huffman" in repr(path.check(len(PATHS[2])))
    assert "one byte each too" in repr(path.check(exchange.blocks[2].size - 2))


def test_the_amplification_question_counts_what_the_server_had_left_of_three_times():
    d = lambda way, size: types.SimpleNamespace(direction=way, size=size)  # noqa: E731
    flight = types.SimpleNamespace(datagrams=[d("C→S", 1200), d("S→C", 1200), d("S→C", 900), d("C→S", 1200),
                                              d("S→C", 500)])
    q = exercise_amplification(flight)
    assert q.check(3600 - 2100) and q.check("1,500 B")
    assert "whole allowance" in repr(q.check(3600)) and "UDP payloads only" in repr(q.check(3 * 1228 - 2100))


def test_the_loss_question_agrees_with_the_stored_runs_and_the_knob_draws_each_loss():
    when, runs = load_hol()
    assert "UTC" in when and [r.loss for r in runs] == list(LOSSES) and all(r.runs >= 5 for r in runs)
    at = {r.loss: r for r in runs}
    growth = {v: at[0.05].quantile(v, 0.95) / at[0.0].quantile(v, 0.95) for v in ("HTTP/1.1", "HTTP/2")}
    worst = "a" if growth["HTTP/1.1"] > growth["HTTP/2"] else "b"
    q = exercise_tail_under_loss(runs)
    assert q.check(worst) and q.check(f"({worst.upper()})") and q.check({"a": "HTTP/1.1", "b": "HTTP/2"}[worst])
    assert not q.check("b" if worst == "a" else "a") and "Measured" in repr(q.check("b" if worst == "a" else "a"))
    assert "HTTP/3 is not one of the two" in repr(q.check("c"))
    for loss in LOSSES:
        assert isinstance(hol_knob(runs, loss), Figure)
    with pytest.raises(ValueError, match="no stored runs at 3%"):
        hol_knob(runs, 0.03)


def test_the_predictions_take_a_round_trip_as_their_step_and_name_the_usual_models():
    pages = {"HTTP/1.1": types.SimpleNamespace(round_trips=6.1)}
    p = predict_h1_page()
    assert p.check(6, pages) and not p.check(5, pages) and not p.check(7, pages)
    assert "handshake" in repr(p.check(5, pages)) and "one request at a time" in repr(p.check(30, pages))
    fb = types.SimpleNamespace(seconds={"HTTP/3, QUIC": 0.212}, rtt_ms=100.0)
    q = predict_quic_first_byte()
    assert q.check(200, fb) and not q.check(300, fb) and not q.check(100, fb)
    assert "TCP + TLS 1.3" in repr(q.check(300, fb)) and "0-RTT" in repr(q.check(100, fb))


def test_the_figures_draw_from_plain_data():
    page = types.SimpleNamespace(version="HTTP/2", done=[0.2, 0.3], connections=1, rtt_ms=100.0, link="relay")
    assert isinstance(page_progress([page]), Figure)
    block = types.SimpleNamespace(stream=1, size=36, plain=106)
    assert isinstance(header_blocks([block]), Figure)
    assert isinstance(first_byte_bars([("QUIC", 2, 210.0)], 100.0), Figure)
