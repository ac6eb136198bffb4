"""One phase with an end on any Engine, waited for: a bench cell's round, a capacity level (app and bench).

The phase starts at one instant in every worker process, a little after it is announced; the engine is
followed (its status, never a full snapshot; an engine in this process says at once when the phase is done) and its finished requests are handed on
as they come, so a worker that dies loses only what it had in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tui.load.contract import Engine, EngineStopped
from tui.load.records import RequestRecord
from tui.load.selfcost import ClientCost
from tui.load.snapshot import PhaseStatus

START_AHEAD_NS = 20_000_000  # with several workers a phase starts this long after it is announced: all wait
FOLLOW_S = 0.1  # the engine is asked at least this often (an in-process one answers at once when done)


@dataclass
class PhaseResult:
    records: list[RequestRecord] = field(default_factory=list)
    cost: ClientCost | None = None  # the client's own cost over the phase
    unsent: int = 0  # open loop: arrivals still held back at the end, never sent


async def run_phase(engine: Engine, changes: dict[str, Any],
                    on_records: Callable[[list[RequestRecord]], None] = lambda records: None,
                    on_status: Callable[[PhaseStatus], None] = lambda status: None, keep: bool = True) -> PhaseResult:
    """Begin a phase with `changes` (it must have an end) and return once it is done, with its requests (none
    with `keep=False`: the caller keeps what `on_records` hands it).

    Raises EngineStopped when the engine dies; a cancelled caller leaves the phase running (the engine's
    next phase or its stop ends it)."""
    ahead = getattr(engine, "start_ahead_ns", START_AHEAD_NS) if engine.workers > 1 else 0
    phase = engine.begin(**changes, start_ns=time.perf_counter_ns() + ahead)
    result = PhaseResult()
    while True:
        status, new = await asyncio.to_thread(_follow, engine)
        if new:
            if keep:
                result.records += new
            on_records(new)
        on_status(status)
        if status.engine_error:
            raise EngineStopped(status.engine_error)
        if status.phase >= phase and status.done:
            result.cost, result.unsent = status.cost, status.unsent
            return result


def _follow(engine: Engine) -> tuple[PhaseStatus, list[RequestRecord]]:
    status = engine.status(FOLLOW_S)  # first: a done phase's last records come after it
    return status, engine.new_records()
