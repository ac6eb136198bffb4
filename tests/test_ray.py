"""`tokentop bench --ray`: the workers as Ray actors on a real local Ray cluster of two nodes (a head and a
second node, started by Ray's own `ray.cluster_utils.Cluster`), against the simulated and the real llama-server.
Skips without Ray, except under CI."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import time

import pytest

from helpers import UNDER_CI

pytestmark = pytest.mark.slow  # a Ray cluster: processes


def two_nodes():
    """A real local Ray cluster: a head and a second node of one CPU each, as Ray's own cluster utilities start it."""
    try:
        from ray.cluster_utils import Cluster
    except ImportError:
        if UNDER_CI:
            pytest.fail("the Ray tests cannot be skipped under CI: pip install -e '.[ray]'")
        pytest.skip("ray is missing (pip install -e '.[ray]')")
    made = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    return made, made.add_node(num_cpus=1)


@pytest.fixture(scope="module")
def cluster():
    made, second = two_nodes()
    try:
        yield made, second
    finally:
        made.shutdown()


def bench(cluster_address: str, url: str, out, *argv: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui", "bench", "--url", url, "--ray", cluster_address,
                           "--workers", "2", "--format", "json", "--out", str(out), *argv],
                          capture_output=True, text=True, timeout=timeout)


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_one_run(result: subprocess.CompletedProcess, out, requests: int) -> dict:
    assert result.returncode == 0, result.stderr
    records = lines(out)
    assert len(records) == requests
    assert len({(r["node"], r["stream"], r["round"]) for r in records}) == requests  # each once
    assert len({r["node"] for r in records}) == 2 and all(r["error_kind"] is None for r in records)
    assert "ray: 2 worker(s) on 2 node(s)" in result.stderr and "ms apart" in result.stderr
    (row,) = json.loads(result.stdout)["rows"]
    return row


def test_eight_streams_over_two_nodes_against_the_simulated_server(cluster, sim_factory, tmp_path, capsys):
    from tui.cli import main

    made, _ = cluster
    sim = sim_factory(speed=10, parallel=4)
    argv = ["--concurrency", "8", "--words", "25", "--rounds", "2"]
    row = check_one_run(bench(made.address, sim.url, tmp_path / "ray.jsonl", *argv), tmp_path / "ray.jsonl", 16)
    assert row["ok"] == 16
    status = main(["bench", "--url", sim.url, "--format", "json", *argv])  # the same cell, locally
    (local,) = json.loads(capsys.readouterr().out)["rows"]
    assert status == 0 and set(row) == set(local)  # one table, the same shape


def test_eight_streams_over_two_nodes_against_the_real_llama_server(cluster, llama_server, tmp_path):
    made, _ = cluster
    out = tmp_path / "ray.jsonl"
    row = check_one_run(bench(made.address, llama_server.url, out, "--concurrency", "8", "--words", "25",
                              "--max-tokens", "32"), out, 8)
    assert row["ok"] == 8 and row["ttft_p50_s"] > 0


def test_a_node_killed_mid_cell_leaves_lost_records_and_a_finished_run(tmp_path, sim_factory):
    made, doomed = two_nodes()  # a cluster of its own: one of its nodes is killed
    try:
        sim = sim_factory(speed=2, parallel=8)  # 100 words take seconds: the node dies with requests in flight
        out = tmp_path / "ray.jsonl"
        run = subprocess.Popen([sys.executable, "-m", "tui", "bench", "--url", sim.url, "--ray", made.address,
                                "--workers", "2", "--concurrency", "8", "--words", "100", "--duration", "12",
                                "--format", "json", "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (out.exists() and out.read_text().count("\n") >= 4):
            time.sleep(0.2)  # requests have finished on both nodes: the cell is well under way
        made.remove_node(doomed, allow_graceful=False)
        stdout, stderr = run.communicate(timeout=120)
    finally:
        made.shutdown()
    assert run.returncode == 0, stderr
    records = lines(out)
    kinds = collections.Counter((r["node"], r["error_kind"]) for r in records)
    lost = [r for r in records if r["error_kind"] == "lost"]
    assert lost and len({r["node"] for r in lost}) == 1 and "died mid-request" in lost[0]["error"]
    survivor = {r["node"] for r in records} - {lost[0]["node"]}
    assert survivor and all(kind is None for (node, kind) in kinds if node in survivor)
    (row,) = json.loads(stdout)["rows"]  # stdout is the JSON alone: Ray's own messages went to stderr
    assert row["errors"] == len(lost) and "lost" in row["error_kinds"] and row["ok"] == len(records) - len(lost)
    assert f"node {lost[0]['node']} died: its {len(lost)} request(s) in flight are recorded as lost" in stderr


def test_an_unreachable_cluster_is_one_line_and_exit_2(capsys):
    if not UNDER_CI:
        pytest.importorskip("ray")
    from tui.cli import main

    status = main(["bench", "--url", "http://127.0.0.1:9", "--ray", "127.0.0.1:9", "--concurrency", "1"])
    err = capsys.readouterr().err
    assert status == 2 and "--ray 127.0.0.1:9: cannot join the cluster" in err and err.count("\n") == 1, err


def test_too_few_cpus_is_one_line_and_exit_2(cluster):
    made, _ = cluster
    # In a process of its own: a Ray driver set up in the test process would outlive the test.
    result = subprocess.run([sys.executable, "-m", "tui", "bench", "--url", "http://127.0.0.1:9", "--ray", made.address,
                             "--workers", "5", "--concurrency", "1"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "the cluster has 2 CPUs free, and --workers 5 needs one each" in result.stderr.splitlines()[-1]
