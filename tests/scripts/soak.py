"""Does the app hold its memory flat for an hour? A soak, not a test (pytest skips it).

    python tests/scripts/soak.py --streams 256 --seconds 3600 --json soak.json

The app (`python -m tui --url … --concurrency N --autostart`) runs in a real terminal (tmux, 160×48) against
tests/scripts/paced_server.py, a closed loop of N streams, each request `--tokens` tokens at `--rate` tokens/s.
Every 10 s the RSS of the app and of every process it started (its engine, its workers) is read with psutil,
and the paced server's responses so far are counted. At the end: the samples, and how far the memory after
the first `--settle` seconds strays from its mean (the target: within ±5 %).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import paced_server  # noqa: E402

ROOT = HERE.parents[1]
SESSION = "tokentop-soak"


def app_processes() -> list[psutil.Process]:
    """The app (the pane's python) and everything it started."""
    pane_pid = int(subprocess.run(["tmux", "display-message", "-p", "-t", SESSION, "#{pane_pid}"],
                                  capture_output=True, text=True, check=True).stdout)
    root = psutil.Process(pane_pid)
    return [root, *root.children(recursive=True)]


def rss_mb(procs: list[psutil.Process]) -> float:
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def responses(log: Path) -> int:
    try:
        with log.open("rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--streams", type=int, default=256)
    p.add_argument("--seconds", type=float, default=3600.0)
    p.add_argument("--tokens", type=int, default=20, help="tokens per response (default 20)")
    p.add_argument("--rate", type=float, default=5.0, help="tokens/s per stream (default 5)")
    p.add_argument("--workers", type=int, default=1, help="the app's engine processes (default 1)")
    p.add_argument("--every", type=float, default=10.0, help="seconds between samples (default 10)")
    p.add_argument("--settle", type=float, default=300.0, help="seconds left out before judging (default 300)")
    p.add_argument("--json", metavar="OUT", help="save the samples here")
    args = p.parse_args()
    if shutil.which("tmux") is None:
        print("soak: needs tmux", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="tokentop-soak-"))
    log = work / "server.jsonl"
    server, port = paced_server.start(str(log), ttft=0.1, tokens=args.tokens, rate=args.rate,
                                      lifetime=args.seconds + 120)
    app = (f"cd {ROOT} && exec {sys.executable} -m tui --url http://127.0.0.1:{port} --concurrency {args.streams}"
           f" --workers {args.workers} --autostart")
    subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
    subprocess.run(["tmux", "new-session", "-d", "-s", SESSION, "-x", "160", "-y", "48", app], check=True)
    samples = []
    started = time.monotonic()
    try:
        while time.monotonic() - started < args.seconds:
            time.sleep(args.every)
            procs = app_processes()
            samples.append({"t_s": round(time.monotonic() - started, 1), "rss_mb": round(rss_mb(procs), 1),
                            "processes": len(procs), "responses": responses(log)})
            print(json.dumps(samples[-1]), flush=True)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
        paced_server.stop(server)
    settled = [s["rss_mb"] for s in samples if s["t_s"] >= args.settle]
    if settled:
        mean = sum(settled) / len(settled)
        print(f"after {args.settle:.0f} s: RSS {min(settled):.1f}–{max(settled):.1f} MB, mean {mean:.1f} MB,"
              f" {100 * (min(settled) / mean - 1):+.1f} % / {100 * (max(settled) / mean - 1):+.1f} % of the mean;"
              f" {samples[-1]['responses']:,} responses in {samples[-1]['t_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "samples": samples}, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
