"""Server awareness: detection and queue metrics from recorded answers of each server kind, the
ollama fields against the simulated server, and the real llama-server's slots and queue."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tui.load.client import Target
from tui.load.engine import LoadEngine
from tui.load.settings import LoadSettings
from tui.probes.server import ServerProbe, detect

# GET /metrics of each kind: llama.cpp's and vLLM's recorded from the real servers under load; SGLang's
# and TGI's written from their sources in their exporters' exact format (see each file's head).
DATA = Path(__file__).parent / "data"
EXPOSITION = {kind: (DATA / f"{name}_metrics.txt").read_text()
              for kind, name in [("llama.cpp", "llamacpp"), ("vllm", "vllm"), ("sglang", "sglang"), ("tgi", "tgi")]}
ROUTES = {
    "ollama": {"/api/version": {"version": "0.12.3"}},
    "llama.cpp": {"/props": {"total_slots": 4, "build_info": "b7000-abc"}},
    "vllm": {"/version": {"version": "0.32.0"}},
    "sglang": {"/get_server_info": {"version": "0.5.4"}},
    "tgi": {"/info": {"model_id": "m", "version": "3.3.6"}},
}


def transport(kind: str) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/metrics" and kind in EXPOSITION:
            return httpx.Response(200, text=EXPOSITION[kind])
        body = ROUTES.get(kind, {}).get(request.url.path)
        return httpx.Response(200, json=body) if body is not None else httpx.Response(404, json={"error": "no"})
    return httpx.MockTransport(handle)


@pytest.mark.parametrize("kind,version", [("ollama", "0.12.3"), ("llama.cpp", "b7000-abc"), ("vllm", "0.32.0"),
                                          ("sglang", "0.5.4"), ("tgi", "3.3.6"), ("openai-compatible", None)])
def test_detects_each_kind(kind, version):
    with httpx.Client(transport=transport(kind)) as client:
        assert detect(client, "http://server") == (kind, version)


@pytest.mark.parametrize("kind,running,waiting,cache", [("llama.cpp", 4, 1, None), ("vllm", 4, 4, pytest.approx(0.0221, abs=1e-4)),
                                                         ("sglang", 2, 7, 0.1), ("tgi", 8, 3, None)])
def test_queue_from_each_kind_of_metrics(kind, running, waiting, cache):
    sample = ServerProbe("http://server", kind, transport=transport(kind)).read()
    assert (sample.running, sample.waiting, sample.cache_usage) == (running, waiting, cache)
    assert sample.error is None and sample.metrics_source
    if kind == "llama.cpp":
        assert sample.slots == 4


def test_ollama_without_metrics_stops_asking_and_reads_ps():
    asked = []

    def handle(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if request.url.path == "/api/ps":
            return httpx.Response(200, json={"models": [{"name": "llama3.1:70b", "size": 42 * 2**30,
                                                         "size_vram": 30 * 2**30, "context_length": 8192,
                                                         "expires_at": "2026-11-25T10:00:00.123456789Z"}]})
        return httpx.Response(404, text="404 page not found")

    probe = ServerProbe("http://server", "ollama", transport=httpx.MockTransport(handle))
    first, second = probe.read(), probe.read()
    assert asked.count("/metrics") == 1 and second.waiting is None and second.error is None
    model = first.loaded[0]
    assert model.name == "llama3.1:70b" and model.context_length == 8192
    assert model.cpu_fraction == pytest.approx(12 / 42)  # part of it runs on the CPU


def test_unreachable_server_is_an_error_line_not_an_exception():
    sample = ServerProbe("http://127.0.0.1:9", "llama.cpp", timeout=0.5).read()
    assert sample.error and "\n" not in sample.error


def test_ollama_fields_from_the_simulated_server(sim_factory):
    """Queue-wait estimate, truncation and cold start, produced by the sim as ollama does."""
    sim = sim_factory(parallel=1, speed=20, load_s=2.0)
    engine = LoadEngine(Target(sim.url, "ollama", sim.server.config.model),
                        LoadSettings(concurrency=3, words=25, max_tokens=10), read_timeout=10)
    engine.start()
    try:
        deadline = time.monotonic() + 15
        while len(engine.records) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        engine.stop()
    records = [r for r in engine.records if r.error_kind != "cancelled"]  # not those cut short by the stop
    assert len(records) >= 6 and all(r.ok for r in records)
    assert all(r.truncated for r in records)  # 25 words want ~30 tokens; num_predict 10 cut them
    assert sum(r.cold_start for r in records) >= 1 and not records[-1].cold_start
    assert max(r.queue_wait_s for r in records) > 0.5  # one slot, three streams: the others queue
    assert "truncated" in (records[-1].note or "")
    line = json.loads(json.dumps(records[0].to_json()))
    assert line["truncated"] is True and "cold_start" in line
    snap = engine.snapshot()
    assert snap.truncated == len(records) and snap.cold_starts >= 1


@pytest.mark.slow
def test_real_llama_server_slots_and_queue(llama_server):
    with httpx.Client() as client:
        kind, version = detect(client, llama_server.url)
    assert kind == "llama.cpp"
    probe = ServerProbe(llama_server.url, kind, version)
    engine = LoadEngine(Target(llama_server.url, "openai", "any"),
                        LoadSettings(concurrency=8, words=50, max_tokens=64, temperature=0))
    engine.start()
    try:
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(s.waiting for s in seen):
            seen.append(probe.read())
            time.sleep(0.1)
    finally:
        engine.stop()
    assert seen[-1].slots == 4
    queued = next(s for s in seen if s.waiting)
    assert queued.running == 4 and queued.waiting > 0 and queued.metrics_source == "llamacpp:requests_deferred"
