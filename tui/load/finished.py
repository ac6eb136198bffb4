"""The engine's finished requests: counted, kept (the newest `keep`, or all), handed out once to whoever
collects them (`new_records`: the bench, a capacity search), and written to --out as each ends."""

from __future__ import annotations

import threading
from collections import deque

from tui.load.client_tally import ClientTally
from tui.load.records import JsonlWriter, RequestRecord


class Finished:
    def __init__(self, out_path: str | None = None, keep: int | None = None) -> None:
        """`out_path` (--out) is appended one line per request. `keep`: the newest this many are kept (each holds
        a stamp per token: an app left running for days must not keep them all; --out does), and those not yet
        handed out by new_records."""
        self._writer = JsonlWriter(out_path, append=True, held=True) if out_path else None
        self._keep = keep
        self._records: list[RequestRecord] = []
        self._lock = threading.Lock()
        self.completed = self._dropped = self._taken = 0  # finished; no longer kept; handed out by new_records
        self.errors = self.truncated = self.cold_starts = self.sessions_done = 0
        self.recent: deque[RequestRecord] = deque(maxlen=256)  # for the snapshot's TTFT and queue figures
        self.write_error: str | None = None  # why --out stopped being written, if it did
        self._collected = False  # someone has taken new_records (the bench, `f`)
        self._tally = ClientTally()  # every finished request, summed: what --metrics-port serves

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)
            self.completed += 1
            self._tally.observe(record)
            if self._keep and len(self._records) >= 2 * self._keep:  # trimmed now and then, not every time
                # those handed out by new_records first; the untaken too only past 4 x keep (the collector, a
                # capacity search say, has long gone)
                taken = max(0, self._taken - self._dropped) if self._collected else len(self._records)
                drop = min(len(self._records) - self._keep, max(taken, len(self._records) - 4 * self._keep))
                del self._records[:drop]
                self._dropped += drop
        self.recent.append(record)
        self.errors += record.error_kind is not None
        self.truncated += record.truncated
        self.cold_starts += record.cold_start
        self.sessions_done += record.ends_session
        if self._writer is not None:
            self._writer.write(record)  # held until the next flush()

    def flush(self) -> None:
        """Write the lines held for --out (the engine does, a few times a second)."""
        if self._writer is not None:
            try:
                self._writer.flush()
            except OSError as exc:  # e.g. the --out disk is full: keep streaming, keep the records
                self.write_error = f"{type(exc).__name__}: {exc}"
                self.close()

    @property
    def records(self) -> list[RequestRecord]:
        """The kept ones, oldest first."""
        with self._lock:
            return self._records[-self._keep:] if self._keep else list(self._records)

    def tally(self) -> ClientTally:
        """A copy of the running totals of every request finished so far."""
        with self._lock:
            return self._tally.copy()

    def new_records(self) -> list[RequestRecord]:
        """Those finished since the last call, oldest first (only the kept ones, if more finished)."""
        with self._lock:
            self._collected = True
            first = max(self._taken, self._dropped) - self._dropped
            self._taken = self.completed
            return self._records[first:]

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()  # the lines held, then the file
            except OSError as exc:
                self.write_error = self.write_error or f"{type(exc).__name__}: {exc}"
