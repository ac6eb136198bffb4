"""What the simulated server simulates: its slots, speeds, cold start and faults (SimConfig)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

FAULT_KINDS = ("refuse", "busy", "cut", "malformed", "stall")


@dataclass
class SimConfig:
    parallel: int = 4  # slots; requests beyond wait in a FIFO queue
    speed: float = 1.0  # multiplier on all simulated time
    # busy slots -> per-stream decode tok/s; interpolated, and the aggregate held beyond the last point
    profile: tuple[tuple[int, float], ...] = ((1, 25.4), (2, 22.3), (4, 16.2))
    prefill_tps: float = 400.0
    ttft_s: float | None = None  # a fixed slot → first token time instead of prefill + one decode step
    # a fixed slot → last token time, tokens evenly spaced, instead of prefill, ttft and profile: a known capacity
    service_s: float | None = None
    tokens_per_chunk: int = 1  # tokens' text per streamed content chunk, as vLLM packs them
    load_s: float = 0.0  # cold-start model load on the first request(s)
    # each request's prefill (or fixed TTFT) times a lognormal draw of this sigma: a server whose latency varies
    jitter: float = 0.0
    faults: dict[str, float] = field(default_factory=dict)  # kind -> probability per request
    fault_after: int = 3  # cut / malformed / stall come after this many content tokens
    seed: int = 0
    model: str = "tokentop-sim:70b-simulated"
    version: str = "0.0.0-tokentop-sim"

    def __post_init__(self) -> None:
        if self.parallel < 1:
            raise ValueError(f"parallel must be 1 or more, not {self.parallel}")
        if not (0 < self.speed < math.inf and 0 < self.prefill_tps < math.inf):
            raise ValueError(f"speed and prefill tok/s must be numbers more than 0, not {self.speed}, {self.prefill_tps}")
        if self.ttft_s is not None and not 0 <= self.ttft_s < math.inf:
            raise ValueError(f"ttft must be a number of 0 or more, not {self.ttft_s}")
        if not 0 <= self.jitter <= 3:
            raise ValueError(f"jitter must be a number from 0 to 3 (a lognormal's sigma), not {self.jitter}")
        if self.service_s is not None:
            if not 0 < self.service_s < math.inf:
                raise ValueError(f"service time must be a number more than 0, not {self.service_s}")
            if (self.ttft_s, self.prefill_tps, self.profile) != (None, SimConfig.prefill_tps, SimConfig.profile):
                raise ValueError("a service time replaces ttft, prefill tok/s and the decode profile: set it alone")
        if not (isinstance(self.tokens_per_chunk, int) and self.tokens_per_chunk >= 1):
            raise ValueError(f"tokens per chunk must be a whole number of 1 or more, not {self.tokens_per_chunk}")
        if not 0 <= self.load_s < math.inf or self.fault_after < 0:
            raise ValueError("load time and fault_after must be numbers of 0 or more")
        if not self.profile or any(n < 1 or not r > 0 for n, r in self.profile):
            raise ValueError("profile needs (slots >= 1, tok/s > 0) points")
        if not self.model:
            raise ValueError("model name cannot be empty")
        for kind, p in self.faults.items():
            if kind not in FAULT_KINDS or not 0 <= p <= 1:
                raise ValueError(f"bad fault {kind}={p} (kinds: {', '.join(FAULT_KINDS)}; probability 0 to 1)")


def decode_rate(profile: tuple[tuple[int, float], ...], busy: int) -> float:
    """Per-stream tok/s with `busy` slots decoding."""
    points = sorted(profile)
    n = max(1, busy)
    if n <= points[0][0]:
        return points[0][1]
    for (n0, r0), (n1, r1) in zip(points, points[1:]):
        if n <= n1:
            return r0 + (r1 - r0) * (n - n0) / (n1 - n0)
    last_n, last_rate = points[-1]
    return last_rate * last_n / n


def parse_faults(spec: str) -> dict[str, float]:
    """"cut=0.5,busy=1" -> {"cut": 0.5, "busy": 1.0}; a kind alone means probability 1."""
    faults: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        kind, sep, value = (s.strip() for s in part.partition("="))
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r} in {spec!r} (choose from: {', '.join(FAULT_KINDS)})")
        try:
            probability = float(value) if sep else 1.0
        except ValueError:
            probability = float("nan")
        if not 0 <= probability <= 1:
            raise ValueError(f"fault {kind!r} needs a probability from 0 to 1, not {value!r}")
        faults[kind] = probability
    return faults
