"""Real traffic against the real servers: conversations grow their prompts, a trace's shared blocks hit the
prefix cache (and unique ones do not), and a request closed on purpose frees its slot."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from helpers import bench
from tui.load.client import Target
from tui.load.engine import LoadEngine
from tui.load.phase import run_phase
from tui.load.records import read_jsonl
from tui.load.settings import LoadSettings
from tui.probes.metrics import parse_prometheus

pytestmark = pytest.mark.slow


def mooncake(path, rows) -> str:
    path.write_text("".join(json.dumps(dict(zip(("timestamp", "input_length", "output_length", "hash_ids"), row)))
                            + "\n" for row in rows))
    return str(path)


def shared_and_unique(tmp_path, blocks: int = 3):
    """Six requests a second apart whose prompts share their first blocks, and the same with every id its own."""
    shared = [(1000 * i, 512 * blocks, 4, [1, 2, *range(100 + i * 10, 100 + i * 10 + blocks - 2)]) for i in range(6)]
    unique = [(t, n, m, [1000 + 10 * i + k for k in range(len(ids))]) for i, (t, n, m, ids) in enumerate(shared)]
    return mooncake(tmp_path / "shared.jsonl", shared), mooncake(tmp_path / "unique.jsonl", unique)


def test_each_turn_sends_more_prompt_tokens_on_the_real_server(llama_server, tmp_path, capsys):
    out = tmp_path / "talk.jsonl"
    status, _, err = bench(capsys, "--url", llama_server.url, "--users", "2", "--turns", "3", "--duration", "4",
                           "--think-time", "0.1", "--output-tokens", "16", "--words", "25", "--out", str(out))
    assert status == 0, err
    sessions: dict[int, list] = {}
    for r in read_jsonl(out):
        sessions.setdefault(r.session, []).append(r)
    talks = [sorted(s, key=lambda r: r.turn) for s in sessions.values() if len(s) >= 2]
    assert talks
    for talk in talks:  # server-counted: the history grows by each turn's prompt and the model's answer
        tokens = [r.prompt_tokens for r in talk]
        assert all(b > a + 16 for a, b in zip(tokens, tokens[1:])), tokens


def test_a_traces_shared_blocks_are_served_from_the_cache_and_unique_ones_are_not(llama_server, tmp_path, capsys):
    cached = {}
    for name, trace in zip(("shared", "unique"), shared_and_unique(tmp_path)):
        out = tmp_path / f"{name}.jsonl"
        # one at a time (--max-inflight 1): a request finds the slot whose cache holds the last one idle
        status, _, err = bench(capsys, "--url", llama_server.url, "--trace", trace, "--time-scale", "4",
                               "--token-scale", "0.25", "--max-inflight", "1", "--out", str(out))
        assert status == 0, err
        records = read_jsonl(out)
        assert len(records) == 6 and all(r.ok for r in records)
        cached[name] = [int((r.timings or {}).get("cache_n") or 0) for r in records]  # server-reported
    # every shared request after the first found its first two blocks (2 × 128 tokens) cached
    assert min(sorted(cached["shared"])[1:]) >= 200, cached
    assert max(cached["unique"]) < 40, cached  # at most the chat template and the instruction


def test_a_request_closed_on_purpose_frees_its_slot_within_a_second(llama_server):
    metrics = httpx.Client(timeout=5)
    engine = LoadEngine(Target(llama_server.url, "openai", "any"),
                        LoadSettings(concurrency=0, output_tokens=2000, cancel_share=1.0, cancel_after_s=1.0))
    engine.start()
    try:
        result = asyncio.run(run_phase(engine, {"concurrency": 2, "requests_per_stream": 1}))
    finally:
        engine.stop()
    assert len(result.records) == 2 and all(r.cancelled_by_plan and r.client_tokens > 10 for r in result.records)
    closed = max(r.end_ns for r in result.records)
    while True:
        processing = parse_prometheus(metrics.get(llama_server.url + "/metrics").text)["llamacpp:requests_processing"]
        if processing == 0:
            break
        assert time.perf_counter_ns() - closed < 1e9, "the server still decodes the closed requests"
        time.sleep(0.05)
    assert (time.perf_counter_ns() - closed) / 1e9 < 1.0


def test_a_traces_shared_blocks_raise_vllms_prefix_cache_hits(vllm_server, tmp_path, capsys):
    def hits() -> float:
        values = parse_prometheus(httpx.get(vllm_server.url + "/metrics", timeout=5).text)
        return sum(v for k, v in values.items() if k.startswith("vllm:prefix_cache_hits"))

    shared, unique = shared_and_unique(tmp_path)
    before = hits()
    status, _, err = bench(capsys, "--url", vllm_server.url, "--trace", unique, "--time-scale", "4",
                           "--token-scale", "0.25", "--max-inflight", "1")
    assert status == 0, err
    after_unique = hits()
    status, _, err = bench(capsys, "--url", vllm_server.url, "--trace", shared, "--time-scale", "4",
                           "--token-scale", "0.25", "--max-inflight", "1")
    assert status == 0, err
    gained_shared, gained_unique = hits() - after_unique, after_unique - before
    assert gained_shared >= 5 * 200 and gained_shared > 4 * gained_unique, (gained_shared, gained_unique)
