"""The client's own cost, so the instrument can say when it, not the server, is the bottleneck.

Two signs, sampled on the engine's event loop: how late a short sleep wakes up (loop lag: every chunk
timestamp is that late too) and the process's CPU time per second of wall time (a Python client near a
full core queues its own reads).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

from tui.load.stats import percentile

TICK_S = 0.05  # 40 samples in a 2 s window; a cheap wake-up even when idle
LAG_WARN_MS = 5.0  # timestamps later than this at p90 are no longer worth their millisecond digits
CPU_WARN = 0.9  # of one core: past this the client's own queue grows
MIN_SPAN_S = 0.5  # a shorter look (a cell of one quick request) says too little to warn on


@dataclass(frozen=True)
class ClientCost:
    lag_p90_ms: float | None  # over the window
    lag_max_ms: float | None
    cpu: float | None  # fraction of one core over the window
    span_s: float = 0.0  # how long the figures were sampled

    @property
    def warning(self) -> str | None:
        """A plain sentence when the client is the bottleneck, else None."""
        if self.span_s < MIN_SPAN_S:
            return None
        if self.cpu is not None and self.cpu >= CPU_WARN:
            return f"client-bound: tokentop's engine uses {self.cpu:.0%} of a core; its figures measure itself"
        if self.lag_p90_ms is not None and self.lag_p90_ms > LAG_WARN_MS:
            return (f"client-bound: tokentop's event loop runs {self.lag_p90_ms:.0f} ms late (p90);"
                    " its times are that much late too")
        return None


class CostMonitor:
    """Run `sample()` as a task on the engine's loop; read `cost()` (the last window) or `phase_cost()` (since
    `mark()`) from any thread."""

    def __init__(self, window_s: float = 2.0) -> None:
        self._lags: deque[float] = deque(maxlen=max(1, int(window_s / TICK_S)))
        self._cpu: deque[tuple[float, float]] = deque(maxlen=self._lags.maxlen + 1)
        self._phase_lags: list[float] = []
        self._phase_from: tuple[float, float] | None = None  # (perf_counter, process_time) at the mark

    async def sample(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(TICK_S)
            lag = max(0.0, time.perf_counter() - start - TICK_S) * 1000
            self._lags.append(lag)
            self._phase_lags.append(lag)
            self._cpu.append((time.perf_counter(), time.process_time()))

    def cost(self) -> ClientCost:
        lags, cpu = list(self._lags), list(self._cpu)
        fraction, span = None, 0.0
        if len(cpu) >= 2 and cpu[-1][0] > cpu[0][0]:
            span = cpu[-1][0] - cpu[0][0]
            fraction = (cpu[-1][1] - cpu[0][1]) / span
        return ClientCost(percentile(lags, 90), max(lags) if lags else None, fraction, span)

    def mark(self) -> None:
        """A phase begins: its own figures start now."""
        self._phase_lags = []
        self._phase_from = (time.perf_counter(), time.process_time())

    def phase_cost(self) -> ClientCost | None:
        """The figures since the last mark, or None before one."""
        if self._phase_from is None:
            return None
        lags = list(self._phase_lags)
        span = time.perf_counter() - self._phase_from[0]
        fraction = (time.process_time() - self._phase_from[1]) / span if span > 0 else None
        return ClientCost(percentile(lags, 90), max(lags) if lags else None, fraction, span)
