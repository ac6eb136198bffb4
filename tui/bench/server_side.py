"""The server's own view of each bench cell: its TTFT, queue, prefill, decode, ITL and e2e p50/p99, its prefix
cache's hit rate and its preemptions over the cell, the gap between the client's TTFT and the server's, and a
cross-check of the two.

From histograms (vLLM, SGLang): the increase between a scrape just before the cell's first round and one just
after its last; the percentiles are estimates within a bucket (each names its bucket), and they count every
request the server finished meanwhile, another client's too. From answers (llama.cpp `timings`, ollama's
durations): exact, per request, this cell's only.
"""

from __future__ import annotations

from typing import Any

from tui.load.records import RequestRecord
from tui.load.time_split import per_request_phases, phase_source
from tui.probes.histograms import Scrape, counter_increase
from tui.probes.inside import NAMES, InsideNames, cache_share_between, phases_between

FLAT = ("ttft", "queue", "prefill", "decode")  # phases with columns of their own (all are in server_phases)
NETWORK_ALLOWANCE_S = 0.05  # what loopback, HTTP and the client's parsing may add to the server's TTFT


def histogram_fields(kind: str, before: Scrape | None, after: Scrape | None) -> dict[str, Any]:
    """A cell's figures from the server's /metrics, scraped around it; {} when it has none."""
    names: InsideNames | None = NAMES.get(kind)
    if names is None or after is None:
        return {}
    out: dict[str, Any] = {}
    phases = phases_between(names, after, before)
    if phases:
        out["server_phases"] = {
            phase: {"p50": f.p50.value if f.p50 else None, "p50_in": f.p50.bucket() if f.p50 else None,
                    "p99": f.p99.value if f.p99 else None, "p99_in": f.p99.bucket() if f.p99 else None,
                    "mean": f.mean, "count": round(f.count)}
            for phase, f in phases.items()}
        out["server_phase_source"] = f"{kind} histograms (estimates within a bucket; every client's requests)"
    if (hit := cache_share_between(names, after, before)) is not None:
        out["prefix_cache_hit_rate"] = hit
    if names.preemptions and (n := counter_increase(names.preemptions, after, before)) is not None:
        out["preemptions"] = round(n)
    return out


def per_request_fields(records: list[RequestRecord]) -> dict[str, Any]:
    """A cell's figures from the server's answers (llama.cpp timings, ollama durations); {} when none said."""
    phases = per_request_phases(records)
    if not phases:
        return {}
    return {"server_phases": phases, "server_phase_source": f"{phase_source(records)} (per request, exact)"}


def add_server_fields(row: dict[str, Any], fields: dict[str, Any], client_lag_ms: float | None = None) -> None:
    """`fields` into the row, flat columns for the main phases, the TTFT gap and the cross-check."""
    if "server_phases" in fields and "server_phases" in row:  # histograms win over answers: they have the queue
        fields = fields | {"server_phases": row["server_phases"] | fields["server_phases"]}
    row.update(fields)
    phases = row.get("server_phases") or {}
    for phase in FLAT:
        figures = phases.get(phase) or {}
        row[f"server_{phase}_p50_s"] = figures.get("p50")
        row[f"server_{phase}_p99_s"] = figures.get("p99")
    server, client = phases.get("ttft") or {}, row.get("ttft_p50_s")
    row["ttft_gap_ms"] = (client - server["p50"]) * 1000 if client is not None and server.get("p50") is not None else None
    row["server_check"] = cross_check(client, server, client_lag_ms)


def _bounds(bucket: str) -> tuple[float, float]:
    if bucket.startswith(">"):
        return float(bucket[1:].split()[0]), float("inf")
    low, high = bucket.split()[0].split("–")
    return float(low), float(high)


def cross_check(client_p50: float | None, server_ttft: dict[str, Any], client_lag_ms: float | None) -> str | None:
    """A sentence when the client's TTFT p50 cannot be squared with the server's; None when it can."""
    if client_p50 is None or not server_ttft.get("p50_in"):
        return None
    low, high = _bounds(server_ttft["p50_in"])
    if client_p50 < low:
        return (f"client TTFT p50 {client_p50:.3f} s is below the server's ({server_ttft['p50_in']}), impossible for"
                " the same requests: the server's histogram counts others too (another client?)")
    allowed = high + NETWORK_ALLOWANCE_S + (client_lag_ms or 0) / 1000
    if client_p50 > allowed:
        return (f"client TTFT p50 {client_p50:.3f} s is above the server's ({server_ttft['p50_in']}) by more than"
                f" the network and the client's lag explain (up to {allowed:.3f} s): time is spent before the"
                " server starts its clock (a proxy, the connection, the request's parsing)")
    return None
