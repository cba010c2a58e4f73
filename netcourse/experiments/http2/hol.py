"""Head-of-line blocking, measured: the same page over HTTP/1.1 (six connections) and HTTP/2 (one) on a lossy
link, each resource's completion time recorded.

TCP delivers bytes in order. When a segment is lost, everything after it on that connection waits for the
retransmission, whichever stream it belongs to: on HTTP/2's one connection a single loss stalls every
resource in flight, while HTTP/1.1's other five connections carry on. HTTP/3 runs its streams over QUIC,
which delivers each stream in order but not the streams in order with each other (RFC 9000 §2.2): a lost
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

__all__ = ["Hol", "hol_run", "measure_hol", "load_hol", "RECORDED", "LOSSES"]

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
