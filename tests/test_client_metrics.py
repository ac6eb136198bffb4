"""--metrics-port: the client's side as a Prometheus target, read back by a real Prometheus and the fleet view."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tui.load.client import Target
from tui.load.client_tally import BOUNDS, ClientTally, Histogram, merged, outcome_of
from tui.load.records import RequestRecord
from tui.probes.histograms import parse_scrape
from tui.servers.llama import free_port

NS = 1_000_000_000


def record(ttft_s: float = 0.2, tokens: int = 5, gap_s: float = 0.05, **fields) -> RequestRecord:
    r = RequestRecord(stream=0, concurrency=8, words=25, mode="output", api="openai", model="m", send_ns=NS)
    r.first_token_ns = NS + int(ttft_s * NS)
    for i in range(tokens):
        r.chunk_ns.append(r.first_token_ns + int(i * gap_s * NS))
    r.last_token_ns = r.end_ns = r.chunk_ns[-1] if tokens else r.first_token_ns
    for name, value in fields.items():
        setattr(r, name, value)
    return r


def test_a_histogram_counts_as_prometheus_does_a_value_on_a_bound_in_that_bucket():
    h = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        h.observe(value)
    assert h.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    assert h.total == pytest.approx(3.65) and h.n == 4


def test_the_tally_times_only_requests_that_went_as_asked_and_counts_every_outcome():
    tally = ClientTally()
    tally.observe(record(ttft_s=0.2, tokens=5, gap_s=0.05, prompt_tokens=30))
    tally.observe(record(error_kind="http", error="HTTP 503"))
    tally.observe(record(cancelled_by_plan=True))
    tally.observe(record(error_kind="Weird <kind>"))
    assert tally.outcomes == {"ok": 1, "http": 1, "cancelled": 1, "other": 1}
    h = tally.histograms
    assert h["ttft"].n == 1 and h["ttft"].total == pytest.approx(0.2)
    assert h["itl"].n == 4 and h["itl"].total == pytest.approx(0.2)  # four gaps of 50 ms
    assert h["tpot"].n == 1 and h["e2e"].n == 1
    assert tally.output_tokens == 20 and tally.prompt_tokens == 30
    both = merged([tally, None, tally.copy()])
    assert both.outcomes["ok"] == 2 and both.histograms["itl"].counts == [2 * c for c in h["itl"].counts]


def test_the_bounds_are_vllms_where_they_overlap():
    # vllm/v1/metrics/buckets.py: TIME_TO_FIRST_TOKEN_BUCKETS whole, INTER_TOKEN_LATENCY from 0.01, REQUEST_LATENCY
    assert BOUNDS["ttft"][:8] == (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1) and BOUNDS["ttft"][-1] == 2560.0
    assert BOUNDS["itl"][BOUNDS["itl"].index(0.01):][:5] == (0.01, 0.025, 0.05, 0.075, 0.1)
    assert BOUNDS["e2e"][BOUNDS["e2e"].index(0.3):][:4] == (0.3, 0.5, 0.8, 1.0) and BOUNDS["e2e"][-1] == 7680.0
    assert outcome_of(record()) == "ok"


def test_the_exposition_masks_the_password_and_the_key_and_carries_every_series():
    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    from tui.metrics_server import ClientMetrics

    metrics = ClientMetrics()
    secret = "sk-verysecret"
    metrics.watch(lambda: (_ for _ in ()).throw(RuntimeError("engine gone")),
                  Target("http://bob:hunter22@10.0.0.5:8000", "openai", f"model-{secret}", api_key=secret))
    metrics.observe("concurrency=8 words=25", [record(), record(error_kind="timeout")])
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    text = generate_latest(registry).decode()
    assert "hunter22" not in text and secret not in text and 'target="http://bob:***@10.0.0.5:8000"' in text
    scrape = parse_scrape(text, keep={"tokentop_requests_total": "outcome"})
    assert scrape.buckets["tokentop_ttft_seconds"][float("inf")] == 1  # the timeout is counted, not timed
    assert scrape.buckets["tokentop_itl_seconds"][0.05] == 4
    assert scrape.labelled["tokentop_requests_total"] == {"ok": 1.0, "timeout": 1.0}
    assert "tokentop_in_flight" not in scrape.values  # no engine reading yet: no gauge


def test_a_port_in_use_is_one_line_and_exit_2_before_any_request(capsys):
    from tui.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # The --url is a port nothing listens on: had the bench got as far as discovery, it would say so instead.
        status = main(["bench", "--url", "http://127.0.0.1:9", "--metrics-port", str(port), "--concurrency", "1"])
        err = capsys.readouterr().err
        assert status == 2 and err.count("\n") == 1 and f"--metrics-port {port} on 127.0.0.1" in err, err
        status = main(["--url", "http://127.0.0.1:9", "--metrics-port", str(port)])
        err = capsys.readouterr().err
        assert status == 2 and err.count("\n") == 1 and "Address already in use" in err, err


@pytest.mark.parametrize("argv, says", [
    (["--metrics-port", "70000"], "--metrics-port must be a port"),
    (["--metrics-linger", "5"], "give --metrics-port too"),
    (["--metrics-port", "0", "--metrics-linger", "nan"], "--metrics-linger must be"),
])
def test_bad_metrics_flags_are_one_line(capsys, argv, says):
    from tui.cli import main

    status = main(["bench", "--url", "http://127.0.0.1:9", *argv])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and says in err, err


# --- a real Prometheus scrapes a running bench and a running app ---------------------------------------------

def bucket_index(bounds: tuple[float, ...], value: float) -> int:
    return next((i for i, b in enumerate(bounds) if value <= b), len(bounds))


@pytest.mark.slow  # a real Prometheus and a bench process
def test_prometheus_reads_the_bench_and_its_p50_lands_within_a_bucket_of_the_tables(tmp_path, sim_factory):
    from prometheus_server import PrometheusServer, require_prometheus
    from tui.probes.prometheus import PrometheusClient

    sim = sim_factory(speed=10, parallel=4)
    port = free_port("127.0.0.1")
    with PrometheusServer(require_prometheus(), tmp_path, {"tokentop": [f"127.0.0.1:{port}"]}) as prom:
        bench = subprocess.run(
            [sys.executable, "-m", "tui", "bench", "--url", sim.url, "--concurrency", "8", "--words", "25",
             "--duration", "6", "--format", "json", "--metrics-port", str(port), "--metrics-linger", "3"],
            capture_output=True, text=True, timeout=120)
        assert bench.returncode == 0, bench.stderr
        document = json.loads(bench.stdout)
        (row,) = document["rows"]
        client = PrometheusClient(prom.url)
        try:
            cell = 'cell="concurrency=8 words=25"'
            p50 = client.query(f"histogram_quantile(0.5, max_over_time(tokentop_ttft_seconds_bucket{{{cell}}}[5m]))")
            done = client.query(f'max_over_time(tokentop_requests_total{{{cell},outcome="ok"}}[5m])')
        finally:
            client.close()
    (series,) = p50.series
    assert series.labels["target"] == sim.url and series.labels["model"] == document["meta"]["model"]
    assert abs(bucket_index(BOUNDS["ttft"], series.value) - bucket_index(BOUNDS["ttft"], row["ttft_p50_s"])) <= 1
    assert done.series[0].value == row["ok"]  # the last scrape, in the linger, saw every request


@pytest.mark.slow  # a real Prometheus, the app's engine process
async def test_the_fleet_view_shows_the_apps_own_client_ttft_beside_the_replica(tmp_path, sim_factory):
    from prometheus_server import PrometheusServer, require_prometheus
    from tui.cli import fleet_probe, make_app
    from tui.load.discover import discover
    from tui.load.settings import LoadSettings
    from tui.metrics_server import MetricsServer

    sim = sim_factory(speed=10, parallel=2)
    endpoint = MetricsServer("127.0.0.1", 0)  # as `tokentop --metrics-port 0` starts it
    try:
        instance = sim.url.removeprefix("http://")
        jobs = {"tokentop": [f"127.0.0.1:{endpoint.port}"], "sim": [instance]}
        with PrometheusServer(require_prometheus(), tmp_path, jobs) as prom:
            target, info = discover(sim.url)
            app = make_app(target, info, LoadSettings(concurrency=4, words=25), autostart=True,
                           fleet=fleet_probe(prom.url))
            endpoint.metrics.watch(app.engine.snapshot, target)
            async with app.run_test(size=(160, 48)) as pilot:
                deadline = time.monotonic() + 40
                while "client" not in str(app.query_one("#server").render()) and time.monotonic() < deadline:
                    await pilot.pause(0.25)
                replicas = str(app.query_one("#server").render())
            scraped = httpx.get(endpoint.url, timeout=5).text
    finally:
        endpoint.close()
    assert instance in replicas and "TTFT p50/p99" in replicas and "client" in replicas, replicas
    assert "tokentop_in_flight" in scraped and "tokentop_ttft_seconds_bucket" in scraped


def test_the_fleet_line_puts_client_ttft_beside_the_servers_and_a_router_gets_its_own():
    from tui.panes.fleet_text import replica_text
    from tui.probes.fleet import ClientSide, FleetSample, Replica

    replica = Replica(instance="10.0.0.5:8000", job="vllm", kind="vllm", model="m", running=8, waiting=2, cache=0.4,
                      ttft_p50_s=0.12, ttft_p99_s=0.5)
    clients = (ClientSide("http://10.0.0.5:8000", 0.13, 0.52, 8, sources=2),
               ClientSide("http://router\x1b[31m:8000", 0.2, 0.9, 512, sources=1))
    text = str(replica_text(FleetSample(replicas=(replica,), clients=clients)))
    assert "10.0.0.5:8000 m running 8 · waiting 2 · KV 40% · TTFT p50/p99 0.12/0.50 s server, 0.13/0.52 s client" \
           " (2 tokentops)" in text
    assert "tokentop → http://router␛[31m:8000 TTFT p50/p99 0.20/0.90 s (client) · in flight 512" in text
    assert clients[0].instance == "10.0.0.5:8000" and ClientSide("http://u:p@h:1/v1", None, None, None, 1).instance == "h:1"
