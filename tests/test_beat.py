"""The heartbeat framing (sans-I/O) and the reconnect back-off."""

from __future__ import annotations

import random
import statistics

import pytest

from netcourse.errors import BeatProtocolError
from netcourse.protocols.beat import MAX_FRAME, Decoder, Frame, Kind, encode
from netcourse.runtime.backoff import Backoff


def test_frames_survive_every_split_of_the_stream():
    frames = [Frame(Kind.PING, b"7"), Frame(Kind.TICK, b"12"), Frame(Kind.MSG, "héllo".encode()),
              Frame(Kind.PONG, b"7"), Frame(Kind.MSG, b"x" * (MAX_FRAME - 1)), Frame(Kind.CLOSE, b"bye")]
    stream = b"".join(encode(f.kind, f.body) for f in frames)
    assert stream[:3] == b"\x00\x02P"  # length 2 (kind + one byte), then the kind
    for cut in range(len(stream) + 1):
        d = Decoder()
        got = d.feed(stream[:cut]) + d.feed(stream[cut:])
        assert got == frames, cut
        assert not d.partial
    one_by_one = Decoder()
    assert [f for i in range(len(stream)) for f in one_by_one.feed(stream[i : i + 1])] == frames


def test_half_a_frame_is_visible_as_partial():
    d = Decoder()
    assert d.feed(encode(Kind.MSG, b"hello")[:4]) == [] and d.partial


@pytest.mark.parametrize("data, words", [
    (b"\x00\x00", "length 0"),
    ((MAX_FRAME + 1).to_bytes(2, "big") + b"M", "over the limit"),
    (b"\x00\x01Z", "unknown frame kind"),
    (encode(Kind.CLOSE, b"bye") + encode(Kind.PING), "after CLOSE"),
])
def test_bad_frames_are_refused_with_a_reason(data, words):
    with pytest.raises(BeatProtocolError, match=words):
        Decoder().feed(data)


def test_encode_refuses_an_oversized_body():
    with pytest.raises(BeatProtocolError):
        encode(Kind.MSG, b"x" * MAX_FRAME)


def test_backoff_is_capped_exponential_with_full_jitter():
    b = Backoff(0.1, 2.0, rng=random.Random(1))
    assert [b.ceiling(n) for n in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    delays = [b.next() for _ in range(2000)]
    assert all(0 <= d <= b.ceiling(n) for n, d in enumerate(delays))
    late = delays[10:]
    assert max(late) <= 2.0 and 0.85 <= statistics.mean(late) <= 1.15  # uniform on [0, cap]: mean cap / 2
    b.reset()
    assert b.failures == 0 and b.next() <= 0.1
    with pytest.raises(ValueError):
        Backoff(0, 1)


def test_backoff_without_jitter_waits_the_ceiling():
    b = Backoff(0.05, 0.4, jitter=False)
    assert [round(b.next(), 3) for _ in range(6)] == [0.05, 0.1, 0.2, 0.4, 0.4, 0.4]
