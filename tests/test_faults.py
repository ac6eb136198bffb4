"""tokentop against hostile servers (tests/hostile.py): every fault ends as data or as one line, never a crash.

`tokentop bench` runs as a subprocess against a HostileServer in a thread of this process; the app runs in
tmux (as tests/test_demo.py does). Every run is checked the same way (`check`): no Traceback, exit status 2
means exactly one line on stderr, no raw terminal control character anywhere, and no secret anywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

import psutil

from fakes import fake_gpu_reading, frozen_snapshot
from helpers import UNDER_CI
from hostile import EVIL_ERROR, EVIL_NAMES, HTML_500, HTML_TAIL, LOADED, MODEL, REDIRECT_TO, HostileServer
from hostile_prometheus import HostilePrometheus
from tui import files
from tui.cli import main as cli_main
from tui.cli import make_app
from tui.load.client import Target
from tui.load.discover import discover
from tui.load.prompt_file import MAX_PROMPTS, PromptFileError, read_prompt_file
from tui.panes import fleet_text as fleet_pane
from tui.probes.fleet import FleetProbe
from tui.probes.prometheus import CredentialsError, PrometheusClient, PrometheusError, credentials_from_env
from tui.probes.server import ServerProbe
from tui.untrusted import Redactor
from tui.widgets.drawing import sparkline

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 2.0  # --timeout: the longest silence between chunks
RAW_CONTROLS = ("\x1b", "\x9b", "\x07")  # ESC, C1 CSI, BEL: never raw in what tokentop prints or writes
# A stray byte that is not UTF-8 (0x9b alone, say) decodes to a surrogate: never in output either.
ENV_DROP = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OLLAMA_HOST", "FORCE_COLOR", "COLUMNS", "LINES")
MEMORY_CAP = 4 << 30  # address space of a bench run: a runaway one dies instead of eating the machine


def visible(text: str) -> str:
    """How control characters should look on screen: ESC as ␛ (U+241B), BEL as ␇, and so on."""
    return "".join(chr(0x2400 + ord(ch)) if ord(ch) < 0x20 else "␡" if ch == "\x7f" else ch for ch in text)


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_DROP}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def hostile():
    """hostile(fault, **options) → a running HostileServer, stopped after the test."""
    started: list[HostileServer] = []

    def make(fault: str = "normal", **options) -> HostileServer:
        server = HostileServer(fault, lifetime=120, **options).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


# --- bench as a subprocess ---------------------------------------------------------------------------------

@dataclass
class Run:
    rc: int
    out: str
    err: str
    jsonl: str
    wall: float
    rss_mb: float = 0.0  # the run's peak resident memory (as last seen before it ended)

    @property
    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.jsonl.splitlines()]  # every line whole JSON

    @property
    def report(self) -> dict:
        return json.loads(self.out)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="surrogateescape")


def bench(url: str | None, *extra: str, tmp: Path, model: str | None = MODEL, api: str = "openai",
          fmt: str = "json", env: dict[str, str] | None = None, timeout: float = 30,
          interrupt: tuple[int, float] | None = None, server: HostileServer | None = None) -> Run:
    """Run `python -m tui bench` with small defaults; `extra` flags come last, so they win.

    `interrupt=(signal, seconds)`: send the signal that long after the server saw two chat requests.
    """
    out = tmp / f"out-{uuid.uuid4().hex[:6]}.jsonl"
    argv = [sys.executable, "-m", "tui", "bench", "--api", api, "--concurrency", "2", "--words", "25",
            "--rounds", "1", "--format", fmt, "--out", str(out), "--timeout", f"{TIMEOUT:g}"]
    if url is not None:
        argv += ["--url", url]
    if model is not None:
        argv += ["--model", model]
    argv += list(extra)
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
                            env=env or base_env())
    try:
        with contextlib.suppress(ProcessLookupError):  # a run that already ended needs no cap
            resource.prlimit(proc.pid, resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
        if interrupt is not None:
            signum, after = interrupt
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and proc.poll() is None and (server is None or server.chat_requests < 2):
                time.sleep(0.05)
            time.sleep(after)
            proc.send_signal(signum)
        stdout, stderr, rss_mb = communicate(proc, timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"bench ran over {timeout} s: {' '.join(argv[3:])}\nstderr: {_decode(exc.stderr)[-2000:]}")
    wall = time.monotonic() - started
    jsonl = _decode(out.read_bytes()) if out.exists() else ""
    return Run(proc.returncode, _decode(stdout), _decode(stderr), jsonl, wall, rss_mb)


def peak_rss_mb(pid: int) -> float:
    """The process's resident memory at its highest so far (VmHWM), 0 once it is gone. Not its rusage: Linux
    carries the forking process's high-water mark over the exec into the child's ru_maxrss."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return next((int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:")), 0.0)
    except OSError:
        return 0.0


def communicate(proc: subprocess.Popen, timeout: float) -> tuple[bytes, bytes, float]:
    """proc.communicate(), and the process's peak resident memory in MB (read every 20 ms while it runs).
    Past `timeout` the process is killed and TimeoutExpired (with its stderr) raised."""
    pieces: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda name=name, pipe=pipe: pieces.__setitem__(name, pipe.read()), daemon=True)
               for name, pipe in (("out", proc.stdout), ("err", proc.stderr))]
    for reader in readers:
        reader.start()
    deadline, killed, peak = time.monotonic() + timeout, False, 0.0
    while not (reaped := os.wait4(proc.pid, os.WNOHANG))[0]:
        peak = max(peak, peak_rss_mb(proc.pid))
        if time.monotonic() > deadline:
            proc.kill()
            reaped, killed = os.wait4(proc.pid, 0), True
            break
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(reaped[1])
    for reader in readers:
        reader.join(10)
    if killed:
        raise subprocess.TimeoutExpired(proc.args, timeout, pieces.get("out", b""), pieces.get("err", b""))
    return pieces.get("out", b""), pieces.get("err", b""), peak


def check(run: Run, secrets: tuple[str, ...] = (), prefix: str = "tokentop bench: error:") -> Run:
    """What holds for every run, whatever the fault."""
    assert "Traceback" not in run.err, run.err[-3000:]
    if run.rc == 2:
        lines = run.err.rstrip("\n").split("\n")
        assert len(lines) == 1 and lines[0].startswith(prefix), f"not one line: {run.err!r}"
    for name, text in (("stdout", run.out), ("stderr", run.err), ("--out", run.jsonl)):
        for ch in RAW_CONTROLS:
            assert ch not in text, f"raw {ch!r} in {name}: {text[:500]!r}"
        stray = re.search(r"[\udc80-\udcff]", text)
        assert stray is None, f"bytes that are not UTF-8 in {name}: {text[:500]!r}"
        for secret in secrets:
            for form in {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}:
                assert form not in text, f"the secret {secret!r} shows in {name}"
    return run


def ok_records(run: Run, count: int = 2) -> list[dict]:
    records = run.records
    assert len(records) == count, run.err
    assert [r["error"] for r in records] == [None] * count
    assert all(r["error_kind"] is None and r["output_tokens"] > 0 for r in records)
    return records


# --- the harness itself -------------------------------------------------------------------------------------

@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_a_normal_server_streams(hostile, tmp_path, api):
    server = hostile("normal", ollama=api == "ollama")
    run = check(bench(server.url, tmp=tmp_path, api=api))
    assert run.rc == 0
    records = ok_records(run)
    assert {r["output_tokens"] for r in records} == {5} and {r["tokens_source"] for r in records} == {"server"}
    if api == "openai" and "response_id" in records[0]:  # the server's ids, where the records keep them
        assert sorted(r["response_id"] for r in records) == ["r-1", "r-2"]
    assert server.chat_requests == 2 and run.report["rows"][0]["errors"] == 0


@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
def test_the_hostile_server_runs_as_a_process_and_comes_back_on_its_port(tmp_path):
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "hostile.py"), "--fault", "normal", "--port", "0",
                             "--lifetime", "30"], stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        assert check(bench(url, tmp=tmp_path)).rc == 0
    finally:
        proc.terminate()
        proc.wait(10)
    with HostileServer("normal", lifetime=30) as server:  # in a thread: killed, then back on the same port
        port = server.port
        server.stop()
        assert check(bench(server.url, tmp=tmp_path)).rc == 2
        server.start()
        assert server.port == port and check(bench(server.url, tmp=tmp_path)).rc == 0


# --- faults in the stream -------------------------------------------------------------------------------------

@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
@pytest.mark.parametrize("fault", ["silent", "headers_only", "stall"])
def test_silence_is_a_timeout(hostile, tmp_path, fault):
    server = hostile(fault)
    run = check(bench(server.url, tmp=tmp_path, fmt="table"))
    assert [r["error_kind"] for r in run.records] == ["timeout", "timeout"]
    assert run.wall < TIMEOUT + 6
    assert run.rc == 1  # every request failed
    assert "Average Speed" in run.out


STATUS_CASES = {  # id: (status, headers, body, what the error says)
    "429": (429, (("Retry-After", "1"),), None, ["HTTP 429", "retry after 1"]),
    "401": (401, (), None, ["HTTP 401"]),
    "403": (403, (), None, ["HTTP 403"]),
    "500-html": (500, (), HTML_500, ["HTTP 500"]),
    "302": (302, (("Location", REDIRECT_TO),), "", ["redirected to " + REDIRECT_TO]),
}


@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
@pytest.mark.parametrize("case", STATUS_CASES)
def test_an_http_status_is_one_line_of_error(hostile, tmp_path, case):
    status, headers, body, says = STATUS_CASES[case]
    server = hostile("status", status=status, headers=headers, body=body)
    run = check(bench(server.url, tmp=tmp_path))
    records = run.records
    assert len(records) == 2
    for record in records:
        assert record["error_kind"] == "http"
        assert "\n" not in record["error"] and "\r" not in record["error"]
        for words in says:
            assert words in record["error"]
        if body == HTML_500:  # a snippet at most, never the page
            assert HTML_TAIL not in record["error"] and len(record["error"]) < 300
        if status == 429:
            assert record["retry_after_s"] == 1.0
    assert HTML_TAIL not in run.out + run.err


@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_bytes_that_are_not_utf8_are_tokens_not_a_crash(hostile, tmp_path, api):
    server = hostile("bad_utf8", ollama=api == "ollama")
    run = check(bench(server.url, tmp=tmp_path, api=api))
    ok_records(run)


@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_endless_stream_stops_on_a_signal_and_the_table_prints(hostile, tmp_path, signum, status):
    server = hostile("endless")
    run = check(bench(server.url, tmp=tmp_path, fmt="table", interrupt=(signum, 2.0), server=server, timeout=15))
    assert run.rc == status
    assert "Average Speed" in run.out
    assert not run.jsonl or run.jsonl.endswith("\n")
    run.records  # every line whole JSON


@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_a_10_mb_line_is_malformed_and_quick(hostile, tmp_path, api):
    server = hostile("long_line", ollama=api == "ollama")
    run = check(bench(server.url, tmp=tmp_path, api=api, timeout=16))
    assert run.wall < 15  # the old quadratic splitter took 30 s of CPU
    for record in run.records:
        assert record["error_kind"] == "malformed" and "line over" in record["error"]


@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
def test_connections_reset_at_random(hostile, tmp_path):
    server = hostile("reset", seed=7)
    run = check(bench(server.url, "--rounds", "6", tmp=tmp_path))
    records = run.records
    assert len(records) == 12  # one line per request sent
    assert {r["error_kind"] for r in records} <= {None, "cut", "closed"}
    assert server.resets > 0  # the test did test something


@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
def test_an_answer_that_is_not_streamed(hostile, tmp_path):
    server = hostile("not_streamed")
    run = check(bench(server.url, tmp=tmp_path))
    for record in ok_records(run):
        assert record["streamed"] is False and record["ttft_s"] is None
        assert record["output_tokens"] == 7 and record["tokens_source"] == "server"


# --- what the server says reaches the user ------------------------------------------------------------------

@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
@pytest.mark.parametrize("fmt", ["table", "markdown", "csv"])
@pytest.mark.parametrize("name", EVIL_NAMES, ids=["markup", "reverse", "escapes"])
def test_evil_model_names_and_errors_show_as_text(hostile, tmp_path, name, fmt):
    server = hostile("evil_names")
    run = check(bench(server.url, tmp=tmp_path, model=name, fmt=fmt))
    assert visible(name) in run.out  # csv: needs the model in the output (a column, or a comment line)
    assert {r["error_kind"] for r in run.records} <= {"http", "server"} and len(run.records) == 2
    if name == "[reverse]x":
        assert "[reverse]x" in run.out


@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
def test_evil_model_names_in_a_one_line_error(hostile, tmp_path):
    server = hostile("evil_names")
    run = check(bench(server.url, tmp=tmp_path, model=None))  # several models: pick one
    assert run.rc == 2 and visible(EVIL_NAMES[2]) in run.err


SECRET = "sk-secret-123"


@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
def test_a_key_the_server_echoes_is_not_printed(hostile, tmp_path):
    server = hostile("echo_key")
    run = check(bench(server.url, tmp=tmp_path, env=base_env(OPENAI_API_KEY=SECRET)), secrets=(SECRET,))
    assert run.records and all("invalid key" in r["error"] for r in run.records)
    assert server.seen[-1].headers.get("authorization") == f"Bearer {SECRET}"  # it was sent, only not shown


@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
def test_a_key_with_a_trailing_newline_works(hostile, tmp_path):
    server = hostile("normal")
    run = check(bench(server.url, tmp=tmp_path, env=base_env(OPENAI_API_KEY=SECRET + "\r\n")), secrets=(SECRET,))
    ok_records(run)


@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
def test_a_key_that_is_not_ascii_is_one_line(hostile, tmp_path):
    server = hostile("normal")
    key = "sk-ключ"
    run = check(bench(server.url, tmp=tmp_path, env=base_env(OPENAI_API_KEY=key)), secrets=(key, "ключ"))
    assert run.rc == 2


@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
def test_a_password_in_the_url_is_not_printed(hostile, tmp_path):
    server = hostile("normal")
    url = server.url.replace("http://", "http://user:hunter2@")
    run = check(bench(url, tmp=tmp_path), secrets=("hunter2",))
    ok_records(run)
    assert "user:***@" in run.report["meta"]["url"]


@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
@pytest.mark.parametrize("api", ["openai", "ollama"])
@pytest.mark.parametrize("fault", ["bad_discovery_data", "bad_discovery_id_number", "bad_discovery_id_list"])
def test_a_model_list_of_the_wrong_shape_is_one_line(hostile, tmp_path, fault, api):
    server = hostile(fault, ollama=api == "ollama")
    run = check(bench(server.url, tmp=tmp_path, api=api, model=None))
    assert run.rc == 2


@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
@pytest.mark.parametrize("key", [None, SECRET])
def test_a_server_that_wants_a_key(hostile, tmp_path, key):
    server = hostile("unauthorized")
    env = base_env(OPENAI_API_KEY=key) if key else base_env()
    run = check(bench(server.url, tmp=tmp_path, env=env), secrets=(SECRET,))
    assert run.rc == 2
    assert ("refused" in run.err) if key else ("OPENAI_API_KEY" in run.err)


# --- odd input -------------------------------------------------------------------------------------------------

@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
def test_a_url_in_capitals_works(hostile, tmp_path):
    server = hostile("normal")
    run = check(bench(server.url.replace("http://", "HTTP://"), tmp=tmp_path))
    ok_records(run)


@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
@pytest.mark.parametrize("url", ["unix:///tmp/x.sock", "http://", "http://[::1"])
def test_an_odd_url_is_one_line(tmp_path, url):
    run = check(bench(url, tmp=tmp_path, timeout=10))
    assert run.rc == 2
    if url.startswith("unix"):
        assert re.search(r"not supported|unsupported", run.err)


@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
@pytest.mark.parametrize("flags", [["--concurrency", "99999999999999999999"], ["--concurrency", "0"],
                                   ["--timeout", "nan"], ["--timeout", "-1"], ["--rounds", "0"]],
                         ids=lambda flags: " ".join(flags))
def test_a_bad_flag_is_one_quick_line(hostile, tmp_path, flags):
    server = hostile("normal")
    run = check(bench(server.url, *flags, tmp=tmp_path, timeout=5))
    assert run.rc == 2 and run.wall < 5 and server.chat_requests == 0


@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
def test_a_bad_out_path_is_one_line(hostile, tmp_path):
    server = hostile("normal")
    run = check(bench(server.url, "--out", "/nonexistent-dir/x.jsonl", tmp=tmp_path))
    assert run.rc == 2


@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
def test_an_old_out_file_is_kept_when_the_server_is_not_there(tmp_path):
    old = tmp_path / "old.jsonl"
    old.write_text('{"kept": true}\n')
    run = check(bench(f"http://127.0.0.1:{free_port()}", "--out", str(old), tmp=tmp_path))
    assert run.rc == 2 and old.read_text() == '{"kept": true}\n'


# --- the app in a real terminal (tmux) -----------------------------------------------------------------------

class Tmux:
    """One app in a tmux server of its own, at 160×48. The pane stays after the app ends and says its status."""

    def __init__(self, tmp: Path) -> None:
        self.socket = f"tokentop-faults-{uuid.uuid4().hex[:8]}"
        self.tmp = tmp

    def tmux(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-u", "-L", self.socket, *args], env=base_env(LANG="C.UTF-8"),
                              capture_output=True, text=True, timeout=10, **kwargs)

    def start(self, *app_args: str, env: dict[str, str] | None = None) -> None:
        unset = [arg for name in ENV_DROP for arg in ("-u", name)]
        sets = [f"{k}={v}" for k, v in (env or {}).items()]
        app = shlex.join(["env", *unset, "LANG=C.UTF-8", *sets, sys.executable, "-m", "tui", *app_args])
        # Bounded: the pane lives 60 s after the app ends, and the tmux server is killed after the test.
        shell = f"{app}; echo \"tokentop exited $?\"; sleep 60"
        self.tmux("new-session", "-d", "-s", "app", "-x", "160", "-y", "48", "-c", str(REPO), shell, check=True)
        self.title_before = self.title()

    def screen(self, escapes: bool = False) -> str:
        return self.tmux("capture-pane", "-p", *(["-e"] if escapes else []), "-t", "app").stdout

    def title(self) -> str:
        return self.tmux("display-message", "-p", "-t", "app", "#{pane_title}").stdout.strip()

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "app", *keys, check=True)

    def wait(self, pattern: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            assert "Traceback" not in text, text
            if re.search(pattern, text):
                return text
            if "tokentop exited" in text:  # it ended: waiting longer shows nothing new
                break
            time.sleep(0.2)
        raise AssertionError(f"{pattern!r} never showed; last screen:\n{self.screen()}")

    def exit_status(self, timeout: float = 10.0) -> int:
        return int(re.search(r"tokentop exited (\d+)", self.wait(r"tokentop exited \d+", timeout)).group(1))

    def stop(self) -> None:
        self.tmux("kill-server")


@pytest.fixture
def tmux(tmp_path):
    if shutil.which("tmux") is None:
        if UNDER_CI:
            pytest.fail("the app's fault tests cannot be skipped under CI: tmux is missing")
        pytest.skip("needs tmux")
    term = Tmux(tmp_path)
    yield term
    term.stop()


def app_args(server: HostileServer, *extra: str) -> list[str]:
    return ["--url", server.url, "--api", "openai", "--autostart", "--concurrency", "2", "--timeout",
            f"{TIMEOUT:g}", *extra]


@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
def test_the_app_shows_evil_names_and_errors_as_text(hostile, tmux):
    server = hostile("evil_names")
    tmux.start(*app_args(server, "--model", "bad[/]"))
    tmux.wait(r"tokentop")
    text = tmux.wait(r"errors [1-9]")
    shown = tmux.wait(re.escape(visible(EVIL_ERROR)[:4]))  # ␛[2J, as text in a stream row
    assert "tokentop" in shown and "errors" in text
    raw = tmux.screen(escapes=True)
    assert "\x1b]" not in raw and "\x07" not in raw  # no OSC reached the terminal
    assert tmux.title() == tmux.title_before and "pwned" not in tmux.title()
    tmux.keys("M")
    picker = tmux.wait(re.escape("[reverse]x"))
    assert visible(EVIL_NAMES[2]) in picker or "␛" in picker
    assert "tokentop" in picker
    tmux.keys("Escape")
    time.sleep(0.5)
    assert tmux.title() == tmux.title_before
    tmux.keys("q")
    assert tmux.exit_status() == 0


@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
def test_the_app_keeps_running_when_the_server_says_429(hostile, tmux):
    server = hostile("status", status=429, headers=(("Retry-After", "1"),))
    tmux.start(*app_args(server))
    tmux.wait(r"errors [1-9]")
    time.sleep(2)
    text = tmux.wait(r"tokentop")
    assert "429" in text and "tokentop exited" not in text
    tmux.keys("q")
    assert tmux.exit_status() == 0


@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
def test_the_app_survives_its_server_being_killed_and_restarted(hostile, tmux, tmp_path):
    server = hostile("normal", tokens=40, delay=0.05)  # 2 s a request: streams are there to be seen
    out = tmp_path / "app.jsonl"
    tmux.start(*app_args(server, "--out", str(out)))
    tmux.wait(r"streaming [12]")
    server.stop()
    tmux.wait(r"errors [1-9]")
    time.sleep(1)
    assert "streaming 0" in tmux.screen()
    restarted = time.time()
    server.start()
    tmux.wait(r"streaming [12]")

    def records() -> list[dict]:
        return [json.loads(line) for line in out.read_text().splitlines()]

    deadline = time.monotonic() + 15  # a whole request after the restart, written as it ends
    while time.monotonic() < deadline and not any(r["error_kind"] is None and r["sent_at"] >= restarted
                                                   for r in records()):
        time.sleep(0.2)
    tmux.keys("q")
    assert tmux.exit_status() == 0
    assert "connect" in {r["error_kind"] for r in records()}
    assert any(r["error_kind"] is None and r["sent_at"] >= restarted for r in records())


# --- the newer surfaces: Prometheus, compare, prompt files, big bodies ---------------------------------------
# A case for each defect found on them (its number first in the test's name): each input ends in one clear line
# or a calm pane line, with no traceback, no secret, no raw escape, memory under 300 MB and quitting within 2 s.
# Runs that start a process (the bench, the app in tmux) are marked slow; the rest run in this process.

TOKEN = "tok-s3cr3t-prom-77"
MEMORY_MB = 300


@pytest.fixture
def prometheus():
    """prometheus(fault) → a running HostilePrometheus, stopped after the test."""
    started: list[HostilePrometheus] = []

    def make(fault: str = "normal") -> HostilePrometheus:
        server = HostilePrometheus(fault, lifetime=120).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def fleet_probe_of(url: str, token: str | None = None) -> FleetProbe:
    return FleetProbe(PrometheusClient(url, token=token))


def pane_texts(sample, history=None) -> str:
    return "\n".join(text.plain for text in (fleet_pane.gpu_text(sample, 120, history=history),
                                             fleet_pane.host_text(sample, 120), fleet_pane.replica_text(sample)))


def one_line_error(capsys, prefix: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(prefix) and "Traceback" not in err, err
    for ch in RAW_CONTROLS:
        assert ch not in err
    return err


def test_1_a_history_of_infinities_and_overflowing_values_draws_gaps(prometheus):
    probe = fleet_probe_of(prometheus("inf_history").url)
    history = probe.history()
    assert history and all(values == [None] * 5 + [50.0] for values in history.values())
    sample = probe.read()
    # a pane handed such values all the same draws gaps, never an OverflowError
    raw = {key: [math.inf, -math.inf, 1e308, 1e308, math.nan, 50.0] for key in history}
    assert "gpu-a  2 GPUs" in pane_texts(sample, raw)
    assert sparkline([1e308, -1e308, math.inf, math.nan, None, 5.0], 6, top=1e-308) == "█▁   █"


def test_2_a_cpu_label_that_is_no_number_keeps_the_host_and_a_broken_reading_is_a_line(prometheus):
    probe = fleet_probe_of(prometheus("odd_cpu").url)
    sample = probe.read()
    assert sample.error is None and [len(h.cores) for h in sample.hosts] == [3]

    def broken(expr: str):
        raise ValueError(f"invalid literal for int() with base 10: '²' ({TOKEN})")

    probe.client.query = broken
    probe.client.redact = Redactor(TOKEN)
    sample = probe.read()  # whatever breaks in a reading is its error, one line, the secret masked
    assert sample.error.startswith("fleet reading failed: ValueError") and "\n" not in sample.error
    assert TOKEN not in sample.error and "reading GPUs" not in pane_texts(sample)


@pytest.mark.parametrize("token", ["tok-ключ-s3cr3t", "tok-s3cr3t\nsecond-line", "tok-s3cr3t\x1b]0;x\x07"],
                         ids=["non-ascii", "newline", "escape"])
def test_3_9_a_token_that_cannot_be_a_header_is_one_line_that_never_prints_it(hostile, prometheus, capsys,
                                                                              monkeypatch, token):
    with pytest.raises(CredentialsError) as caught:
        credentials_from_env({"PROMETHEUS_TOKEN": token})
    message = str(caught.value)
    assert "\n" not in message and "s3cr3t" not in message and "PROMETHEUS_TOKEN" in message
    with pytest.raises(CredentialsError, match="PROMETHEUS_PASSWORD holds control characters"):
        credentials_from_env({"PROMETHEUS_USER": "me", "PROMETHEUS_PASSWORD": "pw-s3cr3t\nx"})
    monkeypatch.setenv("PROMETHEUS_TOKEN", token)  # the app: one line and status 2, before any screen
    server = hostile("normal")
    assert cli_main(["--url", server.url, "--api", "openai", "--model", MODEL,
                     "--prometheus", prometheus().url]) == 2
    assert "s3cr3t" not in one_line_error(capsys, "tokentop: error: PROMETHEUS_TOKEN holds")


def test_4_a_token_file_that_is_a_device_or_huge_is_refused_at_once(tmp_path):
    sparse = tmp_path / "token"
    with open(sparse, "wb") as f:
        f.truncate(3 << 30)  # 3 GiB, no disk used
    started = time.monotonic()
    for path, says in (("/dev/zero", "a device, not a file"), (str(sparse), "too big (3,221,225,472 bytes")):
        with pytest.raises(CredentialsError, match=re.escape(says)):
            credentials_from_env({"PROMETHEUS_TOKEN_FILE": path})
    assert time.monotonic() - started < 1


def test_5_a_gzip_bomb_or_a_50_mb_answer_stops_at_the_cap(hostile, prometheus):
    server = hostile("metrics_bomb")
    target, info = discover(server.url, "openai", MODEL)  # discovery asks /metrics what the server is
    assert info.kind == "openai-compatible"
    sample = ServerProbe(server.url, "vllm").read()
    assert sample.error == f"{server.url}/metrics: the answer is over 8 MiB"
    for fault in ("gzip_bomb", "big"):
        sample = fleet_probe_of(prometheus(fault).url).read()
        assert sample.error.endswith("/api/v1/query: the answer is over 8 MiB"), sample.error


def tiny_prompts(path: Path, count: int = 13_000_000) -> Path:
    """13 million prompts of two letters: 208 MB, under the 512 MiB cap."""
    with open(path, "wb") as f:
        for _ in range(count // 1_000_000):
            f.write(b'{"prompt":"ab"}\n' * 1_000_000)
    return path


def test_6_thirteen_million_tiny_prompts_keep_the_first_100000_and_say_so(tmp_path, capsys):
    from tui.flags import read_prompts

    path = tiny_prompts(tmp_path / "tiny.jsonl")
    started = time.monotonic()
    found = read_prompt_file(path)
    assert found.left_off and len(found.prompts) == MAX_PROMPTS and time.monotonic() - started < 5
    args = argparse.Namespace(prompts=str(path), input_tokens=None)
    assert len(read_prompts(args)) == MAX_PROMPTS
    assert "holds more than 100,000 prompts; the first 100,000 are sent" in capsys.readouterr().err
    array = tmp_path / "tiny.json"  # one JSON array on one line, read a chunk at a time
    array.write_bytes(b"[" + b",".join([b'{"prompt":"ab"}'] * 200_000) + b"]")
    assert read_prompt_file(array).left_off


def run_doc(**changes) -> dict:
    doc = {"format": "tokentop-run", "version": 1, "date": "2026-12-01", "command": "tokentop bench",
           "server": {"url": "http://gpu:8000"},
           "rows": [{"concurrency": c, "words": 25, "avg_speed_tps": 10.0 / c, "decode_tps_mean": 12.0 / c,
                     "ttft_p99_s": 0.1 * c, "errors": 0} for c in (1, 4)]}
    return doc | changes


def compare(tmp_path: Path, *docs: dict, plot: bool = False) -> int:
    paths = []
    for i, doc in enumerate(docs):
        paths.append(tmp_path / f"run{i}.json")
        paths[-1].write_text(json.dumps(doc))
    return cli_main(["compare", *map(str, paths), *(["--plot", str(tmp_path / "chart.txt")] if plot else [])])


def test_7_compare_names_the_file_and_field_of_a_figure_or_load_of_the_wrong_type(tmp_path, capsys):
    bad = run_doc()
    bad["rows"][1]["avg_speed_tps"] = "12"
    assert compare(tmp_path, run_doc(), bad) == 2
    assert one_line_error(capsys, "tokentop compare: error:").endswith(
        'run1.json: rows[1]: avg_speed_tps is "12", not a finite number\n')
    rated = run_doc(rows=[{"rate": "2", "concurrency": 0, "words": 25, "avg_speed_tps": 1.0}])
    assert compare(tmp_path, rated, rated) == 2
    assert 'run0.json: rows[0]: rate is "2", not a number over 0' in one_line_error(capsys, "tokentop compare")


def test_7_compare_charts_a_huge_finite_figure_without_it(tmp_path, capsys, monkeypatch):
    huge = run_doc()
    huge["rows"][0]["decode_tps_mean"], huge["rows"][1]["ttft_p99_s"] = 1e308, -1e308
    assert compare(tmp_path, run_doc(), huge, plot=True) == 0
    out = capsys.readouterr().out
    assert "1e+308" in out and "per-stream tok/s" in (tmp_path / "chart.txt").read_text()
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)  # on a terminal the chart goes to stdout
    assert compare(tmp_path, run_doc(), huge) == 0
    assert "per-stream tok/s" in capsys.readouterr().out


def test_8_a_token_prometheus_echoes_in_labels_and_target_errors_is_masked(prometheus):
    probe = fleet_probe_of(prometheus("echo_token").url, token=TOKEN)
    sample = probe.read()
    assert sample.error is None and sample.down and sample.replicas and sample.gpus
    assert TOKEN not in repr(sample) and TOKEN not in repr(probe.history())
    shown = pane_texts(sample)
    assert "gpu-a ***" in shown and "vllm-a:8000 ***" in shown and "down: server returned" in shown
    assert TOKEN not in shown


def test_10_compare_shows_the_keys_of_a_run_file_visibly(tmp_path, capsys):
    evil = run_doc(server={"url": "http://gpu:8000", "\x1b]0;PWNED\x07": "x"})
    assert compare(tmp_path, run_doc(), evil) == 0
    out = capsys.readouterr().out
    assert "server.␛]0;PWNED␇" in out and not any(ch in out for ch in RAW_CONTROLS)


def test_11_a_prometheus_that_trickles_is_cut_at_the_deadline(prometheus):
    client = PrometheusClient(prometheus("trickle").url)  # 5 s; a byte comes every 2 s
    started = time.monotonic()
    with pytest.raises(PrometheusError, match="no whole answer within 5 s"):
        client.query("up")
    assert time.monotonic() - started < 5 + 2.5


@pytest.fixture
def fifo(tmp_path, monkeypatch):
    """A FIFO nobody writes to, and a short wait for it."""
    monkeypatch.setattr(files, "PIPE_WAIT_S", 0.3)
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


@pytest.mark.slow  # runs tokentop, or a hostile server, in a process of its own
def test_12_a_fifo_nobody_writes_to_is_one_line_after_a_bounded_wait(fifo, tmp_path, capsys):
    (tmp_path / "good.json").write_text(json.dumps(run_doc()))
    started = time.monotonic()
    assert cli_main(["compare", str(tmp_path / "good.json"), str(fifo)]) == 2
    assert "fifo: a pipe nothing was written to for 0.3 s" in one_line_error(capsys, "tokentop compare: error:")
    with pytest.raises(PromptFileError, match="a pipe nothing was written to"):
        read_prompt_file(fifo)
    with pytest.raises(CredentialsError, match="a pipe nothing was written to"):
        credentials_from_env({"PROMETHEUS_TOKEN_FILE": str(fifo)})
    assert time.monotonic() - started < 3
    writer = subprocess.Popen(f"sleep 0.1; echo '{{\"prompt\": \"piped\"}}' > {shlex.quote(str(fifo))}",
                              shell=True)  # a pipe that is written is read
    assert read_prompt_file(fifo).prompts == ["piped"]
    writer.wait(5)


def test_13_a_run_file_version_in_quotes_is_said_in_quotes(tmp_path, capsys):
    assert compare(tmp_path, run_doc(), run_doc(version="1")) == 2
    assert 'run file version "1"; this tokentop reads version 1' in one_line_error(capsys, "tokentop compare")


def test_14_long_names_long_lists_and_absurd_figures_are_cut_or_dropped(hostile, prometheus, tmp_path, capsys):
    from tui.app import header_text
    from tui.load.discover import ServerInfo
    from tui.panes.load import server_text

    info = ServerInfo("http://h:11434", "ollama", "ollama", "v" * 10_000, "m" * 10_000, ["m" * 10_000])
    assert len(header_text(info).plain) < 250 and "\n" not in header_text(info).plain
    ollama = hostile("many_loaded", ollama=True, model="m" * 10_000)
    sample = ServerProbe(ollama.url, "ollama").read()
    assert len(sample.loaded) == 16 and sample.loaded_left_off == LOADED - 16
    shown = server_text(sample, frozen_snapshot(), None).plain
    assert shown.endswith(f"+{LOADED - 3} more in memory") and len(shown) < 600
    vllm = ServerProbe(hostile("metrics_absurd").url, "vllm").read()
    assert (vllm.running, vllm.waiting, vllm.cache_usage) == (None, 3, None)  # 1e300 and 4200 are no readings
    absurd = fleet_probe_of(prometheus("absurd").url).read()
    texts = pane_texts(absurd)
    assert "util N/A%" in texts and "RAM N/A%" in texts and "over a week old" in texts and "waiting ?" in texts
    assert compare(tmp_path, run_doc(), run_doc(command="x" * 20_000_000)) == 0
    assert len(capsys.readouterr().out) < 5_000


async def test_1_2_8_14_the_app_draws_a_hostile_prometheus_calmly(prometheus):
    """The app's panes (not only the text functions) with each of Prometheus's faults, the engine frozen."""
    from fakes import INFO, FrozenEngine, fixed_host

    for fault in ("inf_history", "odd_cpu", "echo_token", "absurd", "gzip_bomb"):
        engine = FrozenEngine(frozen_snapshot())
        app = make_app(Target(INFO.url, INFO.api, INFO.model), INFO, engine.settings, engine=engine,
                       read_gpu=fake_gpu_reading, read_host=fixed_host, read_server=lambda: None,
                       fleet=fleet_probe_of(prometheus(fault).url, token=TOKEN), poll_s=0.2)
        async with app.run_test(size=(160, 48)) as pilot:
            for _ in range(100):
                shown = str(app.query_one("#gpu").render()) + str(app.query_one("#host").render())
                if "reading GPUs" not in shown and "reading CPU" not in shown:
                    break
                await pilot.pause(0.05)
            await pilot.pause(0.5)  # the history and more readings
            shown = "\n".join(str(app.query_one(s).render()) for s in ("#gpu", "#host", "#server"))
            assert "gpu-a" in shown or "over 8 MiB" in shown, (fault, shown)
            assert TOKEN not in shown and "reading GPUs" not in shown, (fault, shown)


# --- …the same, as processes: the bench, and the app in a terminal ---

def prometheus_bench(server: HostileServer, prom: HostilePrometheus, tmp: Path, *extra: str,
                     env: dict[str, str] | None = None, timeout: float = 40) -> Run:
    return bench(server.url, "--prometheus", prom.url, *extra, tmp=tmp, env=env, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["odd_cpu", "inf_history", "absurd", "gzip_bomb", "big"])
def test_2_5_the_bench_reads_a_hostile_prometheus_in_bounded_memory(hostile, prometheus, tmp_path, fault):
    run = check(prometheus_bench(hostile("metrics_bomb"), prometheus(fault), tmp_path, "--format", "table"))
    assert run.rc == 0 and "Average Speed" in run.out
    assert run.rss_mb < MEMORY_MB, run.rss_mb
    if fault in ("gzip_bomb", "big"):
        assert "the answer is over 8 MiB" in run.err


@pytest.mark.slow
@pytest.mark.parametrize("env", [{"PROMETHEUS_TOKEN": "tok-ключ-s3cr3t"}, {"PROMETHEUS_TOKEN": "tok-s3cr3t\nx"},
                                 {"PROMETHEUS_TOKEN_FILE": "/dev/zero"}], ids=["non-ascii", "newline", "dev-zero"])
def test_3_4_9_the_bench_refuses_credentials_it_cannot_send_in_one_line(hostile, prometheus, tmp_path, env):
    run = check(prometheus_bench(hostile("normal"), prometheus(), tmp_path, env=base_env(**env)),
                secrets=("s3cr3t",))
    assert run.rc == 2 and "PROMETHEUS_TOKEN" in run.err and run.wall < 10


@pytest.mark.slow
def test_6_the_bench_sends_a_13_million_prompt_file_in_bounded_memory(hostile, tmp_path):
    path = tiny_prompts(tmp_path / "tiny.jsonl")
    run = check(bench(hostile("normal").url, "--prompts", str(path), tmp=tmp_path))
    assert run.rc == 0 and "holds more than 100,000 prompts" in run.err
    assert run.rss_mb < MEMORY_MB, run.rss_mb


@pytest.mark.slow
def test_8_the_bench_masks_a_token_prometheus_echoes_in_stdout_and_the_run_file(hostile, prometheus, tmp_path):
    saved = tmp_path / "run.json"
    run = check(prometheus_bench(hostile("normal"), prometheus("echo_token"), tmp_path, "--duration", "2",
                                 "--save", str(saved), env=base_env(PROMETHEUS_TOKEN=TOKEN)), secrets=(TOKEN,))
    assert run.rc == 0
    (row,) = run.report["rows"]
    assert list(row["replica_queue_max"]) == ["vllm-a:8000 *** llama ***"]
    assert TOKEN not in saved.read_text() and "vllm-a:8000 ***" in saved.read_text()


def cell_span_s(run: Run) -> float:
    """From the first request sent to the last one's end."""
    return max(r["sent_at"] + r["e2e_s"] for r in run.records) - min(r["sent_at"] for r in run.records)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["trickle", "many_series"])
def test_11_a_slow_or_crowded_prometheus_stretches_no_bench_cell(hostile, prometheus, tmp_path, fault):
    run = check(prometheus_bench(hostile("normal"), prometheus(fault), tmp_path, "--duration", "3"))
    assert run.rc == 0 and run.records
    assert cell_span_s(run) < 4, cell_span_s(run)  # its own 3 s, not the fleet's
    assert run.wall < 3 + 8 + 6  # the first fleet read is cut at its deadline (5 s, a byte late at most)


@pytest.mark.slow
def test_12_the_bench_with_a_fifo_for_prompts_is_one_line(hostile, tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    run = check(bench(hostile("normal").url, "--prompts", str(path), tmp=tmp_path, timeout=20))
    assert run.rc == 2 and "a pipe nothing was written to for 5 s" in run.err and run.wall < 10


def app_process(term: Tmux) -> psutil.Process:
    """The app's own process in the tmux pane (the shell's child; the engine is the app's)."""
    shell = psutil.Process(int(term.tmux("display-message", "-p", "-t", "app", "#{pane_pid}").stdout))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [p for p in shell.children() if "tui" in p.cmdline()]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError("the app's process never showed")


@pytest.mark.slow
@pytest.mark.parametrize("fault, shows", [("trickle", r"GPUs \(Prometheus\)"), ("many_series", "over 8 MiB"),
                                          ("gzip_bomb", "over 8 MiB")])
def test_11_the_app_quits_within_2_s_whatever_prometheus_does(hostile, prometheus, tmux, fault, shows):
    prom = prometheus(fault)
    tmux.start(*app_args(hostile("normal"), "--prometheus", prom.url))
    tmux.wait(shows)
    app = app_process(tmux)
    peak = 0.0
    for _ in range(20):  # 4 s of readings: a bomb a second
        peak = max(peak, app.memory_info().rss / 2**20)
        time.sleep(0.2)
    assert peak < MEMORY_MB, peak
    if fault == "trickle":  # q comes while a read is stuck mid-answer
        deadline = time.monotonic() + 10
        while not prom.trickling and time.monotonic() < deadline:
            time.sleep(0.05)
        assert prom.trickling
    started = time.monotonic()
    tmux.keys("q")
    app.wait(10)
    quit_s = time.monotonic() - started
    assert quit_s < 2.0, quit_s
    assert tmux.exit_status() == 0 and "Traceback" not in tmux.screen()
