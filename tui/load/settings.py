"""What the load is: the settings every engine runs with, their limits and checks, and the request they make.

One place for them, so the app, the bench and every engine refuse the same bad values with the same words.
"""

from __future__ import annotations

import math
import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field

from tui.load.prompts import MODES, build_prompt
from tui.load.wire import RequestSpec

MAX_STREAMS = 16_384  # the one limit of streams, users and requests in flight, in the app and the bench
MAX_CONCURRENCY = MAX_STREAMS
# The app's concurrency slider: every count up to 16, then steps that feel even on a log scale.
CONCURRENCY_STOPS = (*range(17), 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256,
                     320, 384, 448, 512, 640, 768, 896, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 12_288, 16_384)
MAX_RATE = 10_000.0  # requests/s: more than any one client machine sends
ARRIVALS = ("poisson", "constant", "gamma")
THINKS = ("exponential", "fixed")
MAX_USERS = MAX_STREAMS  # users in conversations (most of them think, holding no connection)
MAX_TURNS = 1_000
# The app's users slider: every count up to 10, then steps that feel even on a log scale.
USER_STOPS = (*range(1, 11), 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1000, 1500, 2000, 3000, 5000, 7000,
              10_000, 16_384)


def arrivals(kind: str, rate: float, rng: random.Random, burstiness: float = 1.0) -> Iterator[float]:
    """Seconds between arrivals: exponential gaps (Poisson arrivals), equal ones, or gamma gaps of shape
    `burstiness` and mean 1/rate (vllm bench serve's --burstiness: 1 is Poisson, below 1 burstier)."""
    while True:
        if kind == "poisson":
            yield rng.expovariate(rate)
        elif kind == "gamma":
            yield rng.gammavariate(burstiness, 1 / (rate * burstiness))
        else:
            yield 1 / rate


def ramped(t_s: float, ramp_s: float | None) -> float:
    """Real seconds from the start for `t_s` seconds of arrivals at the full rate, when the rate rises linearly
    from nothing over `ramp_s` seconds: the arrivals' own clock, Λ(t) = t²/2R, turned back into time."""
    if not ramp_s:
        return t_s
    return math.sqrt(2 * ramp_s * t_s) if t_s < ramp_s / 2 else t_s + ramp_s / 2


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
    # What makes this run's synthetic and trace prompts its own when no --seed is given: the same prompts in two
    # runs would be served from the server's prefix cache in the second (one per settings, kept by replace()).
    prompt_salt: str = field(default_factory=lambda: secrets.token_hex(4), compare=False)
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
    # How the load arrives and leaves
    burstiness: float = 1.0  # --arrival gamma: the gaps' gamma shape
    ramp_s: float | None = None  # the load (streams, rate or users) rises linearly from nothing over this long
    warmup_s: float | None = None  # requests sent this long after the phase's start are marked warmup
    cancel_share: float = 0.0  # a share of the requests that the client closes on purpose (seeded) …
    cancel_after_s: float = 1.0  # … this long after it sent them
    # Users in conversations: each turn resends the history, after a pause to think
    users: int | None = None  # this many users instead of streams or a rate
    turns: tuple[int, int] = (1, 1)  # each conversation's turns, drawn between these
    think_s: float = 0.0  # the mean pause between an answer and the next turn
    think: str = "exponential"
    replay: bool = False  # the engine's trace at its own times (an open loop) instead of a rate
    calibration: tuple[float, float] | None = None  # (tokens a word, template tokens) as this server counts them

    @property
    def salt(self) -> str:
        """"" with --seed (the prompts repeat run after run, as asked), else this run's own."""
        return "" if self.seed is not None else self.prompt_salt

    @property
    def bounded(self) -> bool:
        """The phase ends by itself (a request count, a duration, the trace's end), then drains."""
        return self.requests_per_stream is not None or self.duration_s is not None or self.replay

    @property
    def open_loop(self) -> bool:
        """Requests sent at planned times (a rate or a trace), not by streams or users."""
        return self.replay or (self.rate is not None and self.users is None)

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
        return self._shape_checked()

    def _shape_checked(self) -> LoadSettings:
        def seconds(value: float | None, flag: str, zero: bool = False) -> None:
            if value is not None and not (math.isfinite(value) and (value >= 0 if zero else value > 0)):
                more = "0 or more" if zero else "more than 0"
                raise ValueError(f"{flag} must be a number of seconds {more}, not {value}")

        if not (math.isfinite(self.burstiness) and 0 < self.burstiness <= 100):
            raise ValueError(f"--burstiness must be a number more than 0 and up to 100, not {self.burstiness}")
        seconds(self.ramp_s, "--ramp")
        seconds(self.warmup_s, "--warmup")
        seconds(self.cancel_after_s, "--cancel-after")
        seconds(self.think_s, "--think-time", zero=True)
        if not (math.isfinite(self.cancel_share) and 0 <= self.cancel_share <= 1):
            raise ValueError(f"--cancel-share must be a share from 0 to 1, not {self.cancel_share}")
        if self.users is not None and not 1 <= self.users <= MAX_USERS:
            raise ValueError(f"--users must be 1 to {MAX_USERS:,}, not {self.users}")
        low, high = self.turns
        if not 1 <= low <= high <= MAX_TURNS:
            raise ValueError(f"--turns must be 1 to {MAX_TURNS}, or a range like 2-8, not {low}-{high}")
        if self.think not in THINKS:
            raise ValueError(f"unknown --think {self.think!r} (choose from: {', '.join(THINKS)})")
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
