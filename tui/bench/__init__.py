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
import shutil
import signal
import sys
import time
from typing import TYPE_CHECKING

from tui.bench import charts, runfile
from tui.bench.cells import cell_label, run_cell, run_cells
from tui.bench.options import add_arguments, validate
from tui.bench.plan import plan_text
from tui.bench.render import make_meta, render, rows_of
from tui.bench.verdict import verdict
from tui.bench.watch import Watch, load_of
from tui.bench.workload import BenchRun
from tui.flags import UsageError, start_metrics
from tui.load.capacity import RATE, CapacitySearch, search_capacity
from tui.limits import open_files_problem, ports_note
from tui.load.contract import Engine, EngineStopped
from tui.load.discover import DiscoveryError, discover
from tui.load.engine import LoadEngine
from tui.load.gc_tuning import tune_process
from tui.load.pool import EnginePool, default_workers
from tui.load.ray_pool import RayError
from tui.load.records import RequestRecord
from tui.load.sample import Sample
from tui.load.slo import Broken, value_of
from tui.load.snapshot import PhaseStatus
from tui.load.synthetic import SYNTHETIC, CalibrationError, calibrate, trace_calibration
from tui.probes.fleet import FleetProbe
from tui.probes.gpu import GpuProbe
from tui.probes.inside import NAMES as INSIDE_KINDS
from tui.probes.inside import InsideProbe
from tui.probes.prometheus import CredentialsError
from tui.probes.server import ServerProbe
from tui.untrusted import one_line

if TYPE_CHECKING:
    from tui.load.trace import Trace
    from tui.metrics_server import ClientMetrics, MetricsServer

__all__ = ["add_arguments", "run"]
ENGINE_KEEPS = 10_000


def run(args: argparse.Namespace) -> int:
    tune_process()
    sim = engine = watch = fleet = metrics = None
    ray_workers = 0
    try:
        bench = validate(args)
        # The credentials are read and checked here, once: one that cannot be sent is one line before anything runs.
        fleet = FleetProbe.for_url(args.prometheus) if args.prometheus else None
        metrics = start_metrics(args, "tokentop bench")  # a port in use: one line, before any request
        if args.ray:
            from tui.load.ray_pool import connect

            ray_workers = connect(args.ray, args.workers)
    except (UsageError, CredentialsError, RayError) as exc:
        return _die(str(exc))
    try:
        url = args.url
        if args.sim:
            from tui.servers.simproc import SimProcess

            sim = SimProcess(speed=args.sim_speed).start()
            url = sim.url
        target, info = discover(url, args.api, args.model)
        try:
            trace = _trace(args, target, info)
        except ValueError as exc:  # a TraceError: the file and its line, in one line
            return _die(str(exc))
        if trace is not None:
            bench = bench.with_trace(trace, trace_calibration(target, args.timeout))
        if args.input_tokens is not None:
            calibration = calibrate(target, args.seed or 0, args.timeout)
        if args.input_tokens is not None:
            bench = bench.with_synthetic(calibration.words_for(args.input_tokens),
                                         calibration.shared_words_for(args.shared_prefix or 0))
            print(f"calibrated: {bench.settings.input_words} words = {args.input_tokens} prompt tokens as the server"
                  f" counts them ({calibration.overhead:.0f} for its template, {calibration.per_word:.2f} a word)",
                  file=sys.stderr)
        if problem := open_files_problem(bench.most_in_flight):
            return _die(problem)
        if note := ports_note(bench.most_in_flight):
            print(f"tokentop bench: {note}", file=sys.stderr)
        if args.out:
            open(args.out, "w").close()  # only now: bad input must not wipe an old file
        meta = make_meta(info, args, bench)
        print(plan_text(bench, args), file=sys.stderr)
        watch = Watch(ServerProbe(info.url, info.kind, info.version, target.headers(), redact=target.redactor()),
                      GpuProbe(), fleet=_first_reading(fleet),
                      inside=InsideProbe(info.url, info.kind, target.headers(), redact=target.redactor())
                      if info.kind in INSIDE_KINDS else None)
        engine = _engine(target, bench, args, trace) if not args.ray else _ray_engine(target, bench, args, trace,
                                                                                      ray_workers)
        if metrics is not None:
            metrics.metrics.watch(engine.snapshot, target)
        engine.start()
        outcome = _drive(engine, bench, watch, metrics.metrics if metrics is not None else None)
        engine.stop()
        outcome.collect(engine.new_records())  # the requests cut short by a stop, recorded as cancelled
        code = _report(args, bench, meta, outcome, watch, target, info)
        if metrics is not None and args.metrics_linger and not outcome.interrupted:
            _linger(metrics, args.metrics_linger)
        return code
    except (DiscoveryError, CalibrationError, OSError, RayError) as exc:  # RayError: its CPUs went elsewhere
        return _die(str(exc))
    except KeyboardInterrupt:  # Ctrl-C while finding the server
        return 130
    finally:
        if engine is not None:
            engine.stop()
        if watch is not None and watch.server is not None:
            watch.server.close()
        if watch is not None and watch.inside is not None:
            watch.inside.close()
        if watch is not None:
            watch.stop()
        if fleet is not None:
            fleet.client.close()
        if sim is not None:
            sim.stop()
        if metrics is not None:
            metrics.close()
        if args.ray and not isinstance(engine, LoadEngine):
            _leave_ray(engine)


def _ray_engine(target, bench: BenchRun, args: argparse.Namespace, trace: Trace | None, workers: int) -> Engine:
    """--ray: the workers as actors on the cluster's nodes; the driver writes --out."""
    from tui.load.ray_pool import RayPool

    engine = RayPool(target, bench.settings, workers=workers, out_path=args.out, read_timeout=args.timeout,
                     keep_records=ENGINE_KEEPS, prompts=bench.prompts, conversations=bench.conversations, trace=trace)
    print(f"ray: {workers} worker(s) on {len(set(engine.nodes.values()))} node(s): "
          + ", ".join(sorted(set(engine.nodes.values()))), file=sys.stderr)
    return engine


def _say_node_starts(records: list[RequestRecord]) -> None:
    """Per cell, how far apart the nodes' first sends were: each node keeps the agreed start on its own clock."""
    from tui.load.ray_pool import start_spread_ms

    cells: dict[str, list[RequestRecord]] = {}
    for record in records:
        cells.setdefault(cell_label(record), []).append(record)
    for cell, members in cells.items():
        nodes = {r.node for r in members if r.node}
        spread = start_spread_ms(members)
        apart = f"; their first sends {spread:.2f} ms apart (each node's wall clock)" if spread is not None else ""
        print(f"ray: {cell}: {len(members)} requests from {len(nodes)} node(s){apart}", file=sys.stderr)


def _leave_ray(engine: Engine | None) -> None:
    import ray

    if engine is not None:
        for note in engine.notes:
            print(f"tokentop bench: ray: {note}", file=sys.stderr)
        engine.close()
    ray.shutdown()


def _linger(metrics: MetricsServer, seconds: float) -> None:
    """--metrics-linger: /metrics stays up after the table, so the last scrape sees the whole run (Ctrl-C ends it)."""
    print(f"tokentop bench: {metrics.url} stays up {seconds:g} s more (--metrics-linger)", file=sys.stderr)
    try:
        time.sleep(seconds)
    except KeyboardInterrupt:
        pass


def _trace(args: argparse.Namespace, target, info) -> Trace | None:
    """--trace FILE, scaled, its lengths cut to the model's context; its plan said before the run."""
    if args.trace is None:
        return None
    from tui.load.trace import load_trace

    trace = load_trace(args.trace, time_scale=args.time_scale, token_scale=args.token_scale,
                       max_requests=args.max_requests, context_tokens=runfile.model_context(target, info))
    print(trace.summary(), file=sys.stderr)
    for note in trace.notes:
        print(f"tokentop bench: {note}", file=sys.stderr)
    return trace


def _engine(target, bench: BenchRun, args: argparse.Namespace, trace: Trace | None) -> Engine:
    """The app's engine: in this process with one worker, else a pool of engine processes."""
    workers = args.workers or default_workers(bench.most_in_flight)
    # The engine hands every record to this process (new_records) and keeps only the newest itself, as the app's
    # does: a worker process's memory stays flat however long the run.
    options = dict(out_path=args.out, read_timeout=args.timeout, prompts=bench.prompts,
                   conversations=bench.conversations, trace=trace, keep_records=ENGINE_KEEPS)
    if workers == 1:
        return LoadEngine(target, bench.settings, **options)
    return EnginePool(target, bench.settings, workers=workers, **options)


class Outcome:
    """What a run left: each cell's finished requests (past a cap, a sample and exact totals: tui/load/sample.py),
    how it ended, and the capacity search's answer."""

    def __init__(self, total: int | None, metrics: ClientMetrics | None = None) -> None:
        self.samples: dict[str, Sample] = {}  # by cell label
        self._metrics = metrics
        self.search: CapacitySearch | None = None
        self.interrupted = self.terminated = self.failed = False
        self._progress = _progress(total)
        self._told: set[str] = set()

    @property
    def records(self) -> list[RequestRecord]:
        """Every cell's kept requests."""
        return [r for sample in self.samples.values() for r in sample.kept]

    @property
    def finished(self) -> int:
        return sum(sample.totals.requests for sample in self.samples.values())

    def collect(self, records: list[RequestRecord]) -> None:
        start = 0
        for end in range(1, len(records) + 1):  # a batch is mostly one cell's: each run of one cell added at once
            if end == len(records) or _cell_of(records[end]) != _cell_of(records[start]):
                label = cell_label(records[start])
                if label not in self.samples:
                    self.samples[label] = Sample(seed=label)
                self.samples[label].add(records[start:end])
                start = end
        self._progress.advance(len(records))
        if self._metrics is not None:
            for record in records:
                self._metrics.observe(cell_label(record), (record,))

    def heard(self, status: PhaseStatus) -> None:
        if status.record_error and "out" not in self._told:  # e.g. a full disk: said once, the run goes on
            self._told.add("out")
            print(f"tokentop bench: --out is no longer written ({status.record_error}); the table will still print",
                  file=sys.stderr)
            self.failed = True


def _cell_of(r: RequestRecord) -> tuple:
    """What cell_label reads, cheaper to compare."""
    return r.warmup, r.trace_index is None, r.rate, r.users, r.concurrency, r.words


def _drive(engine: Engine, bench: BenchRun, watch: Watch, metrics: ClientMetrics | None) -> Outcome:
    """Every cell (or the capacity search's levels), until done, Ctrl-C or SIGTERM, or a dead worker."""
    outcome = Outcome(None if bench.duration_s else int(sum(bench.loads)) * len(bench.words) * bench.rounds,
                      metrics)

    def on_sigterm(signum: int, frame: object) -> None:  # stop as Ctrl-C does (print what finished), then 143
        outcome.terminated = True
        signal.raise_signal(signal.SIGINT)

    previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with outcome._progress:
            if bench.capacity:
                outcome.search = CapacitySearch(bench.capacity)
                asyncio.run(_search_capacity(engine, bench, watch, outcome))
            else:
                asyncio.run(run_cells(engine, bench, outcome.collect, watch, outcome.heard))
    except EngineStopped as exc:  # what finished before is still worth its table
        print(f"tokentop bench: {exc}; the table shows what finished", file=sys.stderr)
        outcome.failed = True
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
    return outcome


async def _search_capacity(engine: Engine, bench: BenchRun, watch: Watch, outcome: Outcome) -> None:
    """--find-capacity: each level a cell of one word count held for --duration (tui/load/capacity.py)."""
    words = bench.words[0]

    async def run_level(level: float) -> list[RequestRecord]:
        return await run_cell(engine, bench, (level, words), outcome.collect, watch, outcome.heard, keep=True)

    def heard(level: float, missed: list[Broken]) -> None:
        print(f"{outcome.search.unit(level)}: " + ("meets the SLO" if not missed else "; ".join(map(str, missed))),
              file=sys.stderr)

    await search_capacity(outcome.search, run_level, bench.slo, heard)


def _report(args: argparse.Namespace, bench: BenchRun, meta: dict, outcome: Outcome, watch: Watch, target,
            info) -> int:
    """The table, the chart and the run file of what finished; the exit status."""
    records, search = outcome.records, outcome.search
    if outcome.interrupted:
        kept = "" if len(records) == outcome.finished else f", a sample of {len(records)}"
        print(f"{'terminated' if outcome.terminated else 'interrupted'}: {outcome.finished} finished request(s) "
              f"kept{kept}", file=sys.stderr)
    loads = sorted(search.results) if search is not None else list(bench.loads)
    rows = rows_of(records, loads, list(bench.words), bench.slo, bench.shape, bench.trace_rate, outcome.samples)
    unique = bench.prompt_kind == SYNTHETIC and not bench.settings.shared_words  # prompts no cache should hold
    for row in rows:
        watch.add_to(row)
        row["verdict"] = verdict(row, unique)
    if watch.fleet_error:
        print(f"tokentop bench: fleet: {watch.fleet_error}", file=sys.stderr)
    answer = search.to_json() if search is not None else None
    if args.ray:
        _say_node_starts(records)
    sys.stdout.write(render(rows, meta, args.format, bench.prompt_kind, answer))
    if search is not None and args.format not in ("json", "csv"):
        sys.stdout.write(search.summary(bench.slo) + "\n")
    failed = outcome.failed
    if args.save:
        failed |= not _save(args, meta, rows, records, answer, target, info, watch)
    if rows and (args.plot or (args.format == "table" and sys.stdout.isatty())):
        failed |= not _chart(rows, search, args, bench.slo)
    sys.stdout.flush()
    if outcome.interrupted:
        return 143 if outcome.terminated else 130
    if records and all(r.error_kind for r in records):
        print(f"tokentop bench: every request failed ({outcome.finished}); see the Errors column", file=sys.stderr)
        return 1
    return 1 if failed else 0


def _chart(rows: list[dict], search: CapacitySearch | None, args: argparse.Namespace, slo: dict | None) -> bool:
    """The run's chart: on the terminal, or in --plot's file. False when the file could not be written."""
    width = min(shutil.get_terminal_size().columns, charts.WIDTH) if sys.stdout.isatty() else charts.WIDTH
    if search is not None:
        name = next(iter(slo))
        figure = {load_of(row): value_of(row, name) for row in rows}
        chart = charts.capacity_chart({level: not missed for level, missed in search.results.items()}, figure, name,
                                      slo[name], search.capacity,
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
    """A rich progress bar on stderr: `with bar: bar.advance(n)`."""

    def __init__(self, total: int | None) -> None:  # None: as many as the --duration holds
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        left = [TextColumn("left"), TimeRemainingColumn()] if total else []  # from the requests done so far
        self._progress = Progress(TextColumn("requests"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                  *left, console=Console(stderr=True), transient=True)
        self._task = self._progress.add_task("bench", total=total)

    def __enter__(self) -> _progress:
        self._progress.start()
        return self

    def advance(self, n: int) -> None:
        if n:
            self._progress.advance(self._task, n)

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()
