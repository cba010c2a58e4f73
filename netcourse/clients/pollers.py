"""The polling lesson's clients (notebook 03): a short poller, a long poller, and the notes' naive long
poller, each an aiohttp client on one kept-alive connection against ``apps.polling``'s server.

Each returns a ``PollerResult``: every message id with the moment it arrived, every poll with its send and
answer times, the gaps the server reported (410), and the connection's ``TCP_INFO`` at the end.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..runtime.tcpinfo import tcp_info

__all__ = ["CLIENT_HEADERS", "PollRecord", "PollerResult", "short_poller", "long_poller", "naive_long_poller"]


CLIENT_HEADERS = {"User-Agent": "netcourse-poller", "Accept-Encoding": "identity"}


@dataclass
class PollRecord:
    """One poll: when it was sent and answered (perf_counter seconds), and how many messages came."""

    sent: float
    answered: float
    count: int


@dataclass
class PollerResult:
    """What one poller did.

    Attributes:
        name: "short 0.5 s", "long", ...
        received: (message id, perf_counter seconds when received), in order of receipt.
        polls: every request.
        errors: connection errors met (and retried after).
        gaps: times the server said messages had been evicted before this poller got them (410).
        socket_info: TCP_INFO of the client's connection at the end (None off Linux).
        client_port: the client's local port (one keep-alive connection).
    """

    name: str
    received: list[tuple[int, float]] = field(default_factory=list)
    polls: list[PollRecord] = field(default_factory=list)
    errors: int = 0
    gaps: int = 0
    socket_info: Any = None
    client_port: int | None = None
    _sockets: list = field(default_factory=list, repr=False)

    @property
    def requests(self) -> int:
        """Poll requests made."""
        return len(self.polls)

    @property
    def empty(self) -> int:
        """Polls answered with no message."""
        return sum(1 for p in self.polls if p.count == 0)

    @property
    def ids(self) -> list[int]:
        """Message ids in the order received."""
        return [i for i, _ in self.received]


async def _poll(session: aiohttp.ClientSession, url: str, params: dict[str, str], result: PollerResult) -> dict:
    sent = time.perf_counter()
    async with session.get(url, params=params) as resp:
        if resp.status == 410:  # our cursor fell out of the log: count the gap, start again
            data = await resp.json()
            result.gaps += 1
            data["messages"] = []
        else:
            resp.raise_for_status()
            data = await resp.json()
    if result.client_port is None and result._sockets:
        result.client_port = result._sockets[0].getsockname()[1]
    now = time.perf_counter()
    for m in data["messages"]:
        result.received.append((m["id"], now))
    result.polls.append(PollRecord(sent, now, len(data["messages"])))
    return data


def _advance(cursor: int, epoch: str | None, data: dict) -> tuple[int, str]:
    """The cursor after an answer: the last id received; back to 0 if the server restarted (new epoch)."""
    if epoch is not None and data["epoch"] != epoch:
        cursor = 0  # a new server run: ids started again from 1
    if "resync_after" in data:
        cursor = data["resync_after"]
    if data["messages"]:
        cursor = data["messages"][-1]["id"]
    return cursor, data["epoch"]


def _session(result: PollerResult) -> aiohttp.ClientSession:
    """One keep-alive connection per poller (the realistic case), whose socket we keep a handle on
    so that its TCP_INFO can be read at the end."""

    def make_socket(addr_info: tuple) -> socket.socket:
        family, kind, proto = addr_info[0], addr_info[1], addr_info[2]
        sock = socket.socket(family, kind, proto)
        result._sockets.append(sock)
        return sock

    connector = aiohttp.TCPConnector(limit=1, socket_factory=make_socket)
    return aiohttp.ClientSession(connector=connector, headers=CLIENT_HEADERS)


def _finish(result: PollerResult) -> None:
    """Read TCP_INFO of the poller's (last, still open) connection before the session closes it."""
    for sock in reversed(result._sockets):
        if sock.fileno() != -1:
            try:
                result.socket_info = tcp_info(sock)
            except OSError:
                continue
            break
    result._sockets.clear()


async def short_poller(base_url: str, interval: float, until: float, *, name: str | None = None) -> PollerResult:
    """Ask for new messages every ``interval`` seconds (on a fixed schedule) until ``until``.

    ``until`` is a perf_counter time. A last poll at the end collects what is left.
    """
    result = PollerResult(name or f"short {interval:g} s")
    cursor, epoch = 0, None
    async with _session(result) as session:
        tick = time.perf_counter()
        while True:
            params = {"after": str(cursor)} | ({"epoch": epoch} if epoch else {})
            data: dict = {}
            try:
                data = await _poll(session, base_url + "/messages", params, result)
                cursor, epoch = _advance(cursor, epoch, data)
            except aiohttp.ClientConnectionError:
                result.errors += 1
            if time.perf_counter() >= until:
                break
            if data.get("more"):
                continue  # a full page: the rest at once, not at the next tick
            tick += interval
            await asyncio.sleep(max(0.0, tick - time.perf_counter()))
        _finish(result)
    return result


async def long_poller(base_url: str, wait: float, until: float, *, name: str = "long") -> PollerResult:
    """Ask, wait up to ``wait`` seconds for an answer, and ask again at once, data or not.

    Stops asking at ``until`` (perf_counter time); the last poll is a short one that collects leftovers.
    """
    result = PollerResult(name)
    cursor, epoch = 0, None
    async with _session(result) as session:
        while True:
            remaining = until - time.perf_counter()
            hold = max(0.0, min(wait, remaining))
            params = {"after": str(cursor), "wait": f"{hold:.3f}"} | ({"epoch": epoch} if epoch else {})
            try:
                data = await _poll(session, base_url + "/messages", params, result)
                cursor, epoch = _advance(cursor, epoch, data)
            except aiohttp.ClientConnectionError:
                result.errors += 1
                await asyncio.sleep(0.05)  # a restarting server: try again shortly
            if remaining <= 0:
                break
        _finish(result)
    return result


async def naive_long_poller(base_url: str, wait: float, until: float) -> PollerResult:
    """The notes' version: ask again only *after receiving data*; after a timeout, stop. (A bug.)"""
    result = PollerResult("long, re-asks only after data")
    cursor = 0
    async with _session(result) as session:
        while time.perf_counter() < until:
            data = await _poll(session, base_url + "/messages", {"after": str(cursor), "wait": f"{wait:.3f}"}, result)
            if not data["messages"]:
                break  # "else not"
            cursor = data["messages"][-1]["id"]
        _finish(result)
    return result
