"""The course as an ordinary learner gets it: no capture rights, replayed captures, and still green.

When the suite runs as root, this test copies the project to /tmp, and runs `make test` there as a
throwaway system user, with a venv built from /usr/bin/python3 (a venv made from a Python under
/root cannot be run by another user). Everything must pass, nbval over every notebook included:
the notebooks replay the shipped recordings. Run as an ordinary user, the whole suite already is
this test, so it skips.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
USER = "nclearner"
BASE = Path("/tmp/netcourse-unprivileged")
SYSTEM_PYTHON = "/usr/bin/python3"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="already unprivileged: the whole suite is this test"),
]


def _ensure_user() -> None:
    try:
        pwd.getpwnam(USER)
        return
    except KeyError:
        pass
    if not shutil.which("useradd"):
        pytest.skip("useradd is not available to create a throwaway user")
    subprocess.run(
        [shutil.which("useradd"), "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
        check=True,
        capture_output=True,
    )


def _tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    return [f for f in out.decode().split("\0") if f and (ROOT / f).is_file()]


def test_make_test_passes_for_an_ordinary_user():
    if not Path(SYSTEM_PYTHON).exists() or not shutil.which("runuser") or not shutil.which("make"):
        pytest.skip(f"needs {SYSTEM_PYTHON}, runuser and make")
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: cannot tell which files to copy")
    _ensure_user()
    src, home = BASE / "src", BASE / "home"
    shutil.rmtree(src, ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)  # kept between runs: the user's pip cache lives here
    for name in _tracked_files():
        target = src / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    subprocess.run(["chown", "-R", USER, str(BASE)], check=True)
    os.chmod(BASE, 0o755)
    env = [f"HOME={home}", "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", f"CI={os.environ.get('CI', '')}"]
    proc = subprocess.run(
        [shutil.which("runuser"), "-u", USER, "--", "/usr/bin/env", "-i", *env,
         shutil.which("make"), "-C", str(src), "test", f"PYTHON={SYSTEM_PYTHON}"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    assert proc.returncode == 0, tail
    summary = [line for line in proc.stdout.splitlines() if re.match(r"=+ .* in [\d.]+s", line)][-1]
    assert " passed" in summary and " failed" not in summary, tail
    # It really ran without capture rights: the live-only tests skipped, the notebooks replayed.
    assert "skipped" in summary, tail
    assert "notebooks/00_start_here.ipynb" in proc.stdout
