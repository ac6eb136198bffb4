"""tokentop against hostile servers (tests/hostile.py): every fault ends as data or as one line, never a crash.

`tokentop bench` runs as a subprocess against a HostileServer in a thread of this process; the app runs in
tmux (as tests/test_demo.py does). Every run is checked the same way (`check`): no Traceback, exit status 2
means exactly one line on stderr, no raw terminal control character anywhere, and no secret anywhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import UNDER_CI
from hostile import EVIL_ERROR, EVIL_NAMES, HTML_500, HTML_TAIL, MODEL, REDIRECT_TO, HostileServer

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 2.0  # --timeout: the longest silence between chunks
RAW_CONTROLS = ("\x1b", "\x9b", "\x07")  # ESC, C1 CSI, BEL: never raw in what tokentop prints or writes
# A stray byte that is not UTF-8 (0x9b alone, say) decodes to a surrogate: never in output either.
ENV_DROP = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OLLAMA_HOST", "FORCE_COLOR", "COLUMNS", "LINES")
pytestmark = pytest.mark.slow  # every case runs tokentop, or a hostile server, in a process of its own
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
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"bench ran over {timeout} s: {' '.join(argv[3:])}\nstderr: {_decode(stderr)[-2000:]}")
    wall = time.monotonic() - started
    jsonl = _decode(out.read_bytes()) if out.exists() else ""
    return Run(proc.returncode, _decode(stdout), _decode(stderr), jsonl, wall)


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


@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_bytes_that_are_not_utf8_are_tokens_not_a_crash(hostile, tmp_path, api):
    server = hostile("bad_utf8", ollama=api == "ollama")
    run = check(bench(server.url, tmp=tmp_path, api=api))
    ok_records(run)


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_endless_stream_stops_on_a_signal_and_the_table_prints(hostile, tmp_path, signum, status):
    server = hostile("endless")
    run = check(bench(server.url, tmp=tmp_path, fmt="table", interrupt=(signum, 2.0), server=server, timeout=15))
    assert run.rc == status
    assert "Average Speed" in run.out
    assert not run.jsonl or run.jsonl.endswith("\n")
    run.records  # every line whole JSON


@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_a_10_mb_line_is_malformed_and_quick(hostile, tmp_path, api):
    server = hostile("long_line", ollama=api == "ollama")
    run = check(bench(server.url, tmp=tmp_path, api=api, timeout=16))
    assert run.wall < 15  # the old quadratic splitter took 30 s of CPU
    for record in run.records:
        assert record["error_kind"] == "malformed" and "line over" in record["error"]


def test_connections_reset_at_random(hostile, tmp_path):
    server = hostile("reset", seed=7)
    run = check(bench(server.url, "--rounds", "6", tmp=tmp_path))
    records = run.records
    assert len(records) == 12  # one line per request sent
    assert {r["error_kind"] for r in records} <= {None, "cut", "closed"}
    assert server.resets > 0  # the test did test something


def test_an_answer_that_is_not_streamed(hostile, tmp_path):
    server = hostile("not_streamed")
    run = check(bench(server.url, tmp=tmp_path))
    for record in ok_records(run):
        assert record["streamed"] is False and record["ttft_s"] is None
        assert record["output_tokens"] == 7 and record["tokens_source"] == "server"


# --- what the server says reaches the user ------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["table", "markdown", "csv"])
@pytest.mark.parametrize("name", EVIL_NAMES, ids=["markup", "reverse", "escapes"])
def test_evil_model_names_and_errors_show_as_text(hostile, tmp_path, name, fmt):
    server = hostile("evil_names")
    run = check(bench(server.url, tmp=tmp_path, model=name, fmt=fmt))
    assert visible(name) in run.out  # csv: needs the model in the output (a column, or a comment line)
    assert {r["error_kind"] for r in run.records} <= {"http", "server"} and len(run.records) == 2
    if name == "[reverse]x":
        assert "[reverse]x" in run.out


def test_evil_model_names_in_a_one_line_error(hostile, tmp_path):
    server = hostile("evil_names")
    run = check(bench(server.url, tmp=tmp_path, model=None))  # several models: pick one
    assert run.rc == 2 and visible(EVIL_NAMES[2]) in run.err


SECRET = "sk-secret-123"


def test_a_key_the_server_echoes_is_not_printed(hostile, tmp_path):
    server = hostile("echo_key")
    run = check(bench(server.url, tmp=tmp_path, env=base_env(OPENAI_API_KEY=SECRET)), secrets=(SECRET,))
    assert run.records and all("invalid key" in r["error"] for r in run.records)
    assert server.seen[-1].headers.get("authorization") == f"Bearer {SECRET}"  # it was sent, only not shown


def test_a_key_with_a_trailing_newline_works(hostile, tmp_path):
    server = hostile("normal")
    run = check(bench(server.url, tmp=tmp_path, env=base_env(OPENAI_API_KEY=SECRET + "\r\n")), secrets=(SECRET,))
    ok_records(run)


def test_a_key_that_is_not_ascii_is_one_line(hostile, tmp_path):
    server = hostile("normal")
    key = "sk-ключ"
    run = check(bench(server.url, tmp=tmp_path, env=base_env(OPENAI_API_KEY=key)), secrets=(key, "ключ"))
    assert run.rc == 2


def test_a_password_in_the_url_is_not_printed(hostile, tmp_path):
    server = hostile("normal")
    url = server.url.replace("http://", "http://user:hunter2@")
    run = check(bench(url, tmp=tmp_path), secrets=("hunter2",))
    ok_records(run)
    assert "user:***@" in run.report["meta"]["url"]


@pytest.mark.parametrize("api", ["openai", "ollama"])
@pytest.mark.parametrize("fault", ["bad_discovery_data", "bad_discovery_id_number", "bad_discovery_id_list"])
def test_a_model_list_of_the_wrong_shape_is_one_line(hostile, tmp_path, fault, api):
    server = hostile(fault, ollama=api == "ollama")
    run = check(bench(server.url, tmp=tmp_path, api=api, model=None))
    assert run.rc == 2


@pytest.mark.parametrize("key", [None, SECRET])
def test_a_server_that_wants_a_key(hostile, tmp_path, key):
    server = hostile("unauthorized")
    env = base_env(OPENAI_API_KEY=key) if key else base_env()
    run = check(bench(server.url, tmp=tmp_path, env=env), secrets=(SECRET,))
    assert run.rc == 2
    assert ("refused" in run.err) if key else ("OPENAI_API_KEY" in run.err)


# --- odd input -------------------------------------------------------------------------------------------------

def test_a_url_in_capitals_works(hostile, tmp_path):
    server = hostile("normal")
    run = check(bench(server.url.replace("http://", "HTTP://"), tmp=tmp_path))
    ok_records(run)


@pytest.mark.parametrize("url", ["unix:///tmp/x.sock", "http://", "http://[::1"])
def test_an_odd_url_is_one_line(tmp_path, url):
    run = check(bench(url, tmp=tmp_path, timeout=10))
    assert run.rc == 2
    if url.startswith("unix"):
        assert re.search(r"not supported|unsupported", run.err)


@pytest.mark.parametrize("flags", [["--concurrency", "99999999999999999999"], ["--concurrency", "0"],
                                   ["--timeout", "nan"], ["--timeout", "-1"], ["--rounds", "0"]],
                         ids=lambda flags: " ".join(flags))
def test_a_bad_flag_is_one_quick_line(hostile, tmp_path, flags):
    server = hostile("normal")
    run = check(bench(server.url, *flags, tmp=tmp_path, timeout=5))
    assert run.rc == 2 and run.wall < 5 and server.chat_requests == 0


def test_a_bad_out_path_is_one_line(hostile, tmp_path):
    server = hostile("normal")
    run = check(bench(server.url, "--out", "/nonexistent-dir/x.jsonl", tmp=tmp_path))
    assert run.rc == 2


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


def test_the_app_keeps_running_when_the_server_says_429(hostile, tmux):
    server = hostile("status", status=429, headers=(("Retry-After", "1"),))
    tmux.start(*app_args(server))
    tmux.wait(r"errors [1-9]")
    time.sleep(2)
    text = tmux.wait(r"tokentop")
    assert "429" in text and "tokentop exited" not in text
    tmux.keys("q")
    assert tmux.exit_status() == 0


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
