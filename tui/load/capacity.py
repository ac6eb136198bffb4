"""The capacity finder: the highest load (concurrent streams, or requests/s) that still meets an SLO.

It steps the load up (1, 2, 4, 8 … streams; 1, 2, 4 … requests/s, halving instead when 1/s already
breaks), then bisects between the last level that met the SLO and the first that broke it: to one
stream, or to within 15 % for a rate. Each level is held for --duration seconds (a closed loop keeps
its N streams busy; an open loop sends at its rate), so what is judged is the level's steady state,
not one burst. The same search steps the app's slider live (`f`).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tui.load.records import RequestRecord
from tui.load.settings import MAX_CONCURRENCY, MAX_RATE
from tui.load.slo import Broken, broken, slo_text
from tui.load.stats import cell_row

CONCURRENCY, RATE = "concurrency", "rate"
KINDS = (CONCURRENCY, RATE)
RATE_CLOSE = 1.15  # a rate search ends when the first breaking rate is within 15 % of the last that met
MIN_RATE = 0.05  # requests/s: below this a rate search gives up (capacity 0)


@dataclass
class CapacitySearch:
    kind: str = CONCURRENCY
    most: float | None = None  # the highest level it may try
    results: dict[float, list[Broken]] = field(default_factory=dict)  # level → what it missed (empty: met)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown capacity kind {self.kind!r} (choose from: {', '.join(KINDS)})")
        if self.most is None:
            self.most = MAX_CONCURRENCY if self.kind == CONCURRENCY else MAX_RATE

    # --- the two ends -------------------------------------------------------------------------------
    @property
    def breaks_at(self) -> float | None:
        """The lowest level that broke it."""
        return min((level for level, missed in self.results.items() if missed), default=None)

    @property
    def capacity(self) -> float:
        """The answer: the highest level that met the SLO below the first that broke it; 0 when none did."""
        limit = self.breaks_at
        good = [level for level, missed in self.results.items() if not missed and (limit is None or level < limit)]
        return max(good, default=0)

    @property
    def broken_slo(self) -> list[Broken]:
        limit = self.breaks_at
        return self.results[limit] if limit is not None else []

    # --- the steps ----------------------------------------------------------------------------------
    def record(self, level: float, missed: list[Broken]) -> None:
        self.results[level] = list(missed)

    def next_level(self) -> float | None:
        """The next level to try, or None when the search is over."""
        low, high = self.capacity or None, self.breaks_at
        if self.kind == CONCURRENCY:
            if high is None:
                level = 1 if low is None else min(int(low) * 2, int(self.most))
                return None if level in self.results else level
            low = low or 0
            return None if high - low <= 1 else (int(low) + int(high)) // 2
        if high is None:
            level = 1.0 if low is None else min(low * 2, self.most)
            return None if level in self.results else level
        if low is None:  # even the first rate broke: go down
            level = _round(high / 2)
            return None if level < MIN_RATE else level
        if high / low <= RATE_CLOSE:
            return None
        level = _round(math.sqrt(low * high))
        return None if level in self.results or not low < level < high else level

    # --- the answer ---------------------------------------------------------------------------------
    def unit(self, level: float) -> str:
        return f"{level:g} stream{'s' if level != 1 else ''}" if self.kind == CONCURRENCY else f"{level:g} requests/s"

    def summary(self, slo: dict[str, float]) -> str:
        """The answer in a sentence or two."""
        wanted = slo_text(slo)
        breaks = self.breaks_at
        if self.capacity == 0:
            head = f"Capacity: 0 — even {self.unit(breaks)} breaks the SLO ({wanted})" if breaks is not None else (
                "Capacity: none measured")
        else:
            head = f"Capacity: {self.unit(self.capacity)} within the SLO ({wanted})"
        if breaks is None:
            return head + f"; nothing up to {self.unit(self.capacity)} broke it (the search's ceiling)."
        missed = "; ".join(str(b) for b in self.broken_slo)
        return head + (f".\nBreaks at {self.unit(breaks)}: {missed}." if self.capacity else f": {missed}.")

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "capacity": self.capacity,
            "breaks_at": self.breaks_at,
            "broken_slo": [str(b) for b in self.broken_slo],
            "levels": [{"level": level, "met": not missed, "broken": [str(b) for b in missed]}
                       for level, missed in sorted(self.results.items())],
        }


def _round(rate: float) -> float:
    """Two significant figures: levels people can read and type again."""
    return float(f"{rate:.2g}")


async def search_capacity(search: CapacitySearch, run_level: Callable[[float], Awaitable[list[RequestRecord]]],
                          slo: dict[str, float], heard: Callable[[float, list[Broken]], None]) -> None:
    """The search, for the app's `f` and the bench's --find-capacity alike: `run_level(level)` holds the load at
    a level until its requests have finished and returns them; `heard` is told each level's verdict."""
    while (level := search.next_level()) is not None:
        missed = judge(await run_level(level), slo)
        search.record(level, missed)
        heard(level, missed)


def judge(records: Sequence[RequestRecord], slo: dict[str, float]) -> list[Broken]:
    """What a level's requests missed of `slo`."""
    finished = [r for r in records if r.finished]
    if not finished:
        return [Broken("requests", 0, 1)]  # none finished: too slow to judge, so too slow
    return broken(cell_row(None, 0, finished, slo), slo)
