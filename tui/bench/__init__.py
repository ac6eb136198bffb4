"""`tokentop bench`: the seed article's benchmark, headless.

For each (concurrency, words) cell, send `concurrency` requests at once and wait for all of them (or,
with --duration, keep that many busy for S seconds); with --rate, an open loop sends requests at
planned arrival times instead, one cell per rate; --find-capacity searches for the most load that meets
--slo. `--rounds` repeats a cell. Results go to stdout as a table (or markdown, csv, json) with a chart;
a progress bar goes to stderr; `--out` gets one JSON line per request, flushed as each request ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys
from collections.abc import Callable

from tui.bench import charts, runfile
from tui.bench.capacity import RATE, CapacitySearch, find
from tui.bench.cells import GIL_SWITCH_S, WorkerDied, run_cells
from tui.bench.options import add_arguments, prompt_kind, validate
from tui.bench.render import make_meta, render, rows_of
from tui.bench.watch import Watch, load_of
from tui.flags import UsageError
from tui.load.discover import DiscoveryError, discover
from tui.load.pool import default_workers
from tui.load.records import JsonlWriter, RequestRecord
from tui.load.slo import value_of
from tui.load.synthetic import CalibrationError, calibrate
from tui.probes.fleet import FleetProbe
from tui.probes.gpu import GpuProbe
from tui.probes.prometheus import CredentialsError
from tui.probes.server import ServerProbe
from tui.untrusted import one_line

__all__ = ["add_arguments", "run"]


def run(args: argparse.Namespace) -> int:
    sys.setswitchinterval(GIL_SWITCH_S)
    sim = None
    try:
        loads, words = validate(args)
        # The credentials are read and checked here, once: one that cannot be sent is one line before anything runs.
        fleet = FleetProbe.for_url(args.prometheus) if args.prometheus else None
    except (UsageError, CredentialsError) as exc:
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
                      GpuProbe(), fleet=_first_reading(fleet))
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
        if watch.fleet_error:
            print(f"tokentop bench: fleet: {watch.fleet_error}", file=sys.stderr)
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
        if watch is not None:
            watch.stop()
        if fleet is not None:
            fleet.client.close()
        if sim is not None:
            sim.stop()


def _chart(rows: list[dict], search: CapacitySearch | None, args: argparse.Namespace) -> bool:
    """The run's chart: on the terminal, or in --plot's file. False when the file could not be written."""
    width = min(shutil.get_terminal_size().columns, charts.WIDTH) if sys.stdout.isatty() else charts.WIDTH
    if search is not None:
        name = next(iter(args.slo_limits))
        figure = {load_of(row): value_of(row, name) for row in rows}
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


def _first_reading(probe: FleetProbe | None) -> FleetProbe | None:
    """--prometheus's fleet probe, read once: a Prometheus that cannot be read is said once, and the run goes on."""
    if probe is None:
        return None
    first = probe.read()
    if first.error:
        print(f"tokentop bench: {first.error}; the fleet columns may stay empty", file=sys.stderr)
    for note in first.notes:
        print(f"tokentop bench: fleet: {note}", file=sys.stderr)
    return probe


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
