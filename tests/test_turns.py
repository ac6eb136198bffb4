"""The work that may wait takes turns with the reads (a snapshot too); collections go by time while an engine runs."""

from __future__ import annotations

import asyncio
import gc

import pytest

from tui.load import gc_tuning
from tui.load.client import Target
from tui.load.engine import LoadEngine
from tui.load.turns import MOST_PER_ITERATION, Turns


def test_an_iteration_hands_out_at_most_its_share_and_the_rest_go_in_order_later():
    async def main() -> tuple[list[int], list[int]]:
        turns = Turns()
        order: list[int] = []

        async def one(i: int) -> None:
            await turns.take()
            order.append(i)

        tasks = [asyncio.ensure_future(one(i)) for i in range(100)]
        await asyncio.sleep(0)  # one iteration: every task has run to its turn
        at_once = list(order)
        await asyncio.gather(*tasks)
        return at_once, order

    at_once, order = asyncio.run(main())
    assert len(at_once) == MOST_PER_ITERATION
    assert order == list(range(100))  # first come, first served


def test_a_cancelled_waiter_gives_up_its_turn_and_the_others_still_get_theirs():
    async def main() -> list[int]:
        turns = Turns()
        done: list[int] = []

        async def one(i: int) -> None:
            await turns.take()
            done.append(i)

        tasks = [asyncio.ensure_future(one(i)) for i in range(MOST_PER_ITERATION + 5)]
        await asyncio.sleep(0)
        tasks[MOST_PER_ITERATION + 1].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert turns.waiting == 0
        return done

    done = asyncio.run(main())
    assert len(done) == MOST_PER_ITERATION + 4 and MOST_PER_ITERATION + 1 not in done


def test_the_share_shrinks_when_an_iteration_runs_long_and_never_below_one():
    async def main() -> int:
        turns = Turns(budget_s=0.001)

        async def slow() -> None:
            await turns.take()
            sum(range(200_000))  # a few ms of work in its turn

        await asyncio.gather(*(slow() for _ in range(3 * MOST_PER_ITERATION)))
        return turns._per_iteration

    assert 1 <= asyncio.run(main()) < MOST_PER_ITERATION


def test_collections_go_by_time_while_an_engine_thread_runs_and_by_count_again_after_the_last():
    assert gc.isenabled()

    async def collecting() -> None:
        task = asyncio.ensure_future(gc_tuning.collect_by_time((0.001, 0.002), freeze_s=0.005, full_s=0.02))
        before = gc.get_stats()[0]["collections"]
        await asyncio.sleep(0.05)
        assert gc.get_stats()[0]["collections"] > before  # the young ones, by time
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    try:
        with gc_tuning.collections_by_time():
            with gc_tuning.collections_by_time():
                assert not gc.isenabled()
                asyncio.run(collecting())
            assert not gc.isenabled()  # the other engine thread still runs
        assert gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread's death, on purpose
def test_an_engine_whose_thread_dies_while_starting_says_so_instead_of_hanging(monkeypatch):
    def broken(self, ready) -> None:
        raise OSError("no loop for you")

    monkeypatch.setattr(LoadEngine, "_thread_main", broken)
    engine = LoadEngine(Target("http://127.0.0.1:9", "openai", "m"))
    with pytest.raises(RuntimeError, match="died while starting"):
        engine.start()


def test_a_snapshot_built_a_slice_at_a_time_on_the_loop_is_the_one_built_at_once():
    import time
    from types import SimpleNamespace

    from tui.load.finished import Finished
    from tui.load.records import NS, RequestRecord
    from tui.load.settings import LoadSettings
    from tui.load.views import SLICE, Board

    board = Board(10 * NS)
    t0 = time.perf_counter_ns() - NS
    for k in range(3 * SLICE):
        r = RequestRecord(stream=k, concurrency=3 * SLICE, words=25, mode="output", api="openai", model="m",
                          send_ns=t0 - k * 1_000_000)
        if k % 3:
            r.first_token_ns = t0 + k
            r.chunk_ns.extend((t0 + k, t0 + k + 1))
            r.last_token_ns = r.end_ns = t0 + k + 1  # ended: nothing in it depends on when the snapshot is taken
        board.started(k, r)
    parts = dict(running=True, settings=LoadSettings(), version=1, finished=Finished(keep=10), cost=None,
                 open_loop=SimpleNamespace(sent_ns=[], held=[], held_total=0, unsent=0))
    assert sum(1 for _ in board.build(**parts)) >= 3  # it yields between slices
    at_once = board.snapshot(**parts)
    sliced = asyncio.run(board.snapshot_between_reads(**parts))
    assert sliced.streams_left_off == 3 * SLICE - 256 and sliced.waiting == SLICE
    for name in ("waiting", "streaming", "aggregate_tps", "ttft_bins", "queued_all", "streams_left_off"):
        assert getattr(sliced, name) == getattr(at_once, name), name
    assert [v.index for v in sliced.streams] == [v.index for v in at_once.streams]
