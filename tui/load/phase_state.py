"""The engine's current phase: its number, when it starts and ends, what each stream has sent in it, and
whether it is done (a phase with an end: a bench cell's round, a capacity level, a trace)."""

from __future__ import annotations

import threading
import time

from tui.load.records import NS, RequestRecord
from tui.load.selfcost import ClientCost
from tui.load.settings import LoadSettings


ERROR_BACKOFF_S = 1.0  # pause after a failed request so a dead server is not hammered
MAX_BACKOFF_S = 60.0  # the longest pause a server's Retry-After gets


class PhaseState:
    def __init__(self) -> None:
        self.number = 0  # the settings version that began it
        self.began_ns = 0
        self.sent: dict[int, int] = {}  # requests each stream (or user) has sent in it
        self.done = False
        self.ended = threading.Event()  # set with `done`, for Engine.status(wait_s)
        self.cost: ClientCost | None = None  # the client's own, once done

    def begin(self, number: int) -> None:
        self.number, self.began_ns = number, time.perf_counter_ns()
        self.sent.clear()
        self.done, self.cost = False, None
        self.ended.clear()

    def end(self, cost: ClientCost) -> None:
        self.done, self.cost = True, cost
        self.ended.set()

    def start_ns(self, s: LoadSettings) -> int:
        return s.start_ns or self.began_ns

    def deadline_ns(self, s: LoadSettings) -> int | None:
        return None if s.duration_s is None else self.start_ns(s) + int(s.duration_s * NS)

    def past_deadline(self, s: LoadSettings) -> bool:
        deadline = self.deadline_ns(s)
        return deadline is not None and time.perf_counter_ns() >= deadline

    def exhausted(self, s: LoadSettings, index: int) -> bool:
        """This stream has sent all the phase asks of it."""
        limit = s.requests_per_stream
        return (limit is not None and self.sent.get(index, 0) >= limit) or self.past_deadline(s)

    def count_sent(self, index: int) -> int:
        """This stream's request number in the phase (0, 1, …), counted as it is sent."""
        k = self.sent.get(index, 0)
        self.sent[index] = k + 1
        return k

    def ramped_start_ns(self, s: LoadSettings, stream: int) -> int:
        """A stream's (or user's) first request under --ramp: the load rises linearly over the ramp."""
        n = s.users if s.users is not None else s.concurrency
        if not s.ramp_s or not n:
            return self.start_ns(s)
        return self.start_ns(s) + int(s.ramp_s * NS * min(1.0, stream / n))

    def pause_after(self, s: LoadSettings, failed: RequestRecord) -> float:
        """After a failure: a second, or what the server's Retry-After asked, but never past the phase's end."""
        pause = min(MAX_BACKOFF_S, max(ERROR_BACKOFF_S, failed.retry_after_s or 0))
        deadline = self.deadline_ns(s)
        if deadline is not None:
            pause = min(pause, max(0.0, (deadline - time.perf_counter_ns()) / NS))
        return pause
