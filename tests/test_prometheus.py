"""The Prometheus client against a real Prometheus (Debian's 2.42, unpacked by tests/get_prometheus.sh) that
scrapes the simulated server's /metrics once a second. Skips without the binary, except under CI."""

from __future__ import annotations

import math

import pytest

from conftest import UNDER_CI
from prometheus_server import PrometheusServer, find_prometheus
from tui.probes.prometheus import PrometheusClient, PrometheusError, credentials_from_env


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    binary = find_prometheus()
    if binary is None:
        if UNDER_CI:
            pytest.fail("the Prometheus tests cannot be skipped under CI: run tests/get_prometheus.sh")
        pytest.skip("prometheus is missing (bash tests/get_prometheus.sh)")
    from tui.servers.sim import SimConfig, SimThread

    sim = SimThread(SimConfig(parallel=2)).start()
    try:
        target = sim.url.removeprefix("http://")
        with PrometheusServer(binary, tmp_path_factory.mktemp("prometheus"), {"sim": [target], "gone": ["127.0.0.1:9"]}
                              ) as server:
            yield server, target
    finally:
        sim.stop()


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


def test_nan_and_infinities_arrive_as_floats(prometheus):
    client = PrometheusClient(prometheus[0].url)
    try:
        values = [client.query(expr).series[0].value for expr in ("vector(0/0)", "vector(1/0)", "vector(-1/0)")]
    finally:
        client.close()
    assert math.isnan(values[0]) and values[1] == math.inf and values[2] == -math.inf


def test_a_target_that_is_down_says_why(prometheus):
    client = PrometheusClient(prometheus[0].url)
    try:
        targets = {t.job: t for t in client.targets()}
    finally:
        client.close()
    assert targets["sim"].health == "up" and targets["gone"].health == "down"
    assert "connection refused" in targets["gone"].last_error


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
