"""Derived figures of a request and of a benchmark cell."""

from __future__ import annotations

import pytest

from tui.load.records import NS, RequestRecord
from tui.load.stats import cell_row, percentile


def record(stream=0, send=0.0, first=0.5, last=4.5, end=4.6, tokens=None, chunks=101, api="openai",
           timings=None, error=None, rnd=0):
    r = RequestRecord(stream=stream, concurrency=4, words=100, mode="output", api=api, model="m", round=rnd)
    r.send_ns = int(send * NS)
    r.first_token_ns = int(first * NS)
    r.last_token_ns = int(last * NS)
    r.end_ns = int(end * NS)
    step = (last - first) / max(chunks - 1, 1)
    r.chunk_ns = [int((first + i * step) * NS) for i in range(chunks)]
    r.server_output_tokens = tokens
    r.timings = timings
    if error:
        r.error_kind, r.error = error, "boom"
    return r


def test_percentile_interpolates_like_numpy():
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([1, 2, 3, 4, 5], 90) == pytest.approx(4.6)


def test_request_figures_client_counted():
    r = record(tokens=None, chunks=101)
    assert r.tokens_source == "client" and r.output_tokens == 101
    assert r.ttft_s == 0.5 and r.e2e_s == pytest.approx(4.6)
    assert r.decode_tps == pytest.approx(100 / 4.0)
    assert r.article_tps == pytest.approx(101 / 4.6)


def test_request_figures_server_reported():
    r = record(tokens=120, chunks=101, timings={"predicted_per_second": 29.5, "prompt_per_second": 400.0})
    assert r.tokens_source == "server" and r.output_tokens == 120
    assert r.decode_tps == pytest.approx(119 / 4.0)
    assert r.server_decode_tps == 29.5 and r.server_prefill_tps == 400.0
    assert r.queue_wait_s is None  # only ollama reports what it takes


def test_ollama_server_figures_and_queue_wait():
    t = {"total_duration": 10 * NS, "load_duration": 1 * NS, "prompt_eval_duration": NS // 2, "eval_duration": 4 * NS}
    r = record(api="ollama", tokens=100, timings=t)
    r.prompt_tokens = 200
    assert r.server_decode_tps == pytest.approx(25.0)
    assert r.server_prefill_tps == pytest.approx(400.0)
    assert r.queue_wait_s == pytest.approx(4.5)


def test_cell_row_reproduces_the_articles_average_speed():
    # The seed's 4 x 100 words row: average tokens / average time.
    records = [record(stream=i, tokens=t, end=e, last=e - 0.1) for i, (t, e) in
               enumerate([(120, 7.0), (125, 7.5), (121, 7.74), (125, 8.0)])]
    row = cell_row(4, 100, records)
    assert row["avg_tokens"] == pytest.approx(122.75)
    assert row["avg_time_s"] == pytest.approx(7.56)
    assert row["avg_speed_tps"] == pytest.approx(122.75 / 7.56)
    assert row["aggregate_tps"] == pytest.approx(491 / 8.0)
    assert row["ttft_p50_s"] == 0.5 and row["errors"] == 0 and row["tokens_source"] == "server"


def test_cell_row_counts_errors_and_averages_only_successes():
    records = [record(stream=0, tokens=100), record(stream=1, error="cut", tokens=None, chunks=5)]
    row = cell_row(2, 100, records)
    assert row["requests"] == 2 and row["ok"] == 1 and row["errors"] == 1
    assert row["avg_tokens"] == 100 and row["error_kinds"] == ["cut"]


def test_aggregate_rate_times_rounds_separately():
    r0 = [record(stream=i, tokens=100, send=0, end=5, last=4.9) for i in range(2)]
    r1 = [record(stream=i, tokens=100, send=100, first=100.5, last=104.9, end=105, rnd=1) for i in range(2)]
    assert cell_row(2, 100, r0 + r1)["aggregate_tps"] == pytest.approx(400 / 10)


def test_tpot_and_itl_count_the_tokens_a_chunk_carried():
    one_each = record(first=0.5, last=1.5, end=1.5, chunks=11)  # 11 chunks, 0.1 s apart, one token each
    assert one_each.tpot_s == pytest.approx(0.1) and one_each.itl_s == pytest.approx([0.1] * 10)
    packed = record(first=0.5, last=1.5, end=1.5, chunks=11, tokens=22)  # the server packed two tokens a chunk
    assert packed.itl_s == pytest.approx([0.05] * 20)  # not 0.1: ITL must not double when chunks do
    assert packed.tpot_s == pytest.approx(1.0 / 21)


def test_itl_is_the_same_whichever_way_the_tokens_a_chunk_carried_are_known():
    """Per-chunk counts from the server (one way), or a total spread evenly (the quicker way): the same gaps."""
    from array import array

    for per_chunk in (1, 2, 3):
        counted = record(first=0.5, last=1.5, end=1.5, chunks=11, tokens=11 * per_chunk)
        spread = record(first=0.5, last=1.5, end=1.5, chunks=11, tokens=11 * per_chunk)
        counted.chunk_tokens = array("q", [per_chunk] * 11)
        assert len(spread.chunk_tokens) != 11 and spread.itl_s == pytest.approx(counted.itl_s)
        assert len(spread.itl_s) == 10 * per_chunk
    assert record(first=0.5, last=0.5, end=0.5, chunks=1).itl_s == []


def test_slo_grammar_and_goodput():
    from tui.load.slo import parse_slo

    assert parse_slo("ttft=2, tpot=0.05") == {"ttft": 2.0, "tpot": 0.05}
    for bad, said in (("speed=3", "unknown --slo name"), ("ttft=x", "takes a number"), ("e2e=0", "more than 0"),
                      ("ttft=nan", "more than 0"), ("", "NAME=VALUE"),
                      ("ttft_p42=1", "unknown --slo name"), ("stream_tps_p10=-1", "tokens/s more than 0")):
        with pytest.raises(ValueError, match=said):
            parse_slo(bad)
    fast, slow = record(first=0.5, end=4.6), record(stream=1, first=3.0, end=4.6)
    failed = record(stream=2, error="http")
    row = cell_row(3, 100, [fast, slow, failed], {"ttft": 1.0})
    assert row["slo_met_share"] == pytest.approx(1 / 3)  # only `fast`: `slow` is late, an error never meets it
    assert row["goodput_rps"] == pytest.approx(1 / 4.6)
    assert row["percentiles"]["ttft_s"]["max"] == pytest.approx(3.0)
    assert set(row["percentiles"]) == {"ttft_s", "itl_s", "tpot_s", "e2e_s", "stream_tps"}
    assert "slo_met_share" not in cell_row(3, 100, [fast])
