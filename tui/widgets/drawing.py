"""Tiny text drawings the panes share: sparklines, bars, core bars, and human-readable sizes."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from rich.style import Style
from rich.text import Text

from tui.widgets.palette import style

BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Iterable[float | None], width: int, top: float | None = None) -> str:
    """The last `width` values as block characters; `top` is the full-scale value (default: the max)."""
    # NaN and ±Inf are drawn as gaps: the probes drop them, and a drawing must not die of one that slipped by
    xs = [x if x is not None and math.isfinite(x) else None for x in list(values)[-width:]] if width > 0 else []
    known = [x for x in xs if x is not None]
    scale = top if top else max(known, default=0.0)
    out = []
    for x in xs:
        if x is None:
            out.append(" ")
        elif scale <= 0:
            out.append(BLOCKS[0])
        else:
            share = min(1.0, max(0.0, x / scale))  # x / scale may still overflow to inf: min() takes it
            out.append(BLOCKS[round(share * (len(BLOCKS) - 1))])
    return "".join(out).rjust(width)


def bar(fraction: float | None, width: int) -> tuple[str, str]:
    """(filled, empty) parts of a horizontal bar `width` cells wide."""
    if width <= 0:
        return "", ""
    filled = round(max(0.0, min(1.0, fraction or 0.0)) * width)
    return "█" * filled, "░" * (width - filled)


def size(n: float | None, unit: str = "GiB") -> str:
    if n is None:
        return "N/A"
    scale = {"GiB": 2**30, "MiB": 2**20}[unit]
    return f"{n / scale:.1f}"


def human_bytes(n: float | None) -> str:
    if n is None:
        return "N/A"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def fmt(value: float | None, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def load_style(percent: float | None) -> Style:
    """The style of a load or fill percentage: low, mid from 60, high from 90; muted when unknown."""
    if percent is None:
        return style("muted")
    return style("load-high" if percent >= 90 else "load-mid" if percent >= 60 else "load-low")


def append_bar(text: Text, fraction: float | None, width: int) -> None:
    """A bar `width` cells wide, coloured by its load (muted when unknown)."""
    filled, empty = bar(fraction, width)
    text.append(filled, style=load_style(None if fraction is None else fraction * 100))
    text.append(empty, style=style("bar-empty"))


def load_block(percent: float) -> str:
    """One block character whose height is the load: a core when there are too many for a bar each."""
    return BLOCKS[min(len(BLOCKS) - 1, int(percent / 100 * len(BLOCKS)))]


CORE_CELL = 18  # "nn ████████ 100%" plus a gap


def core_bars(text: Text, percents: Sequence[float], width: int) -> None:
    """A bar per core, as many to a line as `width` holds (like `top` then `1`)."""
    columns = max(1, width // CORE_CELL)
    for i, pct in enumerate(percents):
        text.append("\n" if i % columns == 0 else "  ")
        text.append(f"{i:>2} ")
        append_bar(text, pct / 100, CORE_CELL - 10)
        text.append(f" {pct:3.0f}%")
