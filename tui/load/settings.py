"""What the load is: the settings every engine runs with, their limits and checks, and the request they make.

One place for them, so the app, the bench and every engine refuse the same bad values with the same words.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from tui.load.prompts import MODES, build_prompt
from tui.load.wire import RequestSpec

MAX_CONCURRENCY = 1024  # the most streams the app and the bench will run at once
# The app's concurrency slider: every count up to 16, then steps that feel even on a log scale.
CONCURRENCY_STOPS = (*range(17), 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256,
                     320, 384, 448, 512, 640, 768, 896, 1024)
MAX_RATE = 10_000.0  # requests/s: more than any one client machine sends
GIL_SWITCH_S = 0.0005  # a process that sends takes the GIL back from its other threads within 0.5 ms
ARRIVALS = ("poisson", "constant")


def arrivals(kind: str, rate: float, rng: random.Random) -> Iterator[float]:
    """Seconds between arrivals: exponential gaps (Poisson arrivals) or equal ones."""
    while True:
        yield rng.expovariate(rate) if kind == "poisson" else 1 / rate


def first_arrival_ns(kind: str, rate: float, worker: int) -> int:
    """Where a worker's arrivals start: constant ones interleave across the workers, Poisson ones need not."""
    return int(1e9 * worker / rate) if kind == "constant" else 0
# The app's rate slider, requests/s: steps that feel even on a log scale (about 1, 1.5, 2, 3, 5, 7 a decade).
RATE_STOPS = (0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 70.0, 100.0)


@dataclass(frozen=True)
class LoadSettings:
    concurrency: int = 1
    words: int = 100
    mode: str = "output"
    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None
    num_ctx: int | None = None
    output_tokens: int | None = None  # exactly this many, where the server can be made to (ignore_eos)
    cancel_surplus: bool = False
    rate: float | None = None  # an open loop of this many requests/s instead of `concurrency` streams
    arrival: str = "poisson"  # the open loop's gaps: random (Poisson arrivals) or constant
    max_inflight: int = MAX_CONCURRENCY  # the open loop's ceiling; later arrivals wait at the client (held back)
    input_words: int | None = None  # synthetic prompts of this many words (new ones each request; --input-tokens)
    shared_words: int = 0  # the first this many of them the same in every prompt (--shared-prefix)
    # A phase with an end (a bench cell, a capacity level); the app's own phase has none and runs until changed.
    requests_per_stream: int | None = None  # closed loop: each stream sends this many, then stops (1: a round)
    duration_s: float | None = None  # nothing new is sent this long after the start; then the phase drains
    start_ns: int | None = None  # when the first requests go (perf_counter_ns: one clock in every process)
    round: int = 0  # written into each record (the bench's --rounds)

    @property
    def bounded(self) -> bool:
        """The phase ends by itself (a request count or a duration), then drains."""
        return self.requests_per_stream is not None or self.duration_s is not None

    def validated(self) -> LoadSettings:
        """Self, or ValueError naming the flag that sets the bad value (the app and the bench say it as it is)."""
        if not 0 <= self.concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"--concurrency must be 0 to {MAX_CONCURRENCY}, not {self.concurrency}")
        if self.words < 1:
            raise ValueError(f"--words must be 1 or more, not {self.words}")
        if self.mode not in MODES:
            raise ValueError(f"unknown --mode {self.mode!r} (choose from: {', '.join(MODES)})")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"--max-tokens must be 1 or more, not {self.max_tokens}")
        if self.temperature is not None and not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"--temperature must be a number of 0 or more, not {self.temperature}")
        if self.num_ctx is not None and self.num_ctx < 1:
            raise ValueError(f"--num-ctx must be 1 or more, not {self.num_ctx}")
        if self.output_tokens is not None and self.output_tokens < 1:
            raise ValueError(f"--output-tokens must be 1 or more, not {self.output_tokens}")
        if self.output_tokens is not None and self.max_tokens is not None:
            raise ValueError("--output-tokens sets the cap itself: leave out --max-tokens")
        if self.input_words is not None and self.input_words < 1:
            raise ValueError(f"synthetic prompts need 1 word or more, not {self.input_words}")
        if self.rate is not None and not (math.isfinite(self.rate) and 0 < self.rate <= MAX_RATE):
            raise ValueError(f"--rate must be a number of requests per second more than 0 and up to {MAX_RATE:g},"
                             f" not {self.rate}")
        if self.arrival not in ARRIVALS:
            raise ValueError(f"unknown --arrival {self.arrival!r} (choose from: {', '.join(ARRIVALS)})")
        if not 1 <= self.max_inflight <= MAX_CONCURRENCY:
            raise ValueError(f"--max-inflight must be 1 to {MAX_CONCURRENCY}, not {self.max_inflight}")
        if self.requests_per_stream is not None and self.requests_per_stream < 1:
            raise ValueError(f"a phase's requests per stream must be 1 or more, not {self.requests_per_stream}")
        if self.duration_s is not None and not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ValueError(f"--duration must be a number of seconds more than 0, not {self.duration_s}")
        return self


def request_spec(model: str, settings: LoadSettings) -> RequestSpec:
    """What one request asks for under `settings` (the app's engine and the bench build theirs here).

    With `output_tokens` M: at most M tokens, and `force_length` asks the server to ignore its end-of-text
    (llama.cpp, vLLM, SGLang; ollama cannot, so the story asked for is long enough to reach M).
    """
    words = settings.words if settings.output_tokens is None else max(settings.words, settings.output_tokens)
    return RequestSpec(model=model, prompt=build_prompt(settings.mode, words),
                       max_tokens=settings.output_tokens or settings.max_tokens, temperature=settings.temperature,
                       seed=settings.seed, num_ctx=settings.num_ctx, force_length=settings.output_tokens is not None)


def share(concurrency: int, worker: int, workers: int) -> int:
    """How many of `concurrency` streams worker `worker` of `workers` runs: stream i runs in worker i % workers."""
    return (concurrency - worker + workers - 1) // workers
