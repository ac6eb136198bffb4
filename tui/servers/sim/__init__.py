"""tokentop sim: a SIMULATED LLM server. No model, no GPU: it makes up word-piece tokens.

It speaks ollama's API (/api/chat, /api/generate, /api/tags, /api/ps, /api/version) and the
OpenAI / llama.cpp flavour (/v1/chat/completions, /v1/models, /health, /metrics). Requests beyond
--parallel slots wait in a first-come queue, and each stream slows as more slots are busy, after the
seed article's A100 running llama3.1:70b (25.4 tok/s alone, 22.3 at two, 16.2 at four). --fault
injects refused connections, 503s, cut or malformed or stalled streams. --tokens-per-chunk packs
several tokens a streamed chunk as vLLM does, --service-time gives every request the same slot time
(a known capacity), and OpenAI requests may ask for ignore_eos and continuous_usage_stats. Every
answer names "tokentop-sim", so it is never mistaken for a real server.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import sys

from tui.servers.sim.config import FAULT_KINDS, SimConfig, decode_rate, parse_faults
from tui.servers.sim.server import BUSY_MESSAGE, SimServer
from tui.servers.sim.thread import SimThread

__all__ = ["BUSY_MESSAGE", "DEFAULT_PORT", "FAULT_KINDS", "SimConfig", "SimServer", "SimThread", "add_arguments",
           "decode_rate", "parse_faults", "run"]

DEFAULT_PORT = 11435


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = SimConfig()
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port to listen on (default {DEFAULT_PORT}, next to ollama's 11434)")
    parser.add_argument("--parallel", type=int, default=d.parallel,
                        help=f"slots decoding at once; more requests wait in a queue (default {d.parallel})")
    parser.add_argument("--speed", type=float, default=d.speed,
                        help="time multiplier: 10 runs everything ten times faster (default 1)")
    parser.add_argument("--prefill-tps", type=float, default=d.prefill_tps,
                        help=f"simulated prompt tokens per second (default {d.prefill_tps:g})")
    parser.add_argument("--ttft", type=float, default=None, metavar="SECONDS",
                        help="fixed time from getting a slot to the first token, replacing prefill"
                             " (simulated seconds; for measuring the client's own TTFT error)")
    parser.add_argument("--service-time", type=float, default=None, metavar="SECONDS",
                        help="every request holds its slot exactly this long, its tokens evenly spaced, whatever"
                             " the load, replacing prefill, --ttft and the decode speeds (simulated seconds;"
                             " then --parallel P serves exactly P / SECONDS requests a second)")
    parser.add_argument("--tokens-per-chunk", type=int, default=d.tokens_per_chunk, metavar="K",
                        help="tokens' text per streamed chunk, as vLLM packs several; each chunk goes when its"
                             " last token is due, and token counts stay true (default 1)")
    parser.add_argument("--jitter", type=float, default=d.jitter, metavar="SIGMA",
                        help="vary each request's prefill (or --ttft) by a lognormal factor of this sigma, 0 to 3"
                             " (default 0: none)")
    parser.add_argument("--load-time", type=float, default=d.load_s,
                        help="simulated cold-start model load before the first request, in seconds (default 0)")
    parser.add_argument("--fault", default="", metavar="SPEC",
                        help=f"inject faults, KIND=PROBABILITY,... with KIND one of {', '.join(FAULT_KINDS)}"
                             " (a KIND alone means always), e.g. cut=0.1,busy=0.05")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed for fault draws and answer lengths")
    parser.add_argument("--model", default=d.model, help=f"model name to serve (default {d.model})")


def run(args: argparse.Namespace) -> int:
    try:
        config = SimConfig(parallel=args.parallel, speed=args.speed, prefill_tps=args.prefill_tps, ttft_s=args.ttft,
                           service_s=args.service_time, tokens_per_chunk=args.tokens_per_chunk,
                           load_s=args.load_time, jitter=args.jitter, faults=parse_faults(args.fault), seed=args.seed, model=args.model)
        if not 0 <= args.port <= 65535:
            raise ValueError(f"--port must be 0 to 65535, not {args.port}")
    except ValueError as exc:
        print(f"tokentop sim: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve_forever(SimServer(config, args.host, args.port)))
    except KeyboardInterrupt:
        return 0


async def _serve_forever(server: SimServer) -> int:
    try:
        await server.start()
    except OSError as exc:
        where = f"{server.host}:{server.port}"
        reason = "the port is in use (try --port)" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        print(f"tokentop sim: cannot listen on {where}: {reason}", file=sys.stderr)
        return 2
    cfg = server.config
    print(f"tokentop sim (SIMULATED server) listening on {server.url} — parallel {cfg.parallel}, speed {cfg.speed:g}",
          flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()
    return 0
