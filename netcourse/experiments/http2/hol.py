"""Head-of-line blocking, measured: the same page over HTTP/1.1 (six connections) and HTTP/2 (one) on a lossy
link, each resource's completion time recorded.

TCP delivers bytes in order. When a segment is lost, everything after it on that connection waits for the
retransmission, whichever stream it belongs to: on HTTP/2's one connection a single loss stalls every
resource in flight, while HTTP/1.1's other five connections carry on. HTTP/3 runs its streams over QUIC,
which delivers each stream in order but not the streams in order with each other (RFC 9000 §2): a lost
packet holds up only the streams whose data it carried.

Loss needs the tap link: the relay carries a byte stream and cannot lose a TCP segment. ``measure_hol``
(``make bench``, as root) stores its runs in ``netcourse/measured/hol.json``; ``load_hol`` reads them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ...apps.http2 import make_h1_app, make_h2_handler
from ...apps.http3 import H3Server
from ...apps.tls import Pki
from ...clients.http2 import fetch
from ...clients.http3 import fetch as fetch_h3
from ...errors import LinkError
from ...network.link import link
from .pages import fetch_h1

__all__ = ["Hol", "hol_run", "measure_hol", "load_hol", "hol_knob", "OneLoss", "one_loss", "RECORDED", "LOSSES"]

RECORDED = Path(__file__).resolve().parents[2] / "measured" / "hol.json"
LOSSES = (0.0, 0.01, 0.02, 0.05)


@dataclass
class Hol:
    """Every resource's completion time (seconds from the start), per version, over several runs at one loss."""

    loss: float
    rtt_ms: float
    resources: int
    size: int
    runs: int = 0
    done: dict[str, list[float]] = field(default_factory=dict)
    lost_frames: int = 0

    def quantile(self, version: str, q: float) -> float:
        values = sorted(self.done.get(version, []))
        if not values:
            return float("nan")
        return values[min(len(values) - 1, max(0, -int(-q * len(values) // 1) - 1))]

    def __repr__(self) -> str:
        parts = [f"{v} p50 {self.quantile(v, 0.5) * 1000:,.0f} ms, p95 {self.quantile(v, 0.95) * 1000:,.0f} ms"
                 for v in self.done]
        return (f"loss {self.loss:.0%}: " + "; ".join(parts)
                + f" ({self.runs} runs of {self.resources} resources of {self.size:,} B; {self.lost_frames} frames lost)")


def hol_run(loss: float, *, rtt_ms: float = 100.0, resources: int = 30, size: int = 10_000, seed: int = 1,
            mode: str = "tap") -> tuple[dict[str, list[float]], int]:
    """One page over each version on a link losing ``loss`` of its frames each way: completion times, and the
    frames the link lost."""
    paths = [f"/r/{i}?size={size}" for i in range(resources)]
    with link(rtt_ms=rtt_ms, loss=loss, seed=seed, mode=mode) as net:
        if loss and net.mode != "tap":
            raise LinkError("TCP loss needs the tap link (root): the relay carries a byte stream and cannot drop a "
                            "segment. load_hol() shows the stored runs.")
        h1 = net.serve(make_h1_app())
        h2 = net.serve(make_h2_handler(), name="HTTP/2 server")
        host = net.addresses[1]
        old, _ = net.run(fetch_h1(f"http://{host}:{h1.port}", paths), timeout=120)
        old = sorted(old.values())
        page = net.run(fetch(host, h2.port, paths, timeout=120), timeout=130)
        with Pki() as pki, H3Server(pki, host=host, namespace=net.far_namespace) as h3:
            quic_host, quic_port = net.udp_address(h3.port)
            quic = net.run(fetch_h3(quic_host, quic_port, paths, cadata=pki.ca.cert_pem.bytes(), timeout=120), timeout=130)
        stats = net.statistics()
    lost = sum(n for key, n in stats.items() if key.endswith("_lost"))
    return {"HTTP/1.1": old, "HTTP/2": sorted(page.done.values()), "HTTP/3": sorted(quic.done.values())}, lost


def measure_hol(runs: int = 5, losses: tuple[float, ...] = LOSSES, *, path: Path | None = RECORDED, **options) -> list[Hol]:
    """``runs`` pages (seeds 1..runs) at each loss (``make bench``, root); saved for the notebook."""
    results = []
    for loss in losses:
        hol = Hol(loss, options.get("rtt_ms", 100.0), options.get("resources", 30), options.get("size", 10_000))
        for seed in range(1, runs + 1):
            done, lost = hol_run(loss, seed=seed, **options)
            for version, times in done.items():
                hol.done.setdefault(version, []).extend(times)
            hol.lost_frames += lost
            hol.runs += 1
        results.append(hol)
    if path is not None:
        path.write_text(json.dumps({"measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                                    "cpus": os.cpu_count(), "runs": [asdict(h) for h in results]}, indent=1) + "\n")
    return results


def load_hol(path: Path = RECORDED) -> tuple[str, list[Hol]]:
    data = json.loads(path.read_text())
    return f"{data['measured_at']}, on {data.get('cpus', '?')} cores", [Hol(**h) for h in data["runs"]]


@dataclass
class OneLoss:
    """What a single lost packet held up: per version, the resources finished more than half a round trip
    later than in the same run without the loss, and how much later the page ended."""

    rtt_ms: float
    resources: int
    held_up: dict[str, int] = field(default_factory=dict)
    page_later_ms: dict[str, float] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)  # frames the link lost in the lossy run (one, by design)

    def __repr__(self) -> str:
        return "\n".join(f"{v:<8} one lost packet held up {n:>2} of {self.resources} resources; the page ended "
                         f"{self.page_later_ms[v]:,.0f} ms later" for v, n in self.held_up.items())


def _page(version: str, net, servers: dict, paths: list[str], pki) -> dict[str, float]:
    host = net.addresses[1]
    if version == "HTTP/1.1":
        return net.run(fetch_h1(f"http://{host}:{servers['h1']}", paths), timeout=60)[0]
    if version == "HTTP/2":
        return net.run(fetch(host, servers["h2"], paths, timeout=60), timeout=70).done
    quic_host, quic_port = servers["h3"]
    return net.run(fetch_h3(quic_host, quic_port, paths, cadata=pki.ca.cert_pem.bytes(), timeout=60), timeout=70).done


def one_loss(*, rtt_ms: float = 100.0, resources: int = 30, size: int = 10_000, nth: int = 8) -> OneLoss:
    """Each version fetches the page twice on the tap link: once clean, once losing the ``nth`` full-size
    packet coming back (the same moment in the page for all three), and counts the resources that finished
    more than half a round trip later.

    What this counts is everything one loss costs, not head-of-line blocking alone: the sender's loss recovery
    and its congestion window's cut slow every later resource too. Measured here (100 ms, 30 × 10 kB, the 8th
    or 20th packet): HTTP/1.1 held up 5 (one connection's share), HTTP/2 6 or 24 (those queued behind the lost
    segment on its one connection), HTTP/3 all 30 and the page 0.7-1.2 s later (aioquic's recovery in Python,
    Reno, against Linux's TCP). Isolating head-of-line blocking needs each stream's own bytes timed."""
    paths = [f"/r/{i}?size={size}" for i in range(resources)]
    result = OneLoss(rtt_ms, resources)
    with Pki() as pki, link(rtt_ms=rtt_ms, mode="tap") as net:
        host = net.addresses[1]
        h3 = H3Server(pki, host=host, namespace=net.far_namespace).start()
        try:
            servers = {"h1": net.serve(make_h1_app()).port, "h2": net.serve(make_h2_handler(), name="HTTP/2 server").port,
                       "h3": net.udp_address(h3.port)}
            for version in ("HTTP/1.1", "HTTP/2", "HTTP/3"):
                clean = _page(version, net, servers, paths, pki)
                before = net.statistics()["in_lost"]
                net.drop_one(back=True, nth=nth, min_bytes=1000)
                lossy = _page(version, net, servers, paths, pki)
                result.lost[version] = net.statistics()["in_lost"] - before
                result.held_up[version] = sum(1 for p in paths if lossy[p] - clean[p] > rtt_ms / 2000)
                result.page_later_ms[version] = (max(lossy.values()) - max(clean.values())) * 1000
        finally:
            h3.stop()
    return result


def hol_knob(runs: list[Hol], loss: float = 0.02):
    """The knob's picture: every resource's completion time per version at one of the stored losses."""
    from ...course.plots.http2 import completion_under_loss

    run = next((r for r in runs if abs(r.loss - loss) < 1e-9), None)
    if run is None:
        raise ValueError(f"no stored runs at {loss:.0%} loss; stored: {', '.join(f'{r.loss:.0%}' for r in runs)}")
    return completion_under_loss(run)
