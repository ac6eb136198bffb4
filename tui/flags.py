"""The flags the app and the bench share: which server, which model, how long to wait for it.

One definition, so `tokentop` and `tokentop bench` spell and check them the same way.
"""

from __future__ import annotations

import argparse
import math

DEFAULT_TIMEOUT_S = 600.0
MAX_WORKERS = 64


class UsageError(Exception):
    """A bad flag value; the message is one line."""


def add_server_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="server URL (default: $OLLAMA_HOST, $OPENAI_BASE_URL, else http://127.0.0.1:11434);"
                                 " a user:password@ in it is sent as basic auth and shown masked")
    p.add_argument("--api", default="auto", choices=("auto", "ollama", "openai"), help="wire protocol (default: detect)")
    p.add_argument("--model", help="model name (default: the loaded / only model)")
    p.add_argument("--max-tokens", type=int, help="cap on output tokens (ollama num_predict / OpenAI max_tokens)")
    p.add_argument("--output-tokens", type=int, metavar="M",
                   help="exactly M output tokens where the server can be made to (llama.cpp, vLLM, SGLang:"
                        " ignore_eos); ollama cannot: it gets a long story capped at M, and the record says so")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help=f"longest silence allowed between two chunks, queueing included, seconds"
                        f" (default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--workers", type=int, help="processes that send the requests (default: one per 256 streams the"
                                               " load reaches, at most a quarter of the cores)")


def add_metrics_arguments(p: argparse.ArgumentParser, linger: bool = False) -> None:
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve the client's own figures (TTFT, ITL, TPOT, e2e histograms, requests by outcome, tokens,"
                        " in flight) on http://HOST:PORT/metrics for Prometheus to scrape; 0 picks a free port")
    p.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                   help="address for --metrics-port (default 127.0.0.1; 0.0.0.0 lets other machines scrape it)")
    if linger:
        p.add_argument("--metrics-linger", type=float, default=0.0, metavar="S",
                       help="keep /metrics up S seconds after the last cell, so a scrape catches the end (default 0)")


def check_metrics_arguments(args: argparse.Namespace) -> None:
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        raise UsageError(f"--metrics-port must be a port, 0 to 65535, not {args.metrics_port}")
    linger = getattr(args, "metrics_linger", 0.0)
    if not (math.isfinite(linger) and 0 <= linger <= 86_400):
        raise UsageError(f"--metrics-linger must be 0 to 86400 seconds, not {linger}")
    if linger and args.metrics_port is None:
        raise UsageError("--metrics-linger keeps --metrics-port up: give --metrics-port too")


def start_metrics(args: argparse.Namespace, program: str):
    """The /metrics server that --metrics-port asks for, or None; raises UsageError (one line) when it cannot."""
    if args.metrics_port is None:
        return None
    import sys

    from tui.metrics_server import MetricsError, MetricsServer

    try:
        server = MetricsServer(args.metrics_host, args.metrics_port)
    except MetricsError as exc:
        raise UsageError(str(exc)) from exc
    print(f"{program}: client metrics on {server.url}", file=sys.stderr)
    return server


def check_server_arguments(args: argparse.Namespace) -> None:
    """Raise UsageError on a bad value of a shared flag (the load's own values: LoadSettings.validated)."""
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UsageError(f"--timeout must be a number of seconds more than 0, not {args.timeout}")
    if args.workers is not None and not 1 <= args.workers <= MAX_WORKERS:
        raise UsageError(f"--workers must be 1 to {MAX_WORKERS}, not {args.workers}")


def add_workload_arguments(p: argparse.ArgumentParser) -> None:
    """What the requests ask and how arrivals come: flags of the app and the bench alike."""
    from tui.load.settings import ARRIVALS, MAX_CONCURRENCY, THINKS

    p.add_argument("--input-tokens", type=int, metavar="N",
                   help="synthetic prompts of N tokens as the server counts them (calibrated once from its"
                        " own counts; new words for every request)")
    p.add_argument("--shared-prefix", type=int, metavar="N",
                   help="with --input-tokens: the first N tokens of every prompt the same (to test a prefix cache on"
                        " purpose; by default each prompt is new words throughout)")
    p.add_argument("--prompts", metavar="FILE.jsonl",
                   help='prompts from a file: JSONL {"prompt": …} lines or ShareGPT {"conversations": […]} (the first'
                        " human turn), sent in turn (the bench shuffles them by --seed)")
    p.add_argument("--slo", metavar="NAME=VALUE,…",
                   help="service-level objectives: per request ttft, tpot, e2e (seconds; adds SLO met and goodput),"
                        " or per cell ttft_p99, tpot_p50, itl_p99, e2e_max … (seconds, at most) and stream_tps_p10,"
                        " stream_tps_min … (tok/s, at least), e.g. ttft_p99=2,stream_tps_p10=10")
    p.add_argument("--arrival", default="poisson", choices=ARRIVALS,
                   help="with --rate: Poisson arrivals (random gaps, as real users come) or constant gaps")
    p.add_argument("--max-inflight", type=int, default=MAX_CONCURRENCY, metavar="N",
                   help=f"with --rate: at most N requests in flight; later arrivals wait at the client and are"
                        f" counted as held back (default {MAX_CONCURRENCY})")
    p.add_argument("--burstiness", type=float, default=1.0, metavar="B",
                   help="with --arrival gamma: the gaps' gamma shape, as vllm bench serve's (1 is Poisson, below 1"
                        " burstier, above steadier; default 1)")
    p.add_argument("--ramp", type=float, metavar="S",
                   help="raise the load (streams, rate or users) linearly from nothing over S seconds")
    p.add_argument("--warmup", type=float, metavar="S",
                   help="send for S seconds first; those requests are kept, marked warmup, and left out of every figure")
    p.add_argument("--cancel-share", type=float, default=0.0, metavar="P",
                   help="close a share P (0 to 1) of the requests on purpose, --cancel-after seconds after each was"
                        " sent (people who give up; seeded by --seed): recorded as cancelled, not as errors")
    p.add_argument("--cancel-after", type=float, default=1.0, metavar="S", help="see --cancel-share (default 1 s)")
    p.add_argument("--turns", default="1", metavar="K|A-B",
                   help="with --users: turns in each conversation, a number or a range drawn per conversation"
                        " (default 1)")
    p.add_argument("--think-time", type=float, default=0.0, metavar="S",
                   help="with --users: the mean pause between an answer and the user's next turn (default 0)")
    p.add_argument("--think", default="exponential", choices=THINKS,
                   help="with --users: think times drawn from an exponential of that mean, or all the same")
    p.add_argument("--trace", metavar="FILE",
                   help="replay a recorded workload at its own times (an open loop): Mooncake JSONL (its hash ids"
                        " become shared prompt blocks), BurstGPT CSV or Azure's LLM inference trace CSV")
    p.add_argument("--time-scale", type=float, default=1.0, metavar="X", help="with --trace: replay X times faster")
    p.add_argument("--token-scale", type=float, default=1.0, metavar="X",
                   help="with --trace: every length (and the block size) times X, for a small model")
    p.add_argument("--max-requests", type=int, metavar="N", help="with --trace: its first N requests")


def parse_turns(text: str) -> tuple[int, int]:
    """--turns 4 → (4, 4); --turns 2-8 → (2, 8); UsageError in one line."""
    from tui.untrusted import one_line

    low, _, high = text.partition("-")
    try:
        turns = (int(low), int(high or low))
    except ValueError:
        raise UsageError(f"--turns takes a number or a range like 2-8, not {one_line(text, 40)!r}") from None
    if not 1 <= turns[0] <= turns[1]:
        raise UsageError(f"--turns takes whole numbers of 1 or more, low to high, not {one_line(text, 40)!r}")
    return turns


def shape_settings(args: argparse.Namespace) -> dict:
    """The LoadSettings fields the shape flags set (LoadSettings.validated checks their values)."""
    return dict(arrival=args.arrival, burstiness=args.burstiness, ramp_s=args.ramp, warmup_s=args.warmup,
                cancel_share=args.cancel_share, cancel_after_s=args.cancel_after, turns=parse_turns(args.turns),
                think_s=args.think_time, think=args.think)


def check_prometheus_url(url: str | None) -> None:
    from urllib.parse import urlsplit

    from tui.untrusted import mask_url, one_line

    if url is None:
        return
    try:
        parts = urlsplit(url)
        ok = parts.scheme.lower() in ("http", "https") and bool(parts.hostname) and (parts.port or 0) >= 0
    except ValueError:
        ok = False
    if not ok:
        raise UsageError(f"--prometheus takes an http(s):// URL, not {one_line(mask_url(url), 80)!r}")


def check_workload_arguments(args: argparse.Namespace) -> tuple[dict[str, float] | None, list[str] | None]:
    """(--slo's limits, --prompts FILE's prompts), or UsageError in one line: the app's and the bench's checks."""
    from tui.load.slo import parse_slo

    check_shared_prefix(args)
    prompts = read_prompts(args)
    if args.input_tokens is not None and args.input_tokens < 1:
        raise UsageError(f"--input-tokens must be 1 or more, not {args.input_tokens}")
    try:
        slo = parse_slo(args.slo) if args.slo is not None else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return slo, prompts


def check_shared_prefix(args: argparse.Namespace) -> None:
    if args.shared_prefix is None:
        return
    if args.input_tokens is None:
        raise UsageError("--shared-prefix needs --input-tokens N (the prompts it is a prefix of)")
    if not 0 < args.shared_prefix < args.input_tokens:
        raise UsageError(f"--shared-prefix must be more than 0 and less than --input-tokens ({args.input_tokens}),"
                         f" not {args.shared_prefix}")


def read_prompts(args: argparse.Namespace) -> list[str] | None:
    """--prompts FILE's prompts, or UsageError in one line."""
    import sys

    from tui.load.prompt_file import MAX_PROMPTS, PromptFileError, read_prompt_file
    from tui.untrusted import one_line

    if args.prompts is None:
        return None
    if args.input_tokens is not None:
        raise UsageError("choose --prompts FILE or --input-tokens N, not both")
    try:
        found = read_prompt_file(args.prompts)
    except PromptFileError as exc:
        raise UsageError(str(exc)) from None
    if found.left_off:
        print(f"tokentop: {one_line(args.prompts, 80)} holds more than {MAX_PROMPTS:,} prompts;"
              f" the first {MAX_PROMPTS:,} are sent", file=sys.stderr)
    return found.prompts


def read_conversations_of(args: argparse.Namespace) -> list[tuple[str, ...]] | None:
    """With --users and --prompts FILE: each conversation's human turns, in order (UsageError in one line)."""
    import sys

    from tui.load.prompt_file import MAX_PROMPTS, PromptFileError, read_conversations
    from tui.untrusted import one_line

    if args.prompts is None or getattr(args, "users", None) is None:
        return None
    try:
        found = read_conversations(args.prompts)
    except PromptFileError as exc:
        raise UsageError(str(exc)) from None
    if found.left_off:
        print(f"tokentop: {one_line(args.prompts, 80)} holds more than {MAX_PROMPTS:,} conversations;"
              f" the first {MAX_PROMPTS:,} are used", file=sys.stderr)
    return found.conversations
