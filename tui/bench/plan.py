"""What a bench run will do, said before its first cell: the cells, how long each holds, the whole run."""

from __future__ import annotations

import argparse

from tui.load.prompts import OUTPUT
from tui.load.slo import slo_text


def _list(values: list) -> str:
    return ", ".join(f"{v:g}" for v in values)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def _variable(args: argparse.Namespace, words: list[int]) -> str:
    """The second axis of the cells: the story's words, or what the prompts are."""
    if getattr(args, "prompt_list", None):
        return f"the {len(args.prompt_list)} prompts of {args.prompts}"
    if args.input_tokens is not None:
        return f"synthetic {args.input_tokens}-token prompts"
    if args.mode != OUTPUT:
        return "the title of a ~480-word text"
    said = f"{_list(words)} words"
    if getattr(args, "words_defaulted", None):
        more = "sets another" if args.find_capacity else "lists more"
        said += f" (the default with {args.words_defaulted}; --words {more})"
    return said


def plan_text(args: argparse.Namespace, loads: list, words: list[int]) -> str:
    """One or two lines: what runs, how many cells, and about how long the whole run takes."""
    variable = _variable(args, words)
    rounds = f", {args.rounds} rounds each" if args.rounds > 1 else ""
    if args.find_capacity:
        unit = "requests/s" if args.find_capacity == "rate" else "streams"
        return (f"plan: find the most {unit} within {slo_text(args.slo_limits)}, {variable}: levels 1, 2, 4 … until"
                f" one breaks, then a bisection, each held {_duration(args.duration)}{rounds} (a capacity of 16 takes"
                f" about 9 levels: {_duration(9 * args.duration * args.rounds)})")
    cells = len(loads) * len(words)
    what = (f"rates {_list(loads)} requests/s" if args.open_loop else f"concurrency {_list(loads)}") + f" × {variable}"
    head = f"plan: {cells} cell{'s' if cells != 1 else ''}, {what}{rounds}"
    runs = cells * args.rounds
    if args.duration:
        sends = "sends arrivals" if args.open_loop else "keeps its streams busy"
        return (f"{head}; each {sends} for {_duration(args.duration)}, then its requests in flight finish:"
                f" about {_duration(runs * args.duration)} in all, plus the last answers of each cell")
    requests = sum(loads) * len(words) * args.rounds
    return (f"{head}; each sends its requests at once and waits for the last: {requests} requests in all; the"
            " time depends on the server (the progress bar counts them)")
