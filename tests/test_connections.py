"""Notebook 01's experiments: sockets, duplex, ports, TIME_WAIT."""

from __future__ import annotations

import os
import threading

import pytest

from netcourse.experiments.connections.ports import (
    assigned_ports,
    ephemeral_range,
    many_clients,
    privileged_bind,
    well_known_ports,
)
from netcourse.experiments.connections.sockets import connection_ends, full_duplex
from netcourse.experiments.connections.time_wait import exercise_time_wait_load, time_wait
from netcourse.runtime.tcpinfo import tcp_sockets
from netcourse.traffic.packets import C2S, S2C

from .conftest import LIVE


def test_connection_ends_mirror_each_other():
    ends = connection_ends()
    assert ends.mirrored
    assert ends.server_local == ends.listening
    assert ends.four_tuple == ("127.0.0.1", ends.client_local.port, "127.0.0.1", ends.listening.port)
    assert str(ends.client_local) == f"127.0.0.1:{ends.client_local.port}"


@pytest.mark.replayable
def test_full_duplex_delivers_both_ways_and_interleaves():
    threads = threading.active_count()
    run = full_duplex()
    assert run.client_received == b"".join(b"S%d;" % i for i in range(8))
    assert run.server_received == b"".join(b"C%d;" % i for i in range(8))
    directions = run.data_directions()
    assert directions.count(C2S) >= 1 and directions.count(S2C) >= 1
    assert run.interleaved and run.switches >= 2
    assert threading.active_count() == threads
    if LIVE:
        assert run.capture.live
        assert directions.count(C2S) == 8 and directions.count(S2C) == 8  # TCP_NODELAY: one write, one segment


def test_ports_tables_and_ranges():
    names = {name: port for name, port, _ in well_known_ports()}
    assert names["http"] == 80 and names["https"] == 443
    low, high = ephemeral_range()
    assert 1024 <= low < high <= 65535
    assert ephemeral_range("/nonexistent") is None


def test_assigned_ports_are_distinct_ephemeral_and_cleaned_up():
    low, high = ephemeral_range()
    ports = assigned_ports(20)
    assert len(ports) == 20 and len(set(ports)) == 20
    assert all(low <= p <= high for p in ports)
    assert not [e for e in tcp_sockets() if e.local[1] in ports and e.state == "ESTABLISHED"]
    with pytest.raises(ValueError):
        assigned_ports(0)


@pytest.mark.slow
def test_an_ordinary_user_cannot_bind_port_80():
    attempt = privileged_bind(80)
    if attempt.unprivileged_port_start is not None and attempt.unprivileged_port_start <= 80:
        pytest.skip("this machine lets ordinary users bind port 80")
    assert attempt.error == "EACCES"
    assert "ordinary user" in repr(attempt) and "EACCES" in repr(attempt)


@pytest.mark.skipif(os.geteuid() != 0, reason="checks that root drops privileges in a child")
def test_root_still_reports_what_an_ordinary_user_sees_and_stays_root():
    assert privileged_bind(80).error == "EACCES"
    assert os.geteuid() == 0


def test_one_listening_port_many_connections():
    crowd = many_clients(5)
    assert crowd.same_server_port
    assert len(set(crowd.client_ports)) == 5
    assert crowd.kernel_states() == {"ESTABLISHED": 5, "LISTEN": 1}


def test_time_wait_is_on_the_side_that_closed_first_and_reuseaddr_needs_both():
    tw = time_wait()
    assert tw.client_closes_first == ("TIME_WAIT", "gone")
    assert tw.server_closes_first == ("gone", "TIME_WAIT")
    assert tw.restart == {
        (False, False): "EADDRINUSE",
        (False, True): "EADDRINUSE",
        (True, False): "EADDRINUSE",
        (True, True): None,
    }
    assert "works" in tw.restart_table()


def test_exercises_check_against_the_learners_connection():
    q2 = exercise_time_wait_load(1000, 60)
    assert q2.check(60_000) and q2.check("60,000") and not q2.check(1000)
    assert "the server" in repr(q2.check(0)) and "client's" in repr(q2.check(28232))
