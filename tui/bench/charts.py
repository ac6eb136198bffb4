"""Charts of the bench's answers (plotext): the article's story — per-stream and aggregate tok/s falling
and rising with the load — beside TTFT p50/p99; the capacity finder's levels and knee; runs compared.

Each returns the chart as text with colour codes; `write_chart` saves one as plain text or, for a
path ending in .html, as a coloured HTML page.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from itertools import cycle
from pathlib import Path
from typing import Any

import plotext as plt

from tui.bench.watch import LOAD_LABELS, load_kind, load_of
from tui.untrusted import visible

COLOURS = ("cyan", "green", "orange", "magenta", "blue", "red", "yellow")
WIDTH, HEIGHT = 120, 22


def _log_scale(loads: Sequence[float]) -> bool:
    return bool(loads) and min(loads) > 0 and max(loads) / min(loads) >= 8


MAX_DRAWN = 1e15


def _x(load: float, log: bool) -> float:
    """Where a load sits on the x axis: log2 of it when the loads span a wide range (1, 2, 4, 8 … evenly
    spaced). Ours, not plotext's xscale("log"), which a subplot keeps past clear_figure()."""
    return math.log2(load) if log else load


def _axis(loads: Sequence[float], label: str, log: bool) -> None:
    plt.xlabel(label)
    ticks = sorted(x for x in set(loads) if drawable(_x(x, log)))
    plt.xticks([_x(x, log) for x in ticks], [f"{x:g}" for x in ticks])


def drawable(value: float | None) -> bool:
    """Whether plotext can place `value` on an axis: finite and not so large that its arithmetic overflows
    (a run file's 1e308 did, inside plotext). A chart leaves out what it cannot draw."""
    return value is not None and math.isfinite(value) and abs(value) <= MAX_DRAWN


def _built() -> str:
    """The chart, and plotext's figure cleared for whoever draws next (the app's chart shares it in tests)."""
    chart = plt.build()
    plt.main()
    plt.clear_figure()
    return chart


def _start(width: int, height: int) -> None:
    plt.main()  # the whole figure: clear_figure() clears only the active subplot
    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("clear")


def load_chart(rows: Sequence[dict[str, Any]], width: int = WIDTH, height: int = HEIGHT) -> str:
    """Per-stream decode and aggregate tok/s against the load (left), TTFT p50 and p99 (right): a line per
    word count (or prompt length). Client-clock figures, as in the table."""
    _start(width, height)
    plt.subplots(1, 2)
    label = LOAD_LABELS[load_kind(rows[0])] if rows else LOAD_LABELS["concurrency"]
    by_words: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_words.setdefault(row["words"], []).append(row)
    loads = [load_of(r) for r in rows]
    log = _log_scale(loads)
    names = []
    for column, (title, solid, dashed) in enumerate((("tok/s (client clock)", "decode_tps_mean", "aggregate_tps"),
                                                     ("TTFT s (client clock)", "ttft_p50_s", "ttft_p99_s")), 1):
        plt.subplot(1, column)
        plt.title(title)
        for colour, (words, group) in zip(cycle(COLOURS), sorted(by_words.items())):
            xs = [_x(load_of(r), log) for r in group]
            _line(xs, [r.get(solid) for r in group], colour)
            _line(xs, [r.get(dashed) for r in group], colour, dashed=True)
            if column == 1:
                names.append((f"{words}", colour))
        _axis(loads, label, log)
    return _built() + "\n" + legend(names, "per word count (or prompt length): ⣿ per stream / p50, • aggregate / p99")


def capacity_chart(results: dict[float, bool], figure: dict[float, float | None], name: str, limit: float,
                   capacity: float, unit: str, width: int = WIDTH, height: int = HEIGHT) -> str:
    """Each level tried (● met, ✗ broke) against the SLO's first figure, its limit, and the knee."""
    _start(width, height)
    levels = sorted(results)
    plt.title(f"{name} by level (● met, ✗ broke), its limit, and the capacity {capacity:g}")
    log = _log_scale(levels)
    met = [(_x(x, log), figure[x]) for x in levels if results[x] and figure.get(x) is not None]
    broke = [(_x(x, log), figure[x]) for x in levels if not results[x] and figure.get(x) is not None]
    known = [(_x(x, log), figure[x]) for x in levels if figure.get(x) is not None]
    if known:
        plt.plot([x for x, _ in known], [y for _, y in known], color="gray")
    if met:
        plt.scatter([x for x, _ in met], [y for _, y in met], color="green", marker="●")
    if broke:
        plt.scatter([x for x, _ in broke], [y for _, y in broke], color="red", marker="✗")
    plt.hline(limit, "orange")
    if capacity:
        plt.vline(_x(capacity, log), "cyan")
    _axis(levels, unit, log)
    return _built()


def compare_chart(runs: Sequence[tuple[str, Sequence[dict[str, Any]]]], width: int = WIDTH,
                  height: int = HEIGHT) -> str:
    """Per-stream decode tok/s (left) and TTFT p99 (right) against the load: a colour per run."""
    _start(width, height)
    plt.subplots(1, 2)
    loads = [load_of(r) for _, rows in runs for r in rows]
    log = _log_scale(loads)
    label = next((LOAD_LABELS[load_kind(r)] for _, rows in runs for r in rows), LOAD_LABELS["concurrency"])
    for column, (key, title) in enumerate((("decode_tps_mean", "per-stream tok/s"), ("ttft_p99_s", "TTFT p99 s")), 1):
        plt.subplot(1, column)
        plt.title(title)
        for colour, (name, rows) in zip(cycle(COLOURS), runs):
            best: dict[float, dict[str, Any]] = {}
            for row in rows:  # one point a load: the first word count's
                best.setdefault(load_of(row), row)
            xs = sorted(best)
            _line([_x(x, log) for x in xs], [best[x].get(key) for x in xs], colour)
        _axis(loads, label, log)
    return _built() + "\n" + legend([(name, colour) for (name, _), colour in zip(runs, cycle(COLOURS))], "runs")


def write_chart(chart: str, path: str) -> None:
    """The chart as a file: coloured HTML for .html, else plain text. OSError when it cannot be written."""
    if path.lower().endswith((".html", ".htm")):
        from rich.console import Console
        from rich.text import Text

        console = Console(record=True, width=max(map(len, plt.uncolorize(chart).splitlines() or [""])) + 1,
                          file=open(os.devnull, "w"))
        console.print(Text.from_ansi(chart))
        Path(path).write_text(console.export_html(inline_styles=True), encoding="utf-8")
        return
    Path(path).write_text(plt.uncolorize(chart) + "\n", encoding="utf-8")


def _line(xs: Sequence[float], ys: Sequence[float | None], colour: str, dashed: bool = False) -> None:
    """A line without a plotext label: its legends crash on some plot sizes, so the legend is ours."""
    points = [(x, y) for x, y in zip(xs, ys) if drawable(x) and drawable(y)]
    if points:
        plt.plot([x for x, _ in points], [y for _, y in points], color=colour, marker="dot" if dashed else "braille")


def legend(names: Sequence[tuple[str, str]], what: str) -> str:
    """One line under a chart: each name in its line's colour."""
    return f"{what}: " + "   ".join(plt.colorize(f"━━ {visible(name)}", colour) for name, colour in names)
