"""Statistics over request records: percentiles and the benchmark's per-cell row."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from tui.load.records import NS, RequestRecord


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100), like numpy's default; None when empty."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def mean(values: Iterable[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return sum(xs) / len(xs) if xs else None


def tokens_source(records: Iterable[RequestRecord]) -> str:
    sources = {r.tokens_source for r in records}
    if not sources:
        return "-"
    return sources.pop() if len(sources) == 1 else "mixed"


def aggregate_tps(records: Sequence[RequestRecord]) -> float | None:
    """All output tokens per second of wall time; rounds are timed separately and summed."""
    by_round: dict[int, list[RequestRecord]] = {}
    for r in records:
        if r.finished:
            by_round.setdefault(r.round, []).append(r)
    tokens = wall_ns = 0
    for group in by_round.values():
        tokens += sum(r.output_tokens for r in group if r.ok)
        wall_ns += max(r.end_ns for r in group) - min(r.send_ns for r in group)
    return tokens / (wall_ns / NS) if wall_ns > 0 and tokens else None


def cell_row(concurrency: int, words: int, records: Sequence[RequestRecord]) -> dict[str, Any]:
    """One benchmark table row. Averages are over successful requests.

    avg_speed_tps is the seed article's "Average Speed": average tokens / average time (client
    clock, queueing and prefill included). decode_tps_mean is measured by the client from chunk
    arrival times; server_* are what the server reported.
    """
    ok = [r for r in records if r.ok]
    avg_tokens = mean(r.output_tokens for r in ok)
    avg_time = mean(r.e2e_s for r in ok)
    ttfts = [r.ttft_s for r in ok if r.ttft_s is not None]
    truncated = sum(1 for r in ok if r.truncated)
    return {
        "concurrency": concurrency,
        "words": words,
        "requests": len(records),
        "ok": len(ok),
        "errors": len(records) - len(ok),
        "avg_tokens": avg_tokens,
        "avg_time_s": avg_time,
        "avg_speed_tps": avg_tokens / avg_time if avg_tokens and avg_time else None,
        "ttft_p50_s": percentile(ttfts, 50),
        "ttft_max_s": max(ttfts) if ttfts else None,
        "decode_tps_mean": mean(r.decode_tps for r in ok),
        "aggregate_tps": aggregate_tps(records),
        "server_decode_tps_mean": mean(r.server_decode_tps for r in ok),
        "server_prefill_tps_mean": mean(r.server_prefill_tps for r in ok),
        "queue_wait_mean_s": mean(r.queue_wait_s for r in ok),
        "truncated": truncated,
        "cold_starts": sum(1 for r in ok if r.cold_start),
        "tokens_source": tokens_source(ok),
        "error_kinds": sorted({r.error_kind for r in records if r.error_kind}),
    }
