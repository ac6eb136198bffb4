"""What a bench run is, built once from the flags: the workload every cell shares (the engine's LoadSettings)
and the cells it varies — the loads (concurrencies, or rates in an open loop), the word counts, the rounds."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from tui.load.settings import LoadSettings

REQUEST_S = 10.0  # how long a request under load is taken to last, to size an open loop's workers


@dataclass(frozen=True)
class BenchRun:
    settings: LoadSettings  # shared by every cell (no load of its own: each cell sets it); duration_s: how long a cell holds it
    loads: tuple[float, ...]  # empty for --find-capacity: the search picks them
    words: tuple[int, ...]  # the story's words, or the prompts' length or count (the table's second column)
    open_loop: bool
    rounds: int
    slo: dict[str, float] | None
    prompts: list[str] | None  # --prompts FILE's
    capacity: str | None  # --find-capacity's kind
    words_defaulted: str | None  # the flag that made one word count the default, said in the plan
    prompt_kind: str  # what the prompts are, for the table's header

    @property
    def duration_s(self) -> float | None:
        return self.settings.duration_s

    def with_synthetic(self, words: int, shared_words: int) -> BenchRun:
        """Synthetic prompts of this many words (calibrated against the server's own token count)."""
        return replace(self, settings=replace(self.settings, input_words=words, shared_words=shared_words))

    def cell(self, load: float, words: int, rnd: int) -> dict[str, Any]:
        """The phase of one cell's round: N requests at once (or N streams for the duration), or a rate."""
        shape = {"rate": load} if self.open_loop else {"rate": None, "concurrency": int(load)}
        return {**shape, "words": words, "round": rnd,
                "requests_per_stream": None if self.duration_s else 1}

    def connections(self, load: float) -> int:
        """What a cell opens before its first request: its N streams, or about a second of its arrivals."""
        return min(self.settings.max_inflight, math.ceil(load)) if self.open_loop else int(load)

    @property
    def most_in_flight(self) -> int:
        """About the most requests the run has in flight at once (the default worker count follows it): a closed
        loop's largest N; an open loop's highest rate for as long as a request under load takes (say 10 s)."""
        most = max(self.loads or (1,))
        return min(self.settings.max_inflight, math.ceil(most * REQUEST_S)) if self.open_loop else int(most)
