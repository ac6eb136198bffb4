"""Workloads against the simulated server: the open loop (--rate), prompt files, tokens per chunk, and every
figure recomputed from the --out file."""

from __future__ import annotations

import json
import statistics
import time

import pytest

from helpers import bench

from tui.load.discover import discover
from tui.load.engine import LoadEngine
from tui.load.records import read_jsonl
from tui.load.settings import LoadSettings
from tui.load.stats import cell_row


def bench_json(capsys, *argv) -> dict:
    status, out, err = bench(capsys, *argv, "--format", "json")
    assert status == 0, err
    return json.loads(out)


# --- the open loop ------------------------------------------------------------------------------------
def test_a_rate_above_capacity_grows_the_backlog_and_one_below_does_not(sim_factory, capsys):
    # 2 slots, 1 s a request: 2 requests/s is all it serves (x10 speed: 20/s in real time)
    sim = sim_factory(parallel=2, service_s=1.0, speed=10)
    report = bench_json(capsys, "--url", sim.url, "--rate", "8,40", "--duration", "3", "--words", "25",
                        "--seed", "1")
    below, above = report["rows"]
    assert below["rate"] == 8 and above["rate"] == 40 and below["concurrency"] is None
    assert below["sent_rps"] == pytest.approx(8, rel=0.35) and above["sent_rps"] == pytest.approx(40, rel=0.2)
    assert abs(below["backlog_growth_rps"]) < 2  # it keeps up: no trend beyond Poisson noise
    # arrivals minus what it serves (40 - 20): clearly growing, slower than the arrivals (the sim shares this
    # process's GIL, so it serves a little less than 20/s on a busy machine)
    assert 10 < above["backlog_growth_rps"] < 40
    assert above["backlog_end"] > 30
    assert above["percentiles"]["ttft_s"]["p99"] > 10 * below["percentiles"]["ttft_s"]["p50"]
    assert above["errors"] == 0 and above["requests"] == above["ok"]  # after the duration, the backlog drains
    assert report["meta"]["options"]["rate"] == [8, 40] and report["meta"]["options"]["arrival"] == "poisson"


def test_constant_arrivals_are_evenly_spaced(sim_factory, capsys, tmp_path):
    sim = sim_factory(parallel=8, service_s=0.5, speed=10)
    out = tmp_path / "r.jsonl"
    report = bench_json(capsys, "--url", sim.url, "--rate", "20", "--arrival", "constant", "--duration", "1",
                        "--words", "25", "--out", str(out))
    records = read_jsonl(out)
    sends = sorted(r.send_ns for r in records)
    gaps = [(b - a) / 1e9 for a, b in zip(sends, sends[1:])]
    assert len(records) == pytest.approx(20, abs=1)
    # 50 ms apart, give or take the loop's wake-ups (a busy machine may delay a few)
    assert statistics.median(gaps) == pytest.approx(0.05, abs=0.005)
    assert sum(abs(gap - 0.05) < 0.015 for gap in gaps) >= 0.8 * len(gaps)
    assert report["rows"][0]["held_back"] == 0


def test_max_inflight_holds_arrivals_back_and_counts_those_never_sent(sim_factory, capsys, tmp_path):
    sim = sim_factory(parallel=2, service_s=2.0, speed=10)  # each request 0.2 s in real time
    out = tmp_path / "r.jsonl"
    status, table, _ = bench(capsys, "--url", sim.url, "--rate", "50", "--duration", "1", "--max-inflight", "2",
                             "--words", "25", "--out", str(out))
    assert status == 0
    records = read_jsonl(out)
    held = [r for r in records if r.held_back]
    assert held and all(r.send_ns > r.planned_ns for r in held)
    assert len(records) <= 2 + 1 / 0.2 * 2 + 2  # two at a time, each 0.2 s: the ceiling held
    header = "\n".join(table.splitlines()[:4])
    assert "Held" in header and "Unsent" in header  # shown in the compact table because they are not 0
    report = bench_json(capsys, "--url", sim.url, "--rate", "50", "--duration", "1", "--max-inflight", "2",
                        "--words", "25")
    row = report["rows"][0]
    assert row["held_back"] > 0 and row["unsent"] > 20  # ~50 arrivals, ~10 sent: the rest counted, not lost


@pytest.mark.parametrize("argv, message", [
    (["--rate", "0", "--duration", "1"], "--rate takes numbers of requests per second more than 0"),
    (["--rate", "nan", "--duration", "1"], "--rate takes numbers of requests per second more than 0"),
    (["--rate", "-2", "--duration", "1"], "--rate takes numbers of requests per second more than 0"),
    (["--rate", "two", "--duration", "1"], "--rate takes comma-separated requests per second"),
    (["--rate", "2"], "--rate needs --duration S"),
    (["--rate", "2", "--duration", "0"], "--duration must be a number of seconds more than 0"),
    (["--rate", "2", "--duration", "1", "--concurrency", "4"],
     "choose one of --concurrency, --rate, --users and --trace, not --concurrency and --rate"),
    (["--rate", "2", "--duration", "1", "--max-inflight", "0"], "--max-inflight must be 1 to 16384"),
    (["--rate", "2,2", "--duration", "1"], "--rate lists 2 twice"),
])
def test_bad_open_loop_flags_are_one_line_and_exit_2(capsys, argv, message):
    status, out, err = bench(capsys, "--url", "http://127.0.0.1:9", *argv)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and message in err


def test_the_engine_runs_an_open_loop_live_and_switches_back(sim_factory):
    sim = sim_factory(parallel=2, service_s=1.0, speed=10)  # serves 20 requests/s in real time
    target, _ = discover(sim.url)
    engine = LoadEngine(target, LoadSettings(rate=60.0, words=25, max_inflight=1024))
    engine.start()
    try:
        time.sleep(3)
        snap = engine.snapshot()
        assert snap.sent_rps == pytest.approx(60, rel=0.35) and 10 < snap.finished_rps < 30
        assert snap.waiting > 40 and 20 < snap.backlog_growth_rps < 60  # arrivals minus what it serves: ~40
        engine.update(rate=None, concurrency=1)  # back to one stream: no new arrivals, the backlog drains
        time.sleep(2.2)  # a window (2 s) with no arrivals in it
        assert engine.snapshot().sent_rps == 0
        engine.pause()
    finally:
        engine.stop()
    opened = [r for r in engine.records if r.rate is not None]
    assert opened and all(r.rate == 60.0 and r.concurrency == 0 and r.planned_ns for r in opened)


def test_pausing_an_open_loop_counts_the_held_back_as_unsent(sim_factory):
    sim = sim_factory(parallel=1, service_s=5.0, speed=10)
    target, _ = discover(sim.url)
    engine = LoadEngine(target, LoadSettings(rate=40.0, words=25, max_inflight=1))
    engine.start()
    try:
        time.sleep(1)
        snap = engine.snapshot()
        assert snap.held > 10 and snap.held_total >= snap.held
        engine.pause()
        time.sleep(0.2)
        assert engine.snapshot().unsent >= snap.held
    finally:
        engine.stop()


# --- prompts ----------------------------------------------------------------------------------------
def test_prompt_file_prompts_are_sent_in_turn(sim_factory, capsys, tmp_path):
    sim = sim_factory(speed=100)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "tell a story in 5 words:"}\n'
                       '{"conversations": [{"from": "human", "value": "tell a story in 50 words:"},'
                       ' {"from": "gpt", "value": "Once..."}]}\n')
    out = tmp_path / "r.jsonl"
    report = bench_json(capsys, "--url", sim.url, "--prompts", str(prompts), "--concurrency", "4", "--out", str(out))
    records = read_jsonl(out)
    lengths = sorted(r.output_tokens for r in records)
    # the sim answers about 1.2 tokens a word asked for: two of each prompt
    assert lengths[1] < 10 < 50 < lengths[2]
    assert {r.mode for r in records} == {"prompt-file"} and report["rows"][0]["words"] == 2


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("", "empty"),
    ("{not json\n", "line 1: not JSON"),
    ('{"text": "no prompt here"}\n', "no usable prompt"),
])
def test_bad_prompt_files_are_one_line_and_exit_2(capsys, tmp_path, content, message):
    path = tmp_path / "p.jsonl"
    if content is not None:
        path.write_text(content)
    status, out, err = bench(capsys, "--url", "http://127.0.0.1:9", "--prompts", str(path))
    assert status == 2 and out == "" and err.count("\n") == 1 and message in err


# --- tokens per chunk, and the file ------------------------------------------------------------------
def test_two_tokens_a_chunk_do_not_halve_the_inter_token_latency(sim_factory, capsys):
    one = sim_factory(parallel=1, service_s=2.0, speed=10)  # 0.2 s for 60 tokens: 3.3 ms a token
    two = sim_factory(parallel=1, service_s=2.0, speed=10, tokens_per_chunk=2)
    rows = [bench_json(capsys, "--url", sim.url, "--api", "openai", "--output-tokens", "60", "--concurrency", "1",
                       "--rounds", "3")["rows"][0] for sim in (one, two)]
    itl = [row["percentiles"]["itl_s"]["p50"] for row in rows]
    assert itl[1] == pytest.approx(itl[0], rel=0.25)
    assert itl[0] == pytest.approx(rows[0]["percentiles"]["tpot_s"]["p50"], rel=0.25)


def test_per_chunk_usage_is_read_when_the_server_sends_it(sim_factory, capsys, tmp_path):
    from tui.load.client import Target

    sim = sim_factory(parallel=1, service_s=1.0, speed=10, tokens_per_chunk=3)
    target, _ = discover(sim.url, "openai")
    target = Target(target.url, target.api, target.model, usage_per_chunk=True)  # as for vLLM and SGLang
    engine = LoadEngine(target, LoadSettings(concurrency=1, output_tokens=10))
    engine.start()
    try:
        deadline = time.monotonic() + 10
        while not engine.records and time.monotonic() < deadline:
            time.sleep(0.05)
        engine.pause()
    finally:
        engine.stop()
    record = engine.records[0]
    assert record.chunk_tokens.tolist() == [3, 3, 3, 1] and record.tokens_per_chunk == [3.0, 3.0, 3.0, 1.0]
    assert len(record.itl_s) == 10 - 3  # the first chunk's tokens came at the first token


def test_every_figure_can_be_computed_again_from_the_out_file(sim_factory, capsys, tmp_path):
    sim = sim_factory(parallel=2, service_s=1.0, speed=10, tokens_per_chunk=2)
    out = tmp_path / "r.jsonl"
    report = bench_json(capsys, "--url", sim.url, "--api", "openai", "--rate", "6", "--duration", "2",
                        "--output-tokens", "20", "--words", "25", "--slo", "ttft=0.2,tpot=0.01", "--out", str(out))
    (row,) = report["rows"]
    again = cell_row(None, row["words"], read_jsonl(out), {"ttft": 0.2, "tpot": 0.01}, rate=6.0)
    for key in ("requests", "ok", "avg_tokens", "avg_time_s", "request_rps", "sent_rps", "slo_met_share",
                "goodput_rps", "backlog_end", "backlog_growth_rps", "held_back", "aggregate_tps"):
        assert again[key] == pytest.approx(row[key], rel=1e-3, abs=1e-6), key
    for figure, spread in row["percentiles"].items():
        for name, value in spread.items():
            assert again["percentiles"][figure][name] == pytest.approx(value, rel=1e-3, abs=2e-6), (figure, name)


def test_a_shared_prefix_is_the_same_in_every_prompt_and_the_rest_is_new():
    import random

    from tui.load.synthetic import text

    a, b = (text(200, random.Random(seed), shared=50).split() for seed in (1, 2))
    head = len(text(0, random.Random(0)).split())  # the instruction's words
    assert a[:head + 50] == b[:head + 50]
    assert sum(x != y for x, y in zip(a[head + 50:], b[head + 50:])) > 100  # fresh words: no longer prefix
    c, d = (text(200, random.Random(seed)).split() for seed in (1, 2))
    assert c[head:head + 5] != d[head:head + 5]  # by default nothing is shared but the instruction


@pytest.mark.parametrize("argv, message", [
    (["--shared-prefix", "10"], "--shared-prefix needs --input-tokens N"),
    (["--shared-prefix", "500", "--input-tokens", "500"], "--shared-prefix must be more than 0 and less than"),
    (["--shared-prefix", "0", "--input-tokens", "500"], "--shared-prefix must be more than 0 and less than"),
])
def test_bad_shared_prefix_is_one_line_and_exit_2(capsys, argv, message):
    status, out, err = bench(capsys, "--url", "http://127.0.0.1:9", *argv)
    assert status == 2 and out == "" and err.count("\n") == 1 and message in err
