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
import shutil
import signal
import sys
from collections.abc import Callable

from tui.bench import charts, runfile
from tui.bench.capacity import CONCURRENCY, KINDS, RATE, CapacitySearch, find
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
from tui.load.slo import parse_slo, value_of
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
    p.add_argument("--words", help=f"comma-separated word counts, output mode (default {DEFAULT_WORDS})")
    p.add_argument("--rounds", type=int, default=1, help="repeat each cell R times (default 1)")
    p.add_argument("--temperature", type=float, help="sampling temperature")
    p.add_argument("--seed", type=int, help="sampling seed")
    p.add_argument("--num-ctx", type=int, help="ollama context length (changing it reloads the model)")
    p.add_argument("--duration", type=float, metavar="S",
                   help="keep each cell's N streams busy for S seconds (each sends its next request as the last"
                        " ends; then nothing new is sent and the requests in flight finish). Without it a cell is"
                        " the article's: N requests at once, wait for all")
    p.add_argument("--find-capacity", nargs="?", const=CONCURRENCY, choices=KINDS, metavar="concurrency|rate",
                   help="find the most concurrent streams (or, with 'rate', requests/s) that meet --slo: steps up"
                        f" 1, 2, 4 …, then bisects; each level held --duration seconds (default {CAPACITY_HOLD_S:g})")
    p.add_argument("--format", default="table", choices=FORMATS, help="stdout format (default table)")
    p.add_argument("--save", metavar="RUN.json", help="write a run file: the settings, server, model, machine, every"
                                                     " cell and every request (tokentop compare reads them)")
    p.add_argument("--plot", metavar="PATH", help="write the run's chart to PATH (.html: coloured HTML; else text)"
                                                  " instead of showing it under the table")
    p.add_argument("--out", metavar="FILE.jsonl", help="write one JSON line per request, as each ends")
    p.add_argument("--sim", action="store_true", help="bench a built-in SIMULATED server instead of --url")
    p.add_argument("--sim-speed", type=float, default=10.0, help="time multiplier of --sim (default 10)")


DEFAULT_WORDS = "25,50,100,400,800"
CAPACITY_WORDS = 100  # --find-capacity's story length when --words is not given
CAPACITY_HOLD_S = 20.0  # how long --find-capacity holds each level when --duration is not given


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
    args.open_loop = args.rate is not None or args.find_capacity == RATE
    if args.find_capacity:
        if args.rate is not None or args.concurrency is not None:
            raise UsageError("--find-capacity chooses the levels itself: leave out --concurrency and --rate")
        if args.slo is None:
            raise UsageError("--find-capacity needs --slo, e.g. --slo ttft_p99=2,stream_tps_p10=10")
        if args.words is not None and "," in args.words:
            raise UsageError("--find-capacity takes one --words value (the levels are the variable)")
        if args.duration is None:
            args.duration = CAPACITY_HOLD_S
    elif args.rate is not None:
        if args.concurrency is not None:
            raise UsageError("choose --rate (an open loop) or --concurrency (a closed loop), not both")
        args.rate_list = parse_rates(args.rate)
        if args.duration is None:
            raise UsageError("--rate needs --duration S: how long each rate sends")
    concurrency = parse_int_list(args.concurrency or "1,2,4", "--concurrency", MAX_CONCURRENCY)
    if args.words is None:
        args.words = str(CAPACITY_WORDS) if args.find_capacity else DEFAULT_WORDS
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
    if args.find_capacity:
        return [], words  # the search picks them
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
        search = CapacitySearch(args.find_capacity) if args.find_capacity else None
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

                most = args.max_inflight if args.open_loop else max(loads or [1])
                workers = args.workers or default_workers(most)
                if search is not None:
                    said = lambda line: print(line, file=sys.stderr)  # noqa: E731
                    asyncio.run(find(search, target, args, words[0], finished, watch, workers, records, said))
                else:
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
        if search is not None:
            loads = sorted(search.results)
        rows = rows_of(records, loads, words, args.slo_limits, rate=args.open_loop)
        for row in rows:
            watch.add_to(row)
        answer = search.to_json() if search is not None else None
        sys.stdout.write(render(rows, meta, args.format, prompt_kind(args), answer))
        if search is not None and args.format not in ("json", "csv"):
            sys.stdout.write(search.summary(args.slo_limits) + "\n")
        if args.save:
            failed |= not _save(args, meta, rows, records, answer, target, info, watch)
        if rows and (args.plot or (args.format == "table" and sys.stdout.isatty())):
            failed |= not _chart(rows, search, args)
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


def _chart(rows: list[dict], search: CapacitySearch | None, args: argparse.Namespace) -> bool:
    """The run's chart: on the terminal, or in --plot's file. False when the file could not be written."""
    width = min(shutil.get_terminal_size().columns, charts.WIDTH) if sys.stdout.isatty() else charts.WIDTH
    if search is not None:
        name = next(iter(args.slo_limits))
        figure = {_load_of(row): value_of(row, name) for row in rows}
        chart = charts.capacity_chart({level: not missed for level, missed in search.results.items()}, figure, name,
                                      args.slo_limits[name], search.capacity,
                                      "requests/s" if search.kind == RATE else "concurrent streams", width)
    else:
        chart = charts.load_chart(rows, width)
    if not args.plot:
        sys.stdout.write(chart + "\n")
        return True
    try:
        charts.write_chart(chart, args.plot)
    except OSError as exc:
        print(f"tokentop bench: cannot write --plot {one_line(args.plot, 80)}: {exc.strerror or exc}", file=sys.stderr)
        return False
    return True


def _save(args: argparse.Namespace, meta: dict, rows: list[dict], records: list[RequestRecord], answer: dict | None,
          target, info, watch: Watch) -> bool:
    """--save's run file; False (said in one line) when it cannot be written."""
    sample = watch.server.read() if watch.server is not None else None
    server = {"url": info.shown_url, "api": info.api, "kind": info.kind, "version": info.version,
              "simulated": info.simulated, "slots": sample.slots if sample is not None else None}
    document = runfile.run_document(meta, rows, records, server, runfile.model_facts(target, info),
                                    runfile.machine_facts(watch.gpu.read() if watch.gpu is not None else None), answer)
    try:
        runfile.save_run(args.save, document)
    except OSError as exc:
        print(f"tokentop bench: cannot write --save {one_line(args.save, 80)}: {exc.strerror or exc}", file=sys.stderr)
        return False
    print(f"saved: {one_line(args.save, 80)} ({len(rows)} cells, {len(records)} requests)", file=sys.stderr)
    return True


def _load_of(row: dict) -> float:
    return row["rate"] if "rate" in row else row["concurrency"]


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
