"""The server's own view of each bench cell: its TTFT, queue, prefill, decode, ITL and e2e p50/p99, its prefix
cache's hit rate and its preemptions over the cell, the gap between the client's TTFT and the server's, and a
cross-check of the two (their means: exact, where a histogram's p50 is known only within its bucket).

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
CLOCK_SLACK_S = 0.005  # the client's TTFT may read this much under the server's (where each clock stops)


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
    server, client = (phases.get("ttft") or {}).get("mean"), row.get("ttft_mean_s")
    row["ttft_gap_ms"] = (client - server) * 1000 if client is not None and server is not None else None
    row["server_check"] = cross_check(client, server, client_lag_ms)


def cross_check(client_mean: float | None, server_mean: float | None, client_lag_ms: float | None) -> str | None:
    """A sentence when the client's mean TTFT cannot be squared with the server's; None when it can. Means, not
    p50s: a histogram's mean is exact (its sum over its count), a p50 only known within its bucket."""
    if client_mean is None or server_mean is None:
        return None
    if client_mean < server_mean - CLOCK_SLACK_S:
        return (f"client mean TTFT {client_mean:.3f} s is below the server's {server_mean:.3f} s, impossible for the"
                " same requests: the server's histogram counts others too (another client?)")
    allowed = NETWORK_ALLOWANCE_S + (client_lag_ms or 0) / 1000
    if client_mean - server_mean > allowed:
        return (f"client mean TTFT {client_mean:.3f} s is {client_mean - server_mean:.3f} s above the server's"
                f" {server_mean:.3f} s, more than the network and the client's lag explain ({allowed:.3f} s): time"
                " is spent before the server starts its clock (a proxy, the connection, the request's parsing)")
    return None
