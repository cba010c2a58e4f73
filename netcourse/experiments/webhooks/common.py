"""Notebook 07's shared pieces: the course's demo secret and a temporary folder for the SQLite files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time

__all__ = ["SECRET", "workdir"]


# a fixed, published-looking secret so that the stored notebook and its recording agree (a course secret,
# never a real one)
SECRET = "whsec_bmV0Y291cnNlLXdlYmhvb2tzLWRlbW8tc2VjcmV0IQ=="


@contextlib.contextmanager
def workdir():
    """A temporary folder for the outbox and inbox databases, removed on the way out, even when an interrupt
    lands while a sender's thread is still closing its database (SQLite may create its journal file after
    the removal has listed the folder: the removal is retried for up to a second)."""
    d = tempfile.mkdtemp(prefix="netcourse-webhooks-")
    try:
        yield d
    finally:
        for _ in range(20):
            shutil.rmtree(d, ignore_errors=True)
            if not os.path.exists(d):
                break
            time.sleep(0.05)
