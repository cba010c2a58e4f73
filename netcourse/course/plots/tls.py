"""Notebook 09's figures: the SSL/TLS timeline, a handshake's ladder, round trips to the first byte, record overhead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ...traffic.packets import C2S
from .draw import arrow, figure

__all__ = ["tls_timeline", "tls_ladder", "tls_round_trips", "tls_overhead", "Dated", "Records", "FirstBytes",
           "EchoBytes"]


class Dated(Protocol):
    """A version's date (``experiments.tls.versions.Milestone``): kind is "ssl", "tls" or "retired"."""

    @property
    def year(self) -> float: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def source(self) -> str: ...


class LadderRecord(Protocol):
    @property
    def direction(self) -> str: ...
    @property
    def encrypted(self) -> bool: ...
    @property
    def decrypted(self) -> bool: ...
    @property
    def label(self) -> str: ...


class Records(Protocol):
    """One TLS connection's records (``traffic.tlsview.TLSConnection``)."""

    @property
    def records(self) -> Sequence[LadderRecord]: ...


class FirstBytes(Protocol):
    """Time to first byte per case (``experiments.tls.round_trips.RoundTrips``): (case, round trips, ms)."""

    @property
    def rows(self) -> Sequence[tuple[str, int, float]]: ...
    @property
    def rtt_ms(self) -> float: ...
    @property
    def mode(self) -> str: ...


class EchoBytes(Protocol):
    """Bytes of one echo, plain and over TLS (``experiments.tls.cost.Overhead``)."""

    @property
    def body(self) -> int: ...
    @property
    def plain(self) -> int: ...
    @property
    def tls12(self) -> int: ...
    @property
    def tls13(self) -> int: ...
    @property
    def records12(self) -> int: ...
    @property
    def records13(self) -> int: ...


_TLS_KINDS = {"ssl": ("#e53935", "SSL (Netscape)"), "tls": ("#1565c0", "TLS (IETF)"), "retired": ("#757575", "retired by RFC")}


def tls_timeline(milestones: Sequence[Dated], *, ax: Axes | None = None) -> Figure:
    """SSL and TLS versions on a time axis, and the RFCs that retired the old ones."""
    fig, ax = figure(ax, (10, 3.4))
    for i, m in enumerate(milestones):
        colour, _ = _TLS_KINDS[m.kind]
        y = 1 if m.kind != "retired" else -1
        level = y * (0.6 + 0.5 * (i % 2))
        ax.vlines(m.year, 0, level, color=colour, lw=1.2)
        ax.plot([m.year], [0], "o", color=colour, ms=6)
        label = m.name + "\n" + (m.source.split(":")[0].split(";")[0].split(" (")[0] if m.kind != "ssl" else "Netscape")
        ax.text(m.year, level + (0.08 if y > 0 else -0.08), label, ha="center", va="bottom" if y > 0 else "top",
                fontsize=8.5, color=colour)
    ax.axhline(0, color="#424242", lw=1)
    ax.set_ylim(-2.0, 2.0)
    ax.set_xlim(1993, 2024)
    ax.set_yticks([])
    ax.spines[["top", "right", "left"]].set_visible(False)
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=label) for c, label in _TLS_KINDS.values()]
    ax.legend(handles=handles, loc="lower left", fontsize=8, frameon=False)
    ax.set_title("Versions above the line, their retirement below")
    return fig


def tls_ladder(connection: Records, *, ax: Axes | None = None, title: str | None = None, max_records: int = 20) -> Figure:
    """The records of one TLS connection as a ladder, labelled with what each carried."""
    records = connection.records[:max_records]
    fig, ax = figure(ax, (8.5, 0.42 * len(records) + 1.4))
    for x, name in ((0.0, "client"), (1.0, "server")):
        ax.plot([x, x], [0, len(records) + 0.5], color="#424242", lw=2)
        ax.text(x, -0.35, name, ha="center", va="bottom", fontsize=11, weight="bold")
    for i, r in enumerate(records, start=1):
        x0, x1 = (0.0, 1.0) if r.direction == C2S else (1.0, 0.0)
        colour = "#2e7d32" if not r.encrypted else ("#6a1b9a" if r.decrypted else "#9e9e9e")
        arrow(ax, x0, i - 0.15, x1, i + 0.15, colour, 1.5, False)
        ax.text(0.5, i - 0.08, r.label, ha="center", va="bottom", fontsize=8.5, color=colour,
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
    if len(connection.records) > len(records):
        ax.text(0.5, len(records) + 0.6, f"... and {len(connection.records) - len(records)} more records",
                ha="center", fontsize=9)
    ax.text(-0.3, len(records) + 0.9, "green: in clear · purple: encrypted, opened with the key log · grey: encrypted",
            fontsize=8, color="#616161")
    ax.set_xlim(-0.3, 1.3)
    ax.set_ylim(len(records) + 1.2, -0.9)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return fig


def tls_round_trips(run: FirstBytes, *, ax: Axes | None = None) -> Figure:
    """Time to the first response byte per case: measured bars beside theory (round trips × RTT)."""
    fig, ax = figure(ax, (8, 3.4))
    names = [c for c, _, _ in run.rows]
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [t * run.rtt_ms for _, t, _ in run.rows], width=0.4, color="#bdbdbd",
           label="theory: round trips × RTT")
    ax.bar([x + 0.2 for x in xs], [m for _, _, m in run.rows], width=0.4, color="#1565c0", label=f"measured ({run.mode} link)")
    for x, (_, t, m) in zip(xs, run.rows):
        ax.text(x + 0.2, m, f"{m:.0f}", ha="center", va="bottom", fontsize=8)
        ax.text(x - 0.2, t * run.rtt_ms, f"{t} RTT", ha="center", va="bottom", fontsize=8, color="#616161")
    ax.set_xticks(list(xs), names, fontsize=9)
    ax.set_ylabel("ms to first response byte")
    ax.set_title(f"A fresh connection across a {run.rtt_ms:g} ms round trip")
    ax.legend(fontsize=8, frameon=False, loc="upper right")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def tls_overhead(rows: Sequence[EchoBytes], chosen: EchoBytes, *, ax: Axes | None = None) -> Figure:
    """Left: overhead bytes per exchange against body size (log). Right: one size's bytes, plain vs TLS."""
    if ax is None:
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4), layout="constrained")
        plt.close(fig)
    else:
        fig, left = ax.figure, ax
        right = None
    sizes = [max(r.body, 1) for r in rows]
    left.plot(sizes, [r.tls13 - r.plain for r in rows], "o-", color="#1565c0", label="TLS 1.3")
    left.plot(sizes, [r.tls12 - r.plain for r in rows], "s-", color="#ef6c00", label="TLS 1.2 (AES-GCM)")
    left.axvline(max(chosen.body, 1), color="#9e9e9e", ls=":")
    left.set_xscale("log")
    left.set_xlabel("body bytes (request and echo), log scale")
    left.set_ylabel("extra bytes vs plain HTTP")
    left.set_title("TLS overhead per request + response", fontsize=10)
    left.legend(fontsize=8, frameon=False)
    left.spines[["top", "right"]].set_visible(False)
    if right is not None:
        extras = [chosen.tls13 - chosen.plain, chosen.tls12 - chosen.plain]
        right.barh(["TLS 1.3", "TLS 1.2"], extras, color=["#1565c0", "#ef6c00"])
        for y, (extra, rec) in enumerate(zip(extras, [chosen.records13, chosen.records12])):
            right.text(extra, y, f" +{extra} B = {100 * extra / chosen.plain:.2f} % of {chosen.plain:,} B, "
                       f"{rec} records", va="center", fontsize=8)
        right.set_xlim(0, max(extras) * 2.6)
        right.set_xlabel("extra bytes of TCP payload")
        right.set_title(f"{chosen.body:,}-byte body echoed", fontsize=10)
        right.spines[["top", "right"]].set_visible(False)
    return fig
