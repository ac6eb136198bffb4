"""Command line: `tokentop [app flags]`, `tokentop bench …`, `tokentop sim …`."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import signal
import sys

from tui import __version__

DEMO_MAX_TOKENS = 256
APP_KEEP_RECORDS = 10_000  # finished requests the app keeps for `e` export (each holds a time per token)


def build_parser() -> argparse.ArgumentParser:
    from tui import bench
    from tui.bench import compare
    from tui.servers import local, sim

    parser = argparse.ArgumentParser(
        prog="tokentop",
        description="Watch what load does to your LLM server: GPU, CPU/RAM and live streaming load.",
    )
    parser.add_argument("--version", action="version", version=f"tokentop {__version__}")
    add_app_arguments(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench.add_arguments(sub.add_parser("bench", help="run the seed article's benchmark headless",
                                       description=bench.__doc__))
    sim.add_arguments(sub.add_parser("sim", help="run a SIMULATED LLM server (ollama + OpenAI APIs)",
                                     description=sim.__doc__))
    compare.add_arguments(sub.add_parser("compare", help="runs saved by bench --save, side by side",
                                         description=compare.__doc__))
    local.add_arguments(sub.add_parser("local", help="run a real llama.cpp server with a small model",
                                       description=local.__doc__))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "bench":
        from tui import bench

        return bench.run(args)
    if args.command == "compare":
        from tui.bench import compare

        return compare.run(args)
    if args.command == "sim":
        from tui.servers import sim

        return sim.run(args)
    if args.command == "local":
        from tui.servers import local

        return local.run(args)
    return run_app(args)


def add_app_arguments(p: argparse.ArgumentParser) -> None:
    from tui.load.prompts import MODES, OUTPUT

    from tui.flags import add_metrics_arguments, add_server_arguments, add_workload_arguments
    from tui.load.settings import MAX_CONCURRENCY, MAX_USERS

    add_server_arguments(p)
    add_workload_arguments(p)
    p.add_argument("--concurrency", type=int,
                   help=f"concurrent streams, 0 to {MAX_CONCURRENCY} (default 1; 8 with --demo)")
    p.add_argument("--rate", type=float, metavar="R",
                   help="start in the open loop: R requests/s sent at planned times whatever the server does"
                        " (the r key switches between concurrency and rate)")
    p.add_argument("--users", type=int, metavar="N",
                   help=f"start with N users in conversations, 1 to {MAX_USERS:,} (see --turns, --think-time; the u key"
                        " switches to users and back)")
    p.add_argument("--words", type=int, default=100, help="words asked for in the story prompt (default 100)")
    p.add_argument("--mode", default=OUTPUT, choices=MODES,
                   help="output: 'tell a story in N words:'; input: title of a ~480-word text")
    p.add_argument("--hold", type=float, default=15.0, metavar="S",
                   help="how long the f key (find the capacity within --slo, default ttft_p99=2) holds each level"
                        " (default 15 s)")
    p.add_argument("--prometheus", metavar="URL", default=os.environ.get("PROMETHEUS_URL"),
                   help="show the fleet from this Prometheus instead of this machine (default $PROMETHEUS_URL): every"
                        " GPU of every host (DCGM or nvitop-exporter), every host (node_exporter), every LLM server"
                        " replica; credentials from PROMETHEUS_TOKEN(_FILE) or PROMETHEUS_USER and"
                        " PROMETHEUS_PASSWORD(_FILE)")
    add_metrics_arguments(p)
    p.add_argument("--autostart", action="store_true", help="start streaming at once")
    p.add_argument("--out", metavar="FILE.jsonl", help="write one JSON line per finished request")
    p.add_argument("--sim", action="store_true", help="run against a built-in SIMULATED server (4 slots)")
    p.add_argument("--demo", action="store_true",
                   help="start a real llama.cpp server with a small model (4 slots) and show 8 streams on it;"
                        " falls back to the SIMULATED server when llama-server is not installed")


def _die(message: str) -> int:
    print(f"tokentop: error: {message}", file=sys.stderr)
    return 2


def run_app(args: argparse.Namespace) -> int:
    from tui.flags import (UsageError, check_metrics_arguments, check_prometheus_url, check_server_arguments,
                           check_workload_arguments, read_conversations_of, shape_settings, start_metrics)
    from tui.load.discover import DiscoveryError, discover
    from tui.load.settings import LoadSettings
    from tui.probes.prometheus import PrometheusError
    from tui.load.synthetic import CalibrationError, calibrate

    concurrency = args.concurrency if args.concurrency is not None else (8 if args.demo else 1)
    try:
        check_server_arguments(args)
        check_prometheus_url(args.prometheus)
        check_metrics_arguments(args)
        slo, prompts = check_workload_arguments(args)
        shape = shape_settings(args)
        conversations = read_conversations_of(args)
        if sum(x is not None for x in (args.rate, args.users, args.trace)) > 1:
            raise UsageError("start with one of --rate, --users and --trace")
    except UsageError as exc:
        return _die(str(exc))
    if not (math.isfinite(args.hold) and args.hold > 0):
        return _die(f"--hold must be a number of seconds more than 0, not {args.hold}")
    if args.demo and (args.sim or args.url):
        return _die("--demo starts its own server: leave out --url and --sim")
    max_tokens = args.max_tokens
    if max_tokens is None and args.output_tokens is None and args.demo:
        max_tokens = DEMO_MAX_TOKENS  # the demo's tiny model rambles for a minute+; a cap keeps the queue moving
    try:
        settings = LoadSettings(concurrency=concurrency, words=args.words, mode=args.mode, max_tokens=max_tokens,
                                output_tokens=args.output_tokens, rate=args.rate, users=args.users,
                                replay=args.trace is not None, max_inflight=args.max_inflight, **shape).validated()
    except ValueError as exc:
        return _die(str(exc))
    from tui.limits import open_files_problem, raise_open_files

    raise_open_files()  # the slider may go past the shell's 1,024; past the OS's own limit, connecting fails (an error)
    start = settings.users if settings.users is not None else settings.concurrency
    if problem := open_files_problem(0 if settings.open_loop else min(start, settings.max_inflight)):
        return _die(problem)
    sim = server = app = metrics = None
    notice = None
    previous_sigterm = signal.getsignal(signal.SIGTERM)
    try:
        try:
            metrics = start_metrics(args, "tokentop")  # a port in use: one line, before any request
        except UsageError as exc:
            return _die(str(exc))
        url = args.url
        if args.demo:
            from tui.servers.local import LocalServerError, start_local_server

            try:
                server = start_local_server(parallel=4, progress=lambda line: print(line, file=sys.stderr))
                url = server.url
            except LocalServerError as exc:
                notice = f"SIMULATED server, because {exc}"
                print(f"tokentop: {notice}", file=sys.stderr)
        if args.sim or (args.demo and server is None):
            from tui.servers.simproc import SimProcess

            sim = SimProcess().start()
            url = sim.url
        target, info = discover(url, args.api, args.model)
        prompt_label = trace = None
        if args.trace is not None:
            try:
                trace, settings = app_trace(args, target, info, settings)
            except ValueError as exc:  # a TraceError: the file and its line, in one line
                return _die(str(exc))
            prompt_label = f"trace {args.trace} ({len(trace.requests)} requests at their own times)"
        elif args.input_tokens is not None:
            calibration = calibrate(target, 0, args.timeout)
            settings = dataclasses.replace(settings, input_words=calibration.words_for(args.input_tokens),
                                           shared_words=calibration.shared_words_for(args.shared_prefix or 0))
            prompt_label = f"synthetic {args.input_tokens} tokens ({settings.input_words} words, new each request"
            prompt_label += f"; the first {args.shared_prefix} tokens shared)" if args.shared_prefix else ")"
        elif prompts is not None:
            prompt_label = f"{args.prompts} ({len(prompts)} prompts in turn)"
        if args.out:
            open(args.out, "w").close()  # fail here, in one line, not in the engine's process
        app = make_app(target, info, settings, autostart=args.autostart or args.demo, out_path=args.out,
                       read_timeout=args.timeout, workers=args.workers, notice=notice, prompts=prompts,
                       prompt_label=prompt_label, slo=slo, hold_s=args.hold, fleet=fleet_probe(args.prometheus),
                       trace=trace, conversations=conversations)
        if metrics is not None:
            metrics.metrics.watch(app.engine.snapshot, target)
        signal.signal(signal.SIGTERM, lambda signum, frame: app.exit())  # quit as `q` does: files whole
        app.run()
        return app.return_code or 0
    except (DiscoveryError, CalibrationError, PrometheusError, OSError) as exc:
        return _die(str(exc))
    except KeyboardInterrupt:  # Ctrl-C while finding or starting the server
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
        if app is not None:
            app.shutdown()
        if sim is not None:
            sim.stop()
        if server is not None:
            server.stop()
        if metrics is not None:
            metrics.close()


def app_trace(args: argparse.Namespace, target, info, settings):
    """--trace FILE for the app: read, scaled and cut to the model's context; the settings that replay it."""
    from tui.bench.runfile import model_context
    from tui.load.synthetic import trace_calibration
    from tui.load.trace import load_trace

    trace = load_trace(args.trace, time_scale=args.time_scale, token_scale=args.token_scale,
                       max_requests=args.max_requests, context_tokens=model_context(target, info))
    return trace, dataclasses.replace(settings, calibration=trace_calibration(target, args.timeout))


def make_app(target, info, settings, *, autostart: bool = False, out_path: str | None = None,
             read_timeout: float = 600.0, workers: int | None = None, engine=None, read_gpu=None,
             read_host=None, read_server=None, prompts: list[str] | None = None, trace=None, conversations=None,
             **app_options):
    """The app wired to a real engine (in its own process) and the real probes; the tests hand in their own."""
    from tui.app import TokentopApp
    from tui.load.settings import MAX_CONCURRENCY
    from tui.load.pool import EnginePool, default_workers
    from tui.load.process import EngineProcess
    from tui.probes.gpu import GpuProbe
    from tui.probes.host import HostProbe
    from tui.probes.inside import InsideProbe
    from tui.probes.server import ServerProbe

    if engine is None:
        workers = workers or default_workers(MAX_CONCURRENCY)
        options = dict(out_path=out_path, read_timeout=read_timeout, keep_records=APP_KEEP_RECORDS, prompts=prompts,
                       trace=trace, conversations=conversations)
        engine = (EnginePool(target, settings, workers=workers, **options) if workers > 1
                  else EngineProcess(target, settings, **options))
    if read_host is None:
        port = local_port(target.url)
        # A remote server's process is not on this machine: do not mistake a local one for it.
        read_host = (HostProbe(server_port=port) if port else HostProbe(server_names=())).read
    if read_server is None:
        read_server = ServerProbe(info.url, info.kind, info.version, target.headers(), redact=target.redactor()).read
    app_options.setdefault("make_inside", lambda: InsideProbe(info.url, info.kind, target.headers(),
                                                              redact=target.redactor()))
    return TokentopApp(engine=engine, info=info, read_gpu=read_gpu or GpuProbe().read, read_host=read_host,
                       read_server=read_server, autostart=autostart, **app_options)


def fleet_probe(url: str | None):
    """--prometheus's fleet probe, or None; unreadable credentials raise PrometheusError (one line)."""
    if url is None:
        return None
    from tui.probes.fleet import FleetProbe

    return FleetProbe.for_url(url)


def local_port(url: str) -> int | None:
    """The server's port when it runs on this machine (so its process can be found), else None."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    local = {"localhost", "127.0.0.1", "::1", "0.0.0.0", socket.gethostname()}
    if parts.hostname in local or (parts.hostname or "").startswith("127."):
        return parts.port or (443 if parts.scheme == "https" else 80)
    return None
