"""Turns: the work that may wait — a finished request's bookkeeping and the next request of a closed loop — goes
a few pieces per loop iteration, so that the reads that stamp chunks never queue behind a wave of it.

Without turns, when a closed loop's thousands of requests end at once, each loop iteration wakes hundreds of
streams (about 0.2 ms of work each on this machine), and a first token that arrives meanwhile is stamped only
after all of them: 100 ms late. With turns an iteration does about BUDGET_S of it; the rest waits for the next
iterations, after the reads. The wave takes as long as before (the same work), only the stamps stay true; a
stream waiting its turn sends its next request that much later, as a busy client would anyway.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

BUDGET_S = 0.001
MOST_PER_ITERATION = 32  # the first iteration of a wave, before the share adapts: about 6 ms here


class Turns:
    def __init__(self, budget_s: float = BUDGET_S) -> None:
        self._budget_ns = int(budget_s * 1e9)
        self._per_iteration = MOST_PER_ITERATION  # adapted each iteration, so that a share takes about the budget
        self._taken = 0  # this iteration's
        self._since_ns = 0  # when this iteration's first turn was taken
        self._waiting: deque[asyncio.Future] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def take(self) -> None:
        """Return at once while this iteration has turns left; else in a later iteration, first come first."""
        if not self._waiting and self._taken < self._per_iteration:
            self._count_one()
            return
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        await future

    def _count_one(self) -> None:
        if self._taken == 0:
            self._since_ns = time.perf_counter_ns()
            asyncio.get_running_loop().call_soon(self._next_iteration)
        self._taken += 1

    def _next_iteration(self) -> None:
        """Runs once in the iteration after turns were taken: adapts the share, then hands out the turns waiting."""
        # As many as took about the budget last time. The time since includes the reads between, and the wait for
        # them when idle (then the share is small, but each iteration is short and hands out the next turns).
        elapsed = max(1, time.perf_counter_ns() - self._since_ns)
        self._per_iteration = max(1, min(MOST_PER_ITERATION, self._budget_ns * self._taken // elapsed))
        self._taken = 0
        while self._waiting and self._taken < self._per_iteration:
            future = self._waiting.popleft()
            if not future.done():  # a cancelled stream's turn is skipped
                self._count_one()
                future.set_result(None)
