"""`tokentop bench`: the seed article's benchmark, headless.

For each (concurrency, words) cell, send `concurrency` requests at once and wait for all of them
(or, with --duration, keep that many busy for S seconds); with --rate, an open loop sends requests at
planned arrival times instead, one cell per rate. `--rounds` repeats a cell. Results go to stdout as a table (or markdown, csv, json); a progress
bar goes to stderr; `--out` gets one JSON line per request, flushed as each request ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys
from collections.abc import Callable

from tui.bench.cells import GIL_SWITCH_S, WorkerDied, run_cells
from tui.bench.render import FORMATS, make_meta, render, rows_of
from tui.bench.watch import Watch
from tui.flags import (
    UsageError, add_server_arguments, add_workload_arguments, check_server_arguments, check_shared_prefix, read_prompts,
)
from tui.load.discover import DiscoveryError, discover
from tui.load.pool import default_workers
from tui.load.prompts import INPUT, MODES, OUTPUT, PROMPT_FILE, build_prompt
from tui.load.records import JsonlWriter, RequestRecord
from tui.load.settings import MAX_CONCURRENCY, MAX_RATE, LoadSettings
from tui.load.stats import parse_slo
from tui.load.synthetic import SYNTHETIC, CalibrationError, calibrate
from tui.probes.gpu import GpuProbe
from tui.probes.server import ServerProbe
from tui.untrusted import one_line


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_server_arguments(p)
    add_workload_arguments(p)
    p.add_argument("--mode", default=OUTPUT, choices=MODES,
                   help="output: 'tell a story in N words:'; input: title of a ~480-word text")
    p.add_argument("--concurrency",
                   help=f"comma-separated request counts, each 1 to {MAX_CONCURRENCY} (default 1,2,4): a closed loop")
    p.add_argument("--rate", metavar="R,…",
                   help="comma-separated arrival rates in requests/s, one cell each (needs --duration): an open loop"
                        " that sends each request at its planned time whatever the server does")
    p.add_argument("--words", default="25,50,100,400,800", help="comma-separated word counts, output mode")
    p.add_argument("--rounds", type=int, default=1, help="repeat each cell R times (default 1)")
    p.add_argument("--temperature", type=float, help="sampling temperature")
    p.add_argument("--seed", type=int, help="sampling seed")
    p.add_argument("--num-ctx", type=int, help="ollama context length (changing it reloads the model)")
    p.add_argument("--duration", type=float, metavar="S",
                   help="keep each cell's N streams busy for S seconds (each sends its next request as the last"
                        " ends; then nothing new is sent and the requests in flight finish). Without it a cell is"
                        " the article's: N requests at once, wait for all")
    p.add_argument("--slo", metavar="NAME=S,…", help="service-level limits in seconds, any of ttft, tpot, e2e"
                                                    " (e.g. ttft=2,tpot=0.05): adds SLO met and goodput")
    p.add_argument("--format", default="table", choices=FORMATS, help="stdout format (default table)")
    p.add_argument("--out", metavar="FILE.jsonl", help="write one JSON line per request, as each ends")
    p.add_argument("--sim", action="store_true", help="bench a built-in SIMULATED server instead of --url")
    p.add_argument("--sim-speed", type=float, default=10.0, help="time multiplier of --sim (default 10)")


def parse_int_list(text: str, flag: str, most: int | None = None) -> list[int]:
    shown = one_line(text, 60)
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated whole numbers, not {shown!r}") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"{flag} takes whole numbers of 1 or more, not {shown!r}")
    if most is not None and any(v > most for v in values):
        raise UsageError(f"{flag} takes whole numbers of 1 to {most}, not {shown!r}")
    _no_repeats(values, flag)
    return values


def parse_rates(text: str) -> list[float]:
    shown = one_line(text, 60)
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--rate takes comma-separated requests per second, not {shown!r}") from None
    if not values or not all(math.isfinite(v) and 0 < v <= MAX_RATE for v in values):
        raise UsageError(f"--rate takes numbers of requests per second more than 0 and up to {MAX_RATE:g},"
                         f" not {shown!r}")
    _no_repeats(values, "--rate")
    return values


def _no_repeats(values: list, flag: str) -> None:
    repeated = next((v for i, v in enumerate(values) if v in values[:i]), None)
    if repeated is not None:
        raise UsageError(f"{flag} lists {repeated:g} twice (--rounds repeats a cell)")


def validate(args: argparse.Namespace) -> tuple[list, list[int]]:
    """(loads, words), or UsageError in one line. A load is a concurrency, or a rate with --rate."""
    check_server_arguments(args)
    args.rate_list = None
    if args.rate is not None:
        if args.concurrency is not None:
            raise UsageError("choose --rate (an open loop) or --concurrency (a closed loop), not both")
        args.rate_list = parse_rates(args.rate)
        if args.duration is None:
            raise UsageError("--rate needs --duration S: how long each rate sends")
    concurrency = parse_int_list(args.concurrency or "1,2,4", "--concurrency", MAX_CONCURRENCY)
    words = parse_int_list(args.words, "--words")
    try:  # the load's own values are checked where the app's are
        LoadSettings(concurrency=max(concurrency), words=max(words), mode=args.mode, max_tokens=args.max_tokens,
                     temperature=args.temperature, seed=args.seed, num_ctx=args.num_ctx,
                     output_tokens=args.output_tokens, max_inflight=args.max_inflight).validated()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        args.slo_limits = parse_slo(args.slo) if args.slo is not None else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.duration is not None and not (math.isfinite(args.duration) and args.duration > 0):
        raise UsageError(f"--duration must be a number of seconds more than 0, not {args.duration}")
    if args.rounds < 1:
        raise UsageError(f"--rounds must be 1 or more, not {args.rounds}")
    if not (math.isfinite(args.sim_speed) and args.sim_speed > 0):
        raise UsageError(f"--sim-speed must be a number more than 0, not {args.sim_speed}")
    check_shared_prefix(args)
    args.prompt_list = read_prompts(args)
    if args.prompt_list is not None:
        words = [len(args.prompt_list)]  # the file is the variable: its column says how many prompts it has
    elif args.input_tokens is not None:
        if args.input_tokens < 1:
            raise UsageError(f"--input-tokens must be 1 or more, not {args.input_tokens}")
        words = [args.input_tokens]  # the prompt's length is the variable
    elif args.mode == INPUT:
        words = [len(build_prompt(INPUT, 0).split())]  # the prompt's length is the variable
    return args.rate_list or concurrency, words


def prompt_kind(args: argparse.Namespace) -> str:
    """What the prompts were, for the table's header."""
    return PROMPT_FILE if args.prompt_list else SYNTHETIC if args.input_tokens else args.mode


def run(args: argparse.Namespace) -> int:
    sys.setswitchinterval(GIL_SWITCH_S)
    sim = None
    try:
        loads, words = validate(args)
    except UsageError as exc:
        return _die(str(exc))
    out = watch = None
    try:
        url = args.url
        if args.sim:
            from tui.servers.simproc import SimProcess

            sim = SimProcess(speed=args.sim_speed).start()
            url = sim.url
        target, info = discover(url, args.api, args.model)
        args.synthetic_words, args.synthetic_shared_words = None, 0
        if args.input_tokens is not None:
            calibration = calibrate(target, args.seed or 0, args.timeout)
            args.synthetic_words = calibration.words_for(args.input_tokens)
            if args.shared_prefix:
                args.synthetic_shared_words = calibration.shared_words_for(args.shared_prefix)
            print(f"calibrated: {args.synthetic_words} words = {args.input_tokens} prompt tokens as the server counts"
                  f" them ({calibration.overhead:.0f} for its template, {calibration.per_word:.2f} a word)",
                  file=sys.stderr)
        out = JsonlWriter(args.out) if args.out else None  # only now: bad input must not wipe an old file
        meta = make_meta(info, args, loads, words)
        watch = Watch(ServerProbe(info.url, info.kind, info.version, target.headers(), redact=target.redactor()),
                      GpuProbe())
        records: list[RequestRecord] = []
        interrupted = failed = False
        terminated = []  # SIGTERM: stop as Ctrl-C does (print what finished), then exit 143

        def on_sigterm(signum: int, frame: object) -> None:
            terminated.append(signum)
            signal.raise_signal(signal.SIGINT)

        previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)
        try:
            total = None if args.duration else sum(c * args.rounds for c in loads) * len(words)
            with _progress(total) as advance:
                def finished(record: RequestRecord) -> None:
                    nonlocal out, failed
                    records.append(record)
                    if out is not None:
                        try:
                            out.write(record)
                        except OSError as exc:  # e.g. a full disk: say so once, keep measuring
                            print(f"tokentop bench: --out is no longer written ({exc}); the table will still"
                                  " print", file=sys.stderr)
                            with contextlib.suppress(OSError):
                                out.close()
                            out, failed = None, True
                    advance()

                most = args.max_inflight if args.rate_list else max(loads)
                workers = args.workers or default_workers(most)
                asyncio.run(run_cells(target, args, loads, words, finished, watch, workers))
        except WorkerDied as exc:  # what finished before is still worth its table
            print(f"tokentop bench: {exc}; the table shows what finished", file=sys.stderr)
            failed = True
        except KeyboardInterrupt:
            interrupted = True
            print(f"{'terminated' if terminated else 'interrupted'}: {len(records)} finished request(s) kept",
                  file=sys.stderr)
        finally:
            signal.signal(signal.SIGTERM, previous_sigterm)
        rows = rows_of(records, loads, words, args.slo_limits, rate=args.rate_list is not None)
        for row in rows:
            watch.add_to(row)
        sys.stdout.write(render(rows, meta, args.format, prompt_kind(args)))
        sys.stdout.flush()
        if interrupted:
            return 143 if terminated else 130
        if records and all(r.error_kind for r in records):
            print(f"tokentop bench: every request failed ({len(records)}); see the Errors column", file=sys.stderr)
            return 1
        return 1 if failed else 0
    except (DiscoveryError, CalibrationError, OSError) as exc:
        return _die(str(exc))
    except KeyboardInterrupt:  # Ctrl-C while finding the server
        return 130
    finally:
        if out is not None:
            out.close()
        if watch is not None and watch.server is not None:
            watch.server.close()
        if sim is not None:
            sim.stop()


def _die(message: str) -> int:
    print(f"tokentop bench: error: {message}", file=sys.stderr)
    return 2


class _progress:
    """A rich progress bar on stderr; `with _progress(total) as advance: advance()`."""

    def __init__(self, total: int | None) -> None:  # None: as many as the --duration holds
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("requests"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                  console=Console(stderr=True), transient=True)
        self._task = self._progress.add_task("bench", total=total)

    def __enter__(self) -> Callable[[], None]:
        self._progress.start()
        return lambda: self._progress.advance(self._task)

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()
