"""What an engine shows of itself: one frozen snapshot, a row per stream. Token counts and live rates in it
are client-counted (content chunks seen)."""

from __future__ import annotations

from dataclasses import dataclass

from tui.load.client_tally import ClientTally
from tui.load.selfcost import ClientCost
from tui.load.settings import LoadSettings
from tui.load.time_split import RecentSplit

WAITING, STREAMING, DONE, ERROR, THINKING = "waiting", "streaming", "done", "error", "thinking"
SPLIT_WINDOW_S = 60  # the window of `split`: the server view's histogram window too
QUEUED_AFTER_S = 0.3  # waiting this long with others streaming is taken as queueing, not prefill
MANY_ROWS_EVERY_S = 2.0  # past the rows a snapshot carries, they are chosen and read again this often


@dataclass(frozen=True)
class StreamView:
    """One stream as the UI shows it. Token counts and live rates are client-counted chunks."""

    index: int
    state: str
    requests_done: int
    waited_s: float  # send → first token, or send → now while still waiting
    ttft_s: float | None
    tokens: int
    live_tps: float  # content chunks per second over the engine's window (client-counted)
    e2e_s: float  # send → end, or send → now while running
    error: str | None
    note: str | None = None  # about this stream's last finished request: truncated, cold start, queued


@dataclass(frozen=True)
class Snapshot:
    taken_ns: int
    running: bool
    settings: LoadSettings
    streams: tuple[StreamView, ...]
    waiting: int
    streaming: int
    completed: int
    errors: int
    aggregate_tps: float  # all streams' content chunks per second over the window (client-counted)
    mean_stream_tps: float | None  # mean live rate of the streaming streams
    ttft_p50_s: float | None  # over the recent finished requests
    truncated: int = 0  # finished requests that stopped at a token limit (done_reason "length")
    cold_starts: int = 0  # ollama: requests that waited for a model load
    queue_wait_mean_s: float | None = None  # ollama's own durations: total − load − prompt − eval (recent)
    record_error: str | None = None  # why --out stopped being written, if it did
    engine_error: str | None = None  # why the engine itself stopped (its process died), if it did
    client_cost: ClientCost | None = None  # the engine's own loop lag and CPU: is the client the bottleneck?
    recent_ttfts_s: tuple[float, ...] = ()  # the recent finished requests' TTFTs (to merge several engines)
    settings_version: int = 0  # how many updates the settings above include (see Engine.settings_version)
    # the open loop (client-counted): sends and ends per second over the window, arrivals waiting at the
    # client under max_inflight (now, and ever), those dropped unsent by a pause, and the backlog's trend
    sent_rps: float = 0.0
    finished_rps: float = 0.0
    held: int = 0
    held_total: int = 0
    unsent: int = 0
    backlog_growth_rps: float | None = None  # slope of (sent, no first token yet) over the last 10 s
    thinking: int = 0  # users in conversations between an answer and their next turn
    sessions_done: int = 0  # conversations that ended
    streams_left_off: int = 0  # streams past the rows a snapshot carries (tui/load/views.py MAX_ROWS)
    rows_ns: int = 0  # when `streams` was read: taken_ns, or past the rows up to MANY_ROWS_EVERY_S before it

    # past the rows: every stream's TTFT and live tok/s counted in bins (tui/load/views.py TTFT_EDGES_S, TPS_EDGES)
    ttft_bins: tuple[int, ...] = ()
    tps_bins: tuple[int, ...] = ()
    split: RecentSplit | None = None  # the requests finished in the last SPLIT_WINDOW_S: where their time went
    tally: ClientTally | None = None  # every finished request's latencies, outcome and tokens, summed
    queued_all: int | None = None  # `queued` counted over every stream, when the rows are not all of them

    @property
    def queued(self) -> int:
        """Streams waiting longer than a prefill takes while others stream: the live queue."""
        if not self.streaming:
            return 0
        if self.queued_all is not None:
            return self.queued_all
        return sum(1 for v in self.streams if v.state == WAITING and v.waited_s >= QUEUED_AFTER_S)


@dataclass(frozen=True)
class PhaseStatus:
    """How far the engine's current phase has got: cheap to ask for several times a second (the bench does)."""

    phase: int  # the settings version that began it (Engine.begin's answer)
    done: bool  # a phase with an end (a bench cell, a capacity level) that has ended and drained
    completed: int  # requests finished since the engine started
    cost: ClientCost | None = None  # the client's own cost over the phase, once it is done
    unsent: int = 0  # open loop: arrivals of the phase still held back at its end, never sent
    record_error: str | None = None  # why --out stopped being written, if it did
    engine_error: str | None = None  # why the engine stopped (its process died), if it did
