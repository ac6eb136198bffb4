"""Measure the app's own cost and its timing error, in a real terminal (tmux), against `tokentop sim`.

    python tests/measure_app.py [--seconds 30]

1. idle: the app monitoring, no load (concurrency 0) — CPU of the tokentop process.
2. 64 streams against the default sim (4 slots, 60 queued, ~65 tok/s in all, as the seed's A100).
3./4. 64 streams against `tokentop sim --parallel 64` at speed 2 (~130 tok/s in all) and 10 (~650),
   where the sim gives every request a fixed, known TTFT (`--ttft`) and nobody queues, so client
   TTFT − known TTFT is what the client side adds. Each run twice: the engine alone (no UI, this
   process) and the app with its UI in tmux, so the UI's share of the error is the difference.

Not a pytest test: timings on a shared 2-core machine are not pass/fail material. The numbers go in
the README. Needs tmux.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil

from tui.load.stats import percentile
from tui.servers.local import free_port

KNOWN_TTFT_S = 0.1  # real seconds: --ttft 1.0 at --speed 10


@contextlib.contextmanager
def running_sim(options: list[str]) -> Iterator[tuple[str, subprocess.Popen]]:
    """`tokentop sim` in its own process on a free port: (its URL, the process), stopped afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sim = subprocess.Popen([sys.executable, "-m", "tui", "sim", "--port", str(port), *options],
                           stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                httpx.get(url + "/api/version", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise SystemExit("tokentop sim did not start")
        yield url, sim
    finally:
        sim.terminate()
        sim.wait()


def run_app(session: str, args: list[str]) -> psutil.Process:
    command = " ".join([f"exec {sys.executable} -m tui", *args])
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "48", command], check=True)
    time.sleep(0.5)
    pid = int(subprocess.check_output(["tmux", "display-message", "-p", "-t", session, "#{pane_pid}"]).strip())
    return psutil.Process(pid)


def cpu_seconds(process: psutil.Process) -> float:
    """The process's CPU time and its children's (tokentop's engine runs in a child process)."""
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def cpu_percent(processes: list[psutil.Process], seconds: float) -> list[float]:
    """Each process's CPU (children included) over the same window, in % of one core."""
    before, start = [cpu_seconds(p) for p in processes], time.monotonic()
    time.sleep(seconds)
    after, wall = [cpu_seconds(p) for p in processes], time.monotonic() - start
    return [100 * (a - b) / wall for a, b in zip(after, before)]


def quit_app(session: str, process: psutil.Process) -> float:
    started = time.monotonic()
    subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
    try:
        while time.monotonic() - started < 10:  # exited = a zombie until tmux reaps it, which can take seconds
            try:
                if process.status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.01)
        return time.monotonic() - started
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], stderr=subprocess.DEVNULL)


def ttft_errors_ms(records: list[dict], since: float) -> list[float]:
    return [(r["ttft_s"] - KNOWN_TTFT_S) * 1000 for r in records
            if r["sent_at"] >= since and r["ttft_s"] is not None and not r["error"]]


def describe(errors: list[float]) -> str:
    return (f"{len(errors)} requests, TTFT - known {KNOWN_TTFT_S * 1000:.0f} ms: p50 {percentile(errors, 50):.1f} ms,"
            f" p99 {percentile(errors, 99):.1f} ms, max {max(errors):.1f} ms")


def engine_alone(url: str, seconds: float, words: int) -> tuple[float, list[float]]:
    from tui.load.client import Target
    from tui.load.engine import LoadEngine, LoadSettings

    engine = LoadEngine(Target(url, "ollama", "tokentop-sim:70b-simulated"), LoadSettings(concurrency=64, words=words))
    engine.start()
    time.sleep(5)
    since, cpu0, wall0 = time.time(), time.process_time(), time.monotonic()
    time.sleep(seconds)
    cpu = 100 * (time.process_time() - cpu0) / (time.monotonic() - wall0)
    engine.stop()
    return cpu, ttft_errors_ms([r.to_json() for r in engine.records], since)


def app_run(session: str, url: str, seconds: float, extra: list[str], sim: subprocess.Popen,
            out: Path | None = None) -> tuple[float, float, float, list[dict]]:
    args = ["--url", url, *extra] + (["--out", str(out)] if out else [])
    app = run_app(session, args)
    time.sleep(5)
    since = time.time()
    app_cpu, sim_cpu = cpu_percent([app, psutil.Process(sim.pid)], seconds)
    quit_s = quit_app(session, app)
    records = [json.loads(line) for line in out.read_text().splitlines()] if out else []
    return app_cpu, sim_cpu, quit_s, [r for r in records if r["sent_at"] >= since]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each measurement (default 30)")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        raise SystemExit("needs tmux (apt-get install tmux)")
    out = Path(tempfile.mkdtemp()) / "streams.jsonl"
    print(f"machine: {psutil.cpu_count()} cores; {args.seconds:.0f} s per measurement; app in tmux at 160x48")

    with running_sim([]) as (url, sim):
        idle, _, _, _ = app_run("tokentop-idle", url, args.seconds, ["--concurrency", "0"], sim)
        print(f"1. idle monitoring: tokentop {idle:.1f} % of one core")
        busy, sim_cpu, quit_s, records = app_run("tokentop-64", url, args.seconds,
                                                 ["--concurrency", "64", "--autostart"], sim, out)
        print(f"2. 64 streams, default sim (4 slots): tokentop {busy:.1f} % of one core, sim {sim_cpu:.1f} %;"
              f" quit took {quit_s:.2f} s; {len(out.read_text().splitlines())} whole lines in --out")

    # The known-TTFT runs: 64 slots, so nobody queues; a moderate and a stress load.
    for label, speed, words in (("3. moderate (~130 tok/s)", 2, 25), ("4. stress (~650 tok/s)", 10, 100)):
        options = ["--parallel", "64", "--speed", str(speed), "--ttft", str(KNOWN_TTFT_S * speed)]
        with running_sim(options) as (url, sim):
            alone_cpu, alone_errors = engine_alone(url, args.seconds, words)
            print(f"{label}, engine alone (no UI): {alone_cpu:.1f} % of one core; {describe(alone_errors)}")
            busy, sim_cpu, _, records = app_run("tokentop-ttft", url, args.seconds,
                                                ["--concurrency", "64", "--words", str(words), "--autostart"], sim, out)
            print(f"{label}, app with UI: tokentop {busy:.1f} % of one core, sim {sim_cpu:.1f} %;"
                  f" {describe(ttft_errors_ms(records, 0))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
