"""Notebook 07's shared pieces: the course's demo secret and a temporary folder for the SQLite files.
"""

from __future__ import annotations

import contextlib
import tempfile

__all__ = ["SECRET", "workdir"]


# a fixed, published-looking secret so that the stored notebook and its recording agree (a course secret,
# never a real one)
SECRET = "whsec_bmV0Y291cnNlLXdlYmhvb2tzLWRlbW8tc2VjcmV0IQ=="


@contextlib.contextmanager
def workdir():
    with tempfile.TemporaryDirectory(prefix="netcourse-webhooks-") as d:
        yield d
