"""Numbers that say how sure they are: intervals tested against known distributions, ITL and TPOT under each
tool's convention on a hand-made record, --until, the verdicts, compare's "within noise", and every figure
recomputed from --out."""

from __future__ import annotations

import json
import math
import random

import pytest

from helpers import bench
from tui.bench.render import rows_of
from tui.bench.until import parse_until
from tui.bench.verdict import verdict
from tui.flags import UsageError
from tui.load.confidence import half_width_pct, mean_interval, overlap, quantile_interval
from tui.load.conventions import conventions
from tui.load.records import NS, RequestRecord, read_jsonl


@pytest.mark.parametrize("q", [0.5, 0.99])
def test_a_percentiles_interval_covers_the_true_value_about_95_times_in_100(q):
    """1,000 samples of 200 exponential draws: the true quantile is -ln(1 - q)."""
    rng, true = random.Random(2026), -math.log(1 - q)
    covered = 0
    for _ in range(1000):
        low, high = quantile_interval([rng.expovariate(1.0) for _ in range(200)], q)
        covered += (low is None or low <= true) and (high is None or true <= high)
    assert 0.93 <= covered / 1000 <= 0.97, covered


def test_a_p99_of_200_has_no_upper_bound_and_a_mean_uses_students_t():
    xs = [float(i) for i in range(200)]
    low, high = quantile_interval(xs, 0.99)
    assert high is None and low is not None and low < 197  # nothing in 200 draws is surely above a p99
    rng = random.Random(7)
    covered = sum(lo <= 5 <= hi for lo, hi in (mean_interval([rng.gauss(5, 2) for _ in range(10)])
                                              for _ in range(1000)))
    assert 0.93 <= covered / 1000 <= 0.97
    assert mean_interval([1.0]) == (None, None) and quantile_interval([], 0.5) == (None, None)
    assert half_width_pct(10.0, (9.0, 11.0)) == 10.0 and half_width_pct(10.0, (9.0, None)) is None
    assert overlap((1, 2), (2, 3)) and not overlap((1, 2), (2.5, 3)) and overlap((None, 2), (-5, -4))


def two_token_chunks(ttft: float, gaps: list[float]) -> RequestRecord:
    """A request whose chunks carry two tokens each: its first at `ttft` s, the rest `gaps` apart."""
    times = [ttft]
    for gap in gaps:
        times.append(times[-1] + gap)
    chunks = [NS + round(t * NS) for t in times]
    return RequestRecord(stream=0, concurrency=1, words=10, mode="output", api="openai", model="m", send_ns=NS,
                         first_token_ns=chunks[0], last_token_ns=chunks[-1], end_ns=chunks[-1], chunk_ns=chunks,
                         chunk_tokens=[2] * len(chunks), server_output_tokens=2 * len(chunks))


def test_each_itl_and_tpot_convention_gives_the_value_worked_out_by_hand():
    a = two_token_chunks(1.0, [0.2, 0.4])  # 6 tokens: decode 0.6 s over 5 tokens after the first
    b = two_token_chunks(0.5, [1.0])  # 4 tokens: decode 1.0 s over 3
    got = conventions([a, b])
    assert got["itl_per_chunk"]["mean"] == pytest.approx((0.2 + 0.4 + 1.0) / 3)  # a gap a chunk
    assert got["itl_per_token"]["mean"] == pytest.approx((0.1 * 2 + 0.2 * 2 + 0.5 * 2) / 6)  # a gap a token
    assert got["itl_per_request"]["mean"] == pytest.approx((0.6 / 5 + 1.0 / 3) / 2)  # a mean a request
    assert got["tpot_token_weighted"]["mean"] == pytest.approx((0.6 + 1.0) / (5 + 3))  # every token weighs the same
    assert "vllm bench serve" in got["itl_per_chunk"]["as"] and "AIPerf" in got["itl_per_request"]["as"]
    assert got["itl_per_chunk"]["intervals"]["n"] == 3


def test_the_verdict_names_every_reason_a_cell_should_not_be_trusted():
    good = {"ok": 500, "errors": 0}
    assert verdict(good, unique_prompts=True) == "ok"
    bad = {"ok": 40, "errors": 2, "client_warning": "client-bound", "send_lag_p99_s": 0.05, "server_check": "x",
           "prefix_cache_hit_rate": 0.9, "until": {"met": False}}
    assert verdict(bad, unique_prompts=True) == ("client-bound,few-samples,errors,fell-behind,server-disagrees,"
                                                 "cache-hit,imprecise")
    assert "cache-hit" not in verdict(bad, unique_prompts=False)  # a shared prefix is meant to be cached


@pytest.mark.parametrize("text, message", [
    ("ttft_p98=5", "STAT one of"), ("speed_p50=5", "STAT one of"), ("ttft_p99=x", "a percentage"),
    ("ttft_p99=0", "more than 0 and less than 100"), ("ttft_p99=150%", "more than 0"),
])
def test_bad_until_values_are_one_line(text, message):
    with pytest.raises(UsageError, match=message):
        parse_until(text)


def test_until_needs_a_duration_and_is_one_line_exit_2(capsys):
    status, out, err = bench(capsys, "--sim", "--concurrency", "2", "--until", "ttft_p50=10")
    assert status == 2 and out == "" and err.count("\n") == 1 and "--until needs --duration" in err


def until_run(sim, capsys) -> dict:
    status, out, err = bench(capsys, "--url", sim.url, "--concurrency", "4", "--words", "10", "--duration", "20",
                             "--until", "ttft_p50=5%", "--format", "json")
    assert status == 0, err
    return json.loads(out)["rows"][0]


def test_until_stops_sooner_on_a_steady_server_than_on_a_jittery_one(sim_factory, capsys):
    steady = until_run(sim_factory(parallel=4, speed=50, ttft_s=0.5), capsys)
    jittery = until_run(sim_factory(parallel=4, speed=50, ttft_s=0.5, jitter=0.8), capsys)
    assert steady["until"]["met"] and steady["until"]["reached_pct"] <= 5
    assert steady["until"]["ran_s"] < jittery["until"]["ran_s"], (steady["until"], jittery["until"])
    assert steady["requests"] < jittery["requests"]


def test_every_figure_and_interval_is_recomputed_from_out(sim_factory, capsys, tmp_path):
    out = tmp_path / "run.jsonl"
    status, text, err = bench(capsys, "--url", sim_factory(parallel=2, speed=20, tokens_per_chunk=3).url,
                              "--rate", "8", "--duration", "2", "--words", "20", "--out", str(out), "--format", "json")
    assert status == 0, err
    (row,) = json.loads(text)["rows"]
    (again,) = rows_of(read_jsonl(out), [8.0], [20], shape="rate")
    for key in ("percentiles", "intervals", "conventions"):
        assert _close(json.loads(json.dumps(again[key])), row[key]), key
    for key in ("ttft_p50_s", "tpot_p50_s", "itl_p99_s", "send_lag_p99_s", "ttft_from_plan_p99_s", "requests"):
        assert again[key] == pytest.approx(row[key], rel=1e-3, abs=1e-5), key
    assert row["verdict"] and row["ttft_from_plan_p99_s"] >= row["ttft_p99_s"] - 1e-3


def _close(a, b) -> bool:
    """Equal to within the file's rounding (times kept to the microsecond)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-3, abs=1e-5)
    return a == b


def test_wide_shows_intervals_and_marks_a_p99_of_few_requests(sim_factory, capsys):
    status, out, err = bench(capsys, "--url", sim_factory(speed=50).url, "--concurrency", "2", "--words", "10",
                             "--format", "wide")
    assert status == 0, err
    line = next(line for line in out.splitlines() if line.lstrip().startswith("2 "))
    assert "[" in line and "†" in line and "few-samples" in line
    assert "Verdict few-samples: fewer than 100 requests" in out


def test_the_until_column_says_the_precision_reached_or_that_there_is_no_bound_yet():
    from tui.bench.render import _shown

    met = {"until": {"stat": "ttft_p99", "target_pct": 10, "reached_pct": 2.7, "met": True, "ran_s": 104}}
    unbounded = {"until": {"stat": "ttft_p99", "target_pct": 10, "reached_pct": None, "met": False, "ran_s": 120}}
    assert _shown(met, "until", "until") == "ttft_p99 ±3%"
    assert _shown(unbounded, "until", "until") == "ttft_p99 no bound yet (not met)"
    assert _shown({}, "until", "until") == "-"
