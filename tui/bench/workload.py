"""What a bench run is, built once from the flags: the workload every cell shares (the engine's LoadSettings)
and the cells it varies — the loads (concurrencies, rates, users in conversations, or a trace), the word
counts, the rounds."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from tui.bench.until import Until
from tui.load.settings import LoadSettings

CONCURRENCY, RATE, USERS, TRACE = "concurrency", "rate", "users", "trace"  # what a cell's load is
REQUEST_S = 10.0  # how long a request under load is taken to last, to size an open loop's workers


@dataclass(frozen=True)
class BenchRun:
    settings: LoadSettings  # shared by every cell (no load of its own: each cell sets it); duration_s: how long
    loads: tuple[float, ...]  # empty for --find-capacity: the search picks them; (0,) for a trace: one cell
    words: tuple[int, ...]  # the story's words, or the prompts' length or count (the table's second column)
    shape: str  # CONCURRENCY, RATE, USERS or TRACE
    rounds: int
    slo: dict[str, float] | None
    prompts: list[str] | None  # --prompts FILE's
    capacity: str | None  # --find-capacity's kind
    words_defaulted: str | None  # the flag that made one word count the default, said in the plan
    prompt_kind: str  # what the prompts are, for the table's header
    trace_rate: float = 0.0  # a trace's mean requests/s, once it is read
    conversations: list[tuple[str, ...]] | None = None  # --users with --prompts FILE: each one's human turns
    until: Until | None = None  # --until: each cell ends once this sure (tui/bench/until.py)

    @property
    def duration_s(self) -> float | None:
        return self.settings.duration_s

    @property
    def open_loop(self) -> bool:
        return self.shape in (RATE, TRACE)

    def with_synthetic(self, words: int, shared_words: int) -> BenchRun:
        """Synthetic prompts of this many words (calibrated against the server's own token count)."""
        return replace(self, settings=replace(self.settings, input_words=words, shared_words=shared_words))

    def cell(self, load: float, words: int, rnd: int) -> dict[str, Any]:
        """The phase of one cell's round: N requests at once (or N streams for the duration), a rate, N users
        in conversations for the duration, or the trace."""
        shape = {CONCURRENCY: {"concurrency": int(load)}, RATE: {"rate": load}, USERS: {"users": int(load)},
                 TRACE: {"replay": True}}[self.shape]
        once = self.shape == CONCURRENCY and not self.duration_s  # the article's round: each stream sends one
        # Its duration too: a warm-up's (or an early end's, --until) must not carry over to the cell.
        return {"rate": None, "users": None, "replay": False, **shape, "words": words, "round": rnd,
                "requests_per_stream": 1 if once else None, "warmup_s": None, "duration_s": self.duration_s}

    def warmup(self) -> dict[str, Any] | None:
        """--warmup's phase, before the first cell: its load, held that long, every request marked warmup."""
        warmup = self.settings.warmup_s
        if not warmup or not self.loads:
            return None
        return {**self.cell(self.loads[0], self.words[0], 0), "requests_per_stream": None, "duration_s": warmup,
                "warmup_s": warmup}

    def with_trace(self, trace, calibration: tuple[float, float]) -> BenchRun:
        """A trace's run: its mean rate (for its row and its workers), its requests (the row's second column) and
        the server's token counting (for its prompts' lengths)."""
        return replace(self, trace_rate=float(f"{mean_rate(trace):.3g}"), words=(len(trace.requests),),
                       settings=replace(self.settings, calibration=calibration))

    def connections(self, load: float) -> int:
        """What a cell opens before its first request: its N streams, or about a second of its arrivals (a user
        thinks more than it talks: a tenth of them)."""
        if self.shape == USERS:
            return max(1, int(load) // 10)
        if self.open_loop:
            return min(self.settings.max_inflight, math.ceil(self.trace_rate if self.shape == TRACE else load))
        return int(load)

    @property
    def most_in_flight(self) -> int:
        """About the most requests the run has in flight at once (the default worker count follows it): a closed
        loop's largest N; an open loop's highest rate for as long as a request under load takes (say 10 s)."""
        most = self.trace_rate if self.shape == TRACE else max(self.loads or (1,))
        if self.open_loop:
            return min(self.settings.max_inflight, math.ceil(most * REQUEST_S))
        return int(most)


def mean_rate(trace) -> float:
    """A trace's requests per second over its span (its requests, when they all come at once)."""
    requests = trace.requests
    span = requests[-1].at_s - requests[0].at_s if requests else 0.0
    return len(requests) / span if span > 0 else float(len(requests) or 1)
