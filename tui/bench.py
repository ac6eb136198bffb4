"""`tokentop bench`: the seed article's benchmark, headless.

For each (concurrency, words) cell, send `concurrency` requests at once and wait for all of them;
`--rounds` repeats the cell. Results go to stdout as a table (or markdown, csv, json); a progress
bar goes to stderr; `--out` gets one JSON line per request, flushed as each request ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import math
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from tui import __version__
from tui.load.client import Target, make_client, stream_once
from tui.flags import UsageError, add_server_arguments, check_server_arguments
from tui.load.discover import DiscoveryError, ServerInfo, discover
from tui.load.engine import MAX_CONCURRENCY
from tui.load.prompts import INPUT, MODES, OUTPUT, build_prompt
from tui.load.protocols import RequestSpec
from tui.load.records import JsonlWriter, RequestRecord
from tui.load.selfcost import MIN_SPAN_S, ClientCost, CostMonitor
from tui.load.stats import cell_row, mean
from tui.probes.gpu import GpuProbe
from tui.probes.server import ServerProbe
from tui.untrusted import mask_url, one_line, visible

FORMATS = ("table", "markdown", "csv", "json")

# (row key, header, how to print it). The first five are the seed article's columns.
COLUMNS: list[tuple[str, str, str]] = [
    ("concurrency", "Number of Requests", "d"),
    ("words", "Output Word Count", "d"),
    ("avg_tokens", "Average Tokens", ".2f"),
    ("avg_time_s", "Average Time (s)", ".2f"),
    ("avg_speed_tps", "Average Speed (tokens/s)", ".1f"),
    ("ttft_p50_s", "TTFT p50 (s)", ".3f"),
    ("ttft_max_s", "TTFT max (s)", ".3f"),
    ("decode_tps_mean", "Decode tok/s (mean)", ".1f"),
    ("aggregate_tps", "Aggregate tok/s", ".1f"),
    ("server_decode_tps_mean", "Server decode tok/s", ".1f"),
    ("server_prefill_tps_mean", "Server prefill tok/s", ".1f"),
    ("queue_wait_mean_s", "Queue wait est. (s)", ".2f"),
    ("server_queue_max", "Server queue max", "d"),
    ("truncated", "Truncated", "d"),
    ("cold_starts", "Cold starts", "d"),
    ("gpu_power_w", "GPU W", ".0f"),
    ("j_per_token", "J/token", ".2f"),
    ("tps_per_watt", "tok/s/W", ".3f"),
    ("tokens_source", "Tokens from", "s"),
    ("client_cpu_pct", "Client CPU %", ".0f"),
    ("client_lag_p90_ms", "Client lag p90 (ms)", ".1f"),
    ("errors", "Errors", "d"),
]
ERRORS_AT = [key for key, _, _ in COLUMNS].index("errors")

LEGEND = (
    "Tokens from: 'server' = server-reported counts (ollama eval_count / OpenAI usage), "
    "'client' = content chunks counted by tokentop.\n"
    "Average Time, Average Speed (= Average Tokens / Average Time, the article's figure), TTFT, "
    "Decode (= (tokens-1)/(last-first token)) and Aggregate (all tokens / wall time) are timed by "
    "tokentop's clock, with the token counts 'Tokens from' names; Server decode/prefill tok/s are "
    "server-reported (ollama's prefill counts cached prompt tokens too, so it runs high when a prompt repeats).\n"
    "Queue wait est. = ollama's total - load - prompt_eval - eval durations (server-reported, ollama only); "
    "Server queue max = the most requests the server's /metrics said were waiting during the cell; "
    "Truncated = stopped at max tokens / context (done_reason length); Cold starts = waited for a model load.\n"
    "GPU W = mean power of all GPUs during the cell (NVML); J/token and tok/s/W divide it by Aggregate tok/s.\n"
    "Client CPU % = tokentop's own CPU per second of the cell (100 = one core); Client lag p90 = how late its event"
    " loop woke up: past 90 % or 5 ms the client, not the server, is the bottleneck, and a line under the table says so."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_server_arguments(p)
    p.add_argument("--mode", default=OUTPUT, choices=MODES,
                   help="output: 'tell a story in N words:'; input: title of a ~480-word text")
    p.add_argument("--concurrency", default="1,2,4",
                   help=f"comma-separated request counts, each 1 to {MAX_CONCURRENCY} (default 1,2,4)")
    p.add_argument("--words", default="25,50,100,400,800", help="comma-separated word counts, output mode")
    p.add_argument("--rounds", type=int, default=1, help="repeat each cell R times (default 1)")
    p.add_argument("--temperature", type=float, help="sampling temperature")
    p.add_argument("--seed", type=int, help="sampling seed")
    p.add_argument("--num-ctx", type=int, help="ollama context length (changing it reloads the model)")
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
    repeated = next((v for i, v in enumerate(values) if v in values[:i]), None)
    if repeated is not None:
        raise UsageError(f"{flag} lists {repeated} twice (--rounds repeats a cell)")
    return values


def validate(args: argparse.Namespace) -> tuple[list[int], list[int]]:
    check_server_arguments(args)
    concurrency = parse_int_list(args.concurrency, "--concurrency", MAX_CONCURRENCY)
    words = parse_int_list(args.words, "--words")
    if args.rounds < 1:
        raise UsageError(f"--rounds must be 1 or more, not {args.rounds}")
    if args.num_ctx is not None and args.num_ctx < 1:
        raise UsageError(f"--num-ctx must be 1 or more, not {args.num_ctx}")
    if not (math.isfinite(args.sim_speed) and args.sim_speed > 0):
        raise UsageError(f"--sim-speed must be a number more than 0, not {args.sim_speed}")
    if args.temperature is not None and not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise UsageError(f"--temperature must be a number of 0 or more, not {args.temperature}")
    if args.mode == INPUT:
        words = [len(build_prompt(INPUT, 0).split())]  # the prompt's length is the variable
    return concurrency, words


# The probes and the progress bar run in threads: let the event loop take the GIL back within 0.5 ms
# (not the default 5 ms), or a chunk that arrives meanwhile is stamped that much late.
GIL_SWITCH_S = 0.0005


def run(args: argparse.Namespace) -> int:
    sys.setswitchinterval(GIL_SWITCH_S)
    sim = None
    try:
        concurrency, words = validate(args)
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
        out = JsonlWriter(args.out) if args.out else None  # only now: bad input must not wipe an old file
        meta = make_meta(info, args, concurrency, words)
        watch = Watch(ServerProbe(info.url, info.kind, info.version, target.headers(), redact=target.redactor()),
                      GpuProbe())
        records: list[RequestRecord] = []
        interrupted = out_failed = False
        terminated = []  # SIGTERM: stop as Ctrl-C does (print what finished), then exit 143

        def on_sigterm(signum: int, frame: object) -> None:
            terminated.append(signum)
            signal.raise_signal(signal.SIGINT)

        previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)
        try:
            with _progress(sum(c * args.rounds for c in concurrency) * len(words)) as advance:
                def finished(record: RequestRecord) -> None:
                    nonlocal out, out_failed
                    records.append(record)
                    if out is not None:
                        try:
                            out.write(record)
                        except OSError as exc:  # e.g. a full disk: say so once, keep measuring
                            print(f"tokentop bench: --out is no longer written ({exc}); the table will still"
                                  " print", file=sys.stderr)
                            with contextlib.suppress(OSError):
                                out.close()
                            out, out_failed = None, True
                    advance()

                asyncio.run(run_cells(target, args, concurrency, words, finished, watch))
        except KeyboardInterrupt:
            interrupted = True
            print(f"{'terminated' if terminated else 'interrupted'}: {len(records)} finished request(s) kept",
                  file=sys.stderr)
        finally:
            signal.signal(signal.SIGTERM, previous_sigterm)
        rows = rows_of(records, concurrency, words)
        for row in rows:
            watch.add_to(row)
        sys.stdout.write(render(rows, meta, args.format, args.mode))
        sys.stdout.flush()
        if interrupted:
            return 143 if terminated else 130
        if records and all(r.error_kind for r in records):
            print(f"tokentop bench: every request failed ({len(records)}); see the Errors column", file=sys.stderr)
            return 1
        return 1 if out_failed else 0
    except (DiscoveryError, OSError) as exc:
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


@dataclass
class Watch:
    """What the server and the GPUs say while each cell runs: the server's queue peak, GPU power."""

    server: ServerProbe | None = None
    gpu: GpuProbe | None = None
    queue_max: dict[tuple[int, int], int] = field(default_factory=dict)
    power: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    client: dict[tuple[int, int], list[ClientCost]] = field(default_factory=dict)

    async def client_cost(self, cell: tuple[int, int]) -> None:
        """tokentop's own loop lag and CPU while the cell runs (one entry per round)."""
        monitor = CostMonitor(window_s=24 * 3600)
        try:
            await monitor.sample()
        finally:
            self.client.setdefault(cell, []).append(monitor.cost())

    async def cell(self, cell: tuple[int, int]) -> None:
        server, gpu = self.server, self.gpu
        while server or gpu:
            if server:
                sample = await asyncio.to_thread(server.read)
                if sample.waiting is not None:
                    self.queue_max[cell] = max(self.queue_max.get(cell, 0), sample.waiting)
                elif sample.error is None:
                    server = None  # this server reports no queue
            if gpu:
                reading = await asyncio.to_thread(gpu.read)
                watts = [g.power for g in reading.gpus if g.power is not None]
                if watts:
                    self.power.setdefault(cell, []).append(sum(watts))
                else:
                    gpu = None  # no GPU, or it reports no power
            await asyncio.sleep(0.2)

    def add_to(self, row: dict[str, Any]) -> None:
        cell = (row["concurrency"], row["words"])
        row["server_queue_max"] = self.queue_max.get(cell)
        watts = mean(self.power.get(cell, []))
        tps = row.get("aggregate_tps")
        row["gpu_power_w"] = watts
        row["j_per_token"] = watts / tps if watts and tps else None
        row["tps_per_watt"] = tps / watts if watts and tps else None
        costs = [c for c in self.client.get(cell, []) if c.span_s >= MIN_SPAN_S]  # shorter says too little
        cpus = [c.cpu for c in costs if c.cpu is not None]
        lags = [c.lag_p90_ms for c in costs if c.lag_p90_ms is not None]
        row["client_cpu_pct"] = max(cpus) * 100 if cpus else None
        row["client_lag_p90_ms"] = max(lags) if lags else None
        warnings = [c.warning for c in costs if c.warning]
        row["client_warning"] = warnings[0] if warnings else None


async def run_cells(target: Target, args: argparse.Namespace, concurrency: list[int], words: list[int],
                    finished: Callable[[RequestRecord], None], watch: Watch | None = None) -> None:
    async with make_client(args.timeout) as client:
        for n in concurrency:
            for w in words:
                spec = RequestSpec(
                    model=target.model, prompt=build_prompt(args.mode, w), max_tokens=args.max_tokens,
                    temperature=args.temperature, seed=args.seed, num_ctx=args.num_ctx,
                )
                await client.pool.warm(target.url, n)  # connects are not part of "n requests at once"
                for rnd in range(args.rounds):
                    async def one(i: int) -> None:
                        record = RequestRecord(stream=i, concurrency=n, words=w, mode=args.mode,
                                               api=target.api, model=target.model, round=rnd)
                        await stream_once(client, target, spec, record)
                        finished(record)

                    watching = [asyncio.ensure_future(watch.cell((n, w))),
                                asyncio.ensure_future(watch.client_cost((n, w)))] if watch else []
                    try:
                        await asyncio.gather(*(one(i) for i in range(n)))
                    finally:
                        for task in watching:
                            task.cancel()
                        await asyncio.gather(*watching, return_exceptions=True)


def rows_of(records: list[RequestRecord], concurrency: list[int], words: list[int]) -> list[dict[str, Any]]:
    rows = []
    for n in concurrency:
        for w in words:
            cell = [r for r in records if r.concurrency == n and r.words == w]
            if cell:
                rows.append(cell_row(n, w, cell))
    return rows


def make_meta(info: ServerInfo, args: argparse.Namespace, concurrency: list[int], words: list[int]) -> dict[str, Any]:
    return {
        "url": info.shown_url,
        "api": info.api,
        "server_kind": info.kind,
        "server_version": info.version,
        "simulated": info.simulated,
        "sim_speed": args.sim_speed if args.sim else None,
        "model": info.model,
        "model_label": info.model_label,
        "tokentop_version": __version__,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "options": {
            "mode": args.mode, "concurrency": concurrency, "words": words, "rounds": args.rounds,
            "max_tokens": args.max_tokens, "temperature": args.temperature, "seed": args.seed,
            "num_ctx": args.num_ctx, "timeout_s": args.timeout,
        },
    }


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    if fmt == "s":
        return str(value)
    return format(value, fmt)


def render(rows: list[dict[str, Any]], meta: dict[str, Any], fmt: str, mode: str = OUTPUT) -> str:
    if fmt == "json":
        return json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n"
    headers = [h for _, h, _ in COLUMNS]
    if mode == INPUT:
        headers[1] = "Input Word Count"
    body = [[_cell(row.get(key), f) for key, _, f in COLUMNS] for row in rows]
    for cells, row in zip(body, rows):
        if row.get("error_kinds"):  # "3 (cut, http)": what went wrong, not just how often
            cells[ERRORS_AT] += f" ({', '.join(row['error_kinds'])})"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        model = visible(meta["model"])  # a server's text: control characters made visible
        writer.writerow(["model"] + [key for key, _, _ in COLUMNS] + ["error_kinds", "client_warning"])
        writer.writerows([[model] + [row.get(key) for key, _, _ in COLUMNS]
                          + [";".join(row.get("error_kinds") or []), row.get("client_warning") or ""]
                          for row in rows])
        return buf.getvalue()
    title = visible(f"{meta['model_label']} on {meta['server_kind']} {meta['server_version'] or ''}".rstrip()
                    + (" (SIMULATED)" if meta["simulated"] else "") + f" at {mask_url(meta['url'])}")
    speed = meta.get("sim_speed")
    if speed and speed != 1:
        title += (f"\nThe simulated server runs {speed:g}x faster than the times it reports: server-reported"
                  f" columns are in its simulated time, client-measured ones in real time ({speed:g}x theirs).")
    if fmt == "markdown":
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return f"{title}\n\n" + "\n".join(lines) + "\n\n" + client_bound(rows) + LEGEND + "\n"
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(wd) for h, wd in zip(headers, widths))]
    lines += ["  ".join(c.rjust(wd) for c, wd in zip(r, widths)) for r in body]
    if not body:
        lines.append("(no finished requests)")
    return title + "\n" + "\n".join(lines) + "\n" + client_bound(rows) + LEGEND + "\n"


def client_bound(rows: list[dict[str, Any]]) -> str:
    """A warning line per cell where tokentop itself was the bottleneck (empty when none was)."""
    return "".join(f"WARNING {row['concurrency']} x {row['words']}: {row['client_warning']}\n"
                   for row in rows if row.get("client_warning"))


class _progress:
    """A rich progress bar on stderr; `with _progress(total) as advance: advance()`."""

    def __init__(self, total: int) -> None:
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
