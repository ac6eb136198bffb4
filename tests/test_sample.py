"""A cell's requests past a cap: a uniform sample for the percentiles, exact totals for the counts and rates."""

from __future__ import annotations

import random

import pytest

from tui.bench.render import notes_under, rows_of
from tui.load.records import RequestRecord
from tui.load.sample import Sample, exact_row

NS = 1_000_000_000


def record(i: int, ttft_s: float, tokens: int = 4, error: str | None = None, rnd: int = 0) -> RequestRecord:
    """The i-th request of a cell: sent at i ms, its tokens 10 ms apart after its TTFT."""
    r = RequestRecord(stream=i % 64, concurrency=64, words=25, mode="output", api="openai", model="m",
                      send_ns=NS + i * 1_000_000, round=rnd)
    r.first_token_ns = r.send_ns + int(ttft_s * NS)
    for k in range(tokens):
        r.chunk_ns.append(r.first_token_ns + k * 10_000_000)
    r.last_token_ns = r.end_ns = r.chunk_ns[-1]
    if error:
        r.error_kind, r.error = error, "HTTP 500: boom"
    return r


def cell(n: int, seed: int = 1) -> list[RequestRecord]:
    rng = random.Random(seed)
    return [record(i, rng.uniform(0.1, 1.1), tokens=rng.randint(1, 8), error="http" if i % 50 == 7 else None)
            for i in range(n)]


def test_under_the_cap_every_request_is_kept_and_the_row_is_untouched():
    records = cell(300)
    sample = Sample(cap=1000)
    sample.add(records)
    assert sample.kept == records and not sample.sampled
    row = rows_of(records, [64], [25])[0]
    assert exact_row(dict(row), sample) == row and "sampled" not in row


def test_past_the_cap_a_uniform_sample_is_kept_and_every_request_counted():
    records = cell(20_000)
    sample = Sample(cap=1_000, seed="x")
    for start in range(0, len(records), 137):  # handed on in batches, as the engine does
        sample.add(records[start:start + 137])
    assert len(sample.kept) == 1_000 and sample.sampled
    t = sample.totals
    assert t.requests == 20_000 and t.errors == 400 and t.ok == 19_600
    assert t.ok_output_tokens == sum(r.output_tokens for r in records if r.ok)
    # uniform: the kept requests come from all over the cell, not its start (mean index ~ 10,000 ± 3 %)
    indexes = [(r.send_ns - NS) // 1_000_000 for r in sample.kept]
    assert sum(indexes) / len(indexes) == pytest.approx(10_000, rel=0.05)
    again = Sample(cap=1_000, seed="x")
    again.add(records)
    assert again.kept == sample.kept  # seeded: the same requests give the same sample


def test_a_sampled_row_has_every_requests_counts_and_rates_and_the_samples_percentiles():
    records = cell(20_000)
    whole = rows_of(records, [64], [25])[0]
    sample = Sample(cap=2_000, seed="y")
    sample.add(records)
    row = rows_of(sample.kept, [64], [25], samples={"concurrency=64 words=25": sample})[0]
    for key in ("requests", "ok", "errors", "truncated", "error_kinds"):
        assert row[key] == whole[key], key
    for key in ("aggregate_tps", "request_rps", "total_tps"):
        assert row[key] == pytest.approx(whole[key], rel=1e-9), key
    assert row["sampled"] == {"kept": 2_000, "of": 20_000}
    # TTFT is uniform on 0.1–1.1 s: the sample's median is the whole cell's within a few percent
    assert row["ttft_p50_s"] == pytest.approx(whole["ttft_p50_s"], rel=0.05)
    # its interval is the sample's: wider than the whole cell's
    low, high = row["intervals"]["ttft_s"]["p50"]
    whole_low, whole_high = whole["intervals"]["ttft_s"]["p50"]
    assert high - low > whole_high - whole_low
    assert "SAMPLED 64 x 25: percentiles, means and their intervals from a uniform sample of 2,000 of its 20,000" \
        in notes_under([row])


def test_wall_time_spans_each_round_as_the_unsampled_row_does():
    records = [record(i, 0.2, rnd=i % 3) for i in range(3_000)]
    whole = rows_of(records, [64], [25])[0]
    sample = Sample(cap=100, seed="z")
    sample.add(records)
    row = rows_of(sample.kept, [64], [25], samples={"concurrency=64 words=25": sample})[0]
    assert row["request_rps"] == pytest.approx(whole["request_rps"], rel=1e-9)
