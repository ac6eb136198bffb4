"""The engine's open loop: requests sent at planned arrival times, whatever the server does.

A server slower than the arrivals builds a backlog that grows. Past `max_inflight` an arrival waits at
the client (held back, counted) and goes as soon as a request ends; those still waiting when the loop
stops (a pause, a new phase, the phase's end) are never sent and counted as unsent. Workers split the
rate: Poisson arrivals split so stay Poisson, constant ones interleave. The arrivals are Poisson,
constant or gamma (bursty), at a rate that may rise linearly over --ramp; or a trace's requests at the
trace's own times, each worker every workers-th of them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from tui.load.records import NS
from tui.load.settings import LoadSettings, arrivals, first_arrival_ns, ramped, share

if TYPE_CHECKING:
    from tui.load.trace import Trace

OPEN_BASE = 1 << 40  # open-loop requests' keys in the engine, after any closed-loop stream's

# send(key, stream, k, planned_ns, held, trace request or None) runs one request to its end
Send = Callable[[int, int, int, int, bool, Any], Awaitable[object]]


class OpenLoop:
    def __init__(self, send: Send, tasks: dict[int, asyncio.Task], worker: int, workers: int,
                 on_idle: Callable[[], None], trace: Trace | None = None) -> None:
        """`tasks`: the engine's running requests by key (this loop adds and removes its own);
        `on_idle` is told when the arrivals end or a request finishes (the engine checks its phase)."""
        self._send, self._tasks, self._on_idle = send, tasks, on_idle
        self._worker, self._workers = worker, workers
        self._replayed = trace.requests[worker::workers] if trace is not None else ()
        self._arrivals: asyncio.Task | None = None
        self._planned_for: tuple | None = None  # the (rate, arrival, phase) the arrivals plan for
        self._count = 0  # requests sent ever (their keys are OPEN_BASE + this)
        self.in_flight = 0
        self.held: deque[tuple[int, Any]] = deque()  # (planned time, trace request) waiting under max_inflight
        self.held_total = self.unsent = 0
        self.phase_sent = self.phase_unsent = 0
        self.sent_ns: deque[int] = deque()  # when each was sent (the engine trims it to its rate window)

    @property
    def idle(self) -> bool:
        """Nothing more will be sent and nothing is in flight (the arrivals ended, or never began)."""
        return (self._arrivals is None or self._arrivals.done()) and not self.in_flight

    def new_phase(self) -> None:
        self.drop_held()  # the last phase's arrivals, never sent
        self.phase_sent = self.phase_unsent = 0

    def reconcile(self, settings: LoadSettings, active: bool, phase: int, start_ns: int) -> None:
        """Start, restart (a new rate takes effect at once) or stop the arrivals to match the settings."""
        wanted = (settings.rate, settings.arrival, settings.burstiness, settings.replay, phase) if active and (
            settings.open_loop) else None
        if self._arrivals is not None and self._planned_for != wanted:
            self._arrivals.cancel()
            self._arrivals = None
        if wanted is None:
            self.drop_held()  # paused or back to a closed loop: the waiting ones are never sent
        elif self._arrivals is None:
            self._arrivals = asyncio.get_running_loop().create_task(self._arrive(settings, start_ns))
            self._planned_for = wanted

    def stop(self) -> None:
        if self._arrivals is not None:
            self._arrivals.cancel()
        self.held.clear()

    def drop_held(self) -> None:
        self.unsent += len(self.held)
        self.phase_unsent += len(self.held)
        self.held.clear()

    def _plan(self, s: LoadSettings, start_ns: int) -> Iterator[tuple[int, Any]]:
        """(when, trace request or None) of each arrival of this worker, in time order."""
        if s.replay:
            yield from ((start_ns + int(item.at_s * NS), item) for item in self._replayed)
            return
        gaps = arrivals(s.arrival, s.rate / self._workers, random.Random(f"{s.seed}:arrivals:{s.rate}:{self._worker}"),
                        s.burstiness)
        at_s = first_arrival_ns(s.arrival, s.rate, self._worker) / NS  # seconds of arrivals at the full rate
        while True:
            yield start_ns + int(NS * ramped(at_s, s.ramp_s)), None
            at_s += next(gaps)

    async def _arrive(self, s: LoadSettings, start_ns: int) -> None:
        """Send each of this worker's arrivals when it is due, until the phase's end (or the trace's)."""
        deadline = start_ns + int(s.duration_s * NS) if s.duration_s is not None else None
        # a rate changed mid-phase plans from now, not from the phase's start
        plan = self._plan(s, start_ns if s.replay else max(start_ns, time.perf_counter_ns()))
        ceiling = max(1, share(s.max_inflight, self._worker, self._workers))
        try:
            for planned, item in plan:
                if deadline is not None and planned >= deadline:
                    break
                await until(planned)
                if self.in_flight < ceiling:
                    self._launch(planned, False, item)
                else:
                    self.held.append((planned, item))
                    self.held_total += 1
            if deadline is not None:
                await until(deadline)
                self.drop_held()
            while self.held:  # a trace's end: the last held back still go, as room comes
                await asyncio.sleep(0.05)
        finally:
            asyncio.get_running_loop().call_soon(self._on_idle)  # once this task counts as done

    def _launch(self, planned: int, held: bool, item: Any = None) -> None:
        key = OPEN_BASE + self._count
        self._count += 1
        self.in_flight += 1
        k = self.phase_sent
        self.phase_sent += 1
        self.sent_ns.append(time.perf_counter_ns())
        self._tasks[key] = asyncio.get_running_loop().create_task(self._request(key, k, planned, held, item))

    async def _request(self, key: int, k: int, planned: int, held: bool, item: Any) -> None:
        try:
            await self._send(key, k * self._workers + self._worker, k, planned, held, item)
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.pop(key, None)
            self.in_flight -= 1
            if self.held and self._arrivals is not None and not self._arrivals.done():  # room: the longest waiting
                planned, item = self.held.popleft()
                self._launch(planned, True, item)
            self._on_idle()


async def until(when_ns: int) -> None:
    await asyncio.sleep(max(0.0, (when_ns - time.perf_counter_ns()) / NS))
