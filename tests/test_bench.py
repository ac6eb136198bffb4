"""`tokentop bench` against the simulated server: tables, files, bad input, failures, Ctrl-C."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import bench


ARTICLE_COLUMNS = ["Number of Requests", "Output Word Count", "Average Tokens", "Average Time (s)",
                   "Average Speed (tokens/s)"]


def header_of(out: str, first: str) -> list[str]:
    """The table's header lines: the one that starts the first column's name, and the one after it."""
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split() and line.split()[0] == first)
    return lines[at:at + 2]


def test_wide_table_has_the_articles_columns_then_all_of_ours(sim_factory, capsys):
    sim = sim_factory(speed=100)
    status, out, _ = bench(capsys, "--url", sim.url, "--concurrency", "1,2", "--words", "25,50", "--format", "wide")
    assert status == 0
    header = next(line for line in out.splitlines() if "Number of Requests" in line)
    positions = [header.index(c) for c in ARTICLE_COLUMNS]
    assert positions == sorted(positions)
    for extra in ("TTFT p50", "TTFT max", "Decode tok/s", "Aggregate tok/s", "Server decode tok/s",
                  "Server prefill tok/s", "Tokens from", "Errors"):
        assert header.index(extra) > positions[-1]
    assert "Sent/s" not in header  # open-loop columns only in open-loop runs
    assert "SIMULATED" in out and "server-reported" in out and "timed by tokentop's clock" in out
    assert len([line for line in out.splitlines() if line.strip().startswith(("1 ", "2 "))]) == 4


def test_default_table_is_the_articles_columns_then_a_selection_that_fits_160_columns(sim_factory, capsys):
    sim = sim_factory(speed=100)
    status, out, _ = bench(capsys, "--url", sim.url, "--concurrency", "1,2", "--words", "25", "--slo", "ttft=2")
    assert status == 0
    top, bottom = header_of(out, "Number")
    assert top.split()[:3] == ["Number", "of", "Output"] and bottom.split()[:3] == ["Requests", "Word", "Count"]
    for name in ("TTFT", "TPOT", "ITL", "Goodput", "Errors"):
        assert name in top + bottom
    assert "Server decode" not in top + bottom  # in --format wide, markdown, CSV and JSON
    rows = [line for line in out.splitlines() if line.strip().startswith(("1 ", "2 "))]
    assert len(rows) == 2 and max(len(line) for line in [top, bottom, *rows]) <= 160


def test_json_rows_and_meta(sim_factory, capsys):
    sim = sim_factory(speed=100)
    status, out, _ = bench(capsys, "--url", sim.url, "--concurrency", "1,4", "--words", "25", "--rounds", "2",
                           "--format", "json", "--seed", "1")
    assert status == 0
    report = json.loads(out)
    meta = report["meta"]
    assert meta["api"] == "ollama" and meta["simulated"] is True and "tokentop-sim" in meta["server_version"]
    assert meta["options"]["rounds"] == 2 and meta["tokentop_version"]
    row = report["rows"][1]
    for key in ("concurrency", "words", "requests", "avg_tokens", "avg_time_s", "avg_speed_tps", "ttft_p50_s",
                "ttft_max_s", "decode_tps_mean", "aggregate_tps", "tokens_source", "errors"):
        assert key in row
    assert row["concurrency"] == 4 and row["requests"] == 8 and row["errors"] == 0
    assert row["tokens_source"] == "server" and row["server_decode_tps_mean"] > 0
    assert row["avg_speed_tps"] == pytest.approx(row["avg_tokens"] / row["avg_time_s"])


def test_sim_reproduces_the_seed_falloff(sim_factory, capsys):
    """Per-stream speed falls as concurrency rises, as on the article's A100 (25 → 16 tok/s)."""
    sim = sim_factory(speed=20)
    status, out, _ = bench(capsys, "--url", sim.url, "--concurrency", "1,2,4", "--words", "100", "--format", "json")
    assert status == 0
    rows = json.loads(out)["rows"]
    # The sim reports its durations in simulated time, the client measures real time (20x faster).
    assert [row["server_decode_tps_mean"] for row in rows] == pytest.approx([25.4, 22.3, 16.2], rel=0.1)
    assert [row["decode_tps_mean"] / 20 for row in rows] == pytest.approx([25.4, 22.3, 16.2], rel=0.15)


def test_csv_and_markdown(sim_factory, capsys):
    sim = sim_factory(speed=100)
    status, out, _ = bench(capsys, "--url", sim.url, "--concurrency", "2", "--words", "25", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert status == 0 and rows[0]["concurrency"] == "2" and rows[0]["errors"] == "0"
    status, out, _ = bench(capsys, "--url", sim.url, "--concurrency", "2", "--words", "25", "--format", "markdown")
    assert status == 0 and "| Number of Requests | Output Word Count |" in out


def test_out_file_has_one_line_per_request(sim_factory, capsys, tmp_path):
    sim = sim_factory(speed=100)
    out = tmp_path / "r.jsonl"
    status, _, _ = bench(capsys, "--url", sim.url, "--concurrency", "1,2", "--words", "25", "--out", str(out))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert status == 0 and len(lines) == 3
    for line in lines:
        for key in ("concurrency", "words", "mode", "stream", "ttft_s", "e2e_s", "output_tokens",
                    "tokens_source", "done_reason", "error"):
            assert key in line
        assert line["error"] is None and line["done_reason"] == "stop" and line["ttft_s"] < line["e2e_s"]


def test_input_mode_runs_the_title_test(sim_factory, capsys):
    sim = sim_factory(speed=100)
    status, out, _ = bench(capsys, "--url", sim.url, "--mode", "input", "--concurrency", "1,2", "--format", "json")
    rows = json.loads(out)["rows"]
    assert status == 0 and [r["concurrency"] for r in rows] == [1, 2]
    assert rows[0]["words"] > 450 and rows[0]["server_prefill_tps_mean"] > 0


@pytest.mark.parametrize(("argv", "message"), [
    (["--concurrency", "1,x"], "--concurrency takes comma-separated whole numbers"),
    (["--concurrency", "0"], "--concurrency takes whole numbers of 1 or more"),
    (["--words", ""], "--words takes whole numbers of 1 or more"),
    (["--rounds", "0"], "--rounds must be 1 or more"),
    (["--max-tokens", "-3"], "--max-tokens must be 1 or more"),
    (["--concurrency", "1,2,1"], "--concurrency lists 1 twice (--rounds repeats a cell)"),
    (["--timeout", "nan"], "--timeout must be a number of seconds more than 0"),
    (["--temperature", "inf"], "--temperature must be a number of 0 or more"),
    (["--sim-speed", "inf"], "--sim-speed must be a number more than 0"),
    (["--model", "nope:1b"], "unknown model 'nope:1b'; installed: tokentop-sim"),
])
def test_bad_input_is_one_line_and_status_2(sim_factory, capsys, argv, message):
    sim = sim_factory(speed=100)
    status, out, err = bench(capsys, "--url", sim.url, *argv)
    assert status == 2 and out == ""
    assert err.strip().count("\n") == 0 and message in err


def test_unreachable_server_is_one_line_and_status_2(capsys):
    status, _, err = bench(capsys, "--url", "http://127.0.0.1:9", "--concurrency", "1")
    assert status == 2 and err.strip().count("\n") == 0 and "cannot reach the server" in err


def test_failed_requests_are_counted_and_the_run_goes_on(sim_factory, capsys, tmp_path):
    sim = sim_factory(speed=100, faults={"cut": 0.4, "busy": 0.2}, seed=3)
    out = tmp_path / "r.jsonl"
    status, stdout, _ = bench(capsys, "--url", sim.url, "--concurrency", "4", "--words", "25", "--rounds", "5",
                              "--format", "json", "--out", str(out))
    row = json.loads(stdout)["rows"][0]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert status == 0 and row["requests"] == 20 == len(lines)
    failed = [line for line in lines if line["error"]]
    assert row["errors"] == len(failed) > 0 and row["ok"] == 20 - len(failed) > 0
    assert {line["error_kind"] for line in failed} <= {"cut", "http"}


@pytest.mark.slow  # starts a process
def test_ctrl_c_keeps_finished_requests_and_prints_their_table(sim_factory, tmp_path):
    sim = sim_factory(speed=5)
    out = tmp_path / "r.jsonl"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tui", "bench", "--url", sim.url, "--concurrency", "1,4",
                             "--words", "25,800", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 1):
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)  # about a second here; generous for a busy machine
    assert proc.returncode == 130
    text = out.read_text()
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]  # every line whole
    assert any(line["error"] is None for line in lines)
    assert {line["error_kind"] for line in lines} <= {None, "cancelled"}  # those in flight: recorded, not lost
    assert "Average Speed" in stdout and "interrupted" in stderr
    assert "Traceback" not in stderr


def test_gpu_power_per_cell_gives_joules_per_token(sim_factory):
    """With a GPU (fake Device-shaped source: 298 W + 61 W), each row gets power, J/token and tok/s/W."""
    import argparse
    import asyncio

    from fakes import FakeDevice
    from tui.bench.cells import run_cells
    from tui.bench.options import add_arguments, validate
    from tui.bench.render import rows_of
    from tui.bench.watch import Watch
    from tui.load.discover import discover
    from tui.load.engine import LoadEngine
    from tui.probes.gpu import GpuProbe

    sim = sim_factory(speed=5)
    target, _ = discover(sim.url)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    run = validate(parser.parse_args(["--concurrency", "2", "--words", "50"]))
    records = []
    watch = Watch(gpu=GpuProbe(devices=lambda: [FakeDevice(0), FakeDevice(1)]))
    engine = LoadEngine(target, run.settings)
    engine.start()
    try:
        asyncio.run(run_cells(engine, run, records.extend, watch, lambda status: None))
    finally:
        engine.stop()
    (row,) = rows_of(records, [2], [50])
    watch.add_to(row)
    assert row["gpu_power_w"] == pytest.approx(298 + 61, rel=0.01)
    assert row["j_per_token"] == pytest.approx(row["gpu_power_w"] / row["aggregate_tps"])
    assert row["tps_per_watt"] == pytest.approx(row["aggregate_tps"] / row["gpu_power_w"])


def test_the_table_says_what_went_wrong(sim_factory, capsys):
    sim = sim_factory(speed=100, faults={"busy": 1.0})
    status, out, _ = bench(capsys, "--url", sim.url, "--concurrency", "2", "--words", "25")
    row = next(line for line in out.splitlines() if line.strip().startswith("2 "))
    assert status == 1 and row.endswith("2 (http)  few-samples,errors")  # every request failed: the table, status 1
    status, out, _ = bench(capsys, "--url", sim.url, "--concurrency", "2", "--words", "25", "--format", "csv")
    assert next(csv.DictReader(io.StringIO(out)))["error_kinds"] == "http"


def test_an_out_file_that_fails_is_said_once_and_the_table_still_prints(sim_factory, capsys):
    sim = sim_factory(speed=100)
    status, out, err = bench(capsys, "--url", sim.url, "--concurrency", "2", "--words", "25", "--rounds", "2",
                             "--out", "/dev/full", "--format", "json")
    assert status == 1 and json.loads(out)["rows"][0]["requests"] == 4
    assert err.count("--out is no longer written") == 1 and "No space left" in err


def test_a_bad_url_is_one_line_and_keeps_an_old_out_file(capsys, tmp_path):
    old = tmp_path / "old.jsonl"
    old.write_text('{"kept": true}\n')
    status, out, err = bench(capsys, "--url", "http://localhost:abc", "--out", str(old))
    assert status == 2 and err.strip().count("\n") == 0 and "bad server URL" in err
    assert old.read_text() == '{"kept": true}\n'


@pytest.mark.slow  # starts a process
def test_workers_send_a_round_together_and_every_record_comes_back(sim_factory, capsys, tmp_path):
    sim = sim_factory(parallel=8, speed=20)
    out = tmp_path / "workers.jsonl"
    status, text, _ = bench(capsys, "--url", sim.url, "--concurrency", "6", "--words", "25", "--rounds", "2",
                            "--workers", "2", "--format", "json", "--out", str(out))
    assert status == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 12 and {d["stream"] for d in lines} == set(range(6))
    for rnd in (0, 1):  # both workers' requests of a round went out within a few ms of each other
        sends = [d["send_ns"] for d in lines if d["round"] == rnd]
        assert max(sends) - min(sends) < 50e6
    assert json.loads(text)["rows"][0]["errors"] == 0


def test_an_slo_gives_the_share_that_met_it_and_the_goodput(sim_factory, capsys):
    sim = sim_factory(speed=50)
    status, out, _ = bench(capsys, "--url", sim.url, "--concurrency", "2", "--words", "25", "--slo", "e2e=60",
                           "--format", "json")
    row = json.loads(out)["rows"][0]
    assert status == 0 and row["slo_met_share"] == 1.0 and row["goodput_rps"] > 0
    assert row["percentiles"]["ttft_s"]["p99"] is not None
    status, _, err = bench(capsys, "--url", sim.url, "--slo", "latency=3")
    assert status == 2 and "unknown --slo name" in err and len(err.strip().splitlines()) == 1


def test_synthetic_prompts_hit_their_token_count_as_the_server_counts_it(sim_factory, capsys, tmp_path):
    sim = sim_factory(speed=50)
    out = tmp_path / "synthetic.jsonl"
    status, _, err = bench(capsys, "--url", sim.url, "--concurrency", "3", "--input-tokens", "300",
                           "--output-tokens", "20", "--format", "json", "--out", str(out))
    assert status == 0 and "calibrated:" in err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 3 and all(r["mode"] == "synthetic" and r["words"] == 300 for r in records)
    assert all(abs(r["prompt_tokens"] - 300) <= 6 for r in records)  # within ±2 %
    status, _, err = bench(capsys, "--url", sim.url, "--input-tokens", "0")
    assert status == 2 and "--input-tokens must be 1 or more" in err


def test_a_duration_keeps_the_streams_busy_then_lets_them_finish(sim_factory, capsys, tmp_path):
    sim = sim_factory(speed=50)
    out = tmp_path / "duration.jsonl"
    status, text, _ = bench(capsys, "--url", sim.url, "--concurrency", "2", "--words", "25", "--duration", "1",
                            "--format", "json", "--out", str(out))
    assert status == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) > 4 and {d["stream"] for d in lines} == {0, 1} and all(d["error"] is None for d in lines)
    for stream in (0, 1):  # each stream sent its next request as the last one ended
        mine = sorted((d for d in lines if d["stream"] == stream), key=lambda d: d["send_ns"])
        assert all(b["send_ns"] >= a["send_ns"] + a["e2e_s"] * 1e9 - 1e6 for a, b in zip(mine, mine[1:]))
    assert json.loads(text)["rows"][0]["requests"] == len(lines)
    status, _, err = bench(capsys, "--url", sim.url, "--duration", "0")
    assert status == 2 and "--duration must be" in err


def test_a_rate_run_says_its_plan_before_it_starts_and_runs_one_word_count(sim_factory, capsys):
    sim = sim_factory(speed=100)
    status, out, err = bench(capsys, "--url", sim.url, "--rate", "0.5,6", "--duration", "1")
    assert status == 0
    assert err.splitlines()[0] == (
        "plan: 2 cells, rates 0.5, 6 requests/s × 100 words (the default with --rate; --words lists more); each sends"
        " arrivals for 1 s, then its requests in flight finish: about 2 s in all, plus the last answers of each cell")
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(("0.5 ", "6 "))]
    assert [row[:2] for row in rows] == [["0.5", "100"], ["6", "100"]]


@pytest.mark.parametrize(("argv", "plan"), [
    (["--rate", "1", "--duration", "1", "--words", "25,50"],
     "plan: 2 cells, rates 1 requests/s × 25, 50 words; each sends arrivals for 1 s"),
    (["--concurrency", "1,2", "--words", "25"],
     "plan: 2 cells, concurrency 1, 2 × 25 words; each sends its requests at once and waits for the last: 3 requests"
     " in all; the time depends on the server"),
    (["--concurrency", "2", "--output-tokens", "8"],
     "plan: 1 cell, concurrency 2 × 100 words (the default with --output-tokens; --words lists more); each sends its"
     " requests at once"),
    (["--concurrency", "1", "--words", "25,50", "--rounds", "2"],
     "plan: 2 cells, concurrency 1 × 25, 50 words, 2 rounds each; each sends its requests at once and waits for the"
     " last: 4 requests in all"),
])
def test_the_plan_counts_what_runs(sim_factory, capsys, argv, plan):
    sim = sim_factory(speed=100)
    status, out, err = bench(capsys, "--url", sim.url, *argv)
    assert status == 0 and err.splitlines()[0].startswith(plan)


def test_the_plan_of_a_capacity_search():
    import argparse

    from tui.bench.options import add_arguments, validate
    from tui.bench.plan import plan_text

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--find-capacity", "--slo", "ttft_p99=2", "--duration", "10"])
    assert plan_text(validate(args), args) == (
        "plan: find the most streams within ttft_p99=2, 100 words (the default with --find-capacity; --words sets"
        " another): levels 1, 2, 4 … until one breaks, then a bisection, each held 10 s (a capacity of 16 takes about"
        " 9 levels: 1 min 30 s)")
