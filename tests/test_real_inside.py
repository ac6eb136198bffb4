"""The server from inside, against the real servers: llama.cpp's /slots at eight streams on four slots, its cached
share with and without a shared prefix; vLLM's prefix-cache hit rate, its own TTFT beside the client's, and its
queue time when eight streams share four sequences — as the bench's JSON and the server view read them."""

from __future__ import annotations

import json
import time

import pytest

from helpers import bench
from tui.load.client import Target
from tui.load.engine import LoadEngine
from tui.load.settings import LoadSettings
from tui.probes.inside import InsideProbe

pytestmark = pytest.mark.slow


def bench_row(capsys, url: str, *argv: str) -> dict:
    status, out, err = bench(capsys, "--url", url, "--format", "json", *argv)
    assert status == 0, err
    return json.loads(out)["rows"][0]


def test_llama_cpp_slots_show_four_busy_at_eight_streams(llama_server):
    engine = LoadEngine(Target(llama_server.url, "openai", "any"), LoadSettings(concurrency=8, max_tokens=400))
    probe = InsideProbe(llama_server.url, "llama.cpp")
    engine.start(running=True)
    try:
        deadline, busiest = time.monotonic() + 30, []
        while time.monotonic() < deadline:
            sample = probe.read()
            assert sample.error is None, sample.error
            busy = [s for s in sample.slots if s.state != "idle"]
            busiest = max(busiest, busy, key=len)
            if len(busy) == 4 and any(s.state == "decoding" and s.decoded for s in busy):
                break
            time.sleep(0.2)
        assert len(sample.slots) == 4 and len(busiest) == 4, sample.slots
        assert all(s.prompt and s.prompt > 10 for s in busiest)  # the story prompt, as the server counts it
    finally:
        engine.stop()
        probe.close()


def test_llama_cpps_cached_share_rises_with_a_shared_prefix(llama_server, capsys):
    common = ("--input-tokens", "300", "--output-tokens", "8", "--concurrency", "4", "--rounds", "2")
    unique = bench_row(capsys, llama_server.url, *common)
    shared = bench_row(capsys, llama_server.url, *common, "--shared-prefix", "250")
    # Each of the four slots computes the prefix once (the first round), then serves it from its cache.
    hits = unique["prefix_cache_hit_rate"], shared["prefix_cache_hit_rate"]
    assert hits[0] < 0.2 and hits[1] > 0.35 and hits[1] > hits[0] + 0.3, hits
    assert unique["server_phase_source"] == "llama.cpp timings (per request, exact)"
    assert 0 < unique["server_prefill_p50_s"] and 0 < unique["server_decode_p50_s"]


def test_vllm_tells_its_cache_hits_ttft_and_queue_beside_the_clients(vllm_server, capsys):
    common = ("--input-tokens", "400", "--output-tokens", "16", "--concurrency", "8")
    unique = bench_row(capsys, vllm_server.url, *common)
    shared = bench_row(capsys, vllm_server.url, *common, "--shared-prefix", "350")
    # The first four are scheduled together and each computes the prefix; the next four find it cached.
    hits = unique["prefix_cache_hit_rate"], shared["prefix_cache_hit_rate"]
    assert hits[0] < 0.1 and hits[1] > 0.4 and hits[1] > hits[0] + 0.3, hits
    for row in unique, shared:
        phases = row["server_phases"]
        assert set(phases) >= {"ttft", "queue", "prefill", "decode", "itl", "e2e"} and phases["ttft"]["count"] == 8
        assert -5 < row["ttft_gap_ms"] < 100, row["ttft_gap_ms"]  # the server's TTFT at most the client's, close
        assert row["server_check"] is None
        assert "–" in phases["ttft"]["p50_in"] or phases["ttft"]["p50_in"].startswith(">")
    # Eight streams on four sequences: the second four wait in the server's own queue for the first.
    assert unique["server_phases"]["queue"]["p99"] > 0.5 and unique["server_phases"]["queue"]["mean"] > 0.1
