"""The load engine: streaming requests in a closed loop (N streams) or an open loop (a request rate,
tui/load/open_loop.py), in phases that the app changes live and the bench runs one cell at a time.

It runs its own asyncio loop in its own thread, so chunk timestamps are taken away from any UI or driver
loop. Other threads steer it (`update`, `begin`: applied on the engine's loop) and read it (`snapshot()`,
`status()`, `new_records()`), which copy a few numbers and never block on the loop.

Closed loop: stream i sends a request, waits for it to end, sends the next, for i < concurrency. Raising
concurrency starts new streams at once; lowering it lets the surplus streams finish their current request
and stop (or cancels them when `cancel_surplus` is set). Changes apply to each stream's next request.

A phase begins with `begin` and may have an end: each stream sends `requests_per_stream` requests (the
article's round: N at once, wait for all), or nothing new is sent `duration_s` after the start; then its
requests in flight finish and it is done. `start_ns` starts it at one instant in every worker process.
The app's phase has no end: it runs until the next change.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import random
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tui.load.client import Target, make_client
from tui.load.finished import Finished
from tui.load.gc_tuning import collect_by_time, collections_by_time, freeze_long_lived
from tui.load.open_loop import OPEN_BASE, OpenLoop, until
from tui.load.records import NS, RequestRecord
from tui.load.request_maker import Conversation, RequestMaker
from tui.load.sending import gives_up, send
from tui.load.selfcost import CostMonitor
from tui.load.phase_state import PhaseState
from tui.load.settings import LoadSettings, share
from tui.load.snapshot import PhaseStatus, Snapshot
from tui.load.turns import Turns
from tui.load.views import BACKLOG_EVERY_S, Board

if TYPE_CHECKING:
    from tui.load.trace import Trace, TraceRequest

log = logging.getLogger(__name__)

WARM_TIMEOUT_S = 30.0
SNAPSHOT_WAIT_S = 1.0  # a snapshot the loop has not built by then is built in the asking thread
LEFTOVER_S = 1.0  # after a stop that timed out: how long the tasks left behind get to record themselves
OUT_EVERY_S = 0.2  # --out gets the requests finished meanwhile this often, and all of them at the stop


class LoadEngine:
    def __init__(self, target: Target, settings: LoadSettings | None = None, *, read_timeout: float = 600.0,
                 window_s: float = 2.0, out_path: str | None = None, keep_records: int | None = None,
                 worker: int = 0, workers: int = 1, prompts: Sequence[str] | None = None,
                 conversations: Sequence[tuple[str, ...]] | None = None, trace: Trace | None = None) -> None:
        """`worker` of `workers`: this engine runs the streams i with i % workers == worker (tui/load/pool.py).
        `out_path` and `keep_records`: see tui/load/finished.py. `prompts` (--prompts FILE): sent in turn instead of
        the mode's prompt, unless synthetic ones (settings.input_words) are asked for; `conversations`: the file's
        human turns, for users in conversations; `trace`: what settings.replay sends, at its own times."""
        self.target = target
        self._maker = RequestMaker(prompts, worker, workers, conversations, trace)
        self._sessions = itertools.count()  # conversations begun here (their ids interleave across the workers)
        self._worker, self._workers_n = worker, workers
        self._settings = self._live = (settings or LoadSettings()).validated()  # _live: as the loop applied them
        self._settings_lock = threading.Lock()
        self.settings_version = 0  # updates made: a snapshot carries the one it shows, so a late one is known
        self._read_timeout = read_timeout
        self._board = Board(int(window_s * NS))  # the requests as a snapshot shows them
        self._finished = Finished(out_path, keep_records)
        self._turns = Turns()  # the work that may wait, a few pieces per loop iteration
        self._running = self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._workers: dict[int, asyncio.Task] = {}  # the running streams and open-loop requests, by key
        self._cost = CostMonitor(window_s)
        self._phase = PhaseState()
        self._open = OpenLoop(self._open_request, self._workers, worker, workers, on_idle=self._check_done,
                              trace=trace)

    # --- lifecycle (any thread) -------------------------------------------------------------
    def start(self, running: bool = True) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, args=(ready,), name="tokentop-engine", daemon=True)
        self._thread.start()
        while not ready.wait(0.1):
            if not self._thread.is_alive():  # it failed while starting: its traceback is on stderr
                raise RuntimeError("tokentop's engine thread died while starting")
        if running:
            self.resume()

    def stop(self, timeout: float = 2.0) -> None:
        """Cancel every request (each recorded as cancelled) and end the engine thread within `timeout` seconds."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive() or self._stopping:
            return
        deadline = time.monotonic() + timeout
        self._stopping = True
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        try:
            future.result(timeout)
        except TimeoutError:  # streams that would not end in time: the loop is stopped under them
            log.warning("engine: streams still ending after %.1f s; stopping anyway", timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(max(0.0, deadline - time.monotonic()))
        self._finished.close()

    def resume(self) -> None:
        self._call(self._set_running, True)

    def pause(self) -> None:
        """Send no new requests; the ones in flight finish."""
        self._call(self._set_running, False)

    def warm(self, connections: int, timeout: float = WARM_TIMEOUT_S) -> None:
        """Open this worker's share of `connections` to the server now: a phase's first requests then go at once."""
        if self._loop is None:
            raise RuntimeError("engine not started")
        count = share(connections, self._worker, self._workers_n)
        future = asyncio.run_coroutine_threadsafe(self._client.pool.warm(self.target.url, count), self._loop)
        future.result(timeout)
        freeze_long_lived()  # the connections just opened: left out of full collections (tui/load/gc_tuning.py)

    @property
    def running(self) -> bool:
        return self._running

    @property
    def workers(self) -> int:
        return 1  # this process, with its share of the streams

    @property
    def settings(self) -> LoadSettings:
        return self._settings

    # --- steering (any thread) ---------------------------------------------------------------
    def set_model(self, model: str) -> None:
        """Send the next requests to another model of the same server."""
        if not model:
            raise ValueError("the model name cannot be empty")
        self.target = dataclasses.replace(self.target, model=model)

    def update(self, **changes) -> LoadSettings:
        """Change settings within the phase (each stream's next request reads them; the concurrency applies at
        once); raises ValueError, and changes nothing, on a bad value."""
        return self._change(changes, new_phase=False)[0]

    def begin(self, **changes) -> int:
        """Begin a new phase with these settings; its number (see `status()`), or ValueError on a bad value."""
        return self._change(changes, new_phase=True)[1]

    def _change(self, changes: dict, new_phase: bool) -> tuple[LoadSettings, int]:
        with self._settings_lock:
            new = dataclasses.replace(self._settings, **changes).validated()
            self._settings = new
            self.settings_version += 1
            version = self.settings_version
        self._call(self._apply, new, version, new_phase)
        return new, version

    # --- reading (any thread) ----------------------------------------------------------------
    @property
    def records(self) -> list[RequestRecord]:
        """The finished requests kept, oldest first."""
        return self._finished.records

    def new_records(self) -> list[RequestRecord]:
        """The requests finished since the last call, oldest first (only the kept ones, if more finished)."""
        return self._finished.new_records()

    def in_flight(self) -> list[RequestRecord]:
        """The requests sent and not yet ended (their records, still being filled in)."""
        return list(self._board.current.copy().values())  # dict.copy is one step under the GIL

    def status(self, wait_s: float = 0.0) -> PhaseStatus:
        """How far the phase has got; with `wait_s`, once it is done or that long has passed, whichever is first."""
        if wait_s > 0:
            self._phase.ended.wait(wait_s)
        phase = self._phase
        return PhaseStatus(phase=phase.number, done=phase.done, completed=self._finished.completed,
                           cost=phase.cost, unsent=self._open.phase_unsent,
                           record_error=self._finished.write_error)

    def snapshot(self) -> Snapshot:
        """Built on the engine's loop a slice at a time, between its reads: built beside the loop in another
        thread, thousands of streams' worth held the GIL from it for milliseconds at every read."""
        parts = dict(running=self._running, settings=self._settings, version=self.settings_version,
                     finished=self._finished, cost=self._cost.cost(), open_loop=self._open)
        loop = self._loop
        if loop is not None and loop.is_running() and threading.current_thread() is not self._thread:
            try:
                future = asyncio.run_coroutine_threadsafe(self._board.snapshot_between_reads(**parts), loop)
                return future.result(SNAPSHOT_WAIT_S)
            except TimeoutError:  # a loop stopping under it: built here instead
                future.cancel()
            except RuntimeError:  # closed meanwhile
                pass
        return self._board.snapshot(**parts)

    # --- the engine's own loop ----------------------------------------------------------------
    def _call(self, fn, *args) -> None:
        if self._loop is None:
            raise RuntimeError("engine not started")
        self._loop.call_soon_threadsafe(fn, *args)

    def _thread_main(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop

        async def open_client():  # its connections belong to the loop it is made on
            return make_client(self._read_timeout)

        self._client = loop.run_until_complete(open_client())
        self._cost_task = loop.create_task(self._cost.sample())
        self._backlog_task = loop.create_task(self._sample_backlog())
        self._gc_task = loop.create_task(collect_by_time())
        self._out_task = loop.create_task(self._flush_out())
        self._begin_phase(self._live, 0)
        ready.set()
        with collections_by_time():
            try:
                loop.run_forever()
            finally:
                end_leftovers(loop)
                loop.close()

    def _apply(self, settings: LoadSettings, version: int, new_phase: bool) -> None:
        self._live = settings
        if new_phase:
            self._begin_phase(settings, version)
        self._reconcile()

    def _begin_phase(self, settings: LoadSettings, version: int) -> None:
        self._phase.begin(version)
        self._open.new_phase()
        self._cost.mark()
        self._maker.begin(settings, version)

    def _set_running(self, running: bool) -> None:
        if running and not self._running:
            self._board.running_since_ns = time.perf_counter_ns()
        self._running = running
        self._reconcile()

    def _target(self) -> int:
        """How many streams (or users) this worker runs now."""
        s = self._live
        if not self._running or self._stopping or s.open_loop:
            return 0
        return share(s.users if s.users is not None else s.concurrency, self._worker, self._workers_n)


    def _exhausted(self, index: int) -> bool:
        return self._phase.exhausted(self._live, index)

    def _reconcile(self) -> None:
        target = self._target()
        for index in range(target):
            if index not in self._workers and not self._exhausted(index):
                self._workers[index] = asyncio.get_running_loop().create_task(self._stream(index))
        if self._live.cancel_surplus:
            for index, task in list(self._workers.items()):
                if target <= index < OPEN_BASE:
                    task.cancel()
        self._open.reconcile(self._live, self._running and not self._stopping, self._phase.number, self._phase.start_ns(self._live))
        self._check_done()

    def _check_done(self) -> None:
        """A phase with an end is done once nothing more will be sent and its requests have finished."""
        if self._phase.done or not self._live.bounded or any(index < OPEN_BASE for index in self._workers):
            return
        if self._open.idle:
            self._finished.flush()  # the phase's requests are in --out once it is done
            self._phase.end(self._cost.phase_cost())

    # --- the closed loop ------------------------------------------------------------------------
    async def _stream(self, index: int) -> None:
        stream = index * self._workers_n + self._worker
        try:
            await until(self._phase.ramped_start_ns(self._live, stream))
            await self._turns.take()  # a phase's thousands of first requests go a few an iteration (tui/load/turns.py)
            while index < self._target() and not self._exhausted(index):
                if self._live.users is not None:
                    record = await self._converse(index, stream)
                else:
                    record = await self._guarded(index, stream, self._phase.count_sent(index))
                if record is not None and record.error_kind and not self._exhausted(index):
                    await self._back_off(record)
        except asyncio.CancelledError:
            pass
        finally:
            self._workers.pop(index, None)
            self._board.gone(index)
            self._check_done()

    async def _converse(self, index: int, stream: int) -> RequestRecord | None:
        """A user's conversation: each turn sent with the history, after a pause to think; ends early on an error,
        a lower user count or the phase's end. Its last request, or None if it sent none."""
        s = self._live
        session = next(self._sessions) * self._workers_n + self._worker
        talk = self._maker.conversation(s, session, random.Random(f"{s.seed}:session:{self._phase.number}:{session}"))
        record = None
        for turn in range(talk.turns):
            if turn:
                self._board.thinking.add(index)
                try:
                    await asyncio.sleep(talk.think_s(s))
                finally:
                    self._board.thinking.discard(index)
            if index >= self._target() or self._exhausted(index):
                break
            record = await self._guarded(index, stream, self._phase.count_sent(index), talk=talk,
                                         last_turn=turn == talk.turns - 1)
            if not record.ok:
                break
            talk.answered(record)
        return record

    async def _back_off(self, record: RequestRecord) -> None:
        await asyncio.sleep(self._phase.pause_after(self._live, record))

    # --- the open loop (tui/load/open_loop.py) -----------------------------------------------------
    async def _open_request(self, key: int, stream: int, k: int, planned: int, held: bool,
                            item: TraceRequest | None) -> None:
        try:
            await self._guarded(key, stream, k, planned=planned, held=held, item=item)
        finally:
            self._board.gone(key)

    async def _flush_out(self) -> None:
        while True:
            await asyncio.sleep(OUT_EVERY_S)
            self._finished.flush()

    async def _sample_backlog(self) -> None:
        while True:
            self._board.sample(self._running, self._open.sent_ns)
            await asyncio.sleep(BACKLOG_EVERY_S)

    # --- one request --------------------------------------------------------------------------------
    async def _guarded(self, index: int, stream: int, k: int, planned: int | None = None, held: bool = False,
                       talk: Conversation | None = None, item: TraceRequest | None = None,
                       last_turn: bool = False) -> RequestRecord:
        """One request; a bug of ours becomes an error record and a log line, and the load goes on."""
        s, target = self._live, self.target  # read once: another thread may change them
        open_loop = index >= OPEN_BASE
        record = None
        try:
            record, spec = self._maker.make(target, s, stream, k, open_loop, talk, item)
            record.planned_ns, record.held_back = planned, held
            self._board.started(index, record)
            await send(self._client, target, spec, record, s, gives_up(s, self._phase.number, stream, k),
                       self._phase.start_ns(self._live))
            record.ends_session = last_turn and record.ok
            await self._turns.take()  # its bookkeeping, and the stream's next request, after the waiting chunks' reads
        except asyncio.CancelledError:  # stopped, or a surplus stream cancelled on purpose: data too
            if record is not None:
                self._finish(index, record)
            raise
        except Exception as exc:
            log.exception("open-loop request %d" if open_loop else "stream %d", index % OPEN_BASE)
            record = record or RequestRecord(stream=stream, concurrency=0, words=s.words, mode=s.mode, api=target.api,
                                             model=target.model)
            record.error_kind, record.error = "bug", f"tokentop bug: {type(exc).__name__}: {exc}"
            record.end_ns = record.end_ns or time.perf_counter_ns()
        self._finish(index, record)
        return record

    def _finish(self, index: int, record: RequestRecord) -> None:
        self._board.ended(index, record)
        self._finished.add(record)

    async def _shutdown(self) -> None:
        self._cost_task.cancel()
        self._backlog_task.cancel()
        self._gc_task.cancel()
        self._out_task.cancel()
        self._open.stop()
        tasks = list(self._workers.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._client.close()


def end_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """A stop that timed out stops the loop under its tasks: each is cancelled and given a moment to record
    itself as cancelled, rather than destroyed unfinished whenever its loop is collected."""
    left = asyncio.all_tasks(loop)
    for task in left:
        task.cancel()
    if left:
        loop.run_until_complete(asyncio.wait(left, timeout=LEFTOVER_S))
