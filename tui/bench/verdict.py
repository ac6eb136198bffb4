"""A word per cell on whether its figures can be trusted — `ok`, or the reasons they cannot — and a line under
the table explaining each reason that appears."""

from __future__ import annotations

from typing import Any

from tui.load.confidence import FEW_FOR_P99

FELL_BEHIND_S = 0.005  # an open loop whose sends ran this late at p99 hid part of its backlog
CACHE_HIT_SHARE = 0.2  # unique prompts, yet this much served from the server's cache: a cache test, not a load test

REASONS = {
    "client-bound": "tokentop itself was the bottleneck (its CPU or its event loop's lag); see the WARNING line",
    "few-samples": f"fewer than {FEW_FOR_P99} requests: its p99 is about one unlucky request; run longer (--until)",
    "errors": "some requests failed; every figure is over the successful ones (the Errors column says which)",
    "fell-behind": f"the open loop sent late (send lag p99 over {FELL_BEHIND_S * 1000:.0f} ms): latencies measured"
                   " from the send hide that wait; the JSON's *_from_plan figures count it",
    "server-disagrees": "the server's own TTFT cannot be squared with the client's; see the CHECK line",
    "cache-hit": f"unique prompts were asked for, yet the server served over {CACHE_HIT_SHARE:.0%} of prompt tokens"
                 " from its prefix cache (an earlier run's prompts, or --seed)",
    "imprecise": "--until's precision was not reached within --duration (the Until column says how far it got)",
}


def verdict(row: dict[str, Any], unique_prompts: bool) -> str:
    reasons = []
    if row.get("client_warning"):
        reasons.append("client-bound")
    if row.get("ok", 0) < FEW_FOR_P99:
        reasons.append("few-samples")
    if row.get("errors"):
        reasons.append("errors")
    if (row.get("send_lag_p99_s") or 0) > FELL_BEHIND_S:
        reasons.append("fell-behind")
    if row.get("server_check"):
        reasons.append("server-disagrees")
    if unique_prompts and (row.get("prefix_cache_hit_rate") or 0) > CACHE_HIT_SHARE:
        reasons.append("cache-hit")
    if row.get("until") and not row["until"]["met"]:
        reasons.append("imprecise")
    return ",".join(reasons) or "ok"


def verdict_lines(rows: list[dict[str, Any]]) -> str:
    seen = [reason for reason in REASONS if any(reason in (row.get("verdict") or "").split(",") for row in rows)]
    return "".join(f"Verdict {reason}: {REASONS[reason]}.\n" for reason in seen)
