"""A learner's session: every code cell of a notebook run three times in one kernel. After the first round
nothing the course starts may pile up: threads, file descriptors, listening sockets, child processes. Memory
may grow a little (IPython keeps every result in Out, widgets stay alive), within a stated bound.

The attack review ran this by hand (../shared/reviews/attack.md, "Learner soak"); tools/soak.py makes it a
test and a ``make bench`` row.
"""

from __future__ import annotations

import pytest

pytest.importorskip("jupyter_client")

from netcourse.tools.soak import rounds  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.once]

RSS_BOUND_MB = 60  # growth allowed from the end of round 1 to the end of round 3 (measured: 8 to 20 MB a round)


@pytest.mark.parametrize("notebook", ["08_offline_messaging"])  # the heaviest: child processes, SIGKILLs, a
# soak; make bench runs three rounds of 03, 05 and 08
def test_three_rounds_in_one_kernel_grow_nothing_but_a_little_memory(notebook):
    r = rounds(notebook, 3)
    assert not [e for x in r for e in x.errors], [x.errors for x in r]
    first = r[1]
    for later in r[2:]:
        assert (later.threads, later.fds, later.listening, later.children) == (
            first.threads, first.fds, first.listening, first.children), r
    assert r[-1].rss_mb - first.rss_mb < RSS_BOUND_MB, r
    assert first.listening == r[0].listening and first.children == 0, r  # nothing left from round 1 either
