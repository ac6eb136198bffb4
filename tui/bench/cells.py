"""Running the bench's cells: for each (load, words) cell and round, the load's requests.

A load is a concurrency n (a closed loop: n requests at once, or n streams kept busy for --duration) or,
with --rate, an arrival rate (an open loop: requests sent at planned times for --duration, whatever the
server does).

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
import math
import multiprocessing
import random
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

from tui.bench.watch import Cell, Watch
from tui.load.client import StreamClient, Target, make_client, stream_once
from tui.load.prompt_file import PromptSource
from tui.load.prompts import PROMPT_FILE
from tui.load.protocols import RequestSpec
from tui.load.records import NS, RequestRecord
from tui.load.selfcost import ClientCost, CostMonitor
from tui.load.synthetic import SYNTHETIC
from tui.load.synthetic import text as synthetic_text
from tui.load.settings import LoadSettings, arrivals, first_arrival_ns, request_spec, share

Finished = Callable[[RequestRecord], None]
GIL_SWITCH_S = 0.0005  # the loop takes the GIL back from other threads (probes, progress bar) within 0.5 ms
START_AHEAD_NS = 20_000_000  # a round starts this long after it is announced, so every worker is waiting


@dataclass
class RoundEnd:
    """What one process's share of a round left besides its records."""

    cost: ClientCost
    unsent: int = 0  # open loop: arrivals still held back at the deadline, never sent


def request_maker(target: Target, args: argparse.Namespace, cell: Cell, rnd: int, worker: int, workers: int
                  ) -> Callable[[int, int], tuple[RequestRecord, RequestSpec]]:
    """`make(stream, k)`: the record and the request for stream `stream`'s k-th request of this round."""
    load, w = cell
    rate = args.open_loop
    synthetic = getattr(args, "synthetic_words", None) is not None
    spec = request_spec(target.model, LoadSettings(
        concurrency=0 if rate else load, words=w, mode=args.mode, max_tokens=args.max_tokens,
        temperature=args.temperature, seed=args.seed, num_ctx=args.num_ctx, output_tokens=args.output_tokens))
    prompts = getattr(args, "prompt_list", None)
    # --seed shuffles the file's prompts; each worker takes every workers-th of them
    source = PromptSource(prompts[worker::workers] or prompts, shuffle=args.seed is not None,
                          seed=None if args.seed is None else args.seed * 1000 + rnd * 64 + worker) if prompts else None
    mode = SYNTHETIC if synthetic else PROMPT_FILE if source else args.mode

    def make(stream: int, k: int) -> tuple[RequestRecord, RequestSpec]:
        record = RequestRecord(stream=stream, concurrency=0 if rate else load, words=w, mode=mode, api=target.api,
                               model=target.model, round=rnd, rate=load if rate else None)
        if synthetic:  # new words for every request: a prefix cache must not make this a cache test
            rng = random.Random(f"{args.seed}:{load}:{rnd}:{stream}:{k}")
            prompt = synthetic_text(args.synthetic_words, rng, args.synthetic_shared_words)
            return record, dataclasses.replace(spec, prompt=prompt)
        if source is not None:
            return record, dataclasses.replace(spec, prompt=source.next())
        return record, spec

    return make


async def _send(client: StreamClient, target: Target, record: RequestRecord, spec: RequestSpec,
                emit: Finished) -> None:
    try:
        await stream_once(client, target, spec, record)
    except asyncio.CancelledError:
        emit(record)  # cancelled (Ctrl-C): recorded as such, never lost
        raise
    emit(record)


async def run_round(client: StreamClient, target: Target, args: argparse.Namespace, cell: Cell, rnd: int,
                    emit: Finished, worker: int = 0, workers: int = 1) -> RoundEnd:
    """This process's share of one round, each record handed to `emit` as its request ends."""
    monitor = CostMonitor(window_s=24 * 3600)
    sampling = asyncio.ensure_future(monitor.sample())
    make = request_maker(target, args, cell, rnd, worker, workers)
    try:
        if args.open_loop:
            unsent = await _open_loop(client, target, args, cell[0], make, emit, worker, workers)
        else:
            unsent = await _closed_loop(client, target, args, cell[0], make, emit, worker, workers)
    finally:
        sampling.cancel()
    return RoundEnd(monitor.cost(), unsent)


async def _closed_loop(client: StreamClient, target: Target, args: argparse.Namespace, n: int, make, emit: Finished,
                       worker: int, workers: int) -> int:
    """n requests at once; or (with --duration) each stream sends its next as soon as its last ends."""
    deadline = time.monotonic() + args.duration if args.duration else None

    async def one(i: int) -> None:
        stream = i * workers + worker
        for k in itertools.count():
            await _send(client, target, *make(stream, k), emit)
            if deadline is None or time.monotonic() >= deadline:
                return

    await asyncio.gather(*(one(i) for i in range(share(n, worker, workers))))
    return 0


async def _open_loop(client: StreamClient, target: Target, args: argparse.Namespace, rate: float, make,
                     emit: Finished, worker: int, workers: int) -> int:
    """Requests sent at planned arrival times for --duration seconds, whatever the server does.

    Workers split the rate (Poisson arrivals split that way stay Poisson; constant ones interleave).
    Past --max-inflight an arrival waits at the client and goes as soon as one ends (`held_back`); those
    still waiting at the deadline are never sent, and counted. Then the requests in flight finish.
    """
    gaps = arrivals(args.arrival, rate / workers, random.Random(f"{args.seed}:arrivals:{rate}:{worker}"))
    ceiling = max(1, share(args.max_inflight, worker, workers))
    start = time.perf_counter_ns()
    deadline = start + int(args.duration * NS)
    planned = start + first_arrival_ns(args.arrival, rate, worker)
    inflight: set[asyncio.Task] = set()
    held: deque[int] = deque()
    counter = itertools.count()

    def launch(due: int, waited: bool) -> None:
        k = next(counter)
        record, spec = make(k * workers + worker, k)
        record.planned_ns, record.held_back = due, waited
        task = asyncio.ensure_future(_send(client, target, record, spec, emit))
        inflight.add(task)
        task.add_done_callback(ended)

    def ended(task: asyncio.Task) -> None:
        inflight.discard(task)
        if held and time.perf_counter_ns() < deadline:
            launch(held.popleft(), True)

    try:
        while planned < deadline:
            await asyncio.sleep(max(0.0, (planned - time.perf_counter_ns()) / NS))
            if len(inflight) < ceiling:
                launch(planned, False)
            else:
                held.append(planned)
            planned += int(next(gaps) * NS)
        await asyncio.sleep(max(0.0, (deadline - time.perf_counter_ns()) / NS))
        unsent = len(held)
        held.clear()
        while inflight:
            await asyncio.gather(*list(inflight), return_exceptions=True)
    except asyncio.CancelledError:
        held.clear()
        for task in list(inflight):
            task.cancel()
        await asyncio.gather(*list(inflight), return_exceptions=True)
        raise
    return unsent


async def run_cells(target: Target, args: argparse.Namespace, loads: list, words: list[int],
                    finished: Finished, watch: Watch | None = None, workers: int = 1) -> None:
    """Every (load, words) cell, --rounds times: a load is a concurrency, or a rate with --rate."""
    runner = _Here(target, args, finished) if workers == 1 else _Workers(target, args, finished, workers)
    async with runner:
        for load in loads:
            for w in words:
                # connects are not part of "n requests at once" (an open loop: about a second's arrivals)
                await runner.warm(min(args.max_inflight, math.ceil(load)) if args.open_loop else load)
                for rnd in range(args.rounds):
                    watching = asyncio.ensure_future(watch.cell((load, w))) if watch else None
                    try:
                        ends = await runner.round((load, w), rnd)
                    finally:
                        if watching is not None:
                            watching.cancel()
                            await asyncio.gather(watching, return_exceptions=True)
                    if watch is not None:
                        watch.client.setdefault((load, w), []).extend(end.cost for end in ends)
                        watch.unsent[(load, w)] = watch.unsent.get((load, w), 0) + sum(end.unsent for end in ends)


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

    async def round(self, cell: Cell, rnd: int) -> list[RoundEnd]:
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

    async def round(self, cell: Cell, rnd: int) -> list[RoundEnd]:
        start_ns = time.perf_counter_ns() + START_AHEAD_NS
        return await self._each(("round", cell, rnd, start_ns))

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
                    conn.send(("done", await run_round(client, target, args, cell, rnd, emit, worker, workers)))
                case _:
                    return
