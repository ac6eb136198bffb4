"""A cell's finished requests, kept whole up to a cap; past it a uniform sample of them, and exact totals.

A long bench at scale finishes millions of requests, each about 0.6 KB plus 8 B a token: kept whole they would
outgrow the machine. `--out` gets every one as it ends (the engine writes it). For the table, a cell keeps its
first CAP requests, then a uniform sample of CAP (a reservoir: each request seen so far is in it with the same
chance). Percentiles and means come from the sample, and their confidence intervals are the sample's, so they
say how sure they are; counts, token totals, rates and wall time come from totals of every request.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tui.load.records import NS, RequestRecord

CAP = 50_000  # a p99 from 50,000 requests is sure to a few percent; 50,000 records of 200 tokens are about 110 MB


@dataclass
class _Round:
    sends: int = 0
    first_send_ns: int | None = None
    last_send_ns: int | None = None
    first_end_send_ns: int | None = None  # the earliest send of a finished request (wall time starts there)
    last_end_ns: int | None = None


@dataclass
class Totals:
    """What the rows count over every request of a cell, sampled or not."""
    requests: int = 0
    ok: int = 0
    errors: int = 0
    cancelled_by_plan: int = 0
    truncated: int = 0
    cold_starts: int = 0
    held_back: int = 0
    sessions_done: int = 0
    ok_output_tokens: int = 0
    ok_prompt_tokens: int = 0
    error_kinds: set[str] = field(default_factory=set)
    rounds: dict[int, _Round] = field(default_factory=dict)

    def add(self, r: RequestRecord) -> None:
        self.requests += 1
        self.errors += bool(r.error_kind)
        self.cancelled_by_plan += bool(r.cancelled_by_plan)
        self.held_back += bool(r.held_back)
        self.sessions_done += bool(r.ends_session)
        if r.error_kind:
            self.error_kinds.add(r.error_kind)
        if r.ok:
            self.ok += 1
            self.truncated += bool(r.truncated)
            self.cold_starts += bool(r.cold_start)
            self.ok_output_tokens += r.output_tokens
            self.ok_prompt_tokens += r.prompt_tokens or 0
        if r.send_ns:
            rnd = self.rounds.setdefault(r.round, _Round())
            rnd.sends += 1
            rnd.first_send_ns = min(rnd.first_send_ns or r.send_ns, r.send_ns)
            rnd.last_send_ns = max(rnd.last_send_ns or r.send_ns, r.send_ns)
            if r.finished:
                rnd.first_end_send_ns = min(rnd.first_end_send_ns or r.send_ns, r.send_ns)
                rnd.last_end_ns = max(rnd.last_end_ns or r.end_ns, r.end_ns)

    def wall_s(self) -> float:
        """As tui/load/stats.py wall_s: each round from its first send to its last end, summed."""
        return sum(r.last_end_ns - r.first_end_send_ns for r in self.rounds.values()
                   if r.last_end_ns is not None) / NS

    def sent_rps(self) -> float | None:
        """As tui/load/stats.py open_loop: sends over their spans, n sends spanning n - 1 gaps."""
        sent = spans = 0.0
        for r in self.rounds.values():
            sent += r.sends
            span = (r.last_send_ns - r.first_send_ns) / NS if r.sends else 0.0
            if r.sends >= 3 and span > 0:
                spans += span * r.sends / (r.sends - 1)
        return sent / spans if spans else None


class Sample:
    """Every request of a cell counted; the first CAP kept, then a uniform sample of CAP."""

    def __init__(self, cap: int = CAP, seed: str = "") -> None:
        self.cap = cap
        self.kept: list[RequestRecord] = []
        self.totals = Totals()
        self._random = random.Random(f"sample:{seed}")

    @property
    def sampled(self) -> bool:
        return self.totals.requests > len(self.kept)

    def add(self, records: Iterable[RequestRecord]) -> None:
        for record in records:
            self.totals.add(record)
            seen = self.totals.requests
            if len(self.kept) < self.cap:
                self.kept.append(record)
            else:  # reservoir sampling (Algorithm R): the seen-th request replaces one with chance cap / seen
                slot = self._random.randrange(seen)
                if slot < self.cap:
                    self.kept[slot] = record


def exact_row(row: dict[str, Any], sample: Sample) -> dict[str, Any]:
    """A row computed from a sample, its counts, totals and rates put back from every request's totals."""
    if not sample.sampled:
        return row
    t, kept = sample.totals, len(sample.kept)
    wall = t.wall_s()
    row.update(requests=t.requests, ok=t.ok, errors=t.errors, cancelled_by_plan=t.cancelled_by_plan,
               truncated=t.truncated, cold_starts=t.cold_starts, error_kinds=sorted(t.error_kinds),
               aggregate_tps=t.ok_output_tokens / wall if wall > 0 and t.ok_output_tokens else None,
               request_rps=t.ok / wall if wall > 0 else None,
               total_tps=(t.ok_output_tokens + t.ok_prompt_tokens) / wall if wall > 0 else None,
               sampled={"kept": kept, "of": t.requests})
    if row.get("slo_met_share") is not None:  # the share is the sample's estimate; the rate is over every request
        row["goodput_rps"] = row["slo_met_share"] * t.requests / wall if wall > 0 else None
    if "held_back" in row:  # an open loop's
        scale = t.requests / kept  # the backlog was counted among the kept requests
        row.update(held_back=t.held_back, sent_rps=t.sent_rps(),
                   backlog_end=None if row.get("backlog_end") is None else round(row["backlog_end"] * scale),
                   backlog_growth_rps=None if row.get("backlog_growth_rps") is None
                   else row["backlog_growth_rps"] * scale)
    if "sessions_done" in row:
        row.update(sessions_done=t.sessions_done, sessions_rps=t.sessions_done / wall if wall > 0 else None)
    return row
