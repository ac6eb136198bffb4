"""Where a request's time goes: server queue, prefill, decode, and the rest (the network and the client).

Two sources, named in every figure. Per request, where the server says so in its answer: llama.cpp's
`timings` (prompt_ms, predicted_ms; it does not report the time a request waited for a slot, so that stays
in the rest) and ollama's durations (load, prompt eval, eval; its queue is total − those, an estimate).
Over a window, from the server's histograms (vLLM, SGLang): their means, and the rest as the client's mean
TTFT less the server's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tui.load.records import NS, RequestRecord
from tui.load.stats import mean, percentile

PER_REQUEST = ("queue", "load", "prefill", "decode")  # the order bars are drawn in


def server_phases(record: RequestRecord) -> dict[str, float]:
    """What the server said of one request's time, in seconds (empty when it said nothing)."""
    t = record.timings or {}
    if record.api == "ollama":
        if not t.get("total_duration"):
            return {}
        out = {"load": t.get("load_duration", 0) / NS, "prefill": t.get("prompt_eval_duration", 0) / NS,
               "decode": t.get("eval_duration", 0) / NS}
        if record.queue_wait_s is not None:
            out["queue"] = record.queue_wait_s
        return out
    if "prompt_ms" in t and "predicted_ms" in t:  # llama.cpp
        return {"prefill": t["prompt_ms"] / 1000, "decode": t["predicted_ms"] / 1000}
    return {}


def phase_source(records: Iterable[RequestRecord]) -> str | None:
    for r in records:
        if server_phases(r):
            return "ollama durations" if r.api == "ollama" else "llama.cpp timings"
    return None


@dataclass(frozen=True)
class RecentSplit:
    """The client's recent finished requests: their mean TTFT and e2e (client-timed), and the mean of each phase
    the server reported per request."""

    n: int
    ttft_s: float | None
    e2e_s: float | None
    server: dict[str, float] = field(default_factory=dict)  # phase → mean seconds (server-reported per request)
    source: str | None = None  # what `server` came from


def recent_split(records: Sequence[RequestRecord]) -> RecentSplit | None:
    ok = [r for r in records if r.ok and not r.warmup]
    if not ok:
        return None
    reported = [server_phases(r) for r in ok]
    phases = {p: mean(d.get(p) for d in reported) for p in PER_REQUEST}
    return RecentSplit(len(ok), mean(r.ttft_s for r in ok), mean(r.e2e_s for r in ok),
                       {p: v for p, v in phases.items() if v is not None}, phase_source(ok))


def merge_splits(splits: Iterable[RecentSplit | None]) -> RecentSplit | None:
    """Several workers' splits as one, each weighted by its requests."""
    known = [s for s in splits if s is not None]
    if not known:
        return None
    n = sum(s.n for s in known)

    def weighted(get) -> float | None:
        pairs = [(get(s), s.n) for s in known if get(s) is not None]
        return sum(v * w for v, w in pairs) / sum(w for _, w in pairs) if pairs else None

    server = {p: weighted(lambda s, p=p: s.server.get(p)) for p in PER_REQUEST}
    return RecentSplit(n, weighted(lambda s: s.ttft_s), weighted(lambda s: s.e2e_s),
                       {p: v for p, v in server.items() if v is not None},
                       next((s.source for s in known if s.source), None))


@dataclass(frozen=True)
class Bar:
    phase: str  # what it is, in words
    seconds: float
    source: str  # "server" (reported), "histogram" (the server's, over a window), "client" (timed by tokentop)


def where_time_goes(split: RecentSplit | None, histogram_means: dict[str, float] | None = None) -> list[Bar]:
    """The bars for the recent requests: per request where the server reported its phases, else from the
    server's histogram means over the same window (`histogram_means`: phase → mean seconds)."""
    if split is None:
        return []
    if split.server and split.e2e_s is not None:
        bars = [Bar(p, split.server[p], "server") for p in PER_REQUEST if split.server.get(p)]
        served = sum(split.server.values())
        rest = "network + client" if "queue" in split.server else "queue + network + client"
        return bars + [Bar(rest, max(0.0, split.e2e_s - served), "client")]
    h = histogram_means or {}
    if not h:
        return []
    bars = []
    if "queue" in h:
        bars.append(Bar("queue", h["queue"], "histogram"))
    prefill = h.get("prefill")
    if prefill is None and "ttft" in h:  # SGLang has no prefill histogram: TTFT less the queue
        prefill = max(0.0, h["ttft"] - h.get("queue", 0.0))
    if prefill is not None:
        bars.append(Bar("prefill", prefill, "histogram"))
    decode = h.get("decode")
    if decode is None and "e2e" in h and "ttft" in h:
        decode = max(0.0, h["e2e"] - h["ttft"])
    if decode is not None:
        bars.append(Bar("decode", decode, "histogram"))
    if split.ttft_s is not None and "ttft" in h:
        # Signed: below zero says the two windows do not hold the same requests (the view shows it so).
        bars.append(Bar("network + client", split.ttft_s - h["ttft"], "client"))
    return bars


def per_request_phases(records: Sequence[RequestRecord]) -> dict[str, dict[str, float | None]]:
    """The bench's per-cell figures of the phases the server reported per request: p50, p99, mean, count."""
    reported = [server_phases(r) for r in records if r.ok]
    out = {}
    for p in PER_REQUEST:
        values = [d[p] for d in reported if p in d]
        if values:
            out[p] = {"p50": percentile(values, 50), "p99": percentile(values, 99), "mean": mean(values),
                      "count": len(values)}
    return out
