"""ITL and TPOT as each common tool defines them, from the same records, so a figure can be held beside theirs.

The tools disagree (guidellm #1144, #1145; ../shared/PEERS.md): one ITL sample per chunk, or a chunk's gap
shared by the tokens it carried, or one per-request mean; TPOT averaged over requests or over tokens.
tokentop's default table keeps ITL per token (a stall shows at token resolution, and a server that packs
several tokens a chunk neither shrinks nor grows it) and TPOT per request (vllm bench serve's definition).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tui.load.confidence import intervals
from tui.load.records import NS, RequestRecord
from tui.load.stats import mean, percentile

# name → (how it is computed, the tools that report it so)
CONVENTIONS = {
    "itl_per_chunk": ("each gap between two chunks, one sample a chunk", "as vllm bench serve (ITL)"),
    "itl_per_token": ("each chunk's gap divided by the tokens it carried, one sample a token",
                      "as genai-perf (ITL); tokentop's ITL"),
    "itl_per_request": ("(e2e − TTFT) / (tokens − 1), one sample a request",
                        "as AIPerf and guidellm (ITL); vllm bench serve (TPOT); tokentop's TPOT"),
    "tpot_token_weighted": ("Σ (e2e − TTFT) / Σ (tokens − 1) over every request: each token weighs the same",
                            "weighted by token"),
}


def chunk_gaps(record: RequestRecord) -> list[float]:
    chunks = record.chunk_ns
    return [(b - a) / NS for a, b in zip(chunks, chunks[1:])]


def _figures(values: Sequence[float]) -> dict[str, Any]:
    return {"mean": mean(values), "p50": percentile(values, 50), "p90": percentile(values, 90),
            "p99": percentile(values, 99), "intervals": intervals(values)}


def conventions(ok: Sequence[RequestRecord]) -> dict[str, dict[str, Any]]:
    """Every convention's figures over a cell's successful requests, each named by how and by whom."""
    samples = {
        "itl_per_chunk": [g for r in ok for g in chunk_gaps(r)],
        "itl_per_token": [g for r in ok for g in r.itl_s],
        "itl_per_request": [r.tpot_s for r in ok if r.tpot_s is not None],
    }
    out = {name: {"how": CONVENTIONS[name][0], "as": CONVENTIONS[name][1], **_figures(values)}
           for name, values in samples.items()}
    decoding = [(r.e2e_s - r.ttft_s, r.output_tokens - 1) for r in ok
                if r.ttft_s is not None and r.e2e_s is not None and r.output_tokens >= 2]
    tokens = sum(k for _, k in decoding)
    how, who = CONVENTIONS["tpot_token_weighted"]
    weighted = sum(t for t, _ in decoding) / tokens if tokens else None
    out["tpot_token_weighted"] = {"how": how, "as": who, "mean": weighted}
    return out
