"""What a snapshot shows of the engine's requests: a row per stream and the rates over the window.

Built on the engine's loop a slice at a time, between its reads (tui/load/engine.py `snapshot`), or in another
thread while the loop appends (when the loop is not running): each list is read once, by its length.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import time
from collections import deque
from collections.abc import Generator, Iterable, Iterator

from tui.load.finished import Finished
from tui.load.open_loop import OpenLoop
from tui.load.records import NS, RequestRecord
from tui.load.selfcost import ClientCost
from tui.load.settings import LoadSettings
from tui.load.snapshot import (DONE, ERROR, MANY_ROWS_EVERY_S, QUEUED_AFTER_S, SPLIT_WINDOW_S, STREAMING, THINKING,
                                WAITING, Snapshot, StreamView)
from tui.load.stats import mean, percentile, slope
from tui.load.time_split import recent_split


def chunks_in_window(record: RequestRecord, since_ns: int) -> int:
    chunks = record.chunk_ns
    n = len(chunks)  # read once: the engine thread may append meanwhile
    return n - bisect.bisect_left(chunks, since_ns, 0, n)


def recent_window_chunks(current: Iterable[RequestRecord], recent: Iterable[RequestRecord], since_ns: int) -> int:
    """Content chunks since `since_ns` of the recent finished requests that are not among `current`."""
    ids = {id(r) for r in current}
    return sum(chunks_in_window(r, since_ns) for r in recent if id(r) not in ids and r.end_ns and r.end_ns >= since_ns)


SLICE = 256  # streams a snapshot looks at between two yields (tui/load/engine.py builds it between reads)


class _Pass:
    """One pass over every stream for what a snapshot counts of them all (thousands: each step counts)."""

    def __init__(self) -> None:
        self.states: list[str] = []
        self.rates: list[float] = []  # the streaming ones' live tok/s, in order
        self.ttfts: list[float] = []  # every stream's that has had its first token
        self.window_chunks = self.queued = 0

    def over(self, current: list[tuple[int, RequestRecord]], thinking: set[int], now: int, since: int) -> Iterator[None]:
        """The pass, a yield every SLICE streams."""
        queued_before = now - int(QUEUED_AFTER_S * NS)
        states, rates, ttfts = self.states, self.rates, self.ttfts
        for i, (key, record) in enumerate(current):
            if i and i % SLICE == 0:
                yield
            state = _state(record, key in thinking)
            states.append(state)
            if record.first_token_ns is not None:
                ttfts.append((record.first_token_ns - record.send_ns) / NS)
            chunks = record.chunk_ns
            n = len(chunks)  # read once: the engine thread may append meanwhile
            in_window = n - bisect.bisect_left(chunks, since, 0, n) if n else 0
            self.window_chunks += in_window
            if state == STREAMING:
                span = (now - max(record.first_token_ns, since)) / NS
                rates.append(in_window / span if span > 0.05 else 0.0)
            elif state == WAITING and record.send_ns <= queued_before:
                self.queued += 1


MAX_ROWS = 256  # stream rows a snapshot carries; past it, the most telling ones and the counts of all
NEWEST_ROWS = MAX_ROWS // 4  # of those, kept for the streams sent last
# Past MAX_ROWS, every stream's TTFT and live tok/s are counted in bins with these upper edges (the last: the rest).
TTFT_EDGES_S = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, float("inf"))
TPS_EDGES = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, float("inf"))


def binned(values: Iterable[float], edges: tuple[float, ...]) -> tuple[int, ...]:
    counts = [0] * len(edges)
    for v in values:
        counts[bisect.bisect_left(edges, v)] += 1
    return tuple(counts)


def _state(record: RequestRecord, thinking: bool) -> str:
    if record.end_ns is not None:
        return ERROR if record.error_kind else THINKING if thinking else DONE
    return WAITING if record.first_token_ns is None else STREAMING


def _most_telling(current: list[tuple[int, RequestRecord]], states: list[str], now: int
                  ) -> list[tuple[int, RequestRecord]]:
    """Past MAX_ROWS: those waiting longest, then the slowest streaming (fewest chunks for their time), then the
    newest to end; the last NEWEST_ROWS for the streams sent last, of those not already chosen; shown in the
    engine's order."""
    def slowness(item: tuple[int, RequestRecord]) -> float:
        record = item[1]
        return len(record.chunk_ns) / max(1, now - (record.first_token_ns or now))

    by_state: dict[str, list[tuple[int, RequestRecord]]] = {}
    for item, state in zip(current, states):
        by_state.setdefault(state, []).append(item)
    room = MAX_ROWS - NEWEST_ROWS  # nsmallest(k, …) is sorted(…)[:k], without sorting thousands
    chosen = heapq.nsmallest(room, by_state.get(WAITING, []), key=lambda item: item[1].send_ns)
    chosen += heapq.nsmallest(room - len(chosen), by_state.get(STREAMING, []), key=slowness)
    chosen += heapq.nsmallest(room - len(chosen), (item for state in (ERROR, THINKING, DONE)
                                                   for item in by_state.get(state, [])),
                              key=lambda item: -(item[1].end_ns or 0))
    taken = {key for key, _ in chosen}
    newest = heapq.nsmallest(MAX_ROWS - len(chosen), (item for item in current if item[0] not in taken),
                             key=lambda item: -item[1].send_ns)
    return sorted(chosen + newest)


def live_tps(record: RequestRecord, now: int, since: int) -> float:
    """A streaming request's chunks per second over the window (client-counted)."""
    first = record.first_token_ns
    if first is None:
        return 0.0
    span = (now - max(first, since)) / NS
    return chunks_in_window(record, since) / span if span > 0.05 else 0.0


def stream_view(record: RequestRecord, now: int, since: int, requests_done: int, note: str | None,
                thinking: bool = False) -> StreamView:
    first, end = record.first_token_ns, record.end_ns
    state = _state(record, thinking)
    live = live_tps(record, now, since) if state == STREAMING else 0.0
    stop = end if end is not None else now
    return StreamView(
        index=record.stream,
        state=state,
        requests_done=requests_done,
        waited_s=((first if first is not None else stop) - record.send_ns) / NS,
        ttft_s=record.ttft_s,
        tokens=record.client_tokens,
        live_tps=live,
        e2e_s=(stop - record.send_ns) / NS,
        error=record.error,
        note=note,
    )


def count_since(times: Iterable[int], since: int) -> int:
    return sum(1 for t in list(times) if t >= since)


BACKLOG_EVERY_S = 0.25  # how often the backlog is sampled for its trend
BACKLOG_TREND_S = 10.0  # the trend is the backlog's slope over this long


def _step(build: Generator[None, None, Snapshot]) -> Snapshot | None:
    """One slice of a snapshot's building; the snapshot once it is built."""
    try:
        next(build)
    except StopIteration as done:
        return done.value
    return None


class Board:
    """The engine's requests as a snapshot shows them: the one each stream runs (or ran last), the rates over
    the window, the backlog's trend. Written on the engine's loop, read from any thread."""

    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self.running_since_ns = 0  # the rates count from a resume, not from before a pause
        self.current: dict[int, RequestRecord] = {}  # by the engine's key: stream index or open-loop request
        self.thinking: set[int] = set()  # users between an answer and their next turn
        self._done_count: dict[int, int] = {}
        self._last_note: dict[int, str | None] = {}
        self._ended_ns: deque[int] = deque()  # when requests ended, within the rate window
        self._backlog: deque[tuple[int, int]] = deque(maxlen=int(BACKLOG_TREND_S / BACKLOG_EVERY_S) + 1)
        self._many_rows: tuple[int, tuple[StreamView, ...]] | None = None  # (when, rows) chosen past MAX_ROWS

    def started(self, key: int, record: RequestRecord) -> None:
        self.current[key] = record

    def ended(self, key: int, record: RequestRecord) -> None:
        self._ended_ns.append(record.end_ns or time.perf_counter_ns())
        self._done_count[key] = self._done_count.get(key, 0) + 1
        self._last_note[key] = record.note

    def gone(self, key: int) -> None:
        self.current.pop(key, None)

    def sample(self, running: bool, sent_ns: deque[int]) -> None:
        """A few times a second: the backlog (sent, no first token yet) for its trend; old stamps let go."""
        now = time.perf_counter_ns()
        if running:
            self._backlog.append((now, sum(1 for r in list(self.current.values())
                                           if r.first_token_ns is None and r.end_ns is None)))
        else:
            self._backlog.clear()
        for times in (sent_ns, self._ended_ns):
            while times and times[0] < now - self.window_ns:
                times.popleft()

    def _rows(self, current: list[tuple[int, RequestRecord]], states: list[str], thinking: set[int], now: int,
              since: int) -> Generator[None, None, tuple[int, tuple[StreamView, ...]]]:
        """(when they were read, the rows): every stream's; past MAX_ROWS the most telling, chosen again only every
        MANY_ROWS_EVERY_S (the app redraws them when they are new: choosing them is most of a snapshot's work)."""
        kept = self._many_rows
        many = len(current) > MAX_ROWS
        if many and kept is not None and now - kept[0] < MANY_ROWS_EVERY_S * NS:
            return kept
        shown = _most_telling(current, states, now) if many else current
        yield
        views = tuple(stream_view(record, now, since, self._done_count.get(key, 0), self._last_note.get(key),
                                  key in thinking) for key, record in shown)
        yield
        self._many_rows = (now, views) if many else None
        return now, views

    @staticmethod
    def _bins(every: _Pass) -> dict:
        """Every stream's TTFT and live tok/s in bins: the shape of thousands of streams, past the rows."""
        return {"ttft_bins": binned(every.ttfts, TTFT_EDGES_S), "tps_bins": binned(every.rates, TPS_EDGES)}

    def snapshot(self, **parts) -> Snapshot:
        """A snapshot built at once (its parts: those of `build`)."""
        build = self.build(**parts)
        while (snap := _step(build)) is None:
            pass
        return snap

    async def snapshot_between_reads(self, **parts) -> Snapshot:
        """A snapshot built on the engine's loop a slice at a time: the reads that stamp chunks go between."""
        build = self.build(**parts)
        while (snap := _step(build)) is None:
            await asyncio.sleep(0)
        return snap

    def build(self, *, running: bool, settings: LoadSettings, version: int, finished: Finished,
              cost: ClientCost, open_loop: OpenLoop) -> Generator[None, None, Snapshot]:
        """The snapshot, yielding between slices of its work (a few hundred streams, the rows chosen, drawn)."""
        now = time.perf_counter_ns()
        since = max(now - self.window_ns, self.running_since_ns)  # after a resume, only since then
        current = sorted(list(self.current.items()))
        thinking = self.thinking
        every = _Pass()
        yield from every.over(current, thinking, now, since)
        states, rates = every.states, every.rates
        yield
        rows_ns, views = yield from self._rows(current, states, thinking, now, since)
        recent = list(finished.recent)
        ttfts = [r.ttft_s for r in recent if r.ttft_s is not None]
        window = max(0.05, min(self.window_ns, now - self.running_since_ns) / NS)  # short just after a start
        backlog = list(self._backlog)
        trend = None
        if len(backlog) >= 8:  # two seconds at least
            trend = slope([t / NS for t, _ in backlog], [float(n) for _, n in backlog])
        return Snapshot(
            taken_ns=now,
            running=running,
            settings=settings,
            streams=views,
            waiting=states.count(WAITING),
            streaming=states.count(STREAMING),
            completed=finished.completed,
            errors=finished.errors,
            aggregate_tps=(every.window_chunks + recent_window_chunks((r for _, r in current), recent, since)) / window,
            mean_stream_tps=mean(rates),
            ttft_p50_s=percentile(ttfts, 50),
            truncated=finished.truncated,
            cold_starts=finished.cold_starts,
            queue_wait_mean_s=mean(r.queue_wait_s for r in recent),
            record_error=finished.write_error,
            client_cost=cost,
            recent_ttfts_s=tuple(ttfts),
            settings_version=version,
            sent_rps=count_since(open_loop.sent_ns, since) / window,
            finished_rps=count_since(self._ended_ns, since) / window,
            held=len(open_loop.held),
            held_total=open_loop.held_total,
            unsent=open_loop.unsent,
            backlog_growth_rps=trend,
            thinking=states.count(THINKING),
            streams_left_off=len(current) - len(views),
            rows_ns=rows_ns,
            queued_all=every.queued,
            sessions_done=finished.sessions_done,
            tally=finished.tally(),
            **(self._bins(every) if len(current) > MAX_ROWS else {}),
            split=recent_split([r for r in recent if (r.end_ns or 0) >= now - SPLIT_WINDOW_S * NS]),
        )
