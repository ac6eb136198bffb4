"""What a bench run will do, said before its first cell: the cells, how long each holds, the whole run."""

from __future__ import annotations

import argparse

from tui.bench.workload import BenchRun
from tui.load.prompts import OUTPUT
from tui.load.slo import slo_text
from tui.untrusted import one_line


def _list(values: list) -> str:
    return ", ".join(f"{v:g}" for v in values)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def _variable(run: BenchRun, args: argparse.Namespace) -> str:
    """The second axis of the cells: the story's words, or what the prompts are."""
    if run.prompts:
        return f"the {len(run.prompts)} prompts of {one_line(args.prompts, 80)}"
    if args.input_tokens is not None:
        return f"synthetic {args.input_tokens}-token prompts"
    if run.settings.mode != OUTPUT:
        return "the title of a ~480-word text"
    said = f"{_list(run.words)} words"
    if run.words_defaulted:
        more = "sets another" if run.capacity else "lists more"
        said += f" (the default with {run.words_defaulted}; --words {more})"
    return said


def plan_text(run: BenchRun, args: argparse.Namespace) -> str:
    """One or two lines: what runs, how many cells, and about how long the whole run takes."""
    variable = _variable(run, args)
    rounds = f", {run.rounds} rounds each" if run.rounds > 1 else ""
    duration = run.duration_s
    if run.capacity:
        unit = "requests/s" if run.open_loop else "streams"
        return (f"plan: find the most {unit} within {slo_text(run.slo)}, {variable}: levels 1, 2, 4 … until"
                f" one breaks, then a bisection, each held {_duration(duration)}{rounds} (a capacity of 16 takes"
                f" about 9 levels: {_duration(9 * duration * run.rounds)})")
    loads = run.loads
    cells = len(loads) * len(run.words)
    what = (f"rates {_list(loads)} requests/s" if run.open_loop else f"concurrency {_list(loads)}") + f" × {variable}"
    head = f"plan: {cells} cell{'s' if cells != 1 else ''}, {what}{rounds}"
    runs = cells * run.rounds
    if duration:
        sends = "sends arrivals" if run.open_loop else "keeps its streams busy"
        return (f"{head}; each {sends} for {_duration(duration)}, then its requests in flight finish:"
                f" about {_duration(runs * duration)} in all, plus the last answers of each cell")
    requests = int(sum(loads)) * len(run.words) * run.rounds
    return (f"{head}; each sends its requests at once and waits for the last: {requests} requests in all; the"
            " time depends on the server (the progress bar counts them)")
