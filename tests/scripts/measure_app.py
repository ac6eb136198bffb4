"""The app's own cost in a real terminal (tmux, 160x48), beside the headless client's, against a paced server.

    python tests/scripts/measure_app.py                    # idle, then N = 16,64,128,256 streams
    python tests/scripts/measure_app.py --quick            # idle, N = 16,64; 10 s windows
    python tests/scripts/measure_app.py --streams 64 --seconds 30 --json results.json

The load is tests/scripts/paced_server.py (50 tokens at 50 tok/s, TTFT 0.1 s: 1.1 s a request), one server
for the whole run; its stamps and the client's are both time.perf_counter_ns() (CLOCK_MONOTONIC).
  idle:  the app at concurrency 0, monitoring only.
  N:     `python -m tui … --concurrency N --autostart --out FILE.jsonl`; the app keeps N streams busy.
         The window starts once the first N requests have ended (start-up, discovery and the first
         wave are not counted) and lasts --seconds; then the app is let finish that window's
         requests and `q` is pressed.
  headless: the same N through `tokentop bench` (tests/scripts/bench_streams.py, rounds of N requests).
  floor (--floor): bench_streams.py's minimal asyncio client, N streams kept busy for the window and 10 s more,
         just before each app run: the app's CPU per chunk against a floor measured minutes apart, not days.
Figures, over the window only:
  CPU: the app process and its engine process(es) (psutil children, recursive), % of one core (and the
       app's own process alone, the UI) and
       ms per 1,000 content chunks (chunks whose client stamp falls in the window);
  TTFT error: client first-chunk stamp (send_ns + chunk_offsets_ms[0]) − the server's stamp just after
       writing that token, matched by response id, p50/p99;
  requests/s: N ÷ the mean time between a stream's consecutive sends (request + the client's turnaround),
       against the ideal N / 1.1 s (the server writes the last token at 1.08 s: a client adding nothing
       scores 1.02x the ideal);
  terminal: bytes the app wrote to its terminal (tmux pipe-pane), per second;
  client-bound: the app's own warning, if any screen capture (every 5 s) shows one;
  quit: `q` to the app's exit; --out is checked to be whole JSON lines.

Not a pytest test: timings on a shared 2-core machine are not pass/fail material. The numbers go in
the README. Needs tmux.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_streams  # noqa: E402
import paced_server  # noqa: E402

ROOT = HERE.parents[1]
TTFT_S, TOKENS, RATE, SPREAD_S = 0.1, 50, 50.0, 0.0
WORK_S = TTFT_S + TOKENS / RATE  # one request's length: 1.1 s


def set_load(tokens: int, rate: float, spread_s: float) -> None:
    """--tokens, --rate, --ttft-spread: the paced server's load for the whole run."""
    global TOKENS, RATE, SPREAD_S, WORK_S
    TOKENS, RATE, SPREAD_S = tokens, rate, spread_s
    WORK_S = TTFT_S + spread_s / 2 + tokens / rate  # a request's mean length
TMUX = ["tmux", "-L", "tokentop-measure"]  # a tmux server of our own; it exits with its last session
CAPTURE_EVERY_S = 5.0
IDLE_WARMUP_S = 5.0
MIN_CHUNKS = 8000  # headless: small N gets more rounds, so its CPU (10 ms ticks) has enough to count


# --- the app in tmux ---------------------------------------------------------------------------------

def tmux(*args: str, check: bool = True) -> str:
    return subprocess.run([*TMUX, *args], check=check, capture_output=True, text=True).stdout


@dataclass
class App:
    session: str
    dir: Path
    shell: psutil.Process  # the pane's shell: the app, its engine and `timeout` are below it

    @classmethod
    def start(cls, session: str, work_dir: Path, app_args: list[str], life_s: float) -> App:
        run_dir = work_dir / session
        run_dir.mkdir()
        app = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "tui", *app_args])
        # pytest/readline may have exported COLUMNS/LINES; `timeout` ends an app this script lost track of,
        # and with it the session and the tmux server. The exit status lands in `rc`.
        command = (f"timeout --foreground {life_s:.0f} env -u COLUMNS -u LINES {app};"
                   f" echo $? > {shlex.quote(str(run_dir / 'rc'))}")
        tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "48", "-c", str(ROOT), command)
        tmux("pipe-pane", "-o", "-t", session, f"cat >> {shlex.quote(str(run_dir / 'terminal.out'))}")
        pid = int(tmux("display-message", "-p", "-t", session, "#{pane_pid}").strip())
        return cls(session, run_dir, psutil.Process(pid))

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU time of the app and every process below it (the engine runs in a child process), and of the UI
        alone: the app's own process, whose children are not its (multiprocessing's spawned engine, its tracker)."""
        total = ui = 0.0
        for p in [self.shell, *self.shell.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = p.cpu_times()
                total += times.user + times.system
                command = p.cmdline()
                python = bool(command) and os.path.basename(command[0]).startswith("python")  # not `timeout`
                if python and command[1:3] == ["-m", "tui"]:
                    ui += times.user + times.system
        return total, ui

    def terminal_bytes(self) -> int:
        path = self.dir / "terminal.out"
        return path.stat().st_size if path.exists() else 0

    def screen(self) -> str:
        return tmux("capture-pane", "-p", "-t", self.session, check=False)

    def exit_status(self) -> int | None:
        path = self.dir / "rc"
        text = path.read_text().strip() if path.exists() else ""
        return int(text) if text else None

    def quit(self, timeout: float = 15.0) -> tuple[float | None, int | None]:
        """Press q; (seconds until the app exited, its exit status), None where it did not in time."""
        started = time.monotonic()
        tmux("send-keys", "-t", self.session, "q")
        while time.monotonic() - started < timeout:
            if (rc := self.exit_status()) is not None:
                return time.monotonic() - started, rc
            time.sleep(0.01)
        return None, None

    def close(self) -> None:
        tmux("kill-session", "-t", self.session, check=False)


@dataclass(frozen=True)
class Sample:
    ns: int  # time.perf_counter_ns(): the clock of the records' and the server's stamps
    cpu_s: float  # the app's tree
    ui_cpu_s: float  # the app's own process: the UI without its engine process
    terminal_bytes: int
    machine_busy_s: float  # all cores, every process: how shared the machine was

    @classmethod
    def take(cls, app: App) -> Sample:
        t = psutil.cpu_times()
        return cls(time.perf_counter_ns(), *app.cpu_seconds(), app.terminal_bytes(),
                   t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0))


def watch(app: App, seconds: float) -> tuple[Sample, Sample, list[str]]:
    """The window: a sample at each end and a screen capture every CAPTURE_EVERY_S, the last at the end."""
    first = Sample.take(app)
    end = time.monotonic() + seconds
    screens = []
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(CAPTURE_EVERY_S, left))
        if end - time.monotonic() > 0.5:
            screens.append(app.screen())
    last = Sample.take(app)
    screens.append(app.screen())
    return first, last, screens


def window_figures(first: Sample, last: Sample, screens: list[str]) -> dict:
    wall = (last.ns - first.ns) / 1e9
    return {"window_s": wall, "cpu_s": last.cpu_s - first.cpu_s,
            "cpu_pct": 100 * (last.cpu_s - first.cpu_s) / wall,
            "ui_cpu_pct": 100 * (last.ui_cpu_s - first.ui_cpu_s) / wall,
            "terminal_bytes_per_s": (last.terminal_bytes - first.terminal_bytes) / wall,
            "machine_busy_cores": (last.machine_busy_s - first.machine_busy_s) / wall,
            "client_bound": [w for w in map(client_bound, screens) if w], "captures": len(screens),
            "summary": summary_line(screens[-1]), "screen": screens[-1]}


def client_bound(screen: str) -> str | None:
    """The app's client-bound warning (in its summary, in red) if the screen shows one."""
    return next((line_text(line[line.index("client-bound"):]) for line in screen.splitlines()
                 if "client-bound" in line), None)


def line_text(line: str) -> str:
    """A screen line without the box drawing and the runs of spaces."""
    return " ".join(line.strip(" │╭╮╰╯─").split())


def summary_line(screen: str) -> str | None:
    """The load pane's summary ("▶ running  streaming N … aggregate …"), with the line it wraps onto."""
    lines = [line_text(x) for x in screen.splitlines()]
    for i, line in enumerate(lines):
        if " aggregate " in f" {line} ":
            more = lines[i + 1] if i + 1 < len(lines) else ""
            wrapped = more and not more.startswith(("server", "#"))
            return f"{line} {more}" if wrapped else line
    return None


# --- the runs ----------------------------------------------------------------------------------------

def app_args(port: int, concurrency: int) -> list[str]:
    return ["--url", f"http://127.0.0.1:{port}", "--api", "openai", "--model", "paced",
            "--concurrency", str(concurrency), "--timeout", "60"]


def idle_run(port: int, work_dir: Path, seconds: float) -> dict:
    app = App.start("idle", work_dir, app_args(port, 0), life_s=seconds + 120)
    try:
        time.sleep(IDLE_WARMUP_S)
        first, last, screens = watch(app, seconds)
        quit_s, rc = app.quit()
    finally:
        app.close()
    return {"run": "idle", "streams": 0, **window_figures(first, last, screens), "quit_s": quit_s, "rc": rc}


def wait_for_lines(path: Path, count: int, timeout: float) -> float:
    """Seconds until `path` has `count` lines (or the timeout)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            break
        time.sleep(0.1)
    return time.monotonic() - started


def load_run(n: int, port: int, server_log: Path, work_dir: Path, seconds: float, tag: str = "") -> dict:
    out = work_dir / f"app-{n}{tag}.jsonl"
    warmup_cap = 30 + n / 10
    app = App.start(f"app-{n}{tag}", work_dir, [*app_args(port, n), "--autostart", "--out", str(out)],
                    life_s=warmup_cap + seconds + 120)
    try:
        warmup_s = wait_for_lines(out, n, warmup_cap) + 1.0
        time.sleep(1.0)
        first, last, screens = watch(app, seconds)
        time.sleep(WORK_S + 0.4)  # the window's last requests end and reach --out before the quit
        quit_s, rc = app.quit()
    finally:
        app.close()
    records, torn = read_out(out)
    server_lines = paced_server.read_log(str(server_log))
    window, streams = window_figures(first, last, screens), stream_figures(n, records, server_lines, first.ns, last.ns)
    return {"run": "app", "streams": n, "warmup_s": warmup_s, **window, **streams,
            "cpu_ms_per_1k": window["cpu_s"] * 1e6 / streams["chunks"] if streams["chunks"] else None,
            "quit_s": quit_s, "rc": rc, "out_lines": len(records), "out_torn_lines": torn}


def read_out(path: Path) -> tuple[list[dict], int]:
    """The --out records, and how many lines were not whole JSON (or lacked their newline)."""
    text = path.read_text() if path.exists() else ""
    records, torn = [], int(bool(text) and not text.endswith("\n"))
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            torn += 1
    return records, torn


def stream_figures(n: int, records: list[dict], server_lines: list[dict], t0: int, t1: int) -> dict:
    """Chunks, TTFT error and request rate of the window [t0, t1] (perf_counter_ns)."""
    by_id = {line["id"]: line for line in server_lines}
    chunks, ttft_err, errors, sends = 0, [], 0, {}
    for r in records:
        send, offsets = r["send_ns"], r["chunk_offsets_ms"] or []
        chunks += sum(1 for ms in offsets if t0 <= send + ms * 1e6 <= t1)
        if t0 <= send <= t1:
            sends.setdefault(r["stream"], []).append((send, send + (r["e2e_s"] or 0) * 1e9))
            errors += r["error_kind"] is not None
        server = by_id.get(r["response_id"])
        if offsets and t0 <= send + offsets[0] * 1e6 <= t1 and server and server["first_write_ns"]:
            ttft_err.append((send + round(offsets[0] * 1e6) - server["first_write_ns"]) / 1e6)
    cycles, turnarounds = stream_cycles(sends)
    return {"chunks": chunks, "matched": len(ttft_err), "errors": errors,
            "ttft_err_p50_ms": bench_streams.percentile(ttft_err, 50),
            "ttft_err_p99_ms": bench_streams.percentile(ttft_err, 99),
            "requests_per_s": n / (sum(cycles) / len(cycles)) if cycles else None,
            "ideal_requests_per_s": n / WORK_S,
            "turnaround_p50_ms": bench_streams.percentile(turnarounds, 50),
            "turnaround_p99_ms": bench_streams.percentile(turnarounds, 99)}


def stream_cycles(sends: dict[int, list[tuple[int, float]]]) -> tuple[list[float], list[float]]:
    """Per stream, consecutive requests: (send → next send in s, end → next send in ms).

    N ÷ the mean cycle is the request rate; counting the requests that end in the window would be
    off by up to N per window, as a closed loop's N streams tend to run in step.
    """
    cycles, turnarounds = [], []
    for spans in sends.values():
        spans.sort()
        for (send, end), (next_send, _) in zip(spans, spans[1:]):
            cycles.append((next_send - send) / 1e9)
            turnarounds.append((next_send - end) / 1e6)
    return cycles, turnarounds


def headless_run(n: int, port: int, server: psutil.Process, server_log: Path, work_dir: Path, tag: str = "") -> dict:
    """`tokentop bench` at the same N, as tests/scripts/bench_streams.py runs it."""
    rounds = max(3, math.ceil(MIN_CHUNKS / (n * TOKENS)))
    return {"run": "headless", **bench_streams.measure("tokentop", n, rounds, port, server, server_log, work_dir,
                                                       WORK_S, tag=tag)}


# --- output ------------------------------------------------------------------------------------------

fmt = bench_streams.fmt


def pair(a: float | None, b: float | None, spec: str = ".1f") -> str:
    return f"{fmt(a, spec)} / {fmt(b, spec)}"


def last_before(results: list[dict], i: int, run: str, streams: int) -> dict:
    """The run of that kind and N just before results[i] (the floor or headless run of the same repeat)."""
    return next((x for x in reversed(results[:i]) if x["run"] == run and x["streams"] == streams), {})


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def table(results: list[dict]) -> str:
    head = ["run", "tokentop CPU, % of a core (all / UI)", "CPU ms/1k chunks (app / headless / floor steady)",
            "app × floor", "TTFT err p50/p99 ms, app", "TTFT err p50/p99 ms, headless / floor",
            f"requests/s (ideal N/{WORK_S:.3g} s)", "terminal KB/s (1 KB = 1000 B)", "client-bound on screen",
            "quit s", "machine busy, cores"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, r in enumerate(results):
        if r["run"] == "idle":
            cells = ["idle (concurrency 0)", pair(r["cpu_pct"], r["ui_cpu_pct"]), "-", "-", "-", "-", "-"]
        elif r["run"] == "app":
            h, f = (last_before(results, i, run, r["streams"]) for run in ("headless", "floor"))
            floor = f.get("steady_cpu_ms_per_1k")  # its steady part, as the app's window is
            cells = [f"{r['streams']} streams", pair(r["cpu_pct"], r["ui_cpu_pct"]),
                     f"{pair(r['cpu_ms_per_1k'], h.get('cpu_ms_per_1k'))} / {fmt(floor)}",
                     ratio(r["cpu_ms_per_1k"], floor),
                     pair(r["ttft_err_p50_ms"], r["ttft_err_p99_ms"], ".2f"),
                     f"{pair(h.get('ttft_err_p50_ms'), h.get('ttft_err_p99_ms'), '.2f')} / "
                     f"{pair(f.get('ttft_err_p50_ms'), f.get('ttft_err_p99_ms'), '.2f')}",
                     f"{fmt(r['requests_per_s'])} ({fmt(r['ideal_requests_per_s'])})"]
        else:
            continue
        cells += [fmt(r["terminal_bytes_per_s"] / 1000), client_bound_cell(r),
                  fmt(r["quit_s"], ".2f"), fmt(r["machine_busy_cores"], ".2f")]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def client_bound_cell(r: dict) -> str:
    return f"{len(r['client_bound'])} of {r['captures']} captures" if r["client_bound"] else "no"


def progress(r: dict) -> str:
    if r["run"] in ("headless", "floor"):
        return (f"{r['run']} N={r['streams']}: {fmt(r.get('cpu_ms_per_1k'))} ms/1k chunks "
                f"(steady {fmt(r.get('steady_cpu_ms_per_1k'))}), TTFT err p50/p99 "
                f"{pair(r['ttft_err_p50_ms'], r['ttft_err_p99_ms'], '.2f')} ms, errors {r['errors']}, rc {r['rc']}")
    text = (f"app {r['run'] if r['run'] == 'idle' else 'N=' + str(r['streams'])}: CPU {r['cpu_pct']:.1f} % "
            f"(the UI {r['ui_cpu_pct']:.1f} %), "
            f"terminal {r['terminal_bytes_per_s'] / 1000:.1f} KB/s, quit {fmt(r['quit_s'], '.2f')} s, rc {r['rc']}, "
            f"machine busy {r['machine_busy_cores']:.2f} cores")
    if r["run"] == "app":
        text += (f"; {fmt(r['cpu_ms_per_1k'])} ms/1k chunks, {r['chunks']} chunks, "
                 f"{fmt(r['requests_per_s'])} req/s, turnaround p99 {fmt(r['turnaround_p99_ms'], '.2f')} ms, "
                 f"errors {r['errors']}, --out {r['out_lines']} lines, {r['out_torn_lines']} torn")
    warned = f"\n  {client_bound_cell(r)} warned; the first: {r['client_bound'][0]}" if r["client_bound"] else ""
    return text + f"\n  summary: {r['summary']}" + warned


# --- main --------------------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", default="16,64,128,256", help="comma-separated N (default 16,64,128,256)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured window per N (default 20)")
    p.add_argument("--idle-seconds", type=float, default=30.0, help="measured window when idle (default 30)")
    p.add_argument("--quick", action="store_true", help="N = 16,64 and 10 s windows")
    p.add_argument("--no-headless", action="store_true", help="skip the headless runs")
    p.add_argument("--floor", action="store_true", help="run the floor client at each N just before the app")
    p.add_argument("--repeat", type=int, default=1, help="run each N this many times, in turn (default 1)")
    p.add_argument("--json", metavar="OUT", help="save the raw results here")
    p.add_argument("--keep", action="store_true", help="keep the work directory (screens, records) and print it")
    p.add_argument("--tokens", type=int, default=TOKENS, help=f"tokens per response (default {TOKENS})")
    p.add_argument("--rate", type=float, default=RATE, help=f"tokens/s per stream (default {RATE:g})")
    p.add_argument("--ttft-spread", type=float, default=0.0,
                   help="the server's first tokens a further 0..S s later, evenly (default 0)")
    args = p.parse_args(argv)
    set_load(args.tokens, args.rate, args.ttft_spread)
    args.streams = [int(x) for x in args.streams.split(",") if x.strip()]
    if args.quick:
        args.streams, args.seconds, args.idle_seconds = [16, 64], 10.0, 10.0
    return args


def run_all(args: argparse.Namespace, work_dir: Path) -> list[dict]:
    server_log = work_dir / "server.jsonl"
    kinds = (("floor",) if args.floor else ()) + (() if args.no_headless else ("headless",)) + ("app",)
    plan = [("idle", 0, 0)] + [(kind, n, k) for k in range(args.repeat) for n in args.streams for kind in kinds]
    lifetime = 120 + args.idle_seconds + len(plan) * (2 * args.seconds + 200)
    proc, port = paced_server.start(str(server_log), ttft=TTFT_S, tokens=TOKENS, rate=RATE, lifetime=lifetime,
                                    ttft_spread=SPREAD_S)
    results = []
    try:
        server = psutil.Process(proc.pid)
        for kind, n, k in plan:
            digest = bench_streams.tree_digest()
            if kind == "idle":
                result = idle_run(port, work_dir, args.idle_seconds)
            elif kind == "floor":
                result = {"run": "floor", **bench_streams.measure("floor", n, 1, port, server, server_log, work_dir,
                                                                  WORK_S, duration=args.seconds + 10, tag=f"-{k}")}
            elif kind == "headless":
                result = headless_run(n, port, server, server_log, work_dir, tag=f"-{k}")
            else:
                result = load_run(n, port, server_log, work_dir, args.seconds, tag=f"-{k}")
            result["tui_digest"] = digest if digest == bench_streams.tree_digest() else "changed during the run"
            results.append(result)
            print(progress(result), file=sys.stderr, flush=True)
    finally:
        paced_server.stop(proc)
    return results


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if shutil.which("tmux") is None:
        raise SystemExit("needs tmux (apt-get install tmux)")
    work_dir = Path(tempfile.mkdtemp(prefix="measure_app-"))
    started = time.monotonic()
    print(f"machine: {psutil.cpu_count()} cores; app in tmux at 160x48; paced server {TOKENS} tokens at "
          f"{RATE:g} tok/s, TTFT {TTFT_S:g} s (+0..{SPREAD_S:g} s); windows {args.idle_seconds:g} s idle, {args.seconds:g} s per N",
          file=sys.stderr, flush=True)
    results = run_all(args, work_dir)
    print(table(results))
    apps = [r for r in results if r["run"] == "app"]
    print(f"\n{time.monotonic() - started:.0f} s in all. Headless: `tokentop bench`, rounds of N requests; app: N"
          f" streams kept busy; --out after `q`: {sum(r['out_torn_lines'] for r in apps)} torn lines in"
          f" {sum(r['out_lines'] for r in apps)}; exit status {sorted({r['rc'] for r in results if 'quit_s' in r})}.")
    bench_streams.finish(args, results, work_dir, "the measurement")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
