"""Thousands of streams on one screen: past MAX_ROWS a snapshot carries the most telling rows (the longest
waiting, the slowest, the newest) and the shape of all of them (TTFT and tok/s in bins), merged across workers."""

from __future__ import annotations

import dataclasses

from fakes import frozen_snapshot
from tui.load.pool import _sum_bins
from tui.load.records import NS, RequestRecord
from tui.load.snapshot import STREAMING, WAITING
from tui.load.views import MAX_ROWS, NEWEST_ROWS, TPS_EDGES, TTFT_EDGES_S, _most_telling, binned
from tui.panes.load import bins_text, summary_text


def record(stream: int, sent_s: float, first_s: float | None = None, chunks: int = 0) -> RequestRecord:
    r = RequestRecord(stream=stream, concurrency=1, words=10, mode="output", api="openai", model="m",
                      send_ns=int(sent_s * NS))
    if first_s is not None:
        r.first_token_ns = int(first_s * NS)
        for i in range(chunks):
            r.chunk_ns.append(r.first_token_ns + i * 1000)
    return r


def test_past_the_rows_the_longest_waiting_the_slowest_and_the_newest_are_kept():
    now = int(100 * NS)
    waiting = [(i, record(i, sent_s=i * 0.01)) for i in range(300)]  # stream 0 has waited longest
    streaming = [(300 + i, record(300 + i, sent_s=10 + i * 0.01, first_s=20, chunks=1 + i)) for i in range(300)]
    newest = [(600 + i, record(600 + i, sent_s=99.9, first_s=99.95, chunks=1000)) for i in range(10)]
    current = waiting + streaming + newest
    states = [WAITING] * 300 + [STREAMING] * 310
    shown = [key for key, _ in _most_telling(current, states, now)]
    assert len(shown) == MAX_ROWS and shown == sorted(shown)
    assert 0 in shown and 299 not in shown[:MAX_ROWS - NEWEST_ROWS]  # the longest waiting, not the newest waiting
    assert all(600 + i in shown for i in range(10))  # sent last: among the rows though fast and not waiting


def test_every_streams_ttft_and_rate_are_binned_and_workers_bins_add_up():
    assert binned([0.01, 0.07, 0.07, 3.0, 99.0], TTFT_EDGES_S) == (1, 2, 0, 0, 0, 0, 1, 0, 0, 1)
    assert sum(binned([0.5, 30.0, 500.0], TPS_EDGES)) == 3
    assert _sum_bins([(1, 2), (), (3, 4)]) == (4, 6) and _sum_bins([(), ()]) == ()
    snap = dataclasses.replace(frozen_snapshot(), streams_left_off=9744, ttft_bins=(0, 5, 90, 5, 0, 0, 0, 0, 0, 0),
                               tps_bins=(0, 0, 0, 10, 80, 10, 0, 0, 0))
    text = summary_text(snap).plain
    assert "rows: 8 of 9752 (the longest waiting, the slowest, the newest)" in text
    assert "TTFT 0.05" in text and "30+ s" in text and "tok/s 1" in text and "200+" in text
    assert bins_text(dataclasses.replace(snap, ttft_bins=(), tps_bins=())).plain == ""


def test_the_engine_keeps_its_newest_records_and_never_trims_one_not_yet_collected():
    from tui.load.finished import Finished
    from tui.load.records import RequestRecord

    def record(i: int) -> RequestRecord:
        return RequestRecord(stream=i, concurrency=1, words=1, mode="output", api="openai", model="m", end_ns=1)

    alone = Finished(keep=10)  # the app with no collector: only the newest are kept
    for i in range(100):
        alone.add(record(i))
    assert len(alone.records) == 10 and alone.records[-1].stream == 99
    collected = Finished(keep=10)  # the bench takes new_records: what it has not taken yet stays
    collected.new_records()
    for i in range(35):
        collected.add(record(i))
    assert [r.stream for r in collected.new_records()] == list(range(35))
    for i in range(35, 100):  # the collector has gone: past 4 x keep the untaken go too
        collected.add(record(i))
    assert len(collected.records) == 10 and len(collected._records) <= 40


def board_snapshot(board, monkeypatch, now_s: float):
    """The board's snapshot at `now_s` (its clock held there)."""
    from tui.load import views
    from tui.load.finished import Finished
    from tui.load.open_loop import OpenLoop
    from tui.load.selfcost import ClientCost
    from tui.load.settings import LoadSettings

    monkeypatch.setattr(views.time, "perf_counter_ns", lambda: int(now_s * NS))
    return board.snapshot(running=True, settings=LoadSettings(), version=0, finished=Finished(),
                          cost=ClientCost(None, None, None),
                          open_loop=OpenLoop(None, {}, 0, 1, on_idle=lambda: None))


def test_past_the_rows_they_are_chosen_anew_every_few_seconds_and_the_counts_every_time(monkeypatch):
    """Choosing the rows is most of a snapshot's work at thousands of streams: past MAX_ROWS they are kept for
    MANY_ROWS_EVERY_S, while the counts and bins are read at every snapshot."""
    from tui.load.snapshot import MANY_ROWS_EVERY_S
    from tui.load.views import Board

    board = Board(int(2 * NS))
    for i in range(MAX_ROWS + 100):
        board.started(i, record(i, sent_s=1.0))
    first = board_snapshot(board, monkeypatch, 10.0)
    assert first.rows_ns == first.taken_ns and first.waiting == MAX_ROWS + 100 and first.streams_left_off == 100
    board.started(MAX_ROWS + 100, record(MAX_ROWS + 100, sent_s=10.2, first_s=10.3, chunks=3))
    kept = board_snapshot(board, monkeypatch, 10.0 + MANY_ROWS_EVERY_S / 2)
    assert kept.streams is first.streams and kept.rows_ns == first.rows_ns
    assert (kept.waiting, kept.streaming, kept.streams_left_off) == (MAX_ROWS + 100, 1, 101)  # counted anew
    anew = board_snapshot(board, monkeypatch, 10.0 + MANY_ROWS_EVERY_S)
    assert anew.rows_ns == anew.taken_ns and any(v.index == MAX_ROWS + 100 for v in anew.streams)
    for i in range(MAX_ROWS, MAX_ROWS + 101):  # back to MAX_ROWS: every snapshot reads every row
        board.gone(i)
    few = board_snapshot(board, monkeypatch, 10.0 + MANY_ROWS_EVERY_S + 0.1)
    assert few.rows_ns == few.taken_ns and few.streams_left_off == 0 and len(few.streams) == MAX_ROWS
