"""Several engine processes, each with a share of the streams, seen as one `Engine`: for loads that one
core cannot hold (a Python client near a full core stamps its chunks late).

Every worker gets the same settings and runs its share of the streams: stream i runs in worker i % N,
so raising the concurrency adds streams round the workers; an open loop's rate is split evenly. Snapshots are merged into one; finished requests go to one `--out` (each worker
appends whole lines) and are merged in finishing order.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tui.load.client import Target
from tui.load.client_tally import merged
from tui.load.process import EngineProcess
from tui.load.records import RequestRecord
from tui.load.selfcost import ClientCost
from tui.load.settings import LoadSettings
from tui.load.snapshot import PhaseStatus, Snapshot
from tui.load.stats import mean, percentile
from tui.load.time_split import merge_splits

if TYPE_CHECKING:
    from tui.load.trace import Trace

STREAMS_PER_WORKER = 256  # what one worker holds on one core with room to spare (README, Performance)


def default_workers(concurrency: int, cores: int | None = None) -> int:
    """Enough workers for the load, at most a quarter of the cores (the server may need the rest)."""
    cores = cores or os.cpu_count() or 1
    return max(1, min(math.ceil(concurrency / STREAMS_PER_WORKER), cores // 4))


def _sum_bins(each) -> tuple[int, ...]:
    """Workers' bins added up (a worker with its streams all shown has none)."""
    known = [b for b in each if b]
    return tuple(map(sum, zip(*known))) if known else ()


def merge(snaps: list[Snapshot], settings: LoadSettings) -> Snapshot:
    """One snapshot of the whole pool from each worker's."""
    streams = sorted((v for s in snaps for v in s.streams), key=lambda v: v.index)
    ttfts = [t for s in snaps for t in s.recent_ttfts_s]
    costs = [s.client_cost for s in snaps if s.client_cost is not None]
    return Snapshot(
        taken_ns=max(s.taken_ns for s in snaps),
        running=any(s.running for s in snaps),
        settings=settings,
        streams=tuple(streams),
        waiting=sum(s.waiting for s in snaps),
        streaming=sum(s.streaming for s in snaps),
        completed=sum(s.completed for s in snaps),
        errors=sum(s.errors for s in snaps),
        aggregate_tps=sum(s.aggregate_tps for s in snaps),
        mean_stream_tps=mean(s.mean_stream_tps for s in snaps),  # each worker's over all its streams
        ttft_p50_s=percentile(ttfts, 50),
        truncated=sum(s.truncated for s in snaps),
        cold_starts=sum(s.cold_starts for s in snaps),
        queue_wait_mean_s=mean(s.queue_wait_mean_s for s in snaps),
        record_error=next((s.record_error for s in snaps if s.record_error), None),
        engine_error=next((s.engine_error for s in snaps if s.engine_error), None),
        client_cost=_worst(costs),
        recent_ttfts_s=tuple(ttfts),
        settings_version=min(s.settings_version for s in snaps),
        sent_rps=sum(s.sent_rps for s in snaps),
        finished_rps=sum(s.finished_rps for s in snaps),
        held=sum(s.held for s in snaps),
        held_total=sum(s.held_total for s in snaps),
        unsent=sum(s.unsent for s in snaps),
        backlog_growth_rps=_sum_known(s.backlog_growth_rps for s in snaps),
        thinking=sum(s.thinking for s in snaps),
        sessions_done=sum(s.sessions_done for s in snaps),
        split=merge_splits(s.split for s in snaps),
        ttft_bins=_sum_bins(s.ttft_bins for s in snaps),
        tps_bins=_sum_bins(s.tps_bins for s in snaps),
        streams_left_off=sum(s.streams_left_off for s in snaps),
        rows_ns=max(s.rows_ns for s in snaps),
        queued_all=sum(s.queued for s in snaps),
        tally=merged([s.tally for s in snaps]),
    )


def merge_statuses(statuses: list[PhaseStatus]) -> PhaseStatus:
    """The phase is done when every worker is done with it."""
    phase = min(s.phase for s in statuses)
    costs = [s.cost for s in statuses if s.cost is not None]
    return PhaseStatus(phase=phase, done=all(s.done and s.phase == phase for s in statuses),
                       completed=sum(s.completed for s in statuses), cost=_worst(costs),
                       unsent=sum(s.unsent for s in statuses),
                       record_error=next((s.record_error for s in statuses if s.record_error), None),
                       engine_error=next((s.engine_error for s in statuses if s.engine_error), None))


def _worst(costs: list[ClientCost]) -> ClientCost | None:
    """The worker closest to its limit speaks for the pool: its streams are the ones measured late."""
    return max(costs, key=lambda c: (c.warning is not None, c.cpu or 0.0), default=None)


def _each_at_once(calls: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _sum_known(values) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


class EnginePool:
    """An `Engine` (tui/load/contract.py) made of `workers` EngineProcesses."""

    def __init__(self, target: Target, settings: LoadSettings | None = None, *, workers: int,
                 out_path: str | None = None, read_timeout: float = 600.0, keep_records: int | None = None,
                 prompts: list[str] | None = None, conversations: list[tuple[str, ...]] | None = None,
                 trace: Trace | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be 1 or more, not {workers}")
        self.target = target
        self._settings = (settings or LoadSettings()).validated()
        self._workers = workers
        keep = math.ceil(keep_records / workers) if keep_records else None
        self._engines = [EngineProcess(target, self._settings, out_path=out_path, read_timeout=read_timeout,
                                       keep_records=keep, worker=k, workers=workers, prompts=prompts,
                                       conversations=conversations, trace=trace)
                         for k in range(workers)]

    def start(self, running: bool = True) -> None:
        for engine in self._engines:
            engine.start(running)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop every worker at once, so the whole pool stops within `timeout`."""
        _each_at_once([lambda engine=engine: engine.stop(timeout) for engine in self._engines])

    def update(self, **changes: Any) -> LoadSettings:
        self._settings = dataclasses.replace(self._settings, **changes).validated()  # a bad value raises here
        for engine in self._engines:  # each runs its own share of the streams (LoadEngine's worker/workers)
            engine.update(**changes)
        return self._settings

    def begin(self, **changes: Any) -> int:
        self._settings = dataclasses.replace(self._settings, **changes).validated()
        return min(engine.begin(**changes) for engine in self._engines)

    def warm(self, connections: int) -> None:
        _each_at_once([lambda engine=engine: engine.warm(connections) for engine in self._engines])

    def status(self, wait_s: float = 0.0) -> PhaseStatus:
        """The phase is done when every worker is done with it."""
        return merge_statuses([self._engines[0].status(wait_s), *(engine.status() for engine in self._engines[1:])])

    def new_records(self) -> list[RequestRecord]:
        merged = [r for engine in self._engines for r in engine.new_records()]
        return sorted(merged, key=lambda r: r.end_ns or 0)

    @property
    def pids(self) -> list[int]:
        return [pid for engine in self._engines for pid in engine.pids]

    def set_model(self, model: str) -> None:
        for engine in self._engines:
            engine.set_model(model)
        self.target = dataclasses.replace(self.target, model=model)

    def pause(self) -> None:
        for engine in self._engines:
            engine.pause()

    def resume(self) -> None:
        for engine in self._engines:
            engine.resume()

    @property
    def running(self) -> bool:
        return any(engine.running for engine in self._engines)

    @property
    def settings(self) -> LoadSettings:
        return self._settings

    @property
    def settings_version(self) -> int:
        return self._engines[0].settings_version  # every worker gets every update

    @property
    def workers(self) -> int:
        return self._workers

    def snapshot(self) -> Snapshot:
        return merge([engine.snapshot() for engine in self._engines], self._settings)

    @property
    def records(self) -> list[RequestRecord]:
        merged = [r for engine in self._engines for r in engine.records]
        return sorted(merged, key=lambda r: r.end_ns or 0)  # one clock (CLOCK_MONOTONIC) in every process
