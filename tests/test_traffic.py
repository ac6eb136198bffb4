"""Real traffic on the one engine: users in conversations, traces at their own times, bursts, ramps, warm-ups
and people who give up — in the bench (in this process) and in the engine the app drives."""

from __future__ import annotations

import json
import random
import statistics
import time

import pytest

from helpers import bench
from hostile import HostileServer
from tui.load.client import Target
from tui.load.engine import LoadEngine
from tui.load.records import read_jsonl
from tui.load.settings import LoadSettings, arrivals, ramped


def bench_json(capsys, *argv) -> dict:
    status, out, err = bench(capsys, *argv, "--format", "json")
    assert status == 0, err
    return json.loads(out)


# --- users in conversations -------------------------------------------------------------------------------

def test_each_turn_resends_the_history_with_the_models_own_answers(capsys, tmp_path):
    server = HostileServer("normal").start()
    try:
        out = tmp_path / "talk.jsonl"
        report = bench_json(capsys, "--url", server.url, "--users", "2", "--turns", "3", "--think-time", "0.02",
                            "--think", "fixed", "--duration", "1", "--words", "25", "--out", str(out))
        chats = [r.json() for r in server.seen if r.method == "POST" and "chat" in r.path]
    finally:
        server.stop()
    records = read_jsonl(out)
    assert {r.users for r in records} == {2} and all(r.session is not None for r in records)
    by_session: dict[int, list] = {}
    for r in records:
        by_session.setdefault(r.session, []).append(r.turn)
    assert all(sorted(turns) == list(range(1, len(turns) + 1)) for turns in by_session.values())
    assert any(len(turns) == 3 for turns in by_session.values())
    third = [body for body in chats if len(body["messages"]) == 5]  # two earlier turns resent, then the third
    assert third, [len(body["messages"]) for body in chats]
    roles = [m["role"] for m in third[0]["messages"]]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    assert all(m["content"] for m in third[0]["messages"])  # the answers as the model gave them
    (row,) = report["rows"]
    assert row["users"] == 2 and row["sessions_done"] >= 1 and row["sessions_rps"] > 0
    assert set(row["ttft_by_turn"]) >= {"1", "2", "3"}


def test_the_history_makes_each_turns_prompt_longer(sim_factory, capsys, tmp_path):
    out = tmp_path / "talk.jsonl"
    bench(capsys, "--url", sim_factory(speed=50).url, "--users", "3", "--turns", "4", "--duration", "1.5",
          "--words", "25", "--out", str(out))
    sessions: dict[int, list] = {}
    for r in read_jsonl(out):
        sessions.setdefault(r.session, []).append(r)
    grown = [s for s in sessions.values() if len(s) >= 3]
    assert grown
    for talk in grown:
        tokens = [r.prompt_tokens for r in sorted(talk, key=lambda r: r.turn)]
        assert tokens == sorted(tokens) and tokens[-1] > tokens[0]  # server-counted, turn by turn


def test_users_past_the_servers_slots_queue_and_think(sim_factory):
    sim = sim_factory(parallel=2, speed=10)
    engine = LoadEngine(Target(sim.url, "ollama", sim.server.config.model),
                        LoadSettings(users=12, turns=(2, 4), think_s=0.3, words=25))
    engine.start()
    try:
        deadline = time.monotonic() + 10
        seen = set()
        while time.monotonic() < deadline and not {"waiting", "thinking"} <= seen:
            snap = engine.snapshot()
            seen |= {"waiting"} if snap.waiting >= 8 else set()
            seen |= {"thinking"} if snap.thinking else set()
            time.sleep(0.05)
        assert seen == {"waiting", "thinking"}
        assert snap.settings.users == 12 and snap.streaming <= 2
    finally:
        engine.stop()


# --- people who give up -------------------------------------------------------------------------------------

def test_a_planned_cancel_is_recorded_as_such_with_its_tokens_and_is_not_an_error(sim_factory, capsys, tmp_path):
    out = tmp_path / "cancel.jsonl"
    report = bench_json(capsys, "--url", sim_factory(speed=2).url, "--concurrency", "3", "--words", "400",
                        "--cancel-share", "1", "--cancel-after", "0.3", "--out", str(out))
    records = read_jsonl(out)
    assert len(records) == 3
    assert all(r.cancelled_by_plan and r.error_kind is None and r.client_tokens > 0 for r in records)
    assert all(0.25 < r.e2e_s < 1.0 for r in records)
    (row,) = report["rows"]
    assert row["cancelled_by_plan"] == 3 and row["errors"] == 0 and row["ok"] == 0


def test_the_share_that_gives_up_is_seeded(sim_factory, capsys, tmp_path):
    def cancelled(seed: str) -> list[int]:
        out = tmp_path / f"{seed}.jsonl"
        bench(capsys, "--url", sim_factory(speed=50).url, "--concurrency", "8", "--words", "25", "--rounds", "2",
              "--cancel-share", "0.5", "--cancel-after", "5", "--seed", seed, "--out", str(out))
        return sorted((r.round, r.stream) for r in read_jsonl(out) if r.cancelled_by_plan)

    assert cancelled("4") == cancelled("4")  # the same seed, the same people give up (none here: answers are quick)


# --- shapes ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("burstiness", "cv"), [(1.0, 1.0), (0.25, 2.0), (4.0, 0.5)])
def test_gamma_gaps_have_the_mean_of_the_rate_and_the_spread_of_their_shape(burstiness, cv):
    gaps = arrivals("gamma", 10.0, random.Random(1), burstiness)
    sample = [next(gaps) for _ in range(20_000)]
    assert statistics.fmean(sample) == pytest.approx(0.1, rel=0.05)
    assert statistics.pstdev(sample) / statistics.fmean(sample) == pytest.approx(cv, rel=0.08)  # 1/sqrt(B)


def test_a_ramp_spreads_a_rate_and_the_streams_over_its_seconds(sim_factory, capsys, tmp_path):
    assert [ramped(t, 10) for t in (0, 5, 6)] == [0, 10, 11] and ramped(2, None) == 2
    out = tmp_path / "ramp.jsonl"
    bench(capsys, "--url", sim_factory(speed=50).url, "--concurrency", "8", "--duration", "1.2", "--ramp", "1",
          "--words", "25", "--out", str(out))
    records = read_jsonl(out)
    first = sorted(min(r.send_ns for r in records if r.stream == s) for s in range(8))
    span_s = (first[-1] - first[0]) / 1e9
    assert 0.7 < span_s < 1.0  # stream i starts i/8 of the way through the ramp


def test_warmup_requests_are_kept_marked_and_in_no_row(sim_factory, capsys, tmp_path):
    out = tmp_path / "warm.jsonl"
    report = bench_json(capsys, "--url", sim_factory(speed=50).url, "--concurrency", "2", "--duration", "1.2",
                        "--warmup", "0.3", "--words", "25", "--out", str(out))
    records = read_jsonl(out)
    warm = [r for r in records if r.warmup]
    assert warm and len(warm) < len(records)
    (row,) = report["rows"]
    assert row["requests"] == len(records) - len(warm)
    cell = [r.send_ns for r in records if not r.warmup]
    assert (max(cell) - min(cell)) / 1e9 > 0.8  # the cell holds its own --duration, not the warm-up's


# --- a trace at its own times ------------------------------------------------------------------------------

def mooncake(path, rows) -> str:
    path.write_text("".join(json.dumps(dict(zip(("timestamp", "input_length", "output_length", "hash_ids"), row)))
                            + "\n" for row in rows))
    return str(path)


def test_a_trace_is_replayed_at_its_own_times_with_its_lengths(capsys, tmp_path):
    trace = mooncake(tmp_path / "t.jsonl", [(0, 600, 5, [1, 2]), (200, 600, 7, [1, 3]), (400, 80, 3, [9]),
                                            (1000, 600, 6, [1, 2])])
    server = HostileServer("normal").start()
    try:
        out = tmp_path / "replay.jsonl"
        report = bench_json(capsys, "--url", server.url, "--trace", trace, "--time-scale", "2", "--out", str(out))
        chats = [r.json() for r in server.seen if r.method == "POST" and "chat" in r.path]
        prompts = [body["messages"][-1]["content"] for body in chats[-4:]]  # after the calibration's probe
    finally:
        server.stop()
    records = sorted(read_jsonl(out), key=lambda r: r.trace_index)
    assert [r.trace_index for r in records] == [0, 1, 2, 3]
    planned = [(r.planned_ns - records[0].planned_ns) / 1e6 for r in records]
    assert planned == pytest.approx([0, 100, 200, 500], abs=1)  # --time-scale 2: twice as fast
    assert all(abs(r.send_ns - r.planned_ns) < 50e6 for r in records)  # sent when planned
    (row,) = report["rows"]
    assert row["trace"] and row["requests"] == 4 and row["send_lag_p99_s"] < 0.05
    # equal block ids, equal text: requests 0 and 3 ask the same; 1 shares their first block
    assert len(set(prompts)) == 3 and all(body["max_tokens"] in (5, 7, 3, 6) for body in chats[-4:])
    first, second = sorted(p for p in set(prompts) if len(p) > 1000)[:2]
    shared = next(i for i, (a, b) in enumerate(zip(first, second)) if a != b)
    assert shared > 0.4 * min(len(first), len(second))  # block 1's text, the same in both


@pytest.mark.parametrize(("argv", "message"), [
    (["--users", "0", "--duration", "1"], "--users takes whole numbers of 1 or more"),
    (["--users", "16385", "--duration", "1"], "--users takes whole numbers of 1 to 16384"),
    (["--users", "2"], "--users needs --duration S"),
    (["--users", "2", "--duration", "1", "--turns", "3-1"], "--turns takes whole numbers of 1 or more, low to high"),
    (["--users", "2", "--duration", "1", "--turns", "x"], "--turns takes a number or a range like 2-8"),
    (["--users", "2", "--duration", "1", "--think-time", "-1"], "--think-time must be a number of seconds 0 or more"),
    (["--rate", "2", "--duration", "1", "--arrival", "gamma", "--burstiness", "0"], "--burstiness must be a number"),
    (["--concurrency", "2", "--cancel-share", "2"], "--cancel-share must be a share from 0 to 1"),
    (["--concurrency", "2", "--ramp", "0"], "--ramp must be a number of seconds more than 0"),
    (["--concurrency", "2", "--time-scale", "2"], "--time-scale needs --trace FILE"),
    (["--users", "2", "--rate", "1", "--duration", "1"], "choose one of --concurrency, --rate, --users and --trace"),
    (["--trace", "/nonexistent/t.jsonl"], "/nonexistent/t.jsonl"),
    (["--trace", "TRACE", "--warmup", "1"], "--warmup does not apply to --trace"),
])
def test_bad_traffic_flags_are_one_line_and_exit_2(sim_factory, capsys, tmp_path, argv, message):
    argv = [mooncake(tmp_path / "t.jsonl", [(0, 10, 2, [1])]) if a == "TRACE" else a for a in argv]
    status, out, err = bench(capsys, "--url", sim_factory(speed=50).url, *argv)
    assert status == 2 and out == "" and err.count("\n") == 1 and message in err, err


def test_a_trace_line_that_is_not_the_formats_is_named(sim_factory, capsys, tmp_path):
    trace = tmp_path / "bad.jsonl"
    trace.write_text('{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [1]}\n{"timestamp": 5}\n')
    status, _, err = bench(capsys, "--url", sim_factory(speed=50).url, "--trace", str(trace))
    assert status == 2 and "bad.jsonl line 2" in err and err.count("\n") == 1


def test_two_runs_send_other_synthetic_and_trace_prompts_unless_a_seed_is_given():
    """The same "unique" prompts in two runs would be served from a prefix cache in the second (seen on the real
    vLLM: 96 % hits on a rerun, TTFT a third). Each run's prompts are its own; --seed repeats them, as asked."""
    import dataclasses

    from tui.load.request_maker import RequestMaker
    from tui.load.trace import TraceRequest

    target = Target("http://x", "openai", "m")
    item = TraceRequest(index=0, at_s=0.0, input_tokens=64, output_tokens=8, blocks=(1, 2))

    def prompts(settings):
        maker = RequestMaker(None)
        maker.begin(settings, 1)
        synthetic = maker.make(target, settings, 0, 0, False)[1].prompt
        return synthetic, maker.make(target, settings, 0, 0, False, item=item)[1].prompt

    first, second = LoadSettings(input_words=50), LoadSettings(input_words=50)
    assert prompts(first)[0] != prompts(second)[0] and prompts(first)[1] != prompts(second)[1]
    assert prompts(first) == prompts(dataclasses.replace(first, temperature=0.5))  # one run: its own, kept
    seeded = LoadSettings(input_words=50, seed=7)
    assert prompts(seeded) == prompts(LoadSettings(input_words=50, seed=7))
