"""HTTP/3 over QUIC (issue 29): the course's server and client on aioquic, QUIC's handshake against TCP + TLS on
the link, and 0-RTT's replay caveat (RFC 9001 §9.2)."""

from __future__ import annotations

import time

import pytest

from netcourse.apps.http3 import H3Server
from netcourse.apps.tls import Pki
from netcourse.clients.http3 import fetch
from netcourse.errors import NetcourseError
from netcourse.runtime.registry import live_servers
from netcourse.runtime.waiting import run_async

from .conftest import retried


def test_many_requests_on_one_quic_connection_and_a_session_ticket_for_later():
    with Pki() as pki, H3Server(pki) as server:
        tickets: list = []
        paths = [f"/r/{i}?size=2000" for i in range(30)] + ["/r/big?size=200000", "/nope"]
        page = run_async(fetch("127.0.0.1", server.port, paths, cadata=pki.ca.cert_pem.bytes(), tickets=tickets))
        assert {page.status[p] for p in paths[:31]} == {200} and page.status["/nope"] == 404
        assert page.size["/r/big?size=200000"] == 200_000 and page.handshake < page.seconds
        assert tickets, "the server sends a session ticket after the handshake"
        again = run_async(fetch("127.0.0.1", server.port, ["/r/a"], cadata=pki.ca.cert_pem.bytes(),
                                session_ticket=tickets[0], early=True))
        assert again.status == {"/r/a": 200}
    assert server._background not in live_servers() and not server.running  # noqa: SLF001


def test_a_client_that_does_not_trust_the_certificate_gets_a_clear_error():
    with Pki() as pki, Pki() as other, H3Server(pki) as server:
        with pytest.raises(NetcourseError):
            run_async(fetch("127.0.0.1", server.port, ["/r/a"], cadata=other.ca.cert_pem.bytes(), timeout=3), 10)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["relay", "tap"])
@retried()
def test_on_the_link_quic_answers_in_two_round_trips_tcp_and_tls_in_three_and_0rtt_in_one(mode):
    from netcourse.experiments.http2.handshakes import first_byte
    from netcourse.network.link import modes

    if modes()[mode] is not None:
        pytest.skip(f"the {mode} link cannot run here: {modes()[mode]}")
    result = first_byte(rtt_ms=60, mode=mode)
    assert result.link == mode
    assert 2.8 <= result.round_trips("HTTP/1.1, TLS 1.3, TCP") <= 3.5
    assert 1.8 <= result.round_trips("HTTP/3, QUIC") <= 2.5
    assert 0.9 <= result.round_trips("HTTP/3, QUIC resumed, 0-RTT") <= 1.5


@pytest.mark.slow
@retried()
def test_a_replayed_0rtt_request_is_served_again_only_when_tickets_can_be_reused():
    from netcourse.experiments.http2.handshakes import replay_early_data

    runs = replay_early_data(60, mode="relay")
    reusable, single = runs["reusable tickets"], runs["single-use tickets"]
    assert reusable["first use of the ticket"] < 1.5 and reusable["the same ticket again"] < 1.5  # replayed
    assert single["first use of the ticket"] < 1.5 and single["the same ticket again"] >= 1.8  # early data refused


@pytest.mark.slow
@retried()
def test_a_nat_rebinding_resets_the_tcp_connection_and_quic_carries_on_from_the_new_address():
    from netcourse.experiments.http2.migration import migration

    runs = migration(rtt_ms=40, requests=6, rebind_after=3)
    tcp, quic = runs["TCP"], runs["QUIC"]
    assert tcp.outcomes[3] == "connection reset" and tcp.outcomes.count("ok") == 5
    assert tcp.connections == 2 and not tcp.survived
    assert quic.survived and quic.server_saw == 2 and "survived yes" in repr(quic)


def test_only_the_relay_can_rebind():
    from netcourse.errors import LinkError
    from netcourse.network.link import link, modes

    if modes()["tap"] is not None:
        pytest.skip("needs the tap link to show what it refuses")
    with link(rtt_ms=10, mode="tap") as net, pytest.raises(LinkError, match="relay mode"):
        net.rebind()


def test_the_quic_server_caps_connections_and_what_one_connection_may_ask_for(monkeypatch):
    from netcourse.apps import http3

    monkeypatch.setattr(http3, "MAX_CONNECTIONS", 2)
    monkeypatch.setattr(http3, "BUDGET", 300_000)
    with Pki() as pki, H3Server(pki) as server:
        cadata = pki.ca.cert_pem.bytes()
        # one connection asks for two answers of 200 kB at once: the second is over its budget
        page = run_async(fetch("127.0.0.1", server.port, ["/r/a?size=200000", "/r/b?size=200000", "/r/c?size=%C2%B2"],
                               cadata=cadata))
        assert sorted(page.status.values()) == [200, 200, 503] and page.size["/r/c?size=%C2%B2"] == 2000

        deadline = time.monotonic() + 5
        while server.live and time.monotonic() < deadline:  # the first connection's close takes a moment
            time.sleep(0.05)

        async def three_at_once():
            from netcourse.clients.http3 import session

            async with session("127.0.0.1", server.port, cadata=cadata) as one, \
                    session("127.0.0.1", server.port, cadata=cadata) as two:
                await one(["/r/x"])
                await two(["/r/y"])
                with pytest.raises(NetcourseError, match="refused or lost"):
                    async with session("127.0.0.1", server.port, cadata=cadata, timeout=2) as three:
                        await three(["/r/z"], wait=2)

        run_async(three_at_once(), 20)
        assert len(server.live) <= 2


def test_a_key_log_is_readable_by_its_owner_only(tmp_path):
    import os
    import stat

    keylog = tmp_path / "keys.txt"
    with Pki() as pki, H3Server(pki, keylog=keylog) as server:
        run_async(fetch("127.0.0.1", server.port, ["/r/a"], cadata=pki.ca.cert_pem.bytes()))
    assert stat.S_IMODE(os.stat(keylog).st_mode) == 0o600 and "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in keylog.read_text()


def test_a_webtransport_session_echoes_a_datagram_and_a_stream_and_a_connect_elsewhere_is_refused():
    from netcourse.clients.http3 import webtransport_echo

    with Pki() as pki, H3Server(pki) as server:
        cadata = pki.ca.cert_pem.bytes()
        steps = run_async(webtransport_echo("127.0.0.1", server.port, cadata=cadata, text=b"ping 1"))
        assert list(steps) == ["QUIC handshake", "session open (CONNECT, 200)", "datagram echoed", "stream echoed"]
        assert sorted(steps.values()) == list(steps.values())
        with pytest.raises(NetcourseError, match="refused the WebTransport session.*404"):
            run_async(webtransport_echo("127.0.0.1", server.port, cadata=cadata, path="/elsewhere"))


@pytest.mark.slow
@retried()
def test_on_the_link_each_webtransport_step_costs_one_round_trip():
    from netcourse.experiments.http2.webtransport import webtransport

    run = webtransport(60, mode="relay")
    steps = list(run.steps)
    for before, step in zip(steps, steps[1:]):
        extra = run.round_trips(step) - run.round_trips(before)
        assert 0.8 < extra < 1.6, (step, extra)


def test_too_many_bytes_on_one_stream_close_the_connection_with_excessive_load(monkeypatch):
    """aioquic buffers an HTTP/3 frame whole and widens its windows as data comes: the server counts what each
    stream brought and closes a connection past the limit, with a reason the client reports."""
    from netcourse.apps import http3 as app
    from netcourse.clients.http3 import webtransport_echo

    monkeypatch.setattr(app, "MAX_STREAM_IN", 200)
    with Pki() as pki, H3Server(pki) as server:
        with pytest.raises(NetcourseError, match="closed the QUIC connection: error 0x107.*more than 200 bytes"):
            run_async(webtransport_echo("127.0.0.1", server.port, cadata=pki.ca.cert_pem.bytes(), text=b"x" * 500))
        assert not server._background.errors  # nothing raised inside the server's loop
    with pytest.raises(ValueError, match="1 to 1,000 bytes"):
        run_async(webtransport_echo("127.0.0.1", 9, cadata=b"", text=b"x" * 1001))
