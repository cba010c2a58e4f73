"""Notebook 11's figures: every transport's cost, the sweeps, a client away and back, scale-out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from .draw import TRANSPORT_COLOURS, figure

__all__ = ["transport_costs", "transport_sweep", "loss_tails", "away_and_back", "fan_out_reach", "node_lost", "TransportCost",
           "AwayAndBack", "Reach", "NodeLost"]


class TransportCost(Protocol):
    """One transport's run (``experiments.choosing.harness.TransportRun`` has these)."""

    @property
    def bytes_per_message(self) -> float: ...
    @property
    def units_per_message(self) -> float: ...
    @property
    def cpu_us_per_message(self) -> float: ...


class AwayAndBack(Protocol):
    @property
    def while_away(self) -> int: ...  # messages published while the client was away
    @property
    def caught_up(self) -> int: ...  # of those, delivered when it came back


class Reach(Protocol):
    """A fan-out run (``experiments.choosing.scaleout.FanOut``): messages per node, expected and received."""

    @property
    def received(self) -> Mapping[str, int]: ...
    @property
    def expected_per_node(self) -> Mapping[str, int]: ...


CPU_UPPER_BOUND = ("UDP", "webhooks")  # their CPU figure includes other work on the sender's thread


def transport_costs(runs: Mapping[str, TransportCost], *, ax: Axes | None = None) -> Figure:
    """Three panels per transport: bytes on the wire, requests or frames, and server CPU per message."""
    if ax is None:
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), layout="constrained")
        plt.close(fig)
    else:
        fig, axes = ax.figure, [ax, ax, ax]
    names = list(runs)
    colours = [TRANSPORT_COLOURS.get(n, "#1565c0") for n in names]
    panels = [([r.bytes_per_message for r in runs.values()], "bytes on the wire per message"),
              ([r.units_per_message for r in runs.values()], "requests, frames or datagrams per message"),
              ([r.cpu_us_per_message for r in runs.values()], "server CPU per message, µs")]
    for a, (values, label) in zip(axes, panels):
        bars = a.bar(names, values, color=colours, width=0.65)
        a.set_title(label, fontsize=10)
        a.tick_params(axis="x", labelrotation=40, labelsize=8)
        a.spines[["top", "right"]].set_visible(False)
    for bar, name in zip(bars, names):  # the CPU panel: a sender that shares its thread with other work
        if name in CPU_UPPER_BOUND:
            bar.set_hatch("///")
            bar.set_edgecolor("white")
    if any(name in CPU_UPPER_BOUND for name in names):
        axes[-1].set_ylim(0, max(panels[-1][0]) * 1.3)
        axes[-1].text(0.99, 0.97, "hatched: an upper bound\n(other work on the same thread)", fontsize=7,
                      ha="right", va="top", transform=axes[-1].transAxes)
    return fig


def transport_sweep(data: Mapping[str, Any], dimension: str, key: str) -> Figure:
    """Steady-state bytes per message and median latency of every transport as one workload dimension varies;
    each point the median of its runs, its bar the lowest to the highest run (when there were several)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    plt.close(fig)
    series = data["sweeps"][dimension]
    labels = {"rate": "messages per second", "clients": "clients", "size": "message bytes", "rtt_ms": "round trip, ms"}
    for name, by_value in series.items():
        xs = sorted(by_value, key=float)
        x = [max(float(v), 0.05) for v in xs]
        colour = TRANSPORT_COLOURS.get(name.split(",")[0])
        style = "s--" if "," in name else "o-"  # a variant (the batched WebSocket): its transport's colour, dashed
        for a, figure_ in ((left, "steady_bytes_per_msg"), (right, "p50_ms")):
            y = [by_value[v].get(figure_, by_value[v].get("bytes_per_msg")) for v in xs]
            a.plot(x, y, style, ms=3, color=colour, label=name)
            spread = [by_value[v].get("spread", {}).get(figure_) for v in xs]
            if all(spread):
                a.vlines(x, [lo for lo, _ in spread], [hi for _, hi in spread], color=colour, lw=1, alpha=0.5)
    chosen = max(float(key), 0.05)
    for a, ylabel in ((left, "bytes on the wire per message\n(steady state: set-up apart)"),
                      (right, "median latency, ms")):
        a.axvline(chosen, color="#9e9e9e", ls=":")
        if dimension in ("rate", "size", "clients"):
            a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel(labels[dimension] + (" (log)" if dimension != "rtt_ms" else ""))
        a.set_ylabel(ylabel)
        a.spines[["top", "right"]].set_visible(False)
    right.legend(fontsize=7, frameon=False, loc="best")
    runs = data.get("runs", {})
    runs_text = f"; {runs.get('rate' if dimension == 'rate' else 'others')} runs a point, bars: lowest to highest" if runs else ""
    left.set_title(f"measured on {data['measured_at']}{runs_text}", fontsize=9)
    right.set_title(f"{labels[dimension]} = {float(key):g}: marked", fontsize=9)
    return fig


def loss_tails(data: Mapping[str, Any]) -> Figure:
    """Every transport at each loss: the 99th percentile of latency (log scale; the median as a tick), and the
    share of messages delivered."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
    plt.close(fig)
    names = list(data["results"])
    losses = [str(x) for x in data["losses"]]
    width = 0.8 / len(losses)
    shades = ["#9e9e9e", "#ef6c00", "#c62828", "#6a1b9a"]
    for j, loss in enumerate(losses):
        xs = [i + (j - (len(losses) - 1) / 2) * width for i in range(len(names))]
        p99 = [data["results"][n][loss]["p99_ms"] for n in names]
        p50 = [data["results"][n][loss]["p50_ms"] for n in names]
        got = [100 * data["results"][n][loss]["delivered"] / data["results"][n][loss]["expected"] for n in names]
        label = f"{float(loss):.0%} loss"
        left.bar(xs, p99, width=width, color=shades[j % len(shades)], label=label)
        left.scatter(xs, p50, marker="_", color="black", s=60, zorder=3, label="median" if j == 0 else None)
        right.bar(xs, got, width=width, color=shades[j % len(shades)], label=label)
    for a in (left, right):
        a.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
        a.spines[["top", "right"]].set_visible(False)
    left.set_yscale("log")
    left.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    left.yaxis.set_minor_formatter(NullFormatter())
    left.set_ylabel("99th percentile latency, ms (log)")
    left.legend(fontsize=7, frameon=False)
    right.set_ylim(min(90.0, min(100 * r[x]["delivered"] / r[x]["expected"] for r in data["results"].values()
                                 for x in losses) - 1), 100.5)
    right.set_ylabel("messages delivered, %")
    left.set_title(f"{data['runs']} runs a point, tap link, measured on {data['measured_at']}", fontsize=9)
    return fig


def away_and_back(runs: Mapping[str, AwayAndBack], *, ax: Axes | None = None) -> Figure:
    """For the client that went away: messages published meanwhile, delivered late or lost."""
    fig, ax = figure(ax, (8, 3.0))
    names = list(runs)
    late = [runs[n].caught_up for n in names]
    lost = [runs[n].while_away - runs[n].caught_up for n in names]
    ax.bar(names, late, color="#2e7d32", label="delivered when it came back")
    ax.bar(names, lost, bottom=late, color="#c62828", label="lost")
    ax.set_ylabel("messages published while away")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.legend(fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def fan_out_reach(without: Mapping[str, Reach], with_broker: Mapping[str, Reach], *, ax: Axes | None = None) -> Figure:
    """Messages received by the clients of node A and node B, per transport, without and with a broker."""
    fig, ax = figure(ax, (8, 3.2))
    kinds = list(without)
    xs, values, expected, labels, colours = [], [], [], [], []
    x = 0.0
    for runs in (without, with_broker):
        for kind in kinds:
            for node in ("A", "B"):
                xs.append(x)
                values.append(runs[kind].received[node])
                expected.append(runs[kind].expected_per_node[node])
                labels.append(node)
                colours.append(TRANSPORT_COLOURS.get(kind, "#1565c0"))
                x += 1
            x += 0.5
        x += 1
    ax.bar(xs, expected, color="#e0e0e0", width=0.85, label="expected")
    ax.bar(xs, values, color=colours, width=0.55)
    ax.set_xticks(xs, labels, fontsize=8)
    top = max(expected)
    for i, kind in enumerate(kinds * 2):
        centre = xs[2 * i] + 0.5
        ax.text(centre, -top * 0.2, kind, ha="center", va="top", fontsize=8, color=TRANSPORT_COLOURS.get(kind, "black"))
    ax.text((xs[0] + xs[len(kinds) * 2 - 1]) / 2, top * 1.1, "no broker", ha="center")
    ax.text((xs[len(kinds) * 2] + xs[-1]) / 2, top * 1.1, "Redis pub/sub", ha="center")
    ax.set_ylim(0, top * 1.25)
    ax.set_xlim(xs[0] - 0.7, xs[-1] + 0.7)
    ax.set_ylabel("messages received by\nthe node's clients")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


class NodeLost(Protocol):
    """A node's failure (``experiments.choosing.failover.Failover``): each moved client's time without a
    connection, and the most new connections the other node took in 25 ms."""

    @property
    def outage_ms(self) -> list[float]: ...
    @property
    def joins_peak(self) -> int: ...


FAILOVER_COLOURS = {"killed, no jitter": "#c62828", "killed, full jitter": "#ef6c00", "drained": "#2e7d32"}


def node_lost(runs: Mapping[str, NodeLost]) -> Figure:
    """Left: each client's time without a connection (a distribution per way of failing, log scale). Right:
    the most new WebSockets the surviving node accepted within 25 ms."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.3), layout="constrained",
                                      gridspec_kw={"width_ratios": [2.2, 1]})
    plt.close(fig)
    for how, run in runs.items():
        values = sorted(max(v, 0.1) for v in run.outage_ms)
        share = [(i + 1) / len(values) for i in range(len(values))]
        left.step(values, share, where="post", color=FAILOVER_COLOURS.get(how, "#1565c0"), label=how)
    left.set_xscale("log")
    left.set_xlabel("time without a connection, ms (log scale)")
    left.set_ylabel("share of the clients")
    left.legend(fontsize=8, frameon=False, loc="upper left")
    names = list(runs)
    right.bar(range(len(names)), [runs[n].joins_peak for n in names],
              color=[FAILOVER_COLOURS.get(n, "#1565c0") for n in names], width=0.6)
    right.set_xticks(range(len(names)), [n.replace(", ", ",\n") for n in names], fontsize=8)
    right.set_ylabel("most new WebSockets\non the other node in 25 ms")
    for a in (left, right):
        a.spines[["top", "right"]].set_visible(False)
    return fig
