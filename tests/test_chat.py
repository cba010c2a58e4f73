"""Notebook 08's machinery: the chat server's log, sessions and resume protocol; the client's
local store and outbox."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from netcourse.apps.chat import ChatServer
from netcourse.clients.chat import ChatClient, LocalStore, handshake_as, login
from netcourse.clients.websocket import Address, RawClient
from netcourse.protocols.wsconn import CloseReceived, Message
from netcourse.protocols.wsframe import Frame, Opcode
from netcourse.runtime.registry import live_servers
from netcourse.runtime.server import serve

from .conftest import retried


@pytest.fixture
def chat(tmp_path):
    server = ChatServer(str(tmp_path / "server.db"), page=7)
    server.add_user("ada", "pw-ada", ("general", "ada-bob"))
    server.add_user("bob", "pw-bob", ("general", "ada-bob"))
    server.add_user("eve", "pw-eve", ("eve-only",))
    with serve(server.app()) as srv:
        yield server, srv, tmp_path
    assert not live_servers()


def _post(server, srv, n, conversation="general", sender="bob"):
    async def go():
        for i in range(n):
            await server.post(sender, conversation, f"{conversation} {i}")
            if i % 10 == 0:
                await asyncio.sleep(0)

    asyncio.run_coroutine_threadsafe(go(), srv.loop).result(30)


@pytest.mark.slow
def test_resume_gets_exactly_the_users_messages_and_nothing_of_others(chat):
    server, srv, tmp = chat
    _post(server, srv, 20)
    _post(server, srv, 5, "eve-only", sender="eve")
    store = LocalStore(str(tmp / "ada.db"))
    client = ChatClient(store, srv.host, srv.port, "ada", "pw-ada")
    assert client.connect() == 20 and store.ids() == server.ids_for("ada")
    _post(server, srv, 4, "ada-bob")
    assert client.connect() == 4 and store.ids() == server.ids_for("ada") and client.duplicates == 0
    assert not set(store.ids()) & set(server.ids_for("eve"))


@pytest.mark.slow
def test_no_gap_and_no_duplicate_when_messages_arrive_during_the_replay(chat):
    server, srv, tmp = chat
    _post(server, srv, 300)  # a backlog of 43 pages of 7
    store = LocalStore(str(tmp / "ada.db"))
    client = ChatClient(store, srv.host, srv.port, "ada", "pw-ada")
    during = threading.Thread(target=_post, args=(server, srv, 200))
    during.start()  # published while the replay runs
    client.connect(idle=0.5, limit=20)
    during.join()
    client.connect(idle=0.3)
    assert store.ids() == server.ids_for("ada") and len(store.ids()) == 500
    assert client.duplicates == 0


@pytest.mark.slow
def test_the_outbox_posts_once_even_when_resent(chat):
    server, srv, tmp = chat
    store = LocalStore(str(tmp / "ada.db"))
    key = store.queue("general", "written offline")
    client = ChatClient(store, srv.host, srv.port, "ada", "pw-ada")
    client.connect()
    store.db.execute("UPDATE outbox SET acked = 0")  # as if the ack had been lost: the client sends it again
    store.db.commit()
    client.connect()
    texts = [t for (t,) in __import__("sqlite3").connect(server.db_path).execute("SELECT text FROM messages")]
    assert texts.count("written offline") == 1 and not store.unacked() and key


def test_the_handshake_checks_cookie_and_origin_before_upgrading(chat):
    server, srv, _ = chat
    own = f"http://127.0.0.1:{srv.port}"
    status, cookie, header = login(srv.host, srv.port, "ada", "pw-ada")
    assert status == 204 and "HttpOnly" in header and "SameSite=Lax" in header and cookie
    assert handshake_as(srv.host, srv.port, "none", cookie=None, origin=own).status_line.endswith("401 Unauthorized")
    assert handshake_as(srv.host, srv.port, "forged", cookie="x" * 43, origin=own).status_line.endswith("401 Unauthorized")
    assert handshake_as(srv.host, srv.port, "cross-site", cookie=cookie, origin="http://evil.example").status_line.endswith("403 Forbidden")
    assert handshake_as(srv.host, srv.port, "no origin", cookie=cookie, origin=None).status_line.endswith("403 Forbidden")
    assert handshake_as(srv.host, srv.port, "good", cookie=cookie, origin=own).status_line.endswith("101 Switching Protocols")
    import sqlite3

    stored = [t for (t,) in sqlite3.connect(server.db_path).execute("SELECT token_hash FROM sessions")]
    assert cookie not in stored and len(stored[0]) == 64  # only the hash is kept


def test_bad_logins_and_an_sql_looking_name_stored_as_data(chat):
    server, srv, _ = chat
    import http.client

    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
    conn.request("POST", "/login", body="not json", headers={"Content-Type": "application/json"})
    assert conn.getresponse().status == 400
    conn.close()
    assert login(srv.host, srv.port, "ada", "wrong")[0] == 401
    name = "robert'); DROP TABLE messages;--"
    server.add_user(name, "pw", ("general",))
    assert login(srv.host, srv.port, name, "pw")[0] == 204
    assert server.last_id() == 0  # the messages table is still there, and queries still work


def _open(srv, cookie):
    ws = RawClient(Address(srv.host, srv.port), origin=f"http://127.0.0.1:{srv.port}",
                   extra_headers=(f"Cookie: session={cookie}",), nodelay=True)
    assert ws.accepted
    return ws


@pytest.mark.parametrize("resume", ["-1", "\"7\"", "1.5", "99", "{}", "true"])
def test_a_bad_resume_after_closes_with_1008(chat, resume):
    server, srv, _ = chat
    cookie = login(srv.host, srv.port, "ada", "pw-ada")[1]
    with _open(srv, cookie) as ws:
        ws.send(Frame(Opcode.TEXT, ('{"resume_after": %s}' % resume).encode()))
        events = ws.receive(2)
    assert isinstance(events[0], Message) and "error" in json.loads(events[0].payload)
    assert isinstance(events[1], CloseReceived) and events[1].code == 1008


def test_an_oversized_frame_closes_with_1009(chat):
    server, srv, _ = chat
    cookie = login(srv.host, srv.port, "ada", "pw-ada")[1]
    with _open(srv, cookie) as ws:
        ws.send(Frame(Opcode.TEXT, b'{"resume_after": 0}'))
        ws.send(Frame(Opcode.TEXT, b"x" * 20_000))
        ws.sock.settimeout(3)
        events = [e for e in ws.receive(1)]
    assert any(isinstance(e, CloseReceived) and e.code == 1009 for e in events), events


@retried()
def test_revoking_a_session_closes_its_open_socket(chat):
    server, srv, _ = chat
    cookie = login(srv.host, srv.port, "ada", "pw-ada")[1]
    with _open(srv, cookie) as ws:
        ws.send(Frame(Opcode.TEXT, b'{"resume_after": 0}'))
        deadline = time.monotonic() + 3
        while not server.sockets and time.monotonic() < deadline:
            time.sleep(0.01)
        closed = asyncio.run_coroutine_threadsafe(server.revoke("ada"), srv.loop).result(5)
        ws.sock.settimeout(3)
        events = ws.receive(1)
    assert closed == 1 and any(isinstance(e, CloseReceived) and e.code == 1008 for e in events)
    assert server.closed_for_revocation[0] < 0.5
    assert handshake_as(srv.host, srv.port, "revoked", cookie=cookie,
                        origin=f"http://127.0.0.1:{srv.port}").status_line.endswith("401 Unauthorized")


@pytest.mark.slow
def test_faults_lose_nothing_and_duplicate_nothing():
    from netcourse.experiments.offline.faults import FAULT_KINDS, fault_soak

    soak = fault_soak(messages=300, faults=12, seed=3)
    assert len(soak.faults) == 12 and len(soak.published) == 300
    assert soak.during_stream == 12, soak  # every fault struck while messages were being published
    assert {k for _, k, _ in soak.faults} == set(FAULT_KINDS), soak.faults  # this seed draws all three kinds
    cuts = sum(1 for _, k, _ in soak.faults if k == "connection cut mid-frame")
    assert len(soak.cut_frames) == cuts and any(reached for _, reached in soak.cut_frames)  # half a frame on the wire
    assert {i for i, _ in soak.cut_frames} <= set(soak.held)  # and the message came again, whole
    crashes = sum(1 for _, k, _ in soak.faults if k.startswith("server killed"))
    assert soak.server_exits == [-9] * crashes  # each "crash" was a real SIGKILL of the server's process
    assert soak.lost == [] and soak.duplicated == 0 and soak.in_order, soak
    assert not live_servers()


def test_the_soak_verdict_can_fail():
    from netcourse.experiments.offline.faults import Soak

    assert Soak([1, 2, 3], [1, 2, 3], []).in_order
    assert not Soak([1, 2, 3], [1, 3, 2], []).in_order  # all there, but not in the server's order
    missing = Soak([1, 2, 3], [1, 3], [])
    assert missing.lost == [2] and not missing.in_order
    assert Soak([1, 2], [1, 2, 2], []).duplicated == 1


def test_catch_up_reads_the_whole_backlog_in_pages():
    from netcourse.experiments.offline.catchup import catch_up

    run = catch_up(2000, page=100)
    assert run.messages == 2000 and run.per_second > 0 and run.server_db_bytes > 0


@pytest.mark.slow
def test_every_naive_variant_loses_or_duplicates_and_the_course_design_does_neither():
    from netcourse.experiments.offline.naive import naive_variants

    variants = {v.name: v for v in naive_variants(backlog=1000, during=300)}
    for name, v in variants.items():
        if name.startswith("the course's"):
            assert (v.lost, v.duplicated) == (0, 0), v
        else:
            assert v.lost + v.duplicated > 0, v
    assert variants["client advances last_id before the store commits"].lost == 50
    assert variants["cursor = the newest timestamp (whole seconds)"].lost == 5
    assert variants["client keeps last_id in memory (lost in a crash)"].duplicated == 100


@pytest.mark.slow
@pytest.mark.replayable
def test_the_happy_path_capture_and_its_questions():
    from netcourse.experiments.offline.online import (
        exercise_cookie_bytes,
        exercise_login_to_socket,
        happy_path,
    )

    run = happy_path(backlog=5, live=3)
    assert run.replayed == 5 and run.live == 3 and run.same
    assert "HttpOnly" in run.set_cookie and "SameSite=Lax" in run.set_cookie
    rows = run.capture.table()
    t204 = next(r.t for r in rows if r.app.startswith("204"))
    t101 = next(r.t for r in rows if r.app.startswith("101"))
    q = exercise_login_to_socket(run)
    assert q.check((t101 - t204) * 1000) and not q.check((t101 - t204) * 1000 + 0.2)
    line = next(l for l in run.handshake.split("\r\n") if l.lower().startswith("cookie:"))
    assert len(line) + 2 == 16 + 43 + 2  # 256 bits in base64url, no padding
    cookie = exercise_cookie_bytes(run, bits=320)
    assert cookie.check(16 + 54 + 2) and "your capture's line" in repr(cookie.check(len(line) + 2))
    assert "padding" in repr(cookie.check(16 + 56 + 2)) and "hex" in repr(cookie.check(16 + 80 + 2))
    from netcourse.experiments.offline.online import exercise_seam
    seam = exercise_seam()
    assert seam.check(0) and "neither path" not in repr(seam.check(1)) and "skipping" in repr(seam.check(2))


@pytest.mark.slow
def test_offline_and_back_replays_then_goes_live():
    from netcourse.experiments.offline.online import offline_and_back

    run = offline_and_back(held=10, offline=30, live=5, gap=0.02)
    assert run.before == 10 and run.replayed == 30 and len(run.arrivals) == 35 and run.same
    ids = [i for _, i, _ in run.arrivals]
    assert ids == sorted(ids) == list(range(11, 46))


@retried()
def test_attacks_and_bad_input_as_the_notebook_shows_them():
    from netcourse.experiments.offline.attacks import auth_attacks, bad_inputs

    attacks, revoked_after, leak = auth_attacks()
    answers = [a.answer for a in attacks]
    assert answers[:3] == ["HTTP/1.1 401 Unauthorized"] * 3 and answers[3] == "HTTP/1.1 403 Forbidden"
    assert answers[4].endswith("101 Switching Protocols") and answers[5].startswith("closed with 1008")
    assert revoked_after < 0.5 and "token=s3cr3t" in leak[0]
    bad = dict(bad_inputs())
    assert all(v.startswith("close 1008") for k, v in bad.items() if k.startswith("resume_after"))
    assert any(v == "close 1009" for v in bad.values())
    assert bad["a login that is not JSON"].startswith("400")


@pytest.mark.slow
@retried()
def test_resuming_across_a_link_costs_five_round_trips():
    from netcourse.experiments.offline.online import predict_resume_first_ms, resume_across_a_link

    run = resume_across_a_link(rtt_ms=100, backlog=20)
    assert run.messages == 20
    assert 190 <= run.login_ms <= 300 and 390 <= run.handshake_ms <= 550 and 490 <= run.first_message_ms <= 700, run
    p = predict_resume_first_ms(100)
    assert p.check(500, run) and not p.check(400, run) and "kept its cookie" in repr(p.check(300, run))


@pytest.mark.slow
def test_a_resend_after_lost_acks_is_stored_once_with_keys_and_twice_without():
    from netcourse.experiments.offline.naive import outbox_resend

    run = outbox_resend(written=3)
    assert (run.sent, run.stored_with_keys, run.stored_without_keys, run.unacked) == (6, 3, 6, 0), run
    assert not live_servers()


def test_the_repeats_prediction_is_checked_against_the_soak():
    from netcourse.experiments.offline.faults import Soak, predict_repeats

    run = Soak([1, 2], [1, 2], [], repeats=0)
    assert predict_repeats().check(0, run) and not predict_repeats().check(1, run)


def test_a_cut_mid_frame_leaves_the_client_half_a_frame_and_a_crash_cuts_sockets_not_yet_resumed(chat):
    from netcourse.protocols.wsframe import FrameDecoder, encode

    server, srv, _ = chat
    _, cookie, _ = login(srv.host, srv.port, "ada", "pw-ada")
    own = f"http://127.0.0.1:{srv.port}"
    with RawClient(Address(srv.host, srv.port), origin=own, extra_headers=(f"Cookie: session={cookie}",)) as ws:
        ws.send(Frame(Opcode.TEXT, json.dumps({"resume_after": 0}).encode()))
        deadline = time.monotonic() + 3
        while not server.sockets and time.monotonic() < deadline:
            time.sleep(0.005)
        server.arm_cut_mid_frame()
        _post(server, srv, 1)
        ws.sock.settimeout(3)
        data = b""
        while chunk := ws.sock.recv(4096):
            data += chunk
    msg = {"id": 1, "conversation": "general", "sender": "bob", "text": "general 0"}
    frame = encode(Frame(Opcode.TEXT, json.dumps(msg).encode()))
    assert server.cut_mid_frame == [(1, True)]
    assert data == frame[: len(frame) // 2] and FrameDecoder(role="client").feed(data) == []  # half, no frame

    # a socket upgraded but still waiting for its resume_after is cut too (no close frame): a crash spares none
    with RawClient(Address(srv.host, srv.port), origin=own, extra_headers=(f"Cookie: session={cookie}",)) as ws:
        deadline = time.monotonic() + 3
        while not server._open and time.monotonic() < deadline:
            time.sleep(0.005)
        assert asyncio.run_coroutine_threadsafe(server.cut_all(), srv.loop).result(5) == 1
        ws.sock.settimeout(3)
        assert ws.sock.recv(4096) == b""  # the end of the stream, and no close frame before it



@pytest.mark.slow
def test_one_cursor_for_all_conversations_loses_a_joined_ones_history_and_a_cursor_each_does_not():
    from netcourse.experiments.offline.membership import joins_later, predict_joined_history

    run = joins_later(history=10, later=2)
    assert run.oldest < run.newest < run.cursor  # every old message of 'ops' is below the one cursor
    assert run.one_cursor == 0 and run.per_conversation == 10
    p = predict_joined_history(10)
    assert p.check(0, run) and "skips them" in repr(p.check(10, run))
    assert not live_servers()


def test_a_resume_per_conversation_is_checked_like_one_for_all():
    from netcourse.experiments.offline.common import chat_server

    with chat_server() as (server, srv, d):
        own = f"http://127.0.0.1:{srv.port}"
        cookie = login(srv.host, srv.port, "ada", "correct horse")[1]
        answers = {}
        for value in ('["general"]', '{"": 1}', '{"general": -1}', '{"general": true}', '{"general": 5}'):
            with RawClient(Address(srv.host, srv.port), origin=own, extra_headers=(f"Cookie: session={cookie}",)) as ws:
                ws.send(Frame(Opcode.TEXT, ('{"resume": %s}' % value).encode()))
                ws.sock.settimeout(3)
                events = ws.receive(2)
            error = next((json.loads(e.payload).get("error", "") for e in events if isinstance(e, Message)), "")
            code = next((e.code for e in events if isinstance(e, CloseReceived)), None)
            answers[value] = (code, error)
    assert all(code == 1008 for code, _ in answers.values()), answers
    assert "at most" in answers['["general"]'][1] and "names" in answers['{"": 1}'][1]
    assert all("from 0 to" in answers[v][1] for v in ('{"general": -1}', '{"general": true}', '{"general": 5}'))
    assert not live_servers()


def test_resume_cursors_read_both_forms_and_follow_each_conversation():
    from netcourse.apps.chatresume import Cursors, read_resume

    one = read_resume({"resume_after": 40}, newest=50)
    assert isinstance(one, Cursors) and one.after("ops") == 40 and not one.by_conversation
    one.moved("general", 45)
    assert one.after("ops") == 45  # one cursor: every conversation moves with it (the trap)
    each = read_resume({"resume": {"general": 40}}, newest=50)
    assert each.after("general") == 40 and each.after("ops") == 0 and each.lowest() == 0
    each.moved("general", 45)
    assert each.after("general") == 45 and each.after("ops") == 0
    assert "ahead of the log" in read_resume({"resume_after": 51}, newest=50)
    assert "from 0 to" in read_resume({"resume": {"general": 51}}, newest=50)
    assert "first message must be" in read_resume(["resume_after", 1], newest=50)
