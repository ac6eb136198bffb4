"""How sure a figure is: 95 % confidence intervals for a percentile and for a mean.

A percentile's interval is distribution-free: the order statistics X(l) ≤ q ≤ X(u) whose ranks the binomial
distribution of "how many samples fall below the true quantile" gives, each side's chance of missing nearest
2.5 % (the binomial exact up to MAX_EXACT samples, its normal approximation beyond). Where the samples cannot
bound one side (a p99 of 200 requests has no sample surely above it), that side is None (unbounded) and the
other takes the whole 5 %. A mean's interval is Student's t. Both assume independent samples: requests are
close to that; the chunk gaps of one request (ITL) are not, so their intervals read narrower than they are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

LEVEL = 0.95
Z = 1.959963984540054  # the normal distribution's 97.5th percentile
MAX_EXACT = 5000  # samples: up to here the binomial is summed exactly
FEW_FOR_P99 = 100  # a p99 from fewer requests is one unlucky request, and says so

Interval = tuple[float | None, float | None]  # (low, high); None: that side is unbounded


def _binomial_cdf(n: int, p: float) -> list[float]:
    """P(B ≤ k) for k = 0 … n, B ~ Binomial(n, p), summed in log space (no overflow at n = 5,000)."""
    if p <= 0 or p >= 1:
        return [1.0] * (n + 1) if p <= 0 else [0.0] * n + [1.0]
    logs = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p)
            + (n - k) * math.log1p(-p) for k in range(n + 1)]
    top = max(logs)
    weights = [math.exp(v - top) for v in logs]
    total, running, cdf = sum(weights), 0.0, []
    for w in weights:
        running += w
        cdf.append(running / total)
    return cdf


def _ranks(n: int, q: float, alpha: float) -> tuple[int | None, int | None]:
    """1-based ranks (l, u) whose chances of missing the quantile, P(X(l) > quantile) and P(X(u) < quantile),
    are nearest alpha/2 each: the binomial's steps make "at most alpha/2" cover 98–99 % where 95 % was asked.
    None: no rank comes within twice that (the other side then aims at all of alpha)."""
    if n > MAX_EXACT:
        spread = Z * math.sqrt(n * q * (1 - q))
        low, high = math.floor(n * q - spread), math.ceil(n * q + spread) + 1
        return (low if low >= 1 else None), (high if high <= n else None)
    cdf = _binomial_cdf(n, q)

    def lower(a: float) -> int | None:  # the l whose P(X(l) > quantile) = P(B ≤ l - 1) is nearest a
        tails = [(abs(cdf[rank - 1] - a), rank) for rank in range(1, n + 1) if cdf[rank - 1] <= 2 * a]
        return min(tails)[1] if tails else None

    def upper(a: float) -> int | None:  # the u whose P(X(u) < quantile) = P(B ≥ u) is nearest a
        tails = [(abs(1 - cdf[rank - 1] - a), rank) for rank in range(1, n + 1) if 1 - cdf[rank - 1] <= 2 * a]
        return min(tails)[1] if tails else None

    low, high = lower(alpha / 2), upper(alpha / 2)
    if high is None:
        low = lower(alpha)
    elif low is None:
        high = upper(alpha)
    return low, high


def quantile_interval(values: Sequence[float], q: float, level: float = LEVEL) -> Interval:
    """A `level` interval for the q-quantile (q in 0..1) of the distribution `values` were drawn from."""
    xs = sorted(values)
    if not xs:
        return None, None
    low, high = _ranks(len(xs), q, 1 - level)
    return (xs[low - 1] if low else None), (xs[high - 1] if high else None)


def _t975(df: int) -> float:
    """Student's t 97.5th percentile (Cornish–Fisher from the normal; within 0.5 % from 3 degrees of freedom)."""
    z = Z
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2) + (
        3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * df ** 3)


def mean_interval(values: Sequence[float]) -> Interval:
    n = len(values)
    if n < 2:
        return None, None
    m = sum(values) / n
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    half = _t975(n - 1) * sd / math.sqrt(n)
    return m - half, m + half


def intervals(values: Sequence[float]) -> dict[str, object]:
    """The intervals of a spread's figures (tui/load/stats.py `spread`): mean, p50, p90, p99, and the count."""
    return {"n": len(values), "mean": list(mean_interval(values)),
            **{f"p{q}": list(quantile_interval(values, q / 100)) for q in (50, 90, 99)}}


def half_width_pct(value: float | None, interval: Sequence[float | None]) -> float | None:
    """The interval's half-width as a share of the value, in percent (None when a side is unbounded)."""
    low, high = interval
    if value is None or low is None or high is None or value == 0:
        return None
    return (high - low) / 2 / abs(value) * 100


def overlap(a: Sequence[float | None], b: Sequence[float | None]) -> bool:
    """Whether two intervals share a point (an unbounded side reaches everything on its side)."""
    a_low, a_high = (-math.inf if a[0] is None else a[0]), (math.inf if a[1] is None else a[1])
    b_low, b_high = (-math.inf if b[0] is None else b[0]), (math.inf if b[1] is None else b[1])
    return a_low <= b_high and b_low <= a_high
