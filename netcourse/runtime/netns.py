"""Network namespaces for the emulated link: make them, enter them from one thread, remove them.

A Linux network namespace is a whole private network stack: its own interfaces, addresses, routes
and sockets. The emulated link (``netcourse.network``) puts the server and the client in two
namespaces of their own, so nothing of the link ever exists in the machine's own network.

Entering a namespace is per *thread*: ``setns(2)`` moves only the calling thread, and the sockets it
creates afterwards belong to that namespace. The course enters namespaces only from the threads it
starts for the purpose (a server's thread, a client's thread: ``waiting.in_thread(fn, namespace=...)``);
the notebook kernel's main thread never changes namespace. Work such a thread hands to *another* thread
(``asyncio.to_thread``, a resolver's executor) runs outside the namespace. Needs root (CAP_SYS_ADMIN) and
the ``ip`` command (iproute2).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess

from ..errors import NamespaceError

__all__ = ["NETNS_DIR", "available", "create", "remove", "enter", "ip"]

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000  # linux/sched.h

_libc = ctypes.CDLL(None, use_errno=True)


def available() -> str | None:
    """None if namespaces can be used here; otherwise the reason they cannot."""
    if not hasattr(os, "geteuid") or not os.path.exists("/proc/self/ns/net"):
        return "it needs Linux network namespaces"
    if os.geteuid() != 0:
        return "it needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    return None


def ip(*args: str, namespace: str | None = None) -> None:
    """Run one ``ip`` command (inside ``namespace`` when given); a failure raises ``NamespaceError``."""
    cmd = ["ip"] + (["-n", namespace] if namespace else []) + list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    if proc.returncode != 0:
        raise NamespaceError(f"`{' '.join(cmd)}` failed: {proc.stderr.strip()}")


def create(name: str) -> str:
    """Create a namespace (``ip netns add``) with its loopback up; returns its path."""
    ip("netns", "add", name)
    try:
        ip("link", "set", "lo", "up", namespace=name)
    except NamespaceError:
        remove(name)
        raise
    return os.path.join(NETNS_DIR, name)


def remove(name: str) -> None:
    """Remove a namespace; its interfaces go with it once no thread or socket uses it any more."""
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def enter(path: str) -> None:
    """Move the *calling thread* into the network namespace at ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NamespaceError(f"could not enter the network namespace {path}: {os.strerror(err)}")
    finally:
        os.close(fd)
