"""The live engine against the simulated server: queueing, steering, faults, stopping."""

from __future__ import annotations

import json
import time

import pytest

from tui.load.client import Target
from tui.load.engine import LoadEngine
from tui.load.settings import LoadSettings


def wait_for(predicate, timeout=10.0, every=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")


@pytest.fixture
def engine_for():
    engines: list[LoadEngine] = []

    def make(sim, **settings) -> LoadEngine:
        engine = LoadEngine(Target(sim.url, "ollama", sim.server.config.model), LoadSettings(**settings),
                            read_timeout=5.0)
        engine.start()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.stop()


def test_four_slots_eight_streams_four_wait_then_start(sim_factory, engine_for):
    sim = sim_factory(parallel=4, speed=10)
    engine = engine_for(sim, concurrency=8, words=25)
    snap = wait_for(lambda: (s := engine.snapshot()).streaming == 4 and s.waiting == 4 and s)
    waiting = {v.index for v in snap.streams if v.state == "waiting"}
    assert len(snap.streams) == 8 and len(waiting) == 4
    assert sim.server.busy <= 4
    # The waiting ones start streaming as the first ones finish.
    wait_for(lambda: any(v.index in waiting and v.state == "streaming" for v in engine.snapshot().streams))
    def each_waiting_stream_done() -> list:
        records = engine.records
        return waiting <= {r.stream for r in records} and records

    records = wait_for(each_waiting_stream_done)
    first_of: dict[int, object] = {}
    for record in records:  # each stream's first request
        first_of.setdefault(record.stream, record)
    first_done = min(r.end_ns for r in records)
    assert all(first_of[i].first_token_ns >= first_done for i in waiting)  # they waited for a slot
    assert all(r.ok for r in records)


def test_raise_and_lower_concurrency_mid_run(sim_factory, engine_for):
    sim = sim_factory(parallel=8, speed=10)
    engine = engine_for(sim, concurrency=2, words=50)
    wait_for(lambda: engine.snapshot().streaming == 2)
    engine.update(concurrency=6)
    wait_for(lambda: len(engine.snapshot().streams) == 6)
    wait_for(lambda: engine.snapshot().streaming == 6)
    engine.update(concurrency=1)
    assert len(engine.snapshot().streams) == 6  # the surplus finish their current request first
    wait_for(lambda: len(engine.snapshot().streams) == 1)
    surplus = [r for r in engine.records if r.stream >= 1]
    assert surplus and all(r.ok for r in surplus)  # finished, not cut short


def test_lowering_can_cancel_the_surplus(sim_factory, engine_for):
    sim = sim_factory(parallel=8, speed=1)
    engine = engine_for(sim, concurrency=4, words=400, cancel_surplus=True)
    wait_for(lambda: engine.snapshot().streaming == 4)
    engine.update(concurrency=1)
    wait_for(lambda: len(engine.snapshot().streams) == 1, timeout=2)
    cancelled = [r for r in engine.records if r.error_kind == "cancelled"]
    assert sorted(r.stream for r in cancelled) == [1, 2, 3]


def test_words_and_mode_apply_to_the_next_request(sim_factory, engine_for):
    sim = sim_factory(parallel=4, speed=50)
    engine = engine_for(sim, concurrency=1, words=25)
    wait_for(lambda: engine.records)
    engine.update(words=50, mode="input")
    later = wait_for(lambda: [r for r in engine.records if r.mode == "input"])
    assert later[0].words == 50
    assert all(r.words == 25 and r.mode == "output" for r in engine.records[: engine.records.index(later[0])])


def test_bad_settings_are_refused_and_change_nothing(sim_factory, engine_for):
    engine = engine_for(sim_factory(speed=50), concurrency=1, words=25)
    with pytest.raises(ValueError, match="concurrency"):
        engine.update(concurrency=-1)
    with pytest.raises(ValueError, match="unknown --mode"):
        engine.update(mode="poem")
    assert engine.settings.concurrency == 1 and engine.settings.mode == "output"


def test_faults_are_recorded_and_the_run_goes_on(sim_factory, engine_for):
    sim = sim_factory(parallel=4, speed=50, faults={"cut": 0.3, "busy": 0.3, "malformed": 0.2}, seed=7)
    engine = engine_for(sim, concurrency=4, words=25)
    wait_for(lambda: len(engine.records) >= 30, timeout=30)
    kinds = {r.error_kind for r in engine.records}
    assert {"cut", "http", "malformed"} <= kinds
    assert any(r.ok for r in engine.records)
    busy = next(r for r in engine.records if r.error_kind == "http")
    assert busy.http_status == 503 and "server busy" in busy.error
    engine.pause()  # a running engine finishes requests between the snapshot and the records read after it
    wait_for(lambda: not engine.in_flight(), timeout=20)
    assert engine.snapshot().errors == sum(1 for r in engine.records if r.error_kind)


def test_refused_connections_are_retried_once_and_then_recorded(sim_factory, engine_for):
    sim = sim_factory(parallel=4, speed=50, faults={"refuse": 1.0})
    engine = engine_for(sim, concurrency=2, words=25)
    wait_for(lambda: len(engine.records) >= 2, timeout=20)
    for record in list(engine.records)[:2]:
        assert record.error_kind == "closed" and record.retried and "before answering" in record.error
        assert record.e2e_s > 0 and record.http_status is None


def test_a_retry_is_marked_and_timed_from_the_first_try(sim_factory, engine_for):
    sim = sim_factory(parallel=4, speed=50, faults={"refuse": 0.5}, seed=1)
    engine = engine_for(sim, concurrency=4, words=25)
    records = wait_for(lambda: len(engine.records) >= 40 and list(engine.records), timeout=30)
    saved = [r for r in records if r.retried and r.ok]  # refused once, answered the second time
    assert saved and any(r.error_kind == "closed" for r in records)
    # About a quarter are refused twice (0.5 × 0.5): none of them vanish into a silent retry.
    assert 0.05 < sum(r.error_kind == "closed" for r in records) / len(records) < 0.5


def test_stop_ends_stalled_streams_within_two_seconds(sim_factory):
    sim = sim_factory(parallel=4, speed=50, faults={"stall": 1.0})
    engine = LoadEngine(Target(sim.url, "ollama", sim.server.config.model), LoadSettings(concurrency=4, words=25))
    engine.start()
    wait_for(lambda: engine.snapshot().streaming == 4)
    started = time.monotonic()
    engine.stop()
    assert time.monotonic() - started < 2.0
    assert not engine._thread.is_alive()


def test_a_stop_that_times_out_still_records_every_request_and_gives_the_collector_back(sim_factory):
    """On a starved machine the shutdown can outlast stop's timeout (0 here): the loop is stopped under the
    streams; they are still recorded as cancelled, and Python's collections by count come back."""
    import gc

    sim = sim_factory(parallel=4, speed=50, faults={"stall": 1.0})
    engine = LoadEngine(Target(sim.url, "ollama", sim.server.config.model), LoadSettings(concurrency=4, words=25))
    engine.start()
    wait_for(lambda: engine.snapshot().streaming == 4)
    assert not gc.isenabled()
    engine.stop(timeout=0.0)
    engine._thread.join(5.0)
    assert not engine._thread.is_alive()
    assert gc.isenabled()
    records = engine.records
    assert len(records) == 4 and all(r.error_kind == "cancelled" for r in records), records


def test_openai_protocol_and_live_rates(sim_factory, engine_for):
    sim = sim_factory(parallel=4, speed=5)
    engine = LoadEngine(Target(sim.url, "openai", "anything"), LoadSettings(concurrency=2, words=400))
    engine.start()
    try:
        snap = wait_for(lambda: (s := engine.snapshot()).streaming == 2 and all(v.tokens > 20 for v in s.streams) and s)
        # per-stream rate at 2 busy slots is 22.3 tok/s x speed 5
        for view in snap.streams:
            assert view.live_tps == pytest.approx(22.3 * 5, rel=0.25)
        assert snap.aggregate_tps == pytest.approx(2 * 22.3 * 5, rel=0.3)
    finally:
        engine.stop()


def test_out_gets_the_finished_requests_a_few_times_a_second_and_every_one_at_the_stop(sim_factory, tmp_path):
    """--out is written in whole lines, those finished since the last write every OUT_EVERY_S (a write a request
    cost a few per cent of a core at hundreds a second), and the rest when the engine stops."""
    from tui.load.engine import OUT_EVERY_S

    sim = sim_factory(parallel=4, speed=50)
    out = tmp_path / "out.jsonl"
    engine = LoadEngine(Target(sim.url, "ollama", sim.server.config.model), LoadSettings(concurrency=2, words=25),
                        out_path=str(out))
    engine.start()
    try:
        done = wait_for(lambda: (n := engine.snapshot().completed) >= 4 and n, timeout=20)
        wait_for(lambda: out.exists() and out.read_text().count("\n") >= done, timeout=OUT_EVERY_S + 2)
    finally:
        engine.stop()
    lines = out.read_text().splitlines()
    assert len(lines) == engine.snapshot().completed >= done and all(json.loads(line)["stream"] in (0, 1) for line in lines)


@pytest.mark.slow  # starts a process
def test_engine_process_keeps_the_newest_records_and_out_keeps_all(sim_factory, tmp_path):
    from tui.load.process import EngineProcess

    sim = sim_factory(parallel=4, speed=50)
    out = tmp_path / "all.jsonl"
    engine = EngineProcess(Target(sim.url, "ollama", sim.server.config.model),
                           LoadSettings(concurrency=2, words=25), out_path=str(out), keep_records=3)
    engine.start()
    try:
        wait_for(lambda: engine.snapshot().completed >= 6, timeout=20, every=0.05)
    finally:
        engine.stop()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    kept = engine.records
    assert len(lines) >= 6 and len(kept) == 3
    # The kept ones are the last three to finish: the file's last three lines, in order.
    assert [(r.stream, round(r.sent_at, 6)) for r in kept] == [(d["stream"], d["sent_at"]) for d in lines[-3:]]


@pytest.mark.slow  # starts a process
def test_an_engine_process_sends_rows_it_kept_once(sim_factory):
    """Past MAX_ROWS the engine keeps its rows a while (tui/load/views.py): its process sends them once, and the
    snapshots between come without them and are whole again on this side."""
    from tui.load.process import EngineProcess, SameRows
    from tui.load.views import MAX_ROWS

    sim = sim_factory(parallel=4, speed=1)
    engine = EngineProcess(Target(sim.url, "ollama", sim.server.config.model),
                           LoadSettings(concurrency=MAX_ROWS + 20, words=400))
    answers = []
    ask = engine._ask
    engine._ask = lambda *args, **kwargs: answers.append(ask(*args, **kwargs)) or answers[-1]
    engine.start()
    try:
        snap = wait_for(lambda: (s := engine.snapshot()).streams_left_off and s, timeout=30)
        again = engine.snapshot()
        if again.rows_ns != snap.rows_ns:  # chosen anew just between the two: once more
            snap, again = again, engine.snapshot()
    finally:
        engine.stop()
    assert isinstance(answers[-1], SameRows) and answers[-1].snapshot.streams == ()
    assert again.streams == snap.streams and len(again.streams) == MAX_ROWS and again.taken_ns > snap.taken_ns
    assert again.waiting + again.streaming == MAX_ROWS + 20


@pytest.mark.slow  # starts a process
def test_a_pool_of_engine_processes_is_one_engine(sim_factory, tmp_path):
    """Two workers, eight streams on four slots: one merged view, streams 0-7, one whole --out."""
    from tui.load.pool import EnginePool

    sim = sim_factory(parallel=4, speed=20)
    out = tmp_path / "pool.jsonl"
    engine = EnginePool(Target(sim.url, "ollama", sim.server.config.model), LoadSettings(concurrency=8, words=100),
                        workers=2, out_path=str(out))
    engine.start()
    try:
        snap = wait_for(lambda: (s := engine.snapshot()).streaming == 4 and s.waiting == 4 and s, timeout=20)
        assert [v.index for v in snap.streams] == list(range(8))
        engine.update(concurrency=3)
        assert engine.settings.concurrency == 3 and engine.settings_version == 1
        # A snapshot says how many updates its settings include: from the one after this update, all of them.
        late = wait_for(lambda: (s := engine.snapshot()).settings_version == 1 and s, timeout=5)
        assert late.settings.concurrency == 3
        wait_for(lambda: engine.snapshot().completed >= 10, timeout=30, every=0.05)
        wait_for(lambda: len(engine.snapshot().streams) == 3, timeout=30, every=0.05)
    finally:
        engine.stop()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == len(engine.records) >= 10
    assert {d["stream"] for d in lines} == set(range(8))
    ends = [r.end_ns for r in engine.records]
    assert ends == sorted(ends)


def test_a_bug_in_a_stream_is_an_error_record_and_a_log_line(sim_factory, engine_for, monkeypatch, caplog):
    import tui.load.sending as engine_module  # where the engine sends each request

    real, calls = engine_module.stream_once, []

    async def buggy(*args):
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("a bug of ours")
        return await real(*args)

    monkeypatch.setattr(engine_module, "stream_once", buggy)
    engine = engine_for(sim_factory(speed=50), concurrency=1, words=25)
    records = wait_for(lambda: len(engine.records) >= 2 and list(engine.records), timeout=20)
    assert records[0].error_kind == "bug" and "KeyError" in records[0].error
    assert records[1].ok  # the stream went on
    assert engine.snapshot().errors >= 1
    assert any("stream 0" in r.message for r in caplog.records)
