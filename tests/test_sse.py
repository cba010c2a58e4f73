"""Server-Sent Events: the WHATWG standard's own examples (§9.2.1, §9.2.6), every split of the input, and two
independent implementations as oracles (aiohttp-sse writing, httpx-sse's decoder reading)."""

from __future__ import annotations

import random

import pytest

from netcourse.errors import SSEParseError
from netcourse.protocols.sse import Event, SSEDecoder, comment, encode


def _events(stream: bytes, *, cut: int | None = None) -> list[Event]:
    d = SSEDecoder()
    if cut is None:
        return d.feed(stream)
    return d.feed(stream[:cut]) + d.feed(stream[cut:])


# -- the standard's examples ---------------------------------------------------------------------------


def test_stock_example_joins_data_lines():
    assert _events(b"data: YHOO\ndata: +2\ndata: 10\n\n") == [Event("YHOO\n+2\n10")]


def test_comment_id_and_an_empty_id_that_resets_it():
    stream = b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n"
    assert _events(stream) == [Event("first event", id="1"), Event("second event", id=""),
                               Event(" third event", id="")]  # only one space after the colon is removed


def test_empty_data_lines_and_an_unfinished_event():
    # "data" alone is a field with an empty value; the last block has no blank line: never dispatched
    assert _events(b"data\n\ndata\ndata\n\ndata:") == [Event(""), Event("\n")]


def test_a_space_after_the_colon_is_optional():
    assert _events(b"data:test\n\ndata: test\n\n") == [Event("test"), Event("test")]


def test_event_types():
    stream = b"event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nevent: add\ndata: 113411\n\n"
    assert [(e.event, e.data) for e in _events(stream)] == [("add", "73857293"), ("remove", "2153"), ("add", "113411")]


# -- the interpretation rules, one by one ------------------------------------------------------------------


def test_line_endings_cr_lf_and_crlf_are_all_line_ends():
    for end in (b"\n", b"\r", b"\r\n"):
        assert _events(b"data: a" + end + b"data: b" + end + end) == [Event("a\nb")]
    assert _events(b"data: a\r\n\rdata: b\n\r\n") == [Event("a"), Event("b")]


def test_a_leading_bom_is_dropped_once():
    assert _events(b"\xef\xbb\xbfdata: x\n\n") == [Event("x")]
    # a second BOM is part of the first line: the field name is then "\ufeffdata", unknown, ignored
    assert _events(b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n") == []


def test_id_with_null_is_ignored_and_the_id_carries_over():
    d = SSEDecoder()
    events = d.feed(b"id: 7\ndata: a\n\nid: x\x00y\ndata: b\n\ndata: c\n\n")
    assert [e.id for e in events] == ["7", "7", "7"] and d.last_event_id == "7"


def test_an_id_in_an_unfinished_event_does_not_count():
    d = SSEDecoder()
    d.feed(b"id: 1\ndata: a\n\nid: 2\ndata: b")
    assert d.last_event_id == "1"  # the event source's last event ID is set at dispatch (§9.2.6)


def test_an_id_without_data_still_sets_the_last_event_id():
    d = SSEDecoder()
    assert d.feed(b"id: 9\n\n") == [] and d.last_event_id == "9"


@pytest.mark.parametrize("value, expected", [(b"300", 300), (b"0", 0), (b" 300", 300), (b"3e2", None),
                                             (b"-1", None), (b"", None), (b"+5", None), (b"\xd9\xa3", None)])
def test_retry_only_when_ascii_digits(value, expected):
    d = SSEDecoder()
    events = d.feed(b"retry:" + value + b"\ndata: x\n\n")
    assert events[0].retry == expected and d.reconnection_time == expected


def test_unknown_fields_and_comments_are_ignored():
    assert _events(b": hi\nfoo: bar\ndata: x\n:\n\n") == [Event("x")]


def test_invalid_utf8_is_replaced_not_refused():
    assert _events(b"data: \xff\xfe ok\n\n") == [Event("\ufffd\ufffd ok")]


def test_a_line_over_the_limit_is_refused_and_an_endless_one_too():
    with pytest.raises(SSEParseError, match="over the limit"):
        SSEDecoder(max_line=10).feed(b"data: " + b"x" * 20 + b"\n\n")
    d = SSEDecoder(max_line=1 << 20)
    with pytest.raises(SSEParseError, match="no line end"):
        for _ in range(11):  # 10 MB without a newline, fed 1 MB at a time
            d.feed(b"y" * (1 << 20))


STREAM = (b"\xef\xbb\xbfretry: 1500\r\nid: 1\r\nevent: tick\r\ndata: one\r\ndata: two\r\n\r\n"
          b": keep-alive\rdata:three\r\rid: 2\ndata: f\xc3\xbcnf\n\nid\ndata: \xe2\x82\xac\n\ndata: unfinished")


@pytest.mark.parametrize("cut", range(len(STREAM) + 1))
def test_every_split_gives_the_same_events(cut):
    assert _events(STREAM, cut=cut) == _events(STREAM)


def test_one_byte_at_a_time():
    d = SSEDecoder()
    events = [e for i in range(len(STREAM)) for e in d.feed(STREAM[i:i + 1])]
    assert events == _events(STREAM) == [
        Event("one\ntwo", "tick", "1", 1500), Event("three", "message", "1"), Event("fünf", "message", "2"),
        Event("€", "message", ""),
    ]


def test_encode_round_trips():
    for event in [Event("a"), Event("multi\nline\n", "update", "42", 100), Event("", id="x")]:
        assert SSEDecoder().feed(encode(event)) == [event]
    assert encode(data="x", event_type="e", id="1", retry=5) == b"retry: 5\nid: 1\nevent: e\ndata: x\n\n"
    assert comment("ping") == b": ping\n"
    with pytest.raises(ValueError):
        encode(data="x", id="a\nb")


# -- oracles -------------------------------------------------------------------------------------------------


def _random_stream(rng: random.Random) -> bytes:
    """A stream with every event carrying data, mixed line ends, and now and then the rules' corner cases:
    a field name with no colon, an id holding NULL (ignored), a retry that is not all digits (ignored), an
    unknown field (ignored)."""
    out = []
    if rng.random() < 0.3:
        out.append("\ufeff")
    alphabet = "ab :€ü\tx"
    for _ in range(rng.randint(1, 6)):
        end = rng.choice(["\n", "\r", "\r\n"])
        lines = []
        if rng.random() < 0.3:
            lines.append(":" + "".join(rng.choices(alphabet, k=rng.randint(0, 5))))
        if rng.random() < 0.4:
            lines.append(f"id: {rng.randint(0, 999)}")
        if rng.random() < 0.4:
            lines.append(f"event: e{rng.randint(0, 3)}")
        if rng.random() < 0.2:
            lines.append(f"retry: {rng.randint(0, 5000)}")
        if rng.random() < 0.15:
            lines.append(f"id: {rng.randint(0, 9)}\0{rng.randint(0, 9)}")  # NULL in an id: ignored
        if rng.random() < 0.15:
            lines.append(f"retry: {rng.randint(0, 9)}x{rng.randint(0, 9)}")  # not all digits: ignored
        if rng.random() < 0.15:
            lines.append(rng.choice(["event", "id", "foo: bar", "retry"]))  # no colon, or an unknown field
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.15:
                lines.append("data")  # no colon: the field with an empty value
                continue
            sep = rng.choice([":", ": ", ":  "])
            lines.append("data" + sep + "".join(rng.choices(alphabet, k=rng.randint(0, 8))))
        rng.shuffle(lines)
        out.append(end.join(lines) + end + end)
    return "".join(out).encode()


def test_httpx_sse_reads_the_same_events_from_random_streams():
    pytest.importorskip("httpx_sse", reason="httpx-sse is a test dependency (pip install -e .[test])")
    from httpx_sse._decoders import SSEDecoder as TheirDecoder
    from httpx_sse._decoders import SSELineDecoder

    rng = random.Random(11)
    for _ in range(300):
        stream = _random_stream(rng)
        byte_cut = rng.randint(0, len(stream))  # ours gets bytes, cut anywhere (inside a UTF-8 sequence too)
        decoder = SSEDecoder()
        ours = decoder.feed(stream[:byte_cut]) + decoder.feed(stream[byte_cut:])
        lines, theirs = SSELineDecoder(), TheirDecoder()
        text = stream.decode("utf-8")
        text = text[1:] if text.startswith("\ufeff") else text  # httpx strips the BOM when it decodes the body
        got = []
        cut = rng.randint(0, len(text))
        for piece in (text[:cut], text[cut:], None):
            for line in (lines.flush() if piece is None else lines.decode(piece) if piece else []):
                sse = theirs.decode(line)
                if sse is not None:
                    got.append(Event(sse.data, sse.event or "message", sse.id, sse.retry))
        assert ours == got, stream


def test_aiohttp_sse_streams_are_read_exactly_and_it_sees_our_last_event_id():
    pytest.importorskip("aiohttp_sse", reason="aiohttp-sse is a test dependency (pip install -e .[test])")
    import aiohttp
    from aiohttp import web
    from aiohttp_sse import sse_response

    from netcourse.runtime.server import serve
    from netcourse.runtime.waiting import run_async

    sent = [Event("hello"), Event("two\nlines", "update", "5", 2500), Event("tschüß", "update", "6"),
            Event("", "message", "7")]
    seen_ids = []

    async def stream(request: web.Request) -> web.StreamResponse:
        async with sse_response(request) as resp:
            seen_ids.append(resp.last_event_id)
            for e in sent:
                await resp.send(e.data, id=e.id or None, event=None if e.event == "message" else e.event,
                                retry=e.retry)
        return resp

    app = web.Application()
    app.router.add_get("/events", stream)

    async def client(port: int) -> list[Event]:
        decoder, events = SSEDecoder(), []
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/events", headers={"Last-Event-ID": "4"}) as resp:
                assert resp.headers["Content-Type"].startswith("text/event-stream")
                async for piece in resp.content.iter_any():
                    events += decoder.feed(piece)
        return events

    with serve(app) as srv:
        got = run_async(client(srv.port), 20)
    assert got == [Event("hello"), Event("two\nlines", "update", "5", 2500), Event("tschüß", "update", "6"),
                   Event("", "message", "7")]
    assert seen_ids == ["4"]


def test_end_of_stream_discards_a_half_event_and_rearms_the_bom():
    d = SSEDecoder()
    assert d.feed(b"id: 1\ndata: a\n\nid: 2\nda") == [Event("a", id="1")]
    d.end_of_stream()  # the connection broke inside event 2
    assert d.last_event_id == "1"
    assert d.feed(b"\xef\xbb\xbfretry: 150\n\ndata: b\r") == [] and d.last_event_id == "1"
    d.end_of_stream()
    assert d.feed(b"\ndata: c\n\n") == [Event("c", id="1")]  # a LF at the start of a new stream is a line end
    assert d.reconnection_time == 150


def test_an_event_that_never_ends_is_refused_before_it_eats_the_memory():
    d = SSEDecoder(max_event=1000)
    with pytest.raises(SSEParseError, match="no blank line"):
        for _ in range(500):  # 3 characters of data each: past 1,000 at the 334th
            d.feed(b"data: xy\n")
