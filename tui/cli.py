"""Command line: `tokentop [app flags]`, `tokentop bench …`, `tokentop sim …`."""

from __future__ import annotations

import argparse
import sys

from tui import __version__


def build_parser() -> argparse.ArgumentParser:
    from tui import bench
    from tui.servers import sim

    parser = argparse.ArgumentParser(
        prog="tokentop",
        description="Watch what load does to your LLM server: GPU, CPU/RAM and live streaming load.",
    )
    parser.add_argument("--version", action="version", version=f"tokentop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench.add_arguments(sub.add_parser("bench", help="run the seed article's benchmark headless",
                                       description=bench.__doc__))
    sim.add_arguments(sub.add_parser("sim", help="run a SIMULATED LLM server (ollama + OpenAI APIs)",
                                     description=sim.__doc__))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "bench":
        from tui import bench

        return bench.run(args)
    if args.command == "sim":
        from tui.servers import sim

        return sim.run(args)
    parser.print_help(sys.stderr)
    return 2
