"""A per-second history of the load, for the chart and for export. Client-counted figures."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from tui.load.records import NS
from tui.load.snapshot import Snapshot


@dataclass(frozen=True)
class LoadPoint:
    t_s: float  # seconds since the history began
    aggregate_tps: float
    mean_stream_tps: float | None
    concurrency: int  # the setting: streams, or users in conversations
    streaming: int
    waiting: int
    server_running: int | None = None  # server-reported (/metrics), when the server has them
    server_waiting: int | None = None
    sent_rps: float | None = None  # the open loop's sends per second (None in a closed loop)
    mark: str | None = None  # an event to mark on the chart here (the capacity finder's verdicts)


class LoadHistory:
    def __init__(self, maxlen: int = 600) -> None:
        self.points: deque[LoadPoint] = deque(maxlen=maxlen)
        self._origin_ns: int | None = None
        self._mark: str | None = None

    def mark(self, label: str) -> None:
        """Mark the next point (the chart draws a line there); marks made between two points share it."""
        self._mark = label if self._mark is None else f"{self._mark} {label}"

    def add(self, snap: Snapshot, server_running: int | None = None, server_waiting: int | None = None) -> LoadPoint:
        if self._origin_ns is None:
            self._origin_ns = snap.taken_ns
        point = LoadPoint(
            t_s=(snap.taken_ns - self._origin_ns) / NS,
            aggregate_tps=snap.aggregate_tps,
            mean_stream_tps=snap.mean_stream_tps,
            concurrency=(s.users if (s := snap.settings).users is not None else s.concurrency) if snap.running else 0,
            streaming=snap.streaming,
            waiting=snap.waiting,
            server_running=server_running,
            server_waiting=server_waiting,
            sent_rps=snap.sent_rps if snap.settings.rate is not None else None,
            mark=self._mark,
        )
        self._mark = None
        self.points.append(point)
        return point


class ObservedLimit:
    """The most streams seen decoding at once while others waited: the server's parallel limit as the
    client sees it. For ollama, which reports none (OLLAMA_NUM_PARALLEL sets it)."""

    def __init__(self) -> None:
        self.value: int | None = None

    def update(self, snap: Snapshot) -> int | None:
        if snap.queued:
            self.value = max(self.value or 0, snap.streaming)
        return self.value
