"""The bench's flags and their checks: what a run is asked to do, refused in one line when it cannot be."""

from __future__ import annotations

import argparse
import math
import os

from tui.bench.render import FORMATS
from tui.bench.until import parse_until
from tui.bench.workload import BenchRun
from tui.flags import (
    UsageError,
    add_metrics_arguments,
    add_server_arguments,
    add_workload_arguments,
    check_metrics_arguments,
    check_prometheus_url,
    check_server_arguments,
    check_workload_arguments, read_conversations_of, shape_settings,
)
from tui.bench.workload import TRACE, USERS
from tui.load.capacity import CONCURRENCY, KINDS, RATE
from tui.load.prompts import INPUT, MODES, OUTPUT, PROMPT_FILE, build_prompt
from tui.load.settings import MAX_CONCURRENCY, MAX_RATE, MAX_USERS, LoadSettings
from tui.load.synthetic import SYNTHETIC
from tui.untrusted import one_line

DEFAULT_WORDS = "25,50,100,400,800"  # the article's table, for a plain run
ONE_WORDS = 100  # the story length when a flag makes the load (or the length) the variable, not --words
CAPACITY_HOLD_S = 20.0  # how long --find-capacity holds each level when --duration is not given


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
    p.add_argument("--users", metavar="N,…",
                   help=f"comma-separated counts of users in conversations, each 1 to {MAX_USERS:,}, one cell each"
                        " (needs --duration; see --turns and --think-time): each turn resends the history")
    p.add_argument("--words", help=f"comma-separated word counts, output mode (default {DEFAULT_WORDS}; {ONE_WORDS}"
                                   " with --rate, --duration, --find-capacity or --output-tokens)")
    p.add_argument("--rounds", type=int, default=1, help="repeat each cell R times (default 1)")
    p.add_argument("--temperature", type=float, help="sampling temperature")
    p.add_argument("--seed", type=int, help="sampling seed")
    p.add_argument("--num-ctx", type=int, help="ollama context length (changing it reloads the model)")
    p.add_argument("--duration", type=float, metavar="S",
                   help="keep each cell's N streams busy for S seconds (each sends its next request as the last"
                        " ends; then nothing new is sent and the requests in flight finish). Without it a cell is"
                        " the article's: N requests at once, wait for all")
    p.add_argument("--until", metavar="STAT=PCT",
                   help="run each cell until STAT's 95 %% interval is within PCT of its value (e.g. ttft_p99=10%%),"
                        " at most --duration; STAT: ttft, tpot, itl or e2e, then _p50, _p90, _p99 or _mean")
    p.add_argument("--find-capacity", nargs="?", const=CONCURRENCY, choices=KINDS, metavar="concurrency|rate",
                   help="find the most concurrent streams (or, with 'rate', requests/s) that meet --slo: steps up"
                        f" 1, 2, 4 …, then bisects; each level held --duration seconds (default {CAPACITY_HOLD_S:g})")
    p.add_argument("--format", default="table", choices=FORMATS, help="stdout format (default table)")
    p.add_argument("--save", metavar="RUN.json", help="write a run file: the settings, server, model, machine, every"
                                                     " cell and every request (tokentop compare reads them)")
    p.add_argument("--plot", metavar="PATH", help="write the run's chart to PATH (.html: coloured HTML; else text)"
                                                  " instead of showing it under the table")
    p.add_argument("--out", metavar="FILE.jsonl", help="write one JSON line per request, as each ends")
    p.add_argument("--prometheus", metavar="URL", default=os.environ.get("PROMETHEUS_URL"),
                   help="also read the fleet from this Prometheus (default $PROMETHEUS_URL): every GPU's power"
                        " (J/token across the fleet) and each replica's queue peak per cell; credentials from"
                        " PROMETHEUS_TOKEN(_FILE) or PROMETHEUS_USER and PROMETHEUS_PASSWORD(_FILE)")
    add_metrics_arguments(p, linger=True)
    p.add_argument("--ray", metavar="ADDRESS",
                   help="run the workers as Ray actors spread over a cluster's nodes: 'auto' (the cluster this"
                        " machine is in), ray://HOST:10001 or HOST:6379; --workers in all (default one a node);"
                        " needs pip install 'tokentop[ray]'")
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


def _shape(args: argparse.Namespace) -> str:
    """The run's load: streams, a rate, users in conversations or a trace; UsageError when two are asked for."""
    given = [flag for flag, value in (("--concurrency", args.concurrency), ("--rate", args.rate),
                                      ("--users", args.users), ("--trace", args.trace)) if value is not None]
    if args.find_capacity and given:
        raise UsageError(f"--find-capacity chooses the levels itself: leave out {given[0]}")
    if len(given) > 1:
        raise UsageError(f"choose one of --concurrency, --rate, --users and --trace, not {given[0]} and {given[1]}")
    if args.find_capacity:
        return RATE if args.find_capacity == RATE else CONCURRENCY
    return {"--rate": RATE, "--users": USERS, "--trace": TRACE}.get(given[0] if given else "", CONCURRENCY)


def validate(args: argparse.Namespace) -> BenchRun:
    """What the flags ask the bench to run, or UsageError in one line. The flags are read, never changed."""
    check_server_arguments(args)
    check_prometheus_url(args.prometheus)
    check_metrics_arguments(args)
    shape = _shape(args)
    duration = args.duration
    if args.find_capacity:
        if args.slo is None:
            raise UsageError("--find-capacity needs --slo, e.g. --slo ttft_p99=2,stream_tps_p10=10")
        if args.words is not None and "," in args.words:
            raise UsageError("--find-capacity takes one --words value (the levels are the variable)")
        if duration is None:
            duration = CAPACITY_HOLD_S
    elif shape in (RATE, USERS) and duration is None:
        raise UsageError(f"--{shape} needs --duration S: how long each {'rate sends' if shape == RATE else 'cell runs'}")
    until = parse_until(args.until)
    if until is not None:
        if args.find_capacity or shape == TRACE:
            raise UsageError(f"--until does not apply to {'--find-capacity' if args.find_capacity else '--trace'}")
        if duration is None:
            raise UsageError("--until needs --duration S: the longest a cell runs if it is never that sure")
    loads: tuple = ()
    if shape == RATE and not args.find_capacity:
        loads = tuple(parse_rates(args.rate))
    elif shape == USERS:
        loads = tuple(parse_int_list(args.users, "--users", MAX_USERS))
    elif shape == CONCURRENCY and not args.find_capacity:
        loads = tuple(parse_int_list("1,2,4" if args.concurrency is None else args.concurrency, "--concurrency",
                                     MAX_CONCURRENCY))
    elif shape == TRACE:
        loads = (0,)  # one cell: the trace
        if args.warmup is not None:
            raise UsageError("--warmup does not apply to --trace: the trace says when each request goes")
    _check_trace_flags(args)
    words_defaulted = None  # the flag that made the default one word count, said in the plan
    if args.words is None:
        words_defaulted = next((flag for flag, given in (
            ("--find-capacity", args.find_capacity), ("--rate", args.rate is not None),
            ("--users", args.users is not None), ("--trace", args.trace is not None),
            ("--duration", args.duration is not None), ("--output-tokens", args.output_tokens is not None)) if given),
            None)
    given = args.words if args.words is not None else str(ONE_WORDS) if words_defaulted else DEFAULT_WORDS
    words = parse_int_list(given, "--words")
    try:  # the load's own values are checked where the app's are
        settings = LoadSettings(concurrency=0, words=max(words), mode=args.mode, max_tokens=args.max_tokens,
                                temperature=args.temperature, seed=args.seed, num_ctx=args.num_ctx,
                                output_tokens=args.output_tokens, max_inflight=args.max_inflight,
                                duration_s=duration, **shape_settings(args)).validated()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.rounds < 1:
        raise UsageError(f"--rounds must be 1 or more, not {args.rounds}")
    if not (math.isfinite(args.sim_speed) and args.sim_speed > 0):
        raise UsageError(f"--sim-speed must be a number more than 0, not {args.sim_speed}")
    slo, prompts = check_workload_arguments(args)
    if shape == TRACE:
        words = [1]  # the trace says each request's lengths (the row says how many requests, once it is read)
    elif prompts is not None:
        words = [len(prompts)]  # the file is the variable: its column says how many prompts it has
    elif args.input_tokens is not None:
        words = [args.input_tokens]  # the prompt's length is the variable
    elif args.mode == INPUT:
        words = [len(build_prompt(INPUT, 0).split())]  # the prompt's length is the variable
    return BenchRun(settings=settings, loads=loads, words=tuple(words), shape=shape, rounds=args.rounds, slo=slo,
                    prompts=prompts, capacity=args.find_capacity, words_defaulted=words_defaulted,
                    conversations=read_conversations_of(args), until=until,
                    prompt_kind=TRACE if shape == TRACE else PROMPT_FILE if prompts else SYNTHETIC if args.input_tokens
                    else args.mode)


def _check_trace_flags(args: argparse.Namespace) -> None:
    for flag, value, default in (("--time-scale", args.time_scale, 1.0), ("--token-scale", args.token_scale, 1.0),
                                 ("--max-requests", args.max_requests, None)):
        if value != default and args.trace is None:
            raise UsageError(f"{flag} needs --trace FILE")
    for flag, value in (("--time-scale", args.time_scale), ("--token-scale", args.token_scale)):
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f"{flag} must be a number more than 0, not {value}")
    if args.max_requests is not None and args.max_requests < 1:
        raise UsageError(f"--max-requests must be 1 or more, not {args.max_requests}")
