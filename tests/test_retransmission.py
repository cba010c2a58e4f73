"""A real TCP retransmission in a private network namespace, or its replay."""

from __future__ import annotations

import warnings

import pytest

from netcourse.experiments.transport import retransmission
from netcourse.runtime.notices import ReplayNotice
from netcourse.runtime.tcpinfo import listening_ports

from .conftest import retried

LIVE_REASON = retransmission.can_run_live()


@pytest.mark.slow
@pytest.mark.skipif(LIVE_REASON is not None, reason=f"live retransmission unavailable: {LIVE_REASON}")
@retried()
def test_live_retransmission_in_a_namespace_resends_the_same_segment():
    before = listening_ports()
    run = retransmission.tcp_retransmission()
    assert run.why_replayed is None and run.capture.live
    assert run.transmissions >= 2 and run.delivered
    rows = run.data_rows()
    assert len({r.seq for r in rows[: run.transmissions]}) == 1  # the same bytes, again
    assert all(g >= 150 for g in run.gaps_ms())  # Linux waits at least ~200 ms (RTO minimum / TLP)
    assert listening_ports() <= before  # nothing was left listening on the host


def test_replay_when_the_namespace_cannot_be_made(monkeypatch):
    monkeypatch.setattr(retransmission, "can_run_live", lambda: "it needs root to create a network namespace")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = retransmission.tcp_retransmission()
    assert not run.capture.live and run.why_replayed.startswith("it needs root")
    assert run.transmissions >= 2 and run.delivered
    notices = [w for w in caught if issubclass(w.category, ReplayNotice)]
    assert len(notices) == 1 and "cannot run here because it needs root" in str(notices[0].message)


def test_a_failing_child_falls_back_to_the_recording(monkeypatch):
    monkeypatch.setattr(retransmission, "can_run_live", lambda: None)
    monkeypatch.setattr(retransmission, "_run_child", lambda directory, timeout: "the namespace experiment failed (boom)")
    with pytest.warns(ReplayNotice, match="failed \\(boom\\)"):
        run = retransmission.tcp_retransmission()
    assert not run.capture.live
