"""What a bench run will do, said before its first cell: the cells, how long each holds, the whole run."""

from __future__ import annotations

import argparse

from tui.bench.workload import CONCURRENCY, RATE, TRACE, USERS, BenchRun
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
    if run.shape == TRACE:
        return "plan: the trace at its own times (above), then its requests in flight finish" + _extras(run)
    loads = run.loads
    cells = len(loads) * len(run.words)
    what = {RATE: f"rates {_list(loads)} requests/s", USERS: f"{_list(loads)} users in conversations ({_talk(run)})",
            CONCURRENCY: f"concurrency {_list(loads)}"}[run.shape] + f" × {variable}"
    head = f"plan: {cells} cell{'s' if cells != 1 else ''}, {what}{rounds}"
    runs = cells * run.rounds
    if duration:
        sends = {RATE: "sends arrivals", USERS: "keeps its users talking"}.get(run.shape, "keeps its streams busy")
        warmup = run.settings.warmup_s or 0
        if run.until is not None:  # as long as it takes to be that sure, at most the duration
            return (f"{head}; each {sends} until its {run.until.name} is known within {run.until.pct:g} % (its 95 %"
                    f" interval), at most {_duration(duration)}, then its requests in flight finish: at most about"
                    f" {_duration(runs * duration + warmup)} in all" + _extras(run))
        return (f"{head}; each {sends} for {_duration(duration)}, then its requests in flight finish:"
                f" about {_duration(runs * duration + warmup)} in all, plus the last answers of each cell"
                + _extras(run))
    requests = int(sum(loads)) * len(run.words) * run.rounds
    return (f"{head}; each sends its requests at once and waits for the last: {requests} requests in all; the"
            " time depends on the server (the progress bar counts them)" + _extras(run))


def _talk(run: BenchRun) -> str:
    s = run.settings
    low, high = s.turns
    turns = f"{low} turn{'s' if low != 1 else ''}" if low == high else f"{low}-{high} turns"
    think = f"{s.think_s:g} s {'each' if s.think == 'fixed' else 'mean'} to think" if s.think_s else "no pause"
    return f"{turns}, {think}"


def _extras(run: BenchRun) -> str:
    """How the load arrives and leaves, when the flags change it."""
    s = run.settings
    said = []
    if s.warmup_s:
        said.append(f"first {_duration(s.warmup_s)} of warm-up, kept out of the figures")
    if s.ramp_s:
        said.append(f"each cell's load ramps up over {_duration(s.ramp_s)}")
    if s.arrival == "gamma":
        said.append(f"gamma arrivals, burstiness {s.burstiness:g}")
    if s.cancel_share:
        said.append(f"{s.cancel_share:.0%} of the requests closed {s.cancel_after_s:g} s after they are sent")
    return "; " + "; ".join(said) if said else ""
