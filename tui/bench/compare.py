"""`tokentop compare A.json B.json [C.json …]`: runs saved with `tokentop bench --save`, side by side.

First what differs between the runs — settings, server, model, machine — then the cells they share
with each figure and its change against the first run (better or worse by the figure's direction, in
colour on a terminal, plain in markdown and CSV), then a chart of the runs on one set of axes.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from typing import Any

from tui.bench import charts
from tui.bench.render import INTERVAL_OF
from tui.bench.runfile import RunFileError, load_run
from tui.bench.watch import load_kind, load_of
from tui.load.confidence import overlap
from tui.untrusted import one_line, visible

FORMATS = ("table", "markdown", "csv")
# (row key, header, format, True when higher is better)
FIGURES = (
    ("avg_speed_tps", "Average Speed (tok/s)", ".1f", True),
    ("decode_tps_mean", "Decode tok/s", ".1f", True),
    ("aggregate_tps", "Aggregate tok/s", ".1f", True),
    ("ttft_p50_s", "TTFT p50 (s)", ".3f", False),
    ("ttft_p99_s", "TTFT p99 (s)", ".3f", False),
    ("tpot_p50_s", "TPOT p50 (s)", ".4f", False),
    ("request_rps", "Requests/s", ".2f", True),
    ("goodput_rps", "Goodput (req/s)", ".2f", True),
    ("server_ttft_p50_s", "Server TTFT p50 (s)", ".3f", False),
    ("server_queue_p50_s", "Server queue p50 (s)", ".3f", False),
    ("server_prefill_p50_s", "Server prefill p50 (s)", ".3f", False),
    ("server_decode_p50_s", "Server decode p50 (s)", ".3f", False),
    ("prefix_cache_hit_rate", "Prefix cache hits", ".0%", True),
    ("preemptions", "Preemptions", "d", False),
    ("errors", "Errors", "d", False),
)
SAME_WITHIN = 0.02  # a change under 2 % is shown as no change: run-to-run noise is larger than that
SETTINGS = ("tokentop_version", "server", "model", "gpus", "host", "meta.options")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN.json", help="run files from tokentop bench --save (two or more)")
    p.add_argument("--format", default="table", choices=FORMATS, help="stdout format (default table)")
    p.add_argument("--plot", metavar="PATH", help="write the chart to PATH (.html: coloured HTML; else text)")


def run(args: argparse.Namespace) -> int:
    if len(args.runs) < 2:
        return _die("compare needs two run files or more")
    try:
        runs = [(path, load_run(path, [figure for figure, *_ in FIGURES])) for path in args.runs]
    except RunFileError as exc:
        return _die(str(exc))
    names = [f"run {chr(ord('A') + i)}" for i in range(len(runs))]
    colour = args.format == "table" and sys.stdout.isatty()
    out = [legend(names, args.runs, [doc for _, doc in runs])]
    out.append(differences(names, [doc for _, doc in runs], args.format))
    out.append(cells(names, [doc for _, doc in runs], args.format, colour))
    capacities = capacity_lines(names, [doc for _, doc in runs])
    if capacities:
        out.append(capacities)
    sys.stdout.write("\n".join(part for part in out if part) + "\n")
    if not (args.plot or colour):
        return 0
    chart = charts.compare_chart([(name, doc["rows"]) for name, (_, doc) in zip(names, runs)])
    if args.plot:
        try:
            charts.write_chart(chart, args.plot)
        except OSError as exc:
            print(f"tokentop compare: cannot write --plot {one_line(args.plot, 80)}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 1
    else:
        sys.stdout.write(chart + "\n")
    return 0


def legend(names: list[str], paths: list[str], docs: list[dict[str, Any]]) -> str:
    """Each run's name, file, date and command line (cut: a file may hold a command of any length)."""
    return "\n".join(f"{name}: {visible(path)} ({_shown(doc.get('date'))}): {one_line(doc.get('command', '?'), 300)}"
                      for name, path, doc in zip(names, paths, docs)) + "\n"


MAX_DEPTH = 8  # settings nested deeper are compared as one value: a file may nest them a thousand deep


def flatten(obj: Any, prefix: str = "", depth: int = 0) -> dict[str, Any]:
    if depth >= MAX_DEPTH:
        return {prefix: obj}
    if isinstance(obj, dict):
        flat: dict[str, Any] = {}
        for key, value in obj.items():
            flat |= flatten(value, f"{prefix}.{key}" if prefix else str(key), depth + 1)
        return flat
    if isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
        flat = {}
        for i, value in enumerate(obj):
            flat |= flatten(value, f"{prefix}[{i}]", depth + 1)
        return flat
    return {prefix: obj}


def _setting(doc: dict[str, Any], key: str) -> Any:
    value: Any = doc
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def differences(names: list[str], docs: list[dict[str, Any]], fmt: str) -> str:
    """What differs between the runs' settings and machines (the date and the file names always do)."""
    flats = [{k: v for key in SETTINGS for k, v in flatten(_setting(doc, key), key).items()} for doc in docs]
    keys = sorted({k for flat in flats for k in flat}, key=lambda k: (SETTINGS.index(_root(k)), k))
    differing = [k for k in keys if len({_text(flat.get(k)) for flat in flats}) > 1]
    if not differing:
        return "The runs' settings, server, model and machine are the same.\n"
    header = ["what differs", *names]
    body = [[_shown(k, 80), *(_shown(flat.get(k)) for flat in flats)] for k in differing]  # keys are the file's too
    return "What differs:\n" + _table(header, body, fmt)


def _root(key: str) -> str:
    return next((s for s in SETTINGS if key == s or key.startswith(s + ".") or key.startswith(s + "[")), SETTINGS[0])


def _shown(value: Any, limit: int = 60) -> str:
    return "-" if value is None else one_line(_text(value), limit)


def _text(value: Any) -> str:
    try:
        return repr(value) if not isinstance(value, str) else value
    except RecursionError:  # a value nested deeper than Python's repr goes
        return "(nested too deeply to show)"


def _load(row: dict[str, Any]) -> tuple[str, float]:
    return load_kind(row), load_of(row)


def cells(names: list[str], docs: list[dict[str, Any]], fmt: str, colour: bool) -> str:
    """The cells every run has, each figure for every run and its change against the first run."""
    keyed = [{(*_load(row), row["words"]): row for row in doc["rows"]} for doc in docs]
    shared = [key for key in keyed[0] if all(key in k for k in keyed[1:])]
    if not shared:
        return "The runs share no cell (load and words) to compare.\n"
    header = ["cell", "figure", *names, *(f"{n} vs A" for n in names[1:])]
    body, verdicts = [], []
    for key in sorted(shared, key=lambda k: (k[0], k[1], k[2])):
        kind, load, words = key
        unit = "req/s" if kind == "rate" else "stream" if load == 1 else "streams"
        cell = f"{load:g} {unit} × {words}"
        for figure, title, form, higher_better in FIGURES:
            values = [k[key].get(figure) for k in keyed]
            if all(v is None for v in values):
                continue
            bounds = [interval_of(k[key], figure) for k in keyed]
            changes = [change(values[0], v, higher_better, bounds[0], b) for v, b in zip(values[1:], bounds[1:])]
            body.append([cell, title, *(_format(v, form) for v in values), *(text for text, _ in changes)])
            verdicts.append([verdict for _, verdict in changes])
    return ("Cells in every run (changes against run A: + better, - worse; 'within noise' where the figures' 95 %"
            " intervals overlap; '=' a change under 2 %):\n") + _table(
        header, body, fmt, verdicts if colour else None)


def interval_of(row: dict[str, Any], figure: str) -> tuple[float, float] | None:
    """A figure's 95 % interval from a run file's row (an unbounded side as ±inf), or None when it has none or the
    file's is not two numbers."""
    if figure not in INTERVAL_OF:
        return None
    name, stat = INTERVAL_OF[figure]
    got = ((row.get("intervals") or {}).get(name) or {}) if isinstance(row.get("intervals"), dict) else {}
    pair = got.get(stat) if isinstance(got, dict) else None
    if not isinstance(pair, list) or len(pair) != 2:
        return None
    low, high = pair
    if not all(v is None or (isinstance(v, (int, float)) and math.isfinite(v)) for v in pair):
        return None
    return (-math.inf if low is None else float(low)), (math.inf if high is None else float(high))


def change(base: float | None, value: float | None, higher_better: bool,
           base_interval: tuple[float, float] | None = None,
           interval: tuple[float, float] | None = None) -> tuple[str, str]:
    """("+12.0 % better", "better") and the like; ("-", "") when either is missing. With both intervals, a change
    is better or worse only when they do not overlap, else "within noise"."""
    if base is None or value is None:
        return "-", ""
    if base_interval is not None and interval is not None and overlap(base_interval, interval):
        delta = (value - base) / abs(base) if base else 0.0
        return (f"{delta:+.1%} within noise" if math.isfinite(delta) else "within noise"), "same"
    if base == 0:
        return ("=", "same") if value == 0 else ("new", "worse" if not higher_better else "better")
    delta = (value - base) / abs(base)
    if not math.isfinite(delta):  # 1e308 against 1e-308: no change to speak of in percent
        return "-", ""
    if abs(delta) < SAME_WITHIN:  # told apart, perhaps, but by too little to matter
        return f"{delta:+.1%} =", "same"
    better = (delta > 0) == higher_better
    return f"{delta:+.1%} {'better' if better else 'worse'}", "better" if better else "worse"


def capacity_lines(names: list[str], docs: list[dict[str, Any]]) -> str:
    found = [(name, doc["answer"]) for name, doc in zip(names, docs) if isinstance(doc.get("answer"), dict)]
    if not found:
        return ""
    lines = ["Capacity:"]
    for name, answer in found:
        unit = "requests/s" if answer.get("kind") == "rate" else "streams"
        broken = "; ".join(map(str, answer.get("broken_slo") or [])) or "nothing broke it"
        lines.append(f"  {name}: {_shown(answer.get('capacity'))} {unit} (breaks at {_shown(answer.get('breaks_at'))}:"
                     f" {visible(broken)})")
    return "\n".join(lines) + "\n"


def _format(value: Any, form: str) -> str:
    if value is None:
        return "-"
    try:
        return format(value, form if abs(value) < 1e9 else ".3g")  # 1e308 as 1e+308, not 309 digits
    except (TypeError, ValueError):
        return _shown(value)


def _table(header: list[str], body: list[list[str]], fmt: str, verdicts: list[list[str]] | None = None) -> str:
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(body)
        return buf.getvalue()
    if fmt == "markdown":
        return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                          *("| " + " | ".join(row) + " |" for row in body)]) + "\n"
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    for n, row in enumerate(body):
        cells = [c.ljust(w) for c, w in zip(row, widths)]
        if verdicts is not None:
            first = len(row) - len(verdicts[n])
            for i, verdict in enumerate(verdicts[n]):
                code = {"better": "32", "worse": "31"}.get(verdict)
                if code:
                    cells[first + i] = f"\x1b[{code}m{cells[first + i]}\x1b[0m"
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def _die(message: str) -> int:
    print(f"tokentop compare: error: {message}", file=sys.stderr)
    return 2
