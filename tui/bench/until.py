"""--until STAT=PCT: a cell runs until STAT's 95 % interval is within PCT of its value (half-width ÷ value),
capped by --duration; its row says the precision it reached."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tui.flags import UsageError
from tui.load.contract import Engine
from tui.load.confidence import half_width_pct, mean_interval, quantile_interval
from tui.load.records import RequestRecord
from tui.load.sample import Sample
from tui.load.stats import latency_samples, mean, percentile

FIGURES = ("ttft", "tpot", "itl", "e2e")
STATS = ("p50", "p90", "p99", "mean")
MIN_REQUESTS = 10  # never judged on fewer: an interval from a handful of requests is itself unsure
JUDGED_EVERY_S = 0.5  # how often a running cell's precision is worked out


@dataclass(frozen=True)
class Until:
    figure: str  # ttft, tpot, itl, e2e
    stat: str  # p50, p90, p99, mean
    pct: float

    @property
    def name(self) -> str:
        return f"{self.figure}_{self.stat}"

    def precision(self, records: list[RequestRecord]) -> float | None:
        """The statistic's interval half-width over its value, in percent, over the successful requests so far."""
        ok = [r for r in records if r.ok and not r.warmup]
        if len(ok) < MIN_REQUESTS:
            return None
        values = latency_samples(ok)[f"{self.figure}_s"]
        if self.stat == "mean":
            return half_width_pct(mean(values), mean_interval(values))
        q = int(self.stat[1:])
        return half_width_pct(percentile(values, q), quantile_interval(values, q / 100))

    def met(self, records: list[RequestRecord]) -> bool:
        reached = self.precision(records)
        return reached is not None and reached <= self.pct

    def report(self, records: list[RequestRecord], ran_s: float) -> dict[str, Any]:
        reached = self.precision(records)
        return {"stat": self.name, "target_pct": self.pct, "reached_pct": reached,
                "met": reached is not None and reached <= self.pct, "ran_s": round(ran_s, 2)}


class Stopper:
    """Hears a round's requests as they finish and ends the round once its cell is sure enough: nothing new is
    sent (the phase's duration becomes what has passed), and the requests in flight finish."""

    def __init__(self, until: Until, engine: Engine, kept: Sample,
                 collect: Callable[[list[RequestRecord]], None]) -> None:
        self._until, self._engine, self._collect = until, engine, collect
        self._kept = kept  # the cell's requests, its earlier rounds' too, as `collect` keeps them
        self._begun = self._judged = time.monotonic()
        self.sure = False

    def heard(self, new: list[RequestRecord]) -> None:
        self._collect(new)
        now = time.monotonic()
        if self.sure or now - self._judged < JUDGED_EVERY_S:
            return
        self._judged = now
        if self._until.met(self._kept.kept):
            self.sure = True
            self._engine.update(duration_s=max(0.001, now - self._begun))


def parse_until(text: str | None) -> Until | None:
    if text is None:
        return None
    name, _, pct = text.partition("=")
    figure, _, stat = name.strip().partition("_")
    if figure not in FIGURES or stat not in STATS:
        names = ", ".join(f"{f}_{s}" for f in FIGURES for s in STATS)
        raise UsageError(f"--until takes STAT=PCT with STAT one of {names}, not {text!r}")
    try:
        value = float(pct.strip().rstrip("%"))
    except ValueError:
        raise UsageError(f"--until takes a percentage after '=', e.g. ttft_p99=10%, not {text!r}") from None
    if not 0 < value < 100:
        raise UsageError(f"--until's precision must be more than 0 and less than 100 %, not {value:g}")
    return Until(figure, stat, value)
