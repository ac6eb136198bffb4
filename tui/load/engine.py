"""The live load engine: closed-loop streaming requests whose concurrency can change while it runs.

It runs its own asyncio loop in its own thread, so chunk timestamps are taken away from any UI
loop. Other threads steer it with `update` (applied on the engine's loop) and read it with
`snapshot()`, which copies a few numbers and never blocks on the loop.

Closed loop: stream i sends a request, waits for it to end, sends the next, for i < concurrency.
Raising concurrency starts new streams at once; lowering it lets the surplus streams finish their
current request and stop (or cancels them when `cancel_surplus` is set). Words, mode and options
apply to the next request of each stream.

Open loop (settings.rate set): requests are sent at planned arrival times, whatever the server does,
so a server slower than the arrivals builds a backlog that grows. Past `max_inflight` an arrival
waits at the client (held back, counted) and goes when a request ends; pausing drops those waiting
(counted as unsent). Switching between the loops lets the other loop's requests finish.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from tui.load.client import Target, make_client, stream_once
from tui.load.prompt_file import PromptSource
from tui.load.prompts import PROMPT_FILE
from tui.load.records import NS, RequestRecord
from tui.load.selfcost import CostMonitor
from tui.load.settings import LoadSettings, arrivals, first_arrival_ns, request_spec, share
from tui.load.snapshot import DONE, ERROR, STREAMING, WAITING, Snapshot, StreamView
from tui.load.stats import mean, percentile, slope
from tui.load.synthetic import SYNTHETIC
from tui.load.synthetic import text as synthetic_text

log = logging.getLogger(__name__)

ERROR_BACKOFF_S = 1.0  # pause after a failed request so a dead server is not hammered
MAX_BACKOFF_S = 60.0  # the longest pause a server's Retry-After gets
OPEN_BASE = 1 << 40  # open-loop requests' keys, after any closed-loop stream's
BACKLOG_EVERY_S = 0.25  # how often the backlog is sampled for its trend
BACKLOG_TREND_S = 10.0  # the trend is the backlog's slope over this long


def chunks_in_window(record: RequestRecord, since_ns: int) -> int:
    chunks = record.chunk_ns
    n = len(chunks)  # read once: the engine thread may append meanwhile
    return n - bisect.bisect_left(chunks, since_ns, 0, n)


class LoadEngine:
    def __init__(
        self,
        target: Target,
        settings: LoadSettings | None = None,
        *,
        read_timeout: float = 600.0,
        window_s: float = 2.0,
        on_record: Callable[[RequestRecord], None] | None = None,
        keep_records: int | None = None,
        worker: int = 0,
        workers: int = 1,
        prompts: Sequence[str] | None = None,
    ) -> None:
        """`worker` of `workers`: this engine runs the streams i with i % workers == worker (tui/load/pool.py).

        `prompts` (from --prompts FILE): sent in turn instead of the mode's prompt, unless synthetic prompts
        (settings.input_words) are asked for."""
        self.target = target
        self._prompts = PromptSource(list(prompts)[worker::workers] or list(prompts)) if prompts else None
        self._rng = random.Random()
        self._worker, self._workers_n = worker, workers
        self._settings = (settings or LoadSettings()).validated()
        self._settings_lock = threading.Lock()
        self.settings_version = 0  # updates applied: a snapshot carries it, so a late one is known as late
        self._read_timeout = read_timeout
        self._window_ns = int(window_s * NS)
        self._on_record = on_record
        self._running = False
        self._running_since_ns = 0
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._workers: dict[int, asyncio.Task] = {}
        self._current: dict[int, RequestRecord] = {}
        self._done_count: dict[int, int] = {}
        self._last_note: dict[int, str | None] = {}
        self._truncated = self._cold_starts = self._errors = 0
        # Finished requests in finishing order: every one, or the newest `keep_records` (each holds a
        # timestamp per token, so an app left running for days must not keep them all; --out does).
        self.records: list[RequestRecord] | deque[RequestRecord] = deque(maxlen=keep_records) if keep_records else []
        self._completed = 0
        self.record_error: str | None = None  # why on_record was dropped, if it failed
        self._recent: deque[RequestRecord] = deque(maxlen=256)
        self._cost = CostMonitor(window_s)
        # the open loop
        self._arrivals: asyncio.Task | None = None
        self._arrivals_for: tuple[float, str] | None = None  # the (rate, arrival) it plans for
        self._open_count = 0  # open-loop requests sent (their keys are OPEN_BASE + this)
        self._open_now = 0  # open-loop requests in flight
        self._held: deque[int] = deque()  # planned arrival times waiting under max_inflight
        self._held_total = self._unsent = 0
        self._sent_ns: deque[int] = deque()  # sends and ends within the rate window
        self._ended_ns: deque[int] = deque()
        self._backlog: deque[tuple[int, int]] = deque(maxlen=int(BACKLOG_TREND_S / BACKLOG_EVERY_S) + 1)

    # --- lifecycle (any thread) -------------------------------------------------------------
    def start(self, running: bool = True) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, args=(ready,), name="tokentop-engine", daemon=True)
        self._thread.start()
        ready.wait()
        if running:
            self.resume()

    def stop(self, timeout: float = 2.0) -> None:
        """Cancel every stream and end the engine thread (within `timeout` seconds)."""
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

    def resume(self) -> None:
        self._call(self._set_running, True)

    def pause(self) -> None:
        """Send no new requests; the ones in flight finish."""
        self._call(self._set_running, False)

    @property
    def running(self) -> bool:
        return self._running

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
        """Change settings; raises ValueError (and changes nothing) on a bad value.

        New requests read the settings when they start; the engine's loop is then told to start
        or stop streams to match the concurrency.
        """
        with self._settings_lock:
            new = dataclasses.replace(self._settings, **changes).validated()
            self._settings = new
            self.settings_version += 1
        self._call(self._reconcile)
        return new

    # --- reading (any thread) ----------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        now = time.perf_counter_ns()
        since = max(now - self._window_ns, self._running_since_ns)  # after a resume, only since then
        views = []
        window_chunks = 0
        for index, record in sorted(list(self._current.items())):
            view = self._view(index, record, now, since)
            views.append(view)
        for record in list(self._current.values()):
            window_chunks += chunks_in_window(record, since)
        current_ids = {id(r) for r in list(self._current.values())}
        recent = list(self._recent)
        for record in recent:
            if id(record) not in current_ids and record.end_ns and record.end_ns >= since:
                window_chunks += chunks_in_window(record, since)
        streaming = [v for v in views if v.state == STREAMING]
        ttfts = [r.ttft_s for r in recent if r.ttft_s is not None]
        window = self._window_s(now)
        backlog = list(self._backlog)
        trend = None
        if len(backlog) >= 8:  # two seconds at least
            trend = slope([t / NS for t, _ in backlog], [float(n) for _, n in backlog])
        return Snapshot(
            taken_ns=now,
            running=self._running,
            settings=self._settings,
            streams=tuple(views),
            waiting=sum(1 for v in views if v.state == WAITING),
            streaming=len(streaming),
            completed=self._completed,
            errors=self._errors,
            aggregate_tps=window_chunks / window,
            mean_stream_tps=(sum(v.live_tps for v in streaming) / len(streaming)) if streaming else None,
            ttft_p50_s=percentile(ttfts, 50),
            truncated=self._truncated,
            cold_starts=self._cold_starts,
            queue_wait_mean_s=mean(r.queue_wait_s for r in recent),
            record_error=self.record_error,
            client_cost=self._cost.cost(),
            recent_ttfts_s=tuple(ttfts),
            settings_version=self.settings_version,
            sent_rps=_count_since(self._sent_ns, since) / window,
            finished_rps=_count_since(self._ended_ns, since) / window,
            held=len(self._held),
            held_total=self._held_total,
            unsent=self._unsent,
            backlog_growth_rps=trend,
        )

    def _window_s(self, now: int) -> float:
        """The rate window, shorter just after a start so the first seconds are not under-counted."""
        return max(0.05, min(self._window_ns, now - self._running_since_ns) / NS)

    def _view(self, index: int, record: RequestRecord, now: int, since: int) -> StreamView:
        first, end = record.first_token_ns, record.end_ns
        if end is not None:
            state = ERROR if record.error_kind else DONE
        else:
            state = WAITING if first is None else STREAMING
        live = 0.0
        if state == STREAMING and first is not None:
            span = (now - max(first, since)) / NS
            live = chunks_in_window(record, since) / span if span > 0.05 else 0.0
        stop = end if end is not None else now
        return StreamView(
            index=record.stream,
            state=state,
            requests_done=self._done_count.get(index, 0),
            waited_s=((first if first is not None else stop) - record.send_ns) / NS,
            ttft_s=record.ttft_s,
            tokens=record.client_tokens,
            live_tps=live,
            e2e_s=(stop - record.send_ns) / NS,
            error=record.error,
            note=self._last_note.get(index),
        )

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
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def _set_running(self, running: bool) -> None:
        if running and not self._running:
            self._running_since_ns = time.perf_counter_ns()
        self._running = running
        self._reconcile()

    def _target(self) -> int:
        if not self._running or self._stopping or self._settings.rate is not None:
            return 0
        return share(self._settings.concurrency, self._worker, self._workers_n)

    def _reconcile(self) -> None:
        target = self._target()
        for index in range(target):
            if index not in self._workers:
                self._workers[index] = asyncio.get_running_loop().create_task(self._stream(index))
        if self._settings.cancel_surplus:
            for index, task in list(self._workers.items()):
                if target <= index < OPEN_BASE:
                    task.cancel()
        self._reconcile_arrivals()

    # --- the open loop ----------------------------------------------------------------------------
    def _reconcile_arrivals(self) -> None:
        """Start, restart (a new rate takes effect at once) or stop the arrivals to match the settings."""
        s = self._settings
        wanted = (s.rate, s.arrival) if self._running and not self._stopping and s.rate is not None else None
        if self._arrivals is not None and self._arrivals_for != wanted:
            self._arrivals.cancel()
            self._arrivals = None
        if wanted is None:
            self._unsent += len(self._held)  # paused or back to a closed loop: the waiting ones are never sent
            self._held.clear()
        elif self._arrivals is None:
            self._arrivals = asyncio.get_running_loop().create_task(self._arrive(*wanted))
            self._arrivals_for = wanted

    async def _arrive(self, rate: float, arrival: str) -> None:
        """Plan arrivals at `rate` (this worker's share of it) and send each when it is due."""
        gaps = arrivals(arrival, rate / self._workers_n, random.Random())  # split so, Poisson stays Poisson
        planned = time.perf_counter_ns() + first_arrival_ns(arrival, rate, self._worker)
        while True:
            await asyncio.sleep(max(0.0, (planned - time.perf_counter_ns()) / NS))
            if self._open_now < max(1, share(self._settings.max_inflight, self._worker, self._workers_n)):
                self._launch(planned, held=False)
            else:
                self._held.append(planned)
                self._held_total += 1
            planned += int(NS * next(gaps))

    def _launch(self, planned: int, held: bool) -> None:
        index = OPEN_BASE + self._open_count
        self._open_count += 1
        self._open_now += 1
        self._sent_ns.append(time.perf_counter_ns())
        self._workers[index] = asyncio.get_running_loop().create_task(self._open_request(index, planned, held))

    async def _open_request(self, index: int, planned: int, held: bool) -> None:
        try:
            await self._guarded(index, planned=planned, held=held)
        except asyncio.CancelledError:
            pass
        finally:
            self._workers.pop(index, None)
            self._current.pop(index, None)
            self._open_now -= 1
            if self._held and self._arrivals is not None:  # room again: the longest-waiting arrival goes
                self._launch(self._held.popleft(), held=True)

    async def _sample_backlog(self) -> None:
        """The backlog (sent, no first token yet) a few times a second, for its trend: is it growing?"""
        while True:
            now = time.perf_counter_ns()
            waiting = sum(1 for r in list(self._current.values()) if r.first_token_ns is None and r.end_ns is None)
            if self._running:
                self._backlog.append((now, waiting))
            else:
                self._backlog.clear()
            for times in (self._sent_ns, self._ended_ns):
                while times and times[0] < now - self._window_ns:
                    times.popleft()
            await asyncio.sleep(BACKLOG_EVERY_S)

    async def _guarded(self, index: int, **options) -> RequestRecord:
        """One request; a bug of ours becomes an error record and a log line, and the load goes on."""
        try:
            return await self._one_request(index, **options)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("stream %d" if index < OPEN_BASE else "open-loop request %d", index % OPEN_BASE)
            record = self._current.get(index) or self._new_record(index)
            record.error_kind, record.error = "bug", f"tokentop bug: {type(exc).__name__}: {exc}"
            record.end_ns = record.end_ns or time.perf_counter_ns()
            self._finish(index, record)
            return record

    async def _stream(self, index: int) -> None:
        try:
            while index < self._target():
                record = await self._guarded(index)
                if record.error_kind:
                    await asyncio.sleep(min(MAX_BACKOFF_S, max(ERROR_BACKOFF_S, record.retry_after_s or 0)))
        except asyncio.CancelledError:
            pass
        finally:
            self._workers.pop(index, None)
            self._current.pop(index, None)

    def _new_record(self, index: int) -> RequestRecord:
        s, target = self._settings, self.target
        number = index - OPEN_BASE if index >= OPEN_BASE else index  # open loop: the request's number
        return RequestRecord(stream=number * self._workers_n + self._worker,
                             concurrency=0 if index >= OPEN_BASE else s.concurrency, words=s.words, mode=s.mode,
                             api=target.api, model=target.model, rate=s.rate if index >= OPEN_BASE else None)

    async def _one_request(self, index: int, planned: int | None = None, held: bool = False) -> RequestRecord:
        s, target = self._settings, self.target  # read once: another thread may change them
        record = self._new_record(index)
        record.planned_ns, record.held_back = planned, held
        spec = request_spec(target.model, s)
        if s.input_words:  # new words for every request: a prefix cache must not make this a cache test
            spec = dataclasses.replace(spec, prompt=synthetic_text(s.input_words, self._rng, s.shared_words))
            record.mode = SYNTHETIC
        elif self._prompts is not None:
            spec = dataclasses.replace(spec, prompt=self._prompts.next())
            record.mode = PROMPT_FILE
        self._current[index] = record
        try:
            await stream_once(self._client, target, spec, record)
        except asyncio.CancelledError:
            if not self._stopping:  # a surplus stream cancelled on purpose: that is data too
                self._finish(index, record)
            raise
        self._finish(index, record)
        return record

    def _finish(self, index: int, record: RequestRecord) -> None:
        self._ended_ns.append(record.end_ns or time.perf_counter_ns())
        self.records.append(record)
        self._completed += 1
        self._recent.append(record)
        self._done_count[index] = self._done_count.get(index, 0) + 1
        self._last_note[index] = record.note
        self._truncated += record.truncated
        self._errors += record.error_kind is not None
        self._cold_starts += record.cold_start
        if self._on_record is not None:
            try:
                self._on_record(record)
            except Exception as exc:  # e.g. the --out disk is full: keep streaming, keep the records
                self.record_error = f"{type(exc).__name__}: {exc}"
                self._on_record = None

    async def _shutdown(self) -> None:
        self._cost_task.cancel()
        self._backlog_task.cancel()
        if self._arrivals is not None:
            self._arrivals.cancel()
        self._held.clear()
        tasks = list(self._workers.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._client.close()


def _count_since(times: deque[int], since: int) -> int:
    return sum(1 for t in list(times) if t >= since)
