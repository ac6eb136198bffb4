"""The server seen from inside: histograms read from /metrics (increases, quantiles within a bucket), llama.cpp's
slots, a probe that meets refusals and rubbish calmly, where the time goes, and the bench's per-cell figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import pytest

from tui.bench.render import render
from tui.bench.server_side import add_server_fields, cross_check, histogram_fields, per_request_fields
from tui.load.records import NS, RequestRecord
from tui.load.time_split import RecentSplit, merge_splits, recent_split, where_time_goes
from tui.panes.inside_text import inside_text
from tui.probes.histograms import Increase, increase, parse_scrape
from tui.probes.inside import NAMES, InsideProbe, cache_share_between, phases_between, slot_rows

DATA = Path(__file__).parent / "data"
VLLM = (DATA / "vllm_metrics.txt").read_text()
SGLANG = (DATA / "sglang_metrics.txt").read_text()
LLAMA = (DATA / "llamacpp_metrics.txt").read_text()


def histogram(name: str, counts: dict[str, float], total: float) -> str:
    """Prometheus text of one histogram: cumulative counts by `le`."""
    lines = [f'{name}_bucket{{le="{le}",model_name="m"}} {n}' for le, n in counts.items()]
    return "\n".join(lines + [f'{name}_count{{model_name="m"}} {list(counts.values())[-1]}',
                              f'{name}_sum{{model_name="m"}} {total}']) + "\n"


def test_a_quantile_is_read_within_its_bucket_and_names_it():
    text = histogram("x", {"0.5": 0, "1.0": 10, "+Inf": 10}, 7.5)
    inc = increase("x", parse_scrape(text), None)
    assert inc.count == 10 and inc.mean == 0.75
    p50 = inc.quantile(0.5)
    assert (p50.value, p50.low, p50.high) == (0.75, 0.5, 1.0) and p50.bucket() == "0.5–1 s"
    over = increase("x", parse_scrape(histogram("x", {"1.0": 0, "+Inf": 4}, 9.0)), None).quantile(0.99)
    assert over.value == 1.0 and math.isinf(over.high) and over.bucket() == "> 1 s"  # as histogram_quantile
    assert Increase(0, 0, ()).quantile(0.5) is None


def test_an_increase_counts_only_what_happened_between_two_scrapes_and_survives_a_restart():
    before = parse_scrape(histogram("x", {"0.1": 5, "1.0": 5, "+Inf": 5}, 0.25))
    after = parse_scrape(histogram("x", {"0.1": 5, "1.0": 9, "+Inf": 9}, 2.25))
    inc = increase("x", after, before)
    assert inc.count == 4 and inc.mean == 0.5 and inc.quantile(0.5).bucket() == "0.1–1 s"
    restarted = increase("x", before, after)  # the counters went back: all of the newer scrape
    assert restarted.count == 5 and restarted.quantile(0.99).bucket() == "0–0.1 s"
    assert increase("absent", after, before) is None


def test_vllms_real_metrics_give_every_phase_its_cache_and_its_waiting_by_reason():
    scrape = parse_scrape(VLLM, {"vllm:num_requests_waiting_by_reason": "reason"})
    phases = phases_between(NAMES["vllm"], scrape, None)
    assert set(phases) == {"ttft", "queue", "prefill", "decode", "itl", "e2e"}
    ttft = phases["ttft"]
    assert ttft.count == 14 and ttft.p50.bucket() == "0.75–1 s" and ttft.p99.bucket() == "5–7.5 s"
    assert scrape.labelled["vllm:num_requests_waiting_by_reason"] == {"capacity": 4.0, "deferred": 0.0}
    assert cache_share_between(NAMES["vllm"], scrape, None) == 0.0  # that run's prompts were unique


def test_sglangs_hit_rate_from_its_counters_matches_its_own_gauge():
    scrape = parse_scrape(SGLANG)
    assert cache_share_between(NAMES["sglang"], scrape, None) == pytest.approx(scrape.values["sglang:cache_hit_rate"],
                                                                               abs=1e-3)


def test_llama_cpp_counts_cached_prompt_tokens_apart_from_those_it_computed():
    scrape = parse_scrape(LLAMA)  # 565 reused, 261 computed
    assert cache_share_between(NAMES["llama.cpp"], scrape, None) == pytest.approx(565 / (565 + 261))


def test_llama_cpp_slots_read_as_idle_prefill_or_decoding():
    rows, left_off = slot_rows(json.loads((DATA / "llamacpp_slots.json").read_text()))
    assert [r.state for r in rows] == ["decoding", "decoding", "prefill", "idle"] and left_off == 0
    first = rows[0]
    assert (first.prompt, first.cached, first.decoded, first.left, first.task) == (40, 24, 1108, None, 2806)
    assert rows[2].left == 128
    assert slot_rows("not a list") == ((), 0) and slot_rows([{"id": "x", "is_processing": True}])[0][0].state == "prefill"


def probe_on(routes, clock=None):
    """An InsideProbe of a llama.cpp on an in-memory server: `routes` maps a path to (status, body)."""
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        status, body = routes(request.url.path)
        return httpx.Response(status, text=body)

    probe = InsideProbe("http://server", "llama.cpp", transport=httpx.MockTransport(answer),
                        **({"clock": clock} if clock else {}))
    return probe, asked


def test_a_server_that_refuses_slots_gets_one_calm_line_and_is_not_asked_again():
    probe, asked = probe_on(lambda path: (501, "") if path == "/slots" else (200, LLAMA))
    first, second = probe.read(), probe.read()
    assert first.error is None and "lists no slots" in first.notes[0] and "501" in first.notes[0]
    assert second.notes == first.notes and asked.count("/slots") == 1 and asked.count("/metrics") == 2


def test_rubbish_metrics_and_a_dead_server_are_lines_not_crashes():
    rubbish = "\x1b]0;pwned\x07 1\nvllm:x_bucket{le=\"nope\"} 3\nllamacpp:prompt_tokens_total 1e308\n" + "y 1\n" * 1000
    probe, _ = probe_on(lambda path: (200, "[]") if path == "/slots" else (200, rubbish))
    sample = probe.read()
    assert sample.error is None and sample.slots == ()

    def dead(request):
        raise httpx.ConnectError("refused")

    gone = InsideProbe("http://user:secret@server", "vllm", transport=httpx.MockTransport(dead))
    sample = gone.read()
    assert sample.error and "secret" not in sample.error and "no answer" in sample.error


def test_rates_are_over_the_last_ten_seconds_and_since_the_server_started():
    now = [0.0]
    metrics = {"cached": 0, "computed": 100}

    def routes(path):
        if path == "/slots":
            return 200, "[]"
        return 200, (f"llamacpp:prompt_tokens_cached_total {metrics['cached']}\n"
                     f"llamacpp:prompt_tokens_total {metrics['computed']}\n")

    probe, _ = probe_on(routes, clock=lambda: now[0])
    assert probe.read().cache_recent is None  # one scrape: no window yet
    for _ in range(12):
        now[0] += 1
        metrics["cached"] += 30  # from now on, 30 of every 40 prompt tokens come from the cache
        metrics["computed"] += 10
        sample = probe.read()
    assert sample.cache_recent == pytest.approx(0.75) and sample.cache_total == pytest.approx(360 / 580)


def record(api="openai", timings=None, ttft=0.5, e2e=2.0, **fields) -> RequestRecord:
    r = RequestRecord(stream=0, concurrency=1, words=10, mode="output", api=api, model="m", send_ns=NS,
                      first_token_ns=NS + int(ttft * NS), last_token_ns=NS + int(e2e * NS), end_ns=NS + int(e2e * NS),
                      timings=timings, **fields)
    r.server_output_tokens = 10
    return r


def test_llama_cpp_timings_split_a_request_into_prefill_decode_and_the_rest():
    split = recent_split([record(timings={"prompt_ms": 300.0, "predicted_ms": 1500.0, "cache_n": 0})])
    bars = where_time_goes(split)
    assert [(b.phase, round(b.seconds, 3), b.source) for b in bars] == [
        ("prefill", 0.3, "server"), ("decode", 1.5, "server"), ("queue + network + client", 0.2, "client")]
    assert split.source == "llama.cpp timings"


def test_ollama_durations_give_the_queue_too():
    timings = {"total_duration": int(1.9 * NS), "load_duration": 0, "prompt_eval_duration": int(0.2 * NS),
               "eval_duration": int(1.2 * NS)}
    bars = where_time_goes(recent_split([record(api="ollama", timings=timings)]))
    assert [b.phase for b in bars] == ["queue", "prefill", "decode", "network + client"]
    assert bars[0].seconds == pytest.approx(0.5) and bars[-1].seconds == pytest.approx(0.1)


def test_vllm_splits_from_its_histograms_and_the_rest_is_client_ttft_less_the_servers():
    split = RecentSplit(n=4, ttft_s=0.5, e2e_s=2.0)
    bars = where_time_goes(split, {"queue": 0.1, "prefill": 0.3, "decode": 1.5, "ttft": 0.45})
    assert [(b.phase, round(b.seconds, 3), b.source) for b in bars] == [
        ("queue", 0.1, "histogram"), ("prefill", 0.3, "histogram"), ("decode", 1.5, "histogram"),
        ("network + client", 0.05, "client")]
    sglang = where_time_goes(split, {"queue": 0.1, "ttft": 0.45, "e2e": 1.9})  # no prefill or decode histogram
    assert [(b.phase, round(b.seconds, 3)) for b in sglang][:3] == [("queue", 0.1), ("prefill", 0.35), ("decode", 1.45)]
    assert where_time_goes(None) == [] and where_time_goes(RecentSplit(1, 0.5, 2.0)) == []


def test_several_workers_splits_merge_weighted_by_their_requests():
    a, b = RecentSplit(1, 1.0, 2.0, {"prefill": 1.0}), RecentSplit(3, 2.0, 4.0, {"prefill": 2.0})
    merged = merge_splits([a, None, b])
    assert merged.n == 4 and merged.ttft_s == 1.75 and merged.server["prefill"] == 1.75


def test_the_bench_row_carries_the_servers_phases_with_their_buckets_and_a_cross_check():
    before = parse_scrape(histogram("vllm:time_to_first_token_seconds", {"0.25": 0, "0.5": 0, "+Inf": 0}, 0)
                          + "vllm:prefix_cache_hits_total 0\nvllm:prefix_cache_queries_total 0\n"
                            "vllm:num_preemptions_total 2\n")
    after = parse_scrape(histogram("vllm:time_to_first_token_seconds", {"0.25": 2, "0.5": 8, "+Inf": 8}, 2.4)
                         + "vllm:prefix_cache_hits_total 900\nvllm:prefix_cache_queries_total 1000\n"
                           "vllm:num_preemptions_total 5\n")
    row = {"concurrency": 8, "words": 100, "ttft_p50_s": 0.33, "ttft_mean_s": 0.31, "errors": 0}
    add_server_fields(row, histogram_fields("vllm", before, after), client_lag_ms=1.0)
    assert row["server_phases"]["ttft"]["p50_in"] == "0.25–0.5 s" and row["server_phases"]["ttft"]["count"] == 8
    assert row["prefix_cache_hit_rate"] == 0.9 and row["preemptions"] == 3
    assert row["server_ttft_p50_s"] == pytest.approx(0.333, abs=1e-3) and row["server_check"] is None
    assert row["ttft_gap_ms"] == pytest.approx(10.0)  # the means: 0.31 s against the histogram's 2.4 s / 8
    meta = {"model": "m", "model_label": "m", "server_kind": "vllm", "server_version": "1", "simulated": False,
            "url": "http://x"}
    wide = render([row], meta, "wide")
    assert "Server TTFT p50 (s)" in wide and "0.333 (0.25–0.5 s)" in wide and "90%" in wide
    csv_text = render([row], meta, "csv")
    assert "server_ttft_p50_s" in csv_text.splitlines()[0] and "prefix_cache_hit_rate" in csv_text.splitlines()[0]
    assert json.loads(render([row], meta, "json"))["rows"][0]["server_phases"]["ttft"]["p99_in"] == "0.25–0.5 s"


def test_the_cross_check_says_when_client_and_server_ttft_cannot_both_be_right():
    """On the means: exact from a histogram's sum and count, where its p50 is known only within a bucket."""
    assert "below the server's" in cross_check(0.1, 0.4, 1.0)
    assert "above the server's" in cross_check(0.9, 0.4, 1.0)
    assert cross_check(0.42, 0.4, 1.0) is None  # the network and the client's parsing
    assert cross_check(0.398, 0.4, 1.0) is None  # where each clock stops
    assert cross_check(0.52, 0.4, 100.0) is None  # a slow client loop explains it
    meta = {"model": "m", "model_label": "m", "server_kind": "vllm", "server_version": "1", "simulated": False,
            "url": "http://x"}
    row = {"concurrency": 1, "words": 10, "errors": 0, "server_check": cross_check(0.1, 0.4, 1.0)}
    assert "CHECK 1 x 10: client mean TTFT 0.100 s is below" in render([row], meta, "table")


def test_a_llama_cpp_cell_has_exact_per_request_phases():
    records = [record(timings={"prompt_ms": 100.0 * k, "predicted_ms": 1000.0}) for k in range(1, 5)]
    row = {"concurrency": 4, "words": 10, "ttft_mean_s": 0.5} | per_request_fields(records)
    add_server_fields(row, {})
    assert row["server_prefill_p50_s"] == pytest.approx(0.25) and row["server_decode_p99_s"] == pytest.approx(1.0)
    assert "llama.cpp timings (per request, exact)" == row["server_phase_source"] and row["server_check"] is None


def test_the_view_shows_slots_rates_and_bars_as_plain_text():
    probe, _ = probe_on(lambda path: (200, (DATA / "llamacpp_slots.json").read_text()) if path == "/slots"
                        else (200, LLAMA))
    sample = probe.read()
    split = recent_split([record(timings={"prompt_ms": 300.0, "predicted_ms": 1500.0})])
    text = inside_text(sample, split).plain
    assert "decoding" in text and "prefill" in text and "idle" in text
    assert "prompt tokens from cache" in text and "68% since the server started" in text
    assert "queue + network + client" in text and "(server)" in text
    hostile = InsideProbe("http://s", "vllm", transport=httpx.MockTransport(
        lambda r: httpx.Response(200, text='vllm:num_requests_waiting_by_reason{reason="[b]\x1b[2J"} 3\n')))
    shown = inside_text(hostile.read(), None)
    assert "\x1b" not in shown.plain and "[b]" in shown.plain  # as text, never markup
