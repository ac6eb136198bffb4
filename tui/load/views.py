"""What a snapshot shows of the engine's requests: a row per stream and the rates over the window.

Read from other threads while the engine's loop appends: each list is read once, by its length.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from tui.load.records import NS, RequestRecord
from tui.load.snapshot import DONE, ERROR, STREAMING, WAITING, StreamView


def chunks_in_window(record: RequestRecord, since_ns: int) -> int:
    chunks = record.chunk_ns
    n = len(chunks)  # read once: the engine thread may append meanwhile
    return n - bisect.bisect_left(chunks, since_ns, 0, n)


def window_chunks(current: Iterable[RequestRecord], recent: Iterable[RequestRecord], since_ns: int) -> int:
    """Content chunks since `since_ns` of the requests in flight and of the recent finished ones."""
    current = list(current)
    ids = {id(r) for r in current}
    total = sum(chunks_in_window(r, since_ns) for r in current)
    return total + sum(chunks_in_window(r, since_ns) for r in recent
                       if id(r) not in ids and r.end_ns and r.end_ns >= since_ns)


def stream_view(record: RequestRecord, now: int, since: int, requests_done: int, note: str | None) -> StreamView:
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
