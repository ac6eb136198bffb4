"""A server's Prometheus text read whole: its counters and gauges, its histograms by bucket, a few labelled
series; and what a histogram's increase over a window says (count, mean, quantiles estimated from buckets).

Series are summed over their labels (vLLM labels each with model_name and engine: one server, one model),
except `le`, which makes a histogram's buckets, and the labels a caller asks to keep (waiting by reason).
A quantile from buckets is an estimate, as Prometheus's `histogram_quantile` makes it: linear within the
bucket that holds it, so every estimate carries that bucket's bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MAX_BUCKETS = 256  # bounds kept per histogram: a server's text is untrusted


@dataclass
class Scrape:
    values: dict[str, float] = field(default_factory=dict)  # bare name → value summed over labels
    buckets: dict[str, dict[float, float]] = field(default_factory=dict)  # histogram → le → cumulative count
    labelled: dict[str, dict[str, float]] = field(default_factory=dict)  # name → the kept label's value → value


def _labels(text: str) -> dict[str, str]:
    """`a="x",b="y"` → {a: x, b: y}; a value's escaped quotes are kept as they are (only `le` is read)."""
    out: dict[str, str] = {}
    for part in text.split('",'):
        key, _, value = part.partition("=")
        out[key.strip()] = value.strip().strip('"')
    return out


def parse_scrape(text: str, keep: dict[str, str] | None = None) -> Scrape:
    """`keep`: metric name → the label whose values are kept apart (e.g. reason)."""
    keep = keep or {}
    scrape = Scrape()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        labels: dict[str, str] = {}
        if "{" in line:
            name, _, rest = line.partition("{")
            inside, _, rest = rest.rpartition("}")
            if name.endswith("_bucket") or name in keep:
                labels = _labels(inside)
        else:
            name, _, rest = line.partition(" ")
        parts = rest.split()
        try:
            value = float(parts[0]) if parts else math.nan
        except ValueError:
            continue
        if math.isnan(value):
            continue
        if name.endswith("_bucket") and "le" in labels:
            try:
                bound = float(labels["le"])
            except ValueError:
                continue
            buckets = scrape.buckets.setdefault(name[: -len("_bucket")], {})
            if bound in buckets or len(buckets) < MAX_BUCKETS:
                buckets[bound] = buckets.get(bound, 0.0) + value
            continue
        scrape.values[name] = scrape.values.get(name, 0.0) + value
        if name in keep and (label := labels.get(keep[name])) is not None:
            kept = scrape.labelled.setdefault(name, {})
            if label in kept or len(kept) < MAX_BUCKETS:
                kept[label[:40]] = kept.get(label[:40], 0.0) + value
    return scrape


@dataclass(frozen=True)
class Estimate:
    """A quantile read from buckets: the value (linear within its bucket) and that bucket's bounds."""

    value: float
    low: float
    high: float  # math.inf: past the last finite bound, where only the low bound is known

    def bucket(self) -> str:
        """"0.5–1 s", "> 40 s": the bucket that holds the value, in seconds."""
        if math.isinf(self.high):
            return f"> {self.low:g} s"
        return f"{self.low:g}–{self.high:g} s"


@dataclass(frozen=True)
class Increase:
    """A histogram's increase over a window: its observations, their sum, and the buckets' counts."""

    count: float
    total: float  # the sum of the observations (seconds)
    buckets: tuple[tuple[float, float], ...]  # (le, cumulative count), le ascending, +Inf last

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count > 0 else None

    def quantile(self, q: float) -> Estimate | None:
        """q in 0..1, as `histogram_quantile`: None when nothing was observed."""
        if self.count <= 0 or not self.buckets:
            return None
        rank = q * self.buckets[-1][1]
        low, below = 0.0, 0.0
        for bound, cumulative in self.buckets:
            if cumulative >= rank and cumulative > below:
                if math.isinf(bound):  # Prometheus answers the last finite bound
                    return Estimate(low, low, math.inf)
                share = (rank - below) / (cumulative - below)
                return Estimate(low + (bound - low) * share, low, bound)
            low, below = (bound if not math.isinf(bound) else low), cumulative
        return Estimate(low, low, math.inf)


def increase(name: str, after: Scrape, before: Scrape | None) -> Increase | None:
    """`name`'s increase from `before` to `after` (all of `after` when there is no before, or the counters went
    back: the server restarted); None when the server has no such histogram."""
    now = after.buckets.get(name)
    if now is None:
        return None
    count, total = after.values.get(name + "_count", 0.0), after.values.get(name + "_sum", 0.0)
    then = before.buckets.get(name, {}) if before is not None else {}
    if before is not None and before.values.get(name + "_count", 0.0) <= count:
        count -= before.values.get(name + "_count", 0.0)
        total -= before.values.get(name + "_sum", 0.0)
    else:
        then = {}
    bounds = sorted(now)
    if not bounds or not math.isinf(bounds[-1]):
        return None  # not a histogram as Prometheus writes one
    return Increase(count, total, tuple((b, max(0.0, now[b] - then.get(b, 0.0))) for b in bounds))


def counter_increase(name: str, after: Scrape, before: Scrape | None) -> float | None:
    """A counter's increase (its whole value when there is no before or it went back); None when absent."""
    if name not in after.values:
        return None
    now = after.values[name]
    then = before.values.get(name, 0.0) if before is not None else 0.0
    return now - then if now >= then else now
