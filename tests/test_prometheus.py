"""The Prometheus client against a real Prometheus (Debian's 2.42, unpacked by tests/get_prometheus.sh) that
scrapes the simulated server's /metrics once a second. Skips without the binary, except under CI."""

from __future__ import annotations

import math

import pytest

from prometheus_server import PrometheusServer, require_prometheus
from tui.probes.prometheus import PrometheusClient, PrometheusError, credentials_from_env


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    binary = require_prometheus()
    from tui.servers.sim import SimConfig, SimThread

    sim = SimThread(SimConfig(parallel=2)).start()
    try:
        target = sim.url.removeprefix("http://")
        with PrometheusServer(binary, tmp_path_factory.mktemp("prometheus"), {"sim": [target], "gone": ["127.0.0.1:9"]}
                              ) as server:
            yield server, target
    finally:
        sim.stop()


@pytest.mark.slow  # starts a process
def test_an_instant_query_reads_the_scraped_gauges_with_their_labels_and_times(prometheus):
    server, target = prometheus
    client = PrometheusClient(server.url)
    try:
        answer = client.query('llamacpp:requests_deferred{job="sim"}')
        (series,) = answer.series
        assert series.labels["instance"] == target and series.value == 0.0 and series.at > 0
        up = {s.labels["job"]: s.value for s in client.query("up").series}
        assert up == {"sim": 1.0, "gone": 0.0}
    finally:
        client.close()


@pytest.mark.slow  # a real Prometheus
def test_nan_and_infinities_arrive_as_floats(prometheus):
    client = PrometheusClient(prometheus[0].url)
    try:
        values = [client.query(expr).series[0].value for expr in ("vector(0/0)", "vector(1/0)", "vector(-1/0)")]
    finally:
        client.close()
    assert math.isnan(values[0]) and values[1] == math.inf and values[2] == -math.inf


@pytest.mark.slow  # a real Prometheus
def test_a_target_that_is_down_says_why(prometheus):
    client = PrometheusClient(prometheus[0].url)
    try:
        targets = {t.job: t for t in client.targets()}
    finally:
        client.close()
    assert targets["sim"].health == "up" and targets["gone"].health == "down"
    assert "connection refused" in targets["gone"].last_error


@pytest.mark.slow  # a real Prometheus
def test_a_bad_query_is_one_line(prometheus):
    client = PrometheusClient(prometheus[0].url)
    try:
        with pytest.raises(PrometheusError, match="bad_data") as caught:
            client.query("rate(up[")
    finally:
        client.close()
    assert "\n" not in str(caught.value)


def test_unreachable_prometheus_and_credentials_are_one_line_and_never_printed(tmp_path):
    client = PrometheusClient("http://watcher:s3cretpw@127.0.0.1:9", token="tok-abcdef123")
    try:
        with pytest.raises(PrometheusError) as caught:
            client.query("up")
    finally:
        client.close()
    message = str(caught.value)
    assert "cannot reach Prometheus at http://watcher:***@127.0.0.1:9" in message
    assert "s3cretpw" not in message and "tok-abcdef123" not in message and "\n" not in message
    secret = tmp_path / "token"
    secret.write_text("tok-from-file\n")
    assert credentials_from_env({"PROMETHEUS_TOKEN_FILE": str(secret)}) == ("tok-from-file", None)
    assert credentials_from_env({"PROMETHEUS_USER": "me", "PROMETHEUS_PASSWORD": "pw"}) == (None, ("me", "pw"))
    with pytest.raises(PrometheusError, match="cannot read PROMETHEUS_TOKEN_FILE"):
        credentials_from_env({"PROMETHEUS_TOKEN_FILE": str(tmp_path / "missing")})


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A real Prometheus scraping DCGM text for two hosts (2 and 1 GPUs), node_exporter, two vLLM replicas and a
    router that re-exports their names."""
    from fake_exporters import Exporter, dcgm, node, vllm

    binary = require_prometheus()
    with Exporter(dcgm({"gpu-a": 2, "gpu-b": 1})) as gpus, Exporter(node(4)) as host, \
            Exporter(vllm(8, 3)) as busy, Exporter(vllm(2, 0)) as calm, Exporter(vllm(10, 3)) as router:
        jobs = {"dcgm": [gpus.target], "node": [host.target], "vllm": [busy.target, calm.target],
                "vllm-router": [router.target]}
        with PrometheusServer(binary, tmp_path_factory.mktemp("fleet"), jobs) as server:
            yield server, busy.target, calm.target


@pytest.mark.slow  # starts a process
def test_the_fleet_probe_reads_every_gpu_host_and_replica(fleet):
    import time

    from tui.probes.fleet import FleetProbe

    server, busy, calm = fleet
    client = PrometheusClient(server.url)
    try:
        probe = FleetProbe(client)
        deadline = time.monotonic() + 20
        def ready(sample) -> bool:  # irate() needs two scrapes of each target, and targets are scraped apart
            return any(h.cores for h in sample.hosts) and all(r.tokens_per_s is not None and r.ttft_p99_s is not None
                                                                for r in sample.replicas)

        sample = probe.read()
        while not ready(sample) and time.monotonic() < deadline:
            time.sleep(0.5)
            sample = probe.read()
    finally:
        client.close()
    assert sample.error is None, sample.error
    assert [(g.host, g.index) for g in sample.gpus] == [("gpu-a", "0"), ("gpu-a", "1"), ("gpu-b", "0")]
    first = sample.gpus[0]
    assert first.name == "NVIDIA A100-SXM4-80GB" and first.util == 90 and first.mem_total == 80 * 2**30
    assert first.source == "dcgm" and 0 <= first.age_s < 10
    assert sample.power_w == pytest.approx(300.5 + 301.5 + 300.5)
    (host,) = sample.hosts
    assert len(host.cores) == 4 and host.cpu == pytest.approx(0.5, abs=0.05) and host.ram_used == pytest.approx(0.25)
    replicas = {r.instance: r for r in sample.replicas}
    assert set(replicas) == {busy, calm}  # the router's re-exported names are not a replica
    assert (replicas[busy].running, replicas[busy].waiting, replicas[busy].cache) == (8, 3, 0.42)
    assert replicas[busy].tokens_per_s == pytest.approx(800, rel=0.3)  # 800 a scrape, a scrape a second
    assert 0.08 <= replicas[busy].ttft_p50_s <= replicas[busy].ttft_p99_s <= 0.1  # the server's own, from its buckets
    assert replicas[busy].model == "meta-llama/Llama-3.1-8B" and replicas[busy].kind == "vllm"
    assert sample.down == () and not any("GPU" in n for n in sample.notes)


def test_a_fleet_without_prometheus_is_one_calm_line():
    from tui.probes.fleet import FleetProbe

    client = PrometheusClient("http://127.0.0.1:9")
    try:
        sample = FleetProbe(client).read()
    finally:
        client.close()
    assert sample.error.startswith("cannot reach Prometheus at http://127.0.0.1:9") and sample.gpus == ()


@pytest.mark.slow  # a real Prometheus
def test_bench_with_prometheus_adds_the_fleets_power_and_each_replicas_queue(fleet, sim_factory, capsys):
    import json

    from tui.cli import main

    server, busy, calm = fleet
    sim = sim_factory(speed=20)
    status = main(["bench", "--url", sim.url, "--concurrency", "2", "--words", "25", "--duration", "2",
                   "--prometheus", server.url, "--format", "json"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    (row,) = json.loads(captured.out)["rows"]
    assert row["fleet_power_w"] == pytest.approx(300.5 + 301.5 + 300.5)
    assert row["fleet_j_per_token"] == pytest.approx(row["fleet_power_w"] / row["aggregate_tps"])
    peaks = row["replica_queue_max"]
    assert peaks == {f"{busy} meta-llama/Llama-3.1-8B": 3, f"{calm} meta-llama/Llama-3.1-8B": 0}
    status = main(["bench", "--url", sim.url, "--concurrency", "1", "--words", "25", "--prometheus", server.url])
    assert status == 0 and "Fleet" in capsys.readouterr().out  # the compact table shows Fleet J/token


@pytest.mark.parametrize("url", ["gopher://x", "http://", "localhost:9090"])
def test_a_bad_prometheus_url_is_one_line_and_exit_2(capsys, url):
    from tui.cli import main

    status = main(["bench", "--url", "http://127.0.0.1:9", "--prometheus", url])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "--prometheus takes an http(s):// URL" in err


@pytest.mark.slow  # starts a process
async def test_the_app_shows_every_gpu_host_and_replica_from_prometheus(fleet, sim_factory):
    from tui.cli import fleet_probe, make_app
    from tui.load.discover import discover
    from tui.load.settings import LoadSettings

    server, busy, calm = fleet
    target, info = discover(sim_factory(speed=20).url)
    app = make_app(target, info, LoadSettings(concurrency=2, words=25), autostart=True,
                   fleet=fleet_probe(server.url))

    def text(selector: str) -> str:
        return str(app.query_one(selector).render())

    async with app.run_test(size=(160, 48)) as pilot:
        for _ in range(200):
            if "gpu-b" in text("#gpu") and busy in text("#server") and "CPU" in text("#host"):
                break
            await pilot.pause(0.05)
        gpus, hosts, replicas = text("#gpu"), text("#host"), text("#server")
        assert "gpu-a  2 GPUs · 602 W" in gpus and "gpu-b  1 GPU · 300 W" in gpus and "A100-SXM4-80GB" in gpus
        assert "RAM  25%" in hosts
        assert f"{busy} meta-llama/Llama-3.1-8B running 8 · waiting 3 · KV 42%" in replicas
        assert calm in replicas and "router" not in replicas
        assert app.query_one("#gpu").border_title == "GPUs (Prometheus)"
        await pilot.press("h")  # the one host's cores, one bar each
        assert " 3 ████░░░░  50%" in text("#host")


@pytest.mark.slow  # a real Prometheus
def test_the_fleet_history_comes_from_prometheus_memory(fleet):
    import time

    from tui.probes.fleet import FleetProbe

    client = PrometheusClient(fleet[0].url)
    try:
        time.sleep(2)  # a few scrapes of history
        history = FleetProbe(client).history(seconds=60, step=1)
    finally:
        client.close()
    assert set(history) == {("gpu-a", "0"), ("gpu-a", "1"), ("gpu-b", "0")}
    known = [v for v in history[("gpu-a", "1")] if v is not None]
    assert len(known) >= 2 and set(known) == {91.0}


@pytest.mark.slow  # a real Prometheus
def test_every_bench_format_carries_each_replicas_queue_peak(fleet, sim_factory, capsys):
    from tui.cli import main

    server, busy, calm = fleet
    sim = sim_factory(speed=50)
    for fmt in ("wide", "markdown", "csv"):
        status = main(["bench", "--url", sim.url, "--concurrency", "1", "--words", "25", "--duration", "1.5",
                       "--prometheus", server.url, "--format", fmt])  # long enough for a read of the fleet
        out = capsys.readouterr().out
        assert status == 0 and f"{busy} meta-llama/Llama-3.1-8B 3" in out and "Fleet GPU W" in out.replace(
            "fleet_power_w", "Fleet GPU W"), fmt


def test_refused_credentials_and_too_many_series_are_said_in_one_line():
    import json

    from fake_exporters import Exporter

    many = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"instance": f"h{i}"}, "value": [1764028800, "1"]} for i in range(2500)]}}
    with Exporter(lambda n: '{"error": "unauthorized"}', 401, "application/json") as refusing, \
            Exporter(lambda n: json.dumps(many), 200, "application/json") as crowded:
        client = PrometheusClient(f"http://{refusing.target}", token="tok-secret99")
        with pytest.raises(PrometheusError, match="refused the credentials") as caught:
            client.query("up")
        assert "tok-secret99" not in str(caught.value)
        client.close()
        client = PrometheusClient(f"http://{crowded.target}")
        answer = client.query("up")
        client.close()
        assert len(answer.series) == 2000 and answer.truncated == 500


@pytest.mark.slow  # a real Prometheus
def test_a_missing_exporter_is_named(prometheus):
    from tui.probes.fleet import FleetProbe

    client = PrometheusClient(prometheus[0].url)  # it scrapes only the sim: no GPU or host exporter
    try:
        sample = FleetProbe(client).read()
    finally:
        client.close()
    assert sample.gpus == () and sample.hosts == ()
    assert any("neither DCGM's exporter" in n for n in sample.notes)
    assert any("node_exporter" in n for n in sample.notes)
    assert [r.kind for r in sample.replicas] == ["llama.cpp"]  # the sim's own /metrics, llama.cpp's names
    assert [t.job for t in sample.down] == ["gone"]


def test_the_app_refuses_a_bad_prometheus_url_in_one_line(capsys):
    from tui.cli import main

    assert main(["--url", "http://127.0.0.1:9", "--prometheus", "ftp://x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--prometheus takes an http(s):// URL" in err
