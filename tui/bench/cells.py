"""Running the bench's cells: for each (concurrency n, words w) cell and round, n requests at once.

With one worker the requests run on this process's event loop. With several (`--workers`), each worker
process runs its share of every round (stream i in worker i % N); a round starts in all of them at one
agreed instant (perf_counter_ns is CLOCK_MONOTONIC: one clock in every process), and finished requests
come back over each worker's pipe as they end. Either way a round is timed from its own start, and the
client's own cost (loop lag, CPU) is sampled in each process that sends.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import multiprocessing
import random
import signal
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from tui.bench.watch import Cell, Watch
from tui.load.client import StreamClient, Target, make_client, stream_once
from tui.load.records import RequestRecord
from tui.load.selfcost import ClientCost, CostMonitor
from tui.load.synthetic import SYNTHETIC
from tui.load.synthetic import text as synthetic_text
from tui.load.settings import LoadSettings, request_spec, share

Finished = Callable[[RequestRecord], None]
GIL_SWITCH_S = 0.0005  # the loop takes the GIL back from other threads (probes, progress bar) within 0.5 ms
START_AHEAD_NS = 20_000_000  # a round starts this long after it is announced, so every worker is waiting


async def run_round(client: StreamClient, target: Target, args: argparse.Namespace, cell: Cell, rnd: int,
                    emit: Finished, worker: int = 0, workers: int = 1) -> ClientCost:
    """This process's share of one round: its requests at once, each handed to `emit` as it ends."""
    n, w = cell
    synthetic = getattr(args, "synthetic_words", None) is not None
    spec = request_spec(target.model, LoadSettings(
        concurrency=n, words=w, mode=args.mode, max_tokens=args.max_tokens, temperature=args.temperature,
        seed=args.seed, num_ctx=args.num_ctx, output_tokens=args.output_tokens))
    monitor = CostMonitor(window_s=24 * 3600)
    sampling = asyncio.ensure_future(monitor.sample())

    duration = getattr(args, "duration", None)
    deadline = time.monotonic() + duration if duration else None

    async def one(i: int) -> None:
        """One stream: one request, or (with --duration) the next as soon as the last ends, until the deadline."""
        stream = i * workers + worker
        for k in itertools.count():
            record = RequestRecord(stream=stream, concurrency=n, words=w, mode=SYNTHETIC if synthetic else args.mode,
                                   api=target.api, model=target.model, round=rnd)
            mine = spec
            if synthetic:  # new words for every request: a prefix cache must not make this a cache test
                rng = random.Random(f"{args.seed}:{n}:{rnd}:{stream}:{k}")
                mine = dataclasses.replace(spec, prompt=synthetic_text(args.synthetic_words, rng))
            try:
                await stream_once(client, target, mine, record)
            except asyncio.CancelledError:
                emit(record)  # cancelled (Ctrl-C): recorded as such, never lost
                raise
            emit(record)
            if deadline is None or time.monotonic() >= deadline:
                return

    try:
        await asyncio.gather(*(one(i) for i in range(share(n, worker, workers))))
    finally:
        sampling.cancel()
    return monitor.cost()


async def run_cells(target: Target, args: argparse.Namespace, concurrency: list[int], words: list[int],
                    finished: Finished, watch: Watch | None = None, workers: int = 1) -> None:
    runner = _Here(target, args, finished) if workers == 1 else _Workers(target, args, finished, workers)
    async with runner:
        for n in concurrency:
            for w in words:
                await runner.warm(n)  # connects are not part of "n requests at once"
                for rnd in range(args.rounds):
                    watching = asyncio.ensure_future(watch.cell((n, w))) if watch else None
                    try:
                        costs = await runner.round((n, w), rnd)
                    finally:
                        if watching is not None:
                            watching.cancel()
                            await asyncio.gather(watching, return_exceptions=True)
                    if watch is not None:
                        watch.client.setdefault((n, w), []).extend(costs)


class _Here:
    """The requests on this process's loop."""

    def __init__(self, target: Target, args: argparse.Namespace, finished: Finished) -> None:
        self.target, self.args, self.finished = target, args, finished

    async def __aenter__(self) -> _Here:
        self.client = make_client(self.args.timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()

    async def warm(self, n: int) -> None:
        await self.client.pool.warm(self.target.url, n)

    async def round(self, cell: Cell, rnd: int) -> list[ClientCost]:
        return [await run_round(self.client, self.target, self.args, cell, rnd, self.finished)]


class WorkerDied(RuntimeError):
    """A worker process ended in the middle of a run."""


class _Workers:
    """The requests in `workers` processes, each steered over a pipe."""

    def __init__(self, target: Target, args: argparse.Namespace, finished: Finished, workers: int) -> None:
        self.target, self.args, self.finished, self.n = target, args, finished, workers
        self.conns: list[Connection] = []
        self.processes: list[multiprocessing.Process] = []

    async def __aenter__(self) -> _Workers:
        context = multiprocessing.get_context("spawn")
        for k in range(self.n):
            conn, child = context.Pipe()
            process = context.Process(target=_worker_main, args=(child, self.target, self.args, k, self.n),
                                      name=f"tokentop-bench-{k}", daemon=True)
            process.start()
            child.close()
            self.conns.append(conn)
            self.processes.append(process)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for conn in self.conns:
            try:
                conn.send(("stop",))
            except OSError:
                pass
        for process in self.processes:
            process.join(2)
            if process.is_alive():
                process.terminate()
                process.join(1)

    async def warm(self, n: int) -> None:
        await self._each(("warm", n))

    async def round(self, cell: Cell, rnd: int) -> list[ClientCost]:
        start_ns = time.perf_counter_ns() + START_AHEAD_NS
        return [cost for cost in await self._each(("round", cell, rnd, start_ns)) if cost is not None]

    async def _each(self, command: tuple) -> list:
        """Send `command` to every worker and collect their "done" answers; records are handed on as they come."""
        loop = asyncio.get_running_loop()
        waiting = []
        for k, conn in enumerate(self.conns):
            done = loop.create_future()
            loop.add_reader(conn.fileno(), self._read, k, conn, done)
            waiting.append(done)
            conn.send(command)
        try:
            return await asyncio.gather(*waiting)
        finally:
            for conn in self.conns:
                loop.remove_reader(conn.fileno())

    def _read(self, k: int, conn: Connection, done: asyncio.Future) -> None:
        try:
            while not done.done() and conn.poll():
                kind, value = conn.recv()
                if kind == "record":
                    self.finished(value)
                elif kind == "done":
                    done.set_result(value)
        except (EOFError, OSError):
            if not done.done():
                code = self.processes[k].exitcode
                done.set_exception(WorkerDied(f"load worker {k} ended mid-run (exit code {code})"))


def _worker_main(conn: Connection, target: Target, args: argparse.Namespace, worker: int, workers: int) -> None:
    """A worker process: the parent stops it (Ctrl-C is the parent's to handle)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.setswitchinterval(GIL_SWITCH_S)
    asyncio.run(_worker_loop(conn, target, args, worker, workers))


async def _worker_loop(conn: Connection, target: Target, args: argparse.Namespace, worker: int, workers: int) -> None:
    loop = asyncio.get_running_loop()
    emit = lambda record: conn.send(("record", record))  # noqa: E731
    async with make_client(args.timeout) as client:
        while True:
            try:
                command = await loop.run_in_executor(None, conn.recv)
            except (EOFError, OSError):  # the parent is gone
                return
            match command:
                case ("warm", n):
                    await client.pool.warm(target.url, share(n, worker, workers))
                    conn.send(("done", None))
                case ("round", cell, rnd, start_ns):
                    await asyncio.sleep(max(0.0, (start_ns - time.perf_counter_ns()) / 1e9))
                    cost = await run_round(client, target, args, cell, rnd, emit, worker, workers)
                    conn.send(("done", cost))
                case _:
                    return
