"""The simulated server: wire formats, queueing, faults, slot bookkeeping, and its command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tui.servers.sim import (BUSY_MESSAGE, SimConfig, SimServer, SimThread, add_arguments, decode_rate,
                             parse_faults, run, wire)

MODEL = SimConfig.model
STORY = [{"role": "user", "content": "tell a story in 25 words:"}]


def chat(url, words=25, **extra):
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"tell a story in {words} words:"}], **extra}
    return httpx.post(url + "/api/chat", json=body, timeout=10)


def ollama_lines(url, timeout=5.0, **body):
    body = {"model": MODEL, "messages": STORY, **body}
    with httpx.stream("POST", url + "/api/chat", json=body, timeout=timeout) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        return list(response.iter_lines())


def sse_events(url, **body):
    body = {"model": "whatever-you-like", "messages": STORY, "stream": True, **body}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=5) as response:
        assert response.status_code == 200 and response.headers["content-type"] == "text/event-stream"
        text = response.read().decode()
    assert text.endswith("\n\n")
    return [block.removeprefix("data: ") for block in text.split("\n\n") if block]


def wait_until(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    raise AssertionError("condition not met in time")


@pytest.fixture
def sim(sim_factory):
    return sim_factory(speed=100)


# --- shapes ----------------------------------------------------------------------------------------

def test_metadata_endpoints(sim):
    version = httpx.get(sim.url + "/api/version").json()
    assert version == {"version": "0.0.0-tokentop-sim"}
    tags = httpx.get(sim.url + "/api/tags").json()["models"]
    assert [m["name"] for m in tags] == [MODEL]
    assert {"name", "model", "modified_at", "size", "digest", "details"} <= set(tags[0])
    ps = httpx.get(sim.url + "/api/ps").json()["models"][0]
    assert {"name", "model", "size", "size_vram", "digest", "details", "expires_at", "context_length"} <= set(ps)
    assert ps["size_vram"] == ps["size"] > 0
    models = httpx.get(sim.url + "/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == MODEL
    assert models["data"][0]["owned_by"] == "tokentop-sim"
    assert httpx.get(sim.url + "/health").json() == {"status": "ok"}


def test_errors_unknown_path_bad_json_missing_and_unknown_model(sim):
    missing = httpx.get(sim.url + "/nope")
    assert missing.status_code == 404 and "error" in missing.json()
    bad = httpx.post(sim.url + "/api/chat", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "invalid JSON" in bad.json()["error"]
    no_model = httpx.post(sim.url + "/api/chat", json={"messages": STORY})
    assert no_model.status_code == 400 and no_model.json() == {"error": "model is required"}
    unknown = httpx.post(sim.url + "/api/generate", json={"model": "llama3:8b", "prompt": "hi"})
    assert unknown.status_code == 404
    assert unknown.json() == {"error": 'model "llama3:8b" not found, try pulling it first'}
    assert httpx.get(sim.url + "/api/chat").status_code == 405


def test_ollama_chat_stream(sim):
    lines = [json.loads(line) for line in ollama_lines(sim.url)]
    *chunks, final = lines
    assert chunks and all(c["done"] is False and c["message"]["role"] == "assistant" for c in chunks)
    text = "".join(c["message"]["content"] for c in chunks)
    assert text.startswith("Once upon a time") and not text.startswith(" ")
    assert final["done"] is True and final["done_reason"] == "stop"
    assert final["eval_count"] == len(chunks)
    assert 25 * 1.2 * 0.9 - 1 <= len(chunks) <= 25 * 1.2 * 1.1 + 1
    assert final["prompt_eval_count"] == round(6 * 4 / 3)  # "tell a story in 25 words:"
    for key in ("total_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(final[key], int) and final[key] > 0
    assert "load_duration" not in final  # zero numbers are omitted, as ollama does
    assert final["total_duration"] >= final["prompt_eval_duration"] + final["eval_duration"]


def test_ollama_durations_are_simulated_time(sim_factory):
    sim = sim_factory(speed=10)  # not faster: sub-millisecond sleeps overshoot on a busy machine
    final = json.loads(ollama_lines(sim.url, options={"seed": 1})[-1])
    rate = final["eval_count"] / (final["eval_duration"] / 1e9)
    assert rate == pytest.approx(25.4, rel=0.25)  # the profile's 1-slot speed, not 50x it


def test_ollama_generate_and_non_streaming(sim):
    with httpx.stream("POST", sim.url + "/api/generate",
                      json={"model": MODEL, "prompt": "tell a story in 10 words:"}) as response:
        gen = [json.loads(line) for line in response.iter_lines()]
    assert "response" in gen[0] and "message" not in gen[0] and gen[-1]["done"] is True
    assert gen[-1]["eval_count"] == len(gen) - 1 and gen[-1]["response"] == ""
    whole = chat(sim.url, words=10, stream=False)
    assert whole.headers["content-length"] == str(len(whole.content))
    body = whole.json()
    assert body["done"] is True and body["message"]["content"].startswith("Once upon")
    assert body["eval_count"] == len(body["message"]["content"].split())


def test_num_predict_caps_with_length(sim):
    final = json.loads(ollama_lines(sim.url, options={"num_predict": 5})[-1])
    assert final["done_reason"] == "length" and final["eval_count"] == 5


def test_seeded_length_is_reproducible_and_unmatched_prompt_gives_20(sim):
    counts = {json.loads(ollama_lines(sim.url, options={"seed": 42})[-1])["eval_count"] for _ in range(3)}
    assert len(counts) == 1
    plain = json.loads(ollama_lines(sim.url, messages=[{"role": "user", "content": "hello"}])[-1])
    assert plain["eval_count"] == 20


def test_load_time_is_reported_on_the_first_request_only(sim_factory):
    sim = sim_factory(speed=100, load_s=2.0)
    assert httpx.get(sim.url + "/api/ps").json() == {"models": []}
    first = json.loads(ollama_lines(sim.url)[-1])
    second = json.loads(ollama_lines(sim.url)[-1])
    assert first["load_duration"] == pytest.approx(2e9, rel=0.2)
    assert "load_duration" not in second
    assert len(httpx.get(sim.url + "/api/ps").json()["models"]) == 1


def test_openai_stream_with_usage(sim):
    events = sse_events(sim.url, stream_options={"include_usage": True})
    assert events[-1] == "[DONE]"
    role, *content, finish, usage = [json.loads(e) for e in events[:-1]]
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": None}
    assert role["object"] == "chat.completion.chunk" and role["id"].startswith("chatcmpl-")
    assert role["model"] == "whatever-you-like"
    assert content and all(c["choices"][0]["finish_reason"] is None for c in content)
    assert "".join(c["choices"][0]["delta"]["content"] for c in content).startswith("Once upon")
    assert finish["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    timings = finish["timings"]
    assert timings["predicted_n"] == len(content) and timings["cache_n"] == 0
    # Its own timings, consistent; the speed never above its pace (25.4 tok/s). How far below depends on how
    # busy this machine is (at speed=100 a token is 0.4 ms of real time), so no lower bound but zero.
    speed = timings["predicted_per_second"]
    assert timings["prompt_ms"] > 0 and 0 < speed <= 25.4 * 1.05
    assert speed == pytest.approx(timings["predicted_n"] / timings["predicted_ms"] * 1000, rel=0.01)
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": timings["prompt_n"], "completion_tokens": len(content),
                              "total_tokens": timings["prompt_n"] + len(content)}


def test_openai_stream_without_usage_and_max_tokens(sim):
    events = sse_events(sim.url, max_tokens=4)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["choices"] for c in chunks) and not any("usage" in c for c in chunks)
    assert len(chunks) == 1 + 4 + 1
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_openai_non_streaming(sim):
    body = httpx.post(sim.url + "/v1/chat/completions", json={"model": "m", "messages": STORY, "max_tokens": 3}).json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Once upon a"}
    assert body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 3


def test_tokens_per_chunk_pack_the_text_but_count_every_token(sim_factory):
    sim = sim_factory(speed=100, tokens_per_chunk=3)
    pieces = ["Once upon a", " time there was", " a"]  # 7 tokens: the last chunk carries fewer
    *chunks, final = [json.loads(line) for line in ollama_lines(sim.url, options={"num_predict": 7})]
    assert [c["message"]["content"] for c in chunks] == pieces and final["eval_count"] == 7
    role, *content, finish, usage = [json.loads(e) for e in sse_events(sim.url, max_tokens=7,
                                                                       stream_options={"include_usage": True})[:-1]]
    assert [c["choices"][0]["delta"]["content"] for c in content] == pieces
    assert usage["usage"]["completion_tokens"] == finish["timings"]["predicted_n"] == 7


def test_a_chunk_goes_when_its_last_token_is_due(sim_factory):
    sim = sim_factory(speed=10, service_s=3.0, tokens_per_chunk=3)  # 6 tokens in 0.3 s real: one each 0.05 s
    body = {"model": "m", "messages": STORY, "stream": True, "max_tokens": 6}
    arrivals = []
    with httpx.Client(timeout=5) as client:
        started = time.perf_counter()
        with client.stream("POST", sim.url + "/v1/chat/completions", json=body) as response:
            for line in response.iter_lines():
                if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    arrivals.append(time.perf_counter() - started)
    first, second = arrivals
    assert 0.15 <= first < 0.25 and 0.3 <= second < 0.4  # after 3 and 6 tokens, not after 1 and 2
    assert second - first == pytest.approx(0.15, abs=0.05)


def test_continuous_usage_stats_put_the_count_so_far_in_every_chunk(sim_factory):
    sim = sim_factory(speed=100, tokens_per_chunk=2)
    options = {"include_usage": True, "continuous_usage_stats": True}
    chunks = [json.loads(e) for e in sse_events(sim.url, max_tokens=5, stream_options=options)[:-1]]
    prompt = chunks[0]["usage"]["prompt_tokens"]
    assert [c["usage"] for c in chunks] == [{"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n}
                                            for n in (0, 2, 4, 5, 5, 5)]  # role, 3 content, finish, usage-only
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant" and chunks[-1]["choices"] == []
    plain = [json.loads(e) for e in sse_events(sim.url, stream_options={"continuous_usage_stats": True})[:-1]]
    assert not any("usage" in c for c in plain)  # as vLLM: only together with include_usage


def test_ignore_eos_gives_exactly_max_tokens_on_openai_only(sim):
    short = [{"role": "user", "content": "tell a story in 3 words:"}]
    body = {"model": "m", "messages": short, "max_tokens": 40, "ignore_eos": True}
    whole = httpx.post(sim.url + "/v1/chat/completions", json=body, timeout=5).json()
    assert whole["usage"]["completion_tokens"] == 40 and whole["choices"][0]["finish_reason"] == "length"
    events = [json.loads(e) for e in sse_events(sim.url, **body, stream=True)[:-1]]
    assert len(events) == 1 + 40 + 1 and events[-1]["choices"][0]["finish_reason"] == "length"
    stops = httpx.post(sim.url + "/v1/chat/completions", json={**body, "ignore_eos": False}, timeout=5).json()
    assert stops["usage"]["completion_tokens"] < 10 and stops["choices"][0]["finish_reason"] == "stop"
    ollama = json.loads(ollama_lines(sim.url, messages=short, ignore_eos=True,
                                     options={"num_predict": 40, "ignore_eos": True})[-1])
    assert ollama["eval_count"] < 10 and ollama["done_reason"] == "stop"


def test_service_time_holds_every_slot_the_same_time_whatever_the_load(sim_factory):
    sim = sim_factory(parallel=2, speed=10, service_s=2.0)  # 0.2 s real a request: 2 slots serve 10 a second

    def one(words):
        body = {"model": MODEL, "messages": [{"role": "user", "content": f"tell a story in {words} words:"}]}
        with client.stream("POST", sim.url + "/api/chat", json=body) as response:
            lines = [json.loads(line) for line in response.iter_lines()]
        return time.perf_counter() - started, lines

    with httpx.Client(timeout=5) as client, ThreadPoolExecutor(6) as pool:
        started = time.perf_counter()
        results = list(pool.map(one, (3, 60, 3, 60, 3, 60)))
    ends = sorted(end for end, _ in results)
    assert 0.6 <= ends[-1] < 0.75  # 2 slots / 0.2 s: six requests take three service times, short or long
    assert [round((end - ends[0]) / 0.2) for end in ends] == [0, 0, 1, 1, 2, 2]
    for _, (*chunks, final) in results:
        n = final["eval_count"]
        assert n == len(chunks) and (n < 10 or n > 50)
        # slot → first token, then the first → last token: 2 simulated s whatever the length
        assert final["prompt_eval_duration"] + final["eval_duration"] == pytest.approx(2e9, rel=0.1)


def test_metrics_carry_both_names(sim):
    text = httpx.get(sim.url + "/metrics").text
    for name in ("tokentop_sim:requests_processing", "tokentop_sim:requests_deferred",
                 "llamacpp:requests_processing", "llamacpp:requests_deferred"):
        assert f"# TYPE {name} gauge" in text and f"\n{name} 0\n" in text


# --- queueing --------------------------------------------------------------------------------------

async def test_two_slots_four_requests_fifo():
    server = SimServer(SimConfig(parallel=2, speed=50))
    await server.start()
    seen_busy, seen_queued = [], []
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            async def one() -> tuple[float, float]:
                body = {"model": MODEL, "messages": STORY, "options": {"seed": 5}}
                first = end = None
                async with client.stream("POST", server.url + "/api/chat", json=body) as response:
                    async for line in response.aiter_lines():
                        if json.loads(line)["done"]:
                            end = time.monotonic()
                        elif first is None:
                            first = time.monotonic()
                return first, end

            tasks = [asyncio.create_task(one()) for _ in range(4)]
            while not all(t.done() for t in tasks):
                seen_busy.append(server.busy)
                seen_queued.append(server.queued)
                await asyncio.sleep(0.001)
            results = sorted(t.result() for t in tasks)
    finally:
        await server.close()
    assert max(seen_busy) == 2 and max(seen_queued) == 2
    (_, end1), (_, end2) = sorted(results[:2], key=lambda r: r[1])
    (first3, _), (first4, _) = results[2:]
    assert first3 >= end1 and first4 >= end2
    metrics_after = (server.busy, server.queued)
    assert metrics_after == (0, 0)


def test_metrics_show_busy_and_deferred(sim_factory):
    sim = sim_factory(parallel=1, speed=2)  # slow enough that two requests are surely queued at once
    threads = [threading.Thread(target=chat, args=(sim.url,), daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    seen = []
    wait_until(lambda: seen.append(httpx.get(sim.url + "/metrics").text)
               or "llamacpp:requests_deferred 2\n" in seen[-1])
    assert "llamacpp:requests_processing 1\n" in seen[-1] and "tokentop_sim:requests_deferred 2\n" in seen[-1]
    for thread in threads:
        thread.join(10)
    assert (sim.server.busy, sim.server.queued) == (0, 0)


def test_decode_rate_profile():
    profile = SimConfig().profile
    assert decode_rate(profile, 1) == 25.4 and decode_rate(profile, 2) == 22.3 and decode_rate(profile, 4) == 16.2
    assert decode_rate(profile, 3) == pytest.approx((22.3 + 16.2) / 2)
    assert decode_rate(profile, 8) == pytest.approx(16.2 * 4 / 8)  # aggregate held beyond the last point
    assert decode_rate(profile, 0) == 25.4


# --- faults and disconnects -------------------------------------------------------------------------

def test_refuse_closes_without_a_response(sim_factory):
    sim = sim_factory(speed=100, faults={"refuse": 1.0})
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        chat(sim.url)
    assert httpx.get(sim.url + "/api/version").status_code == 200  # only generation is refused


def test_busy_is_a_503_in_both_shapes(sim_factory):
    sim = sim_factory(speed=100, faults={"busy": 1.0})
    response = chat(sim.url)
    assert response.status_code == 503 and response.json() == {"error": BUSY_MESSAGE}
    assert "please try again.  maximum" in response.text
    openai = httpx.post(sim.url + "/v1/chat/completions", json={"model": "m", "messages": STORY, "stream": True})
    assert openai.status_code == 503
    assert openai.json() == {"error": {"message": BUSY_MESSAGE, "type": "api_error"}}
    assert sim.server.busy == 0


def test_cut_ends_the_stream_without_done(sim_factory):
    sim = sim_factory(speed=100, faults={"cut": 1.0}, fault_after=3)
    try:
        lines = ollama_lines(sim.url)
    except (httpx.RemoteProtocolError, httpx.ReadError):
        lines = None  # an abrupt close may also surface as an error; either way there is no done line
    if lines is not None:
        chunks = [json.loads(line) for line in lines if line]
        assert len(chunks) == 3 and not any(c["done"] for c in chunks)
    wait_until(lambda: sim.server.busy == 0)


def test_cut_on_openai_has_no_done(sim_factory):
    sim = sim_factory(speed=100, faults={"cut": 1.0}, fault_after=2)
    events = sse_events(sim.url)
    assert "[DONE]" not in events and len(events) == 1 + 2  # role chunk + two tokens


def test_malformed_line_then_the_stream_goes_on(sim_factory):
    sim = sim_factory(speed=100, faults={"malformed": 1.0}, fault_after=3)
    lines = ollama_lines(sim.url)
    bad = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            bad.append(line)
    assert len(bad) == 1 and lines.index(bad[0]) == 3
    assert json.loads(lines[-1])["done"] is True
    events = sse_events(sim.url)
    assert events.count("{not json") == 1 and events[-1] == "[DONE]"


def test_stall_times_out_and_frees_the_slot(sim_factory):
    sim = sim_factory(speed=100, faults={"stall": 1.0})
    with pytest.raises(httpx.ReadTimeout):
        ollama_lines(sim.url, timeout=httpx.Timeout(5, read=0.3))
    wait_until(lambda: sim.server.busy == 0)


def test_fault_draws_are_reproducible(sim_factory):
    def outcomes(seed):
        sim = sim_factory(speed=100, faults={"busy": 0.5}, seed=seed)
        return [chat(sim.url, words=2).status_code for _ in range(12)]

    first = outcomes(7)
    assert first == outcomes(7) and {200, 503} == set(first)


def test_disconnect_mid_stream_frees_the_slot(sim_factory):
    sim = sim_factory(parallel=2, speed=20)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "tell a story in 800 words:"}]}
    with httpx.stream("POST", sim.url + "/api/chat", json=body, timeout=5) as response:
        lines = response.iter_lines()
        next(lines), next(lines)
        assert sim.server.busy == 1
    wait_until(lambda: sim.server.busy == 0)


def test_disconnect_while_queued_leaves_the_queue(sim_factory):
    sim = sim_factory(parallel=1, speed=20)
    long = {"model": MODEL, "messages": [{"role": "user", "content": "tell a story in 800 words:"}]}
    with httpx.stream("POST", sim.url + "/api/chat", json=long, timeout=5) as first:
        lines = first.iter_lines()  # kept: a dropped iterator closes the response
        next(lines)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(sim.url + "/api/chat", json=long, timeout=httpx.Timeout(5, read=0.2))
        wait_until(lambda: sim.server.queued == 0)
        assert sim.server.busy == 1
    wait_until(lambda: sim.server.busy == 0)


# --- parse_faults and the command line ---------------------------------------------------------------

def test_parse_faults():
    assert parse_faults("cut=0.5,busy=1") == {"cut": 0.5, "busy": 1.0}
    assert parse_faults("stall") == {"stall": 1.0}
    assert parse_faults(" refuse = 0.1 , malformed=0 ") == {"refuse": 0.1, "malformed": 0.0}
    assert parse_faults("") == {}


@pytest.mark.parametrize("spec, message", [
    ("explode=1", "unknown fault 'explode'"),
    ("cut=lots", "fault 'cut' needs a probability from 0 to 1, not 'lots'"),
    ("busy=1.5", "not '1.5'"),
    ("stall=nan", "not 'nan'"),
])
def test_parse_faults_rejects(spec, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_faults(spec)
    assert "\n" not in str(info.value)


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="parallel"):
        SimConfig(parallel=0)
    for speed in (0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="speed"):
            SimConfig(speed=speed)
    with pytest.raises(ValueError, match="ttft"):
        SimConfig(ttft_s=float("inf"))
    for service in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="service time must be"):
            SimConfig(service_s=service)
    for clash in ({"ttft_s": 0.5}, {"prefill_tps": 100.0}, {"profile": ((1, 50.0),)}):
        with pytest.raises(ValueError, match="a service time replaces ttft"):
            SimConfig(service_s=1.0, **clash)
    for k in (0, 1.5):
        with pytest.raises(ValueError, match="tokens per chunk"):
            SimConfig(tokens_per_chunk=k)


def parse_cli(*argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_defaults():
    args = parse_cli()
    assert (args.host, args.port, args.parallel, args.speed, args.model) == ("127.0.0.1", 11435, 4, 1.0, MODEL)


def test_cli_service_time_and_tokens_per_chunk(capsys):
    args = parse_cli("--service-time", "2.5", "--tokens-per-chunk", "4")
    assert (args.service_time, args.tokens_per_chunk) == (2.5, 4)
    assert (parse_cli().service_time, parse_cli().tokens_per_chunk) == (None, 1)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    help_text = " ".join(parser.format_help().split())
    assert "P / SECONDS requests a second" in help_text and "as vLLM packs several" in help_text
    assert run(parse_cli("--service-time", "2", "--ttft", "1")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "service time replaces ttft" in err


def test_run_refuses_a_bad_fault_spec_in_one_line(capsys):
    assert run(parse_cli("--fault", "cut=2")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "probability" in err


def test_run_reports_a_port_in_use(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert run(parse_cli("--port", str(port))) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and str(port) in captured.err


def test_sim_thread_context_manager():
    with SimThread(SimConfig(speed=100)) as sim:
        assert sim.url.startswith("http://127.0.0.1:") and sim.server.port > 0
        assert httpx.get(sim.url + "/health").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(sim.url + "/health", timeout=1)


def test_fixed_ttft_replaces_prefill(sim_factory):
    sim = sim_factory(speed=10, ttft_s=2.0)  # 0.2 s real
    started = time.perf_counter()
    with httpx.stream("POST", sim.url + "/api/chat", json={"model": MODEL, "messages": STORY}, timeout=5) as response:
        first = next(line for line in response.iter_lines() if line)
        ttft = time.perf_counter() - started
    assert json.loads(first)["message"]["content"]
    assert 0.2 <= ttft < 0.3


def test_a_bug_after_the_answer_began_cuts_the_stream_not_a_second_response(sim_factory, monkeypatch, capsys):
    def broken(job, speed):
        raise RuntimeError("a bug in the sim")

    monkeypatch.setattr(wire, "final_chunks", broken)
    sim = sim_factory(speed=100)
    lines = ollama_lines(sim.url)  # the body simply ends: the client sees a cut stream, no done line
    assert lines and not any("HTTP/1.1" in line for line in lines)
    assert not json.loads(lines[-1])["done"]
    assert "a bug in the sim" in capsys.readouterr().err  # shown, and the server goes on serving
    assert httpx.get(sim.url + "/api/version").status_code == 200
