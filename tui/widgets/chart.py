"""The load chart: aggregate and mean per-stream tok/s over time, and below it the stream counts
(the concurrency setting, streaming, waiting), so a change of setting lines up with its effect.

plotext keeps global state, so `plot` must run on the UI thread only (it does: the app's timer).
Its legends crash on small plots, so the legend is our own line of text.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotext as plt
from rich.text import Text
from textual.widgets import Static

from tui.load.history import LoadPoint

# (label, colour); the colours are those of build_chart's lines
TPS_SERIES = (("aggregate", "cyan"), ("per-stream", "green"))
COUNT_SERIES = (("concurrency", "yellow"), ("streaming", "green"), ("waiting", "red"))


def plot_lines(xs: Sequence[float], series: Sequence[tuple[str, Sequence[float]]], width: int, height: int) -> str:
    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("clear")
    for color, ys in series:
        plt.plot(xs, ys, color=color, marker="braille")
    plt.ylim(0, max((max(ys) for _, ys in series), default=0) or 1)
    return plt.build().rstrip("\n")


def build_chart(points: Sequence[LoadPoint], width: int, height: int) -> str:
    """Two plots, one above the other, sharing the time axis (seconds before now)."""
    t0 = points[-1].t_s
    xs = [p.t_s - t0 for p in points]
    counts_height = max(6, height // 3)
    tps = plot_lines(xs, [("cyan", [p.aggregate_tps for p in points]),
                          ("green", [p.mean_stream_tps or 0.0 for p in points])], width, height - counts_height)
    counts = plot_lines(xs, [("yellow", [p.concurrency for p in points]), ("green", [p.streaming for p in points]),
                             ("red", [p.waiting for p in points])], width, counts_height)
    return tps + "\n" + counts


def legend(series: Sequence[tuple[str, str]]) -> Text:
    text = Text()
    for name, color in series:
        text.append("━━ ", style=color)
        text.append(name + "   ")
    return text


class LoadChart(Static):
    DEFAULT_CSS = """
    LoadChart { height: 1fr; min-height: 6; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    _points: Sequence[LoadPoint] = ()

    def on_resize(self) -> None:
        self.plot(self._points)

    def plot(self, points: Sequence[LoadPoint]) -> None:
        self._points = points
        width, height = self.content_size
        head = Text("tok/s, client-counted: ", style="bold") + legend(TPS_SERIES)
        foot = Text("streams: ", style="bold") + legend(COUNT_SERIES) + Text("x: seconds ago", style="grey50")
        if len(points) < 2 or width < 30 or height < 12:
            self.update(Text("tok/s chart: ") + Text("waiting for data" if len(points) < 2 else "needs more room",
                                                   style="grey50"))
            return
        try:
            chart = Text.from_ansi(build_chart(points, width, height - 2))
        except (IndexError, ValueError, ZeroDivisionError) as exc:  # plotext on odd sizes; never fatal
            chart = Text(f"chart unavailable at this size ({type(exc).__name__})", style="grey50")
        self.update(Text("\n").join([head, chart, foot]))
