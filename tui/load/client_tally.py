"""The client's side as running totals: latency histograms, requests by outcome, tokens (client-measured).

Histograms are counts per bucket since the start, as Prometheus keeps them, so one from every worker adds up
to the process's, and `tui/metrics_server.py` serves them as `tokentop_*` series. The bounds are vLLM's own
(vllm/v1/metrics/buckets.py) where they overlap, with finer ones below for fast servers, so one
`histogram_quantile` query reads the client's and vLLM's figures alike.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field

from tui.load.records import RequestRecord

TTFT_BOUNDS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
               40.0, 80.0, 160.0, 640.0, 2560.0)  # vLLM's time_to_first_token
ITL_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
              7.5, 10.0, 20.0, 40.0, 80.0)  # vLLM's inter_token_latency from 0.01 up
E2E_BOUNDS = (0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
              240.0, 480.0, 960.0, 1920.0, 7680.0)  # vLLM's request_latency from 0.3 up
BOUNDS = {"ttft": TTFT_BOUNDS, "itl": ITL_BOUNDS, "tpot": ITL_BOUNDS, "e2e": E2E_BOUNDS}
_KIND = re.compile(r"[a-z_]{1,20}")  # an error kind is one of the engine's own words; anything else is "other"


def outcome_of(record: RequestRecord) -> str:
    """ok, cancelled (by a stop or on purpose), or the error's kind: a short, fixed set (a Prometheus label)."""
    if record.cancelled_by_plan:
        return "cancelled"
    if record.error_kind is None:
        return "ok"
    return record.error_kind if _KIND.fullmatch(record.error_kind) else "other"


@dataclass
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # one per bound, then one past the last (+Inf)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = self.counts or [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.observe_all((value,))

    def observe_all(self, values: Sequence[float]) -> None:
        """Each value in order (a request's gaps at once); a value on a bound counts in it (le)."""
        counts, bounds, total = self.counts, self.bounds, self.total
        for value in values:
            counts[bisect_left(bounds, value)] += 1
            total += value
        self.total = total
        self.n += len(values)

    def cumulative(self) -> list[tuple[str, int]]:
        """[(le, observations ≤ le)], ending with "+Inf": what a Prometheus histogram's buckets say."""
        out, running = [], 0
        for bound, count in zip([*map(repr, self.bounds), "+Inf"], self.counts):
            running += count
            out.append((bound, running))
        return out

    def add(self, other: Histogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts)]
        self.total += other.total
        self.n += other.n


@dataclass
class ClientTally:
    histograms: dict[str, Histogram] = field(default_factory=lambda: {k: Histogram(b) for k, b in BOUNDS.items()})
    outcomes: dict[str, int] = field(default_factory=dict)
    output_tokens: int = 0
    prompt_tokens: int = 0

    def observe(self, record: RequestRecord) -> None:
        """One finished request. Tokens count for every request that streamed any; times only for those that
        went as asked (ok), as the bench's table counts them."""
        outcome = outcome_of(record)
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.output_tokens += record.output_tokens
        self.prompt_tokens += record.prompt_tokens or 0
        if outcome != "ok":
            return
        h = self.histograms
        for name, value in (("ttft", record.ttft_s), ("e2e", record.e2e_s), ("tpot", record.tpot_s)):
            if value is not None:
                h[name].observe(value)
        h["itl"].observe_all(record.itl_s)

    def add(self, other: ClientTally) -> None:
        for name, histogram in other.histograms.items():
            self.histograms[name].add(histogram)
        for outcome, n in other.outcomes.items():
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n
        self.output_tokens += other.output_tokens
        self.prompt_tokens += other.prompt_tokens

    def copy(self) -> ClientTally:
        out = ClientTally()
        out.add(self)
        return out


def merged(tallies: list[ClientTally | None]) -> ClientTally:
    out = ClientTally()
    for tally in tallies:
        if tally is not None:
            out.add(tally)
    return out
