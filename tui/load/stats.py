"""Statistics over request records: percentiles and the benchmark's per-cell row."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from tui.load.confidence import intervals
from tui.load.records import NS, RequestRecord
from tui.load.slo import meets, per_request


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
    tokens, wall = sum(r.output_tokens for r in records if r.ok), wall_s(records)
    return tokens / wall if wall > 0 and tokens else None


def spread(values: Sequence[float]) -> dict[str, float | None]:
    """mean, p50, p90, p99 and max of some seconds."""
    return {"mean": mean(values), "p50": percentile(values, 50), "p90": percentile(values, 90),
            "p99": percentile(values, 99), "max": max(values) if values else None}


def speeds(values: Sequence[float]) -> dict[str, float | None]:
    """min, p10, p50 and mean of per-stream tokens/s (low is bad, so the low percentiles)."""
    return {"min": min(values) if values else None, "p10": percentile(values, 10), "p50": percentile(values, 50),
            "mean": mean(values)}


def wall_s(records: Sequence[RequestRecord]) -> float:
    """The cell's wall time: each round from its first send to its last end, summed."""
    by_round: dict[int, list[RequestRecord]] = {}
    for r in records:
        if r.finished:
            by_round.setdefault(r.round, []).append(r)
    return sum(max(r.end_ns for r in g) - min(r.send_ns for r in g) for g in by_round.values()) / NS


def cell_row(concurrency: int | None, words: int, records: Sequence[RequestRecord],
             slo: dict[str, float] | None = None, rate: float | None = None) -> dict[str, Any]:
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
        "errors": sum(1 for r in records if r.error_kind),
        "cancelled_by_plan": sum(1 for r in records if r.cancelled_by_plan),
        "avg_tokens": avg_tokens,
        "avg_time_s": avg_time,
        "avg_speed_tps": avg_tokens / avg_time if avg_tokens and avg_time else None,
        "ttft_p50_s": percentile(ttfts, 50),
        "ttft_mean_s": mean(ttfts),
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
        **latencies(records, ok, slo),
        **({} if rate is None else {**open_loop(rate, records), **send_lag(records)}),
        **(conversations(records) if any(r.session is not None for r in records) else {}),
    }


def latency_samples(ok: Sequence[RequestRecord]) -> dict[str, list[float]]:
    """The samples of each latency figure (client clock): a TTFT, TPOT and e2e a request, an ITL a token."""
    return {
        "ttft_s": [r.ttft_s for r in ok if r.ttft_s is not None],
        "itl_s": [gap for r in ok for gap in r.itl_s],
        "tpot_s": [r.tpot_s for r in ok if r.tpot_s is not None],
        "e2e_s": [r.e2e_s for r in ok if r.e2e_s is not None],
    }


def latencies(records: Sequence[RequestRecord], ok: Sequence[RequestRecord],
              slo: dict[str, float] | None) -> dict[str, Any]:
    """Percentiles of TTFT, ITL, TPOT and e2e (client clock) and of per-stream decode speed, throughputs, and
    goodput under an SLO's per-request limits."""
    samples = latency_samples(ok)
    figures = {name: spread(values) for name, values in samples.items()}
    figures["stream_tps"] = speeds([r.decode_tps for r in ok if r.decode_tps is not None])
    wall = wall_s(records)
    row: dict[str, Any] = {
        "percentiles": figures,
        "intervals": {name: intervals(values) for name, values in samples.items()},  # 95 %, and each count
        "ttft_p99_s": figures["ttft_s"]["p99"],
        "tpot_p50_s": figures["tpot_s"]["p50"],
        "itl_p99_s": figures["itl_s"]["p99"],
        "request_rps": len(ok) / wall if wall > 0 else None,
        "total_tps": sum(r.output_tokens + (r.prompt_tokens or 0) for r in ok) / wall if wall > 0 else None,
    }
    if per_request(slo):
        met = sum(1 for r in records if meets(r, slo))
        row["slo_met_share"] = met / len(records) if records else None
        row["goodput_rps"] = met / wall if wall > 0 else None
    return row


def slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """The least-squares slope of ys over xs (None when xs do not vary)."""
    n = len(xs)
    if n < 2:
        return None
    x_mean, y_mean = sum(xs) / n, sum(ys) / n
    spread_x = sum((x - x_mean) ** 2 for x in xs)
    return sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys)) / spread_x if spread_x else None


def _rounds(records: Sequence[RequestRecord]) -> list[list[RequestRecord]]:
    by_round: dict[int, list[RequestRecord]] = {}
    for r in records:
        if r.send_ns:
            by_round.setdefault(r.round, []).append(r)
    return list(by_round.values())


def waiting_at(records: Sequence[RequestRecord], t: int) -> int:
    """The backlog at `t`: requests sent and still without a first token (or an end)."""
    return sum(1 for r in records if r.send_ns <= t and (r.first_token_ns or r.end_ns or t + 1) > t)


def open_loop(rate: float, records: Sequence[RequestRecord], points: int = 21) -> dict[str, Any]:
    """An open-loop cell: the rate set and the rate achieved, and whether the backlog grew while it sent.

    backlog_growth_rps is the least-squares slope of the backlog over each round's sending window, in
    requests/s: about 0 when the server keeps up, about (arrivals − what it serves) when it does not.
    """
    sent = spans = 0.0
    ends, slopes = [], []
    for group in _rounds(records):
        sends = sorted(r.send_ns for r in group)
        sent += len(sends)
        span = (sends[-1] - sends[0]) / NS
        if len(sends) < 3 or span <= 0:
            continue
        spans += span * len(sends) / (len(sends) - 1)  # n sends span n - 1 gaps
        last = sends[-1] - 1  # just before the last send: the backlog that send met, not counting itself
        times = [sends[0] + (last - sends[0]) * i // (points - 1) for i in range(points)]
        backlog = [waiting_at(group, t) for t in times]
        ends.append(backlog[-1])
        slopes.append(slope([(t - times[0]) / NS for t in times], [float(n) for n in backlog]))
    return {
        "rate": rate,
        "sent_rps": sent / spans if spans else None,
        "held_back": sum(1 for r in records if r.held_back),
        "backlog_end": max(ends) if ends else None,
        "backlog_growth_rps": mean(slopes),
    }


def conversations(records: Sequence[RequestRecord]) -> dict[str, Any]:
    """Users in conversations: TTFT by turn (does the first token slow as the history grows?), and the
    conversations that ended per second of wall time."""
    by_turn: dict[int, list[float]] = {}
    for r in records:
        if r.ok and r.turn is not None and r.ttft_s is not None:
            by_turn.setdefault(r.turn, []).append(r.ttft_s)
    wall = wall_s(records)
    done = sum(1 for r in records if r.ends_session)
    return {
        "ttft_by_turn": {turn: {"n": len(v), "p50": percentile(v, 50), "p99": percentile(v, 99)}
                         for turn, v in sorted(by_turn.items())},
        "sessions_done": done,
        "sessions_rps": done / wall if wall > 0 else None,
    }


def send_lag(records: Sequence[RequestRecord]) -> dict[str, Any]:
    """An open loop's sends against its plan: how late each went (held back under --max-inflight included)."""
    planned = [r for r in records if r.planned_ns is not None and r.send_ns]
    lags = [(r.send_ns - r.planned_ns) / NS for r in planned]
    # What the user would have seen: from when the request was due, not from when the client got it out.
    ttft = [(r.first_token_ns - r.planned_ns) / NS for r in planned if r.ok and r.first_token_ns is not None]
    e2e = [(r.end_ns - r.planned_ns) / NS for r in planned if r.ok and r.end_ns is not None]
    return {"send_lag_p50_s": percentile(lags, 50), "send_lag_p99_s": percentile(lags, 99),
            "ttft_from_plan_p50_s": percentile(ttft, 50), "ttft_from_plan_p99_s": percentile(ttft, 99),
            "e2e_from_plan_p99_s": percentile(e2e, 99)}
