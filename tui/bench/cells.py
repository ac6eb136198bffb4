"""Running the bench's cells on the engine: for each (load, words) cell and round, one phase.

A load is a concurrency n (a closed loop: n requests at once, or n streams kept busy for --duration) or,
with --rate, an arrival rate (an open loop: requests sent at planned times for --duration, whatever the
server does). A cell's connections are opened before its first round, so "n at once" starts together;
every round starts in every worker at one agreed instant. The engine is the app's (tui/load/engine.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tui.bench.until import Stopper
from tui.bench.watch import Cell, Watch
from tui.bench.workload import BenchRun
from tui.load.contract import Engine
from tui.load.phase import run_phase
from tui.load.records import RequestRecord
from tui.load.sample import Sample
from tui.load.snapshot import PhaseStatus

Collect = Callable[[list[RequestRecord]], None]


def cell_label(record: RequestRecord) -> str:
    """Its cell in a few words, as --metrics-port labels it: `concurrency=8 words=25`, `rate=2 words=25`,
    `users=500 words=25`, `trace` or `warmup`."""
    if record.warmup:
        return "warmup"
    if record.trace_index is not None:
        return "trace"
    if record.rate is not None:
        load = f"rate={record.rate:g}"
    elif record.users is not None:
        load = f"users={record.users}"
    else:
        load = f"concurrency={record.concurrency}"
    return f"{load} words={record.words}"


async def run_cell(engine: Engine, run: BenchRun, cell: Cell, collect: Collect, watch: Watch,
                   on_status: Callable[[PhaseStatus], None], keep: bool = False) -> list[RequestRecord]:
    """Every round of one cell, with what the server and GPUs said meanwhile; with `keep`, the cell's records
    (past a cap, a sample of them: tui/load/sample.py). `collect` hears every one."""
    load, words = cell
    await asyncio.to_thread(engine.warm, run.connections(load))
    kept = Sample(seed=f"{load}:{words}")  # only for --until and `keep`: collect keeps the run's

    def heard(new: list[RequestRecord]) -> None:
        if keep or run.until is not None:
            kept.add(new)
        collect(new)

    await watch.scrape(cell, before=True)
    started = time.monotonic()
    for rnd in range(run.rounds):
        watching = asyncio.ensure_future(watch.cell(cell))
        stopper = Stopper(run.until, engine, kept, heard) if run.until is not None else None
        try:
            result = await run_phase(engine, run.cell(load, words, rnd), stopper.heard if stopper else heard,
                                     on_status, keep=False)
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
        await watch.scrape(cell, before=False)
        if result.cost is not None:
            watch.client.setdefault(cell, []).append(result.cost)
        watch.unsent[cell] = watch.unsent.get(cell, 0) + result.unsent
        if stopper is not None and stopper.sure:
            break
    if run.until is not None:
        watch.until[cell] = run.until.report(kept.kept, time.monotonic() - started)
    return kept.kept


async def run_cells(engine: Engine, run: BenchRun, collect: Collect, watch: Watch,
                    on_status: Callable[[PhaseStatus], None]) -> None:
    if (warmup := run.warmup()) is not None:  # its records are kept, marked, and in no row
        await asyncio.to_thread(engine.warm, run.connections(run.loads[0]))
        await run_phase(engine, warmup, collect, on_status, keep=False)
    for load in run.loads:
        for words in run.words:
            await run_cell(engine, run, (load, words), collect, watch, on_status)
