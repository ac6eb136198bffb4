"""The load chart: aggregate and mean per-stream tok/s over time (plotext), and under it the stream
counts — the concurrency setting, streaming, waiting — as sparklines on the same time axis, so a
change of setting lines up with its effect.

plotext keeps global state, so `plot` must run on the UI thread only (it does: the app calls it as it
handles an engine snapshot).
A plotext build costs ~25 ms here, so there is one, and none while the curves stay flat. Its
legends crash on small plots, so the legend is our own line of text.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotext as plt
from rich.text import Text

from tui.load.history import LoadPoint
from tui.widgets.drawing import sparkline
from tui.widgets.palette import style
from tui.widgets.textbox import TextBox

# (label, colour): plotext draws its lines in its own colour names, so these are names, not palette styles
TPS_SERIES = (("aggregate", "cyan"), ("per-stream", "green"))
COUNT_SERIES = (("concurrency", "yellow"), ("streaming", "green"), ("waiting", "red"))
LABEL = 12  # width of the sparklines' labels


def plot_tps(points: Sequence[LoadPoint], width: int, height: int, span: int) -> str:
    """`span` seconds of x axis ending now, so a short history sits at the right as the sparklines do."""
    t0 = points[-1].t_s
    xs = [p.t_s - t0 for p in points]
    series = [[p.aggregate_tps for p in points], [p.mean_stream_tps or 0.0 for p in points]]
    plt.main()  # the whole figure, not a subplot another chart left active (clear_figure clears only that)
    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("clear")
    for (_, color), ys in zip(TPS_SERIES, series):
        plt.plot(xs, ys, color=color, marker="braille")
    top = max(max(ys) for ys in series) or 1
    plt.ylim(0, top)
    plt.xlim(-span, 0)
    for x, point in zip(xs, points):  # the capacity finder's verdicts and knee
        if point.mark:
            plt.vline(x, "red" if "✗" in point.mark else "orange" if "knee" in point.mark else "green")
            plt.text(point.mark, x, top, color="white")
    return plt.build().rstrip("\n")


def count_lines(points: Sequence[LoadPoint], width: int) -> Text:
    """The load set (concurrency, or sends per second in an open loop), streaming and waiting."""
    columns = width - LABEL - 5
    load = [p.concurrency if p.sent_rps is None else p.sent_rps for p in points]
    series = [load, [p.streaming for p in points], [p.waiting for p in points]]
    top = max(max(ys) for ys in series) or 1
    names = [name for name, _ in COUNT_SERIES]
    if points[-1].sent_rps is not None:
        names[0] = "sent/s"
    text = Text()
    for name, (_, color), ys in zip(names, COUNT_SERIES, series):
        text.append(f"\n{name:>{LABEL}} ")
        text.append(sparkline(ys[-columns:], columns, top=top), style=color)
        text.append(f" {ys[-1]:>3.0f}", style=f"bold {color}")
    return text


def legend(series: Sequence[tuple[str, str]]) -> Text:
    text = Text()
    for name, color in series:
        text.append("━━ ", style=color)
        text.append(name + "   ")
    return text


class LoadChart(TextBox):
    DEFAULT_CSS = """
    LoadChart { height: 1fr; min-height: 6; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    _points: Sequence[LoadPoint] = ()
    _drawn: tuple | None = None

    def on_resize(self) -> None:
        self.plot(self._points)

    def plot(self, points: Sequence[LoadPoint]) -> None:
        self._points = points
        width, height = self.content_size
        span = width - LABEL - 6  # a point a second, a second a column, as in the count sparklines
        points = list(points)[-span:]
        values = {(p.aggregate_tps, p.mean_stream_tps, p.concurrency, p.sent_rps, p.streaming, p.waiting, p.mark)
                  for p in points}
        key = (width, height, values) if len(values) == 1 else None
        if key is not None and key == self._drawn:
            return  # flat curves look the same as the window slides: skip the build
        self._drawn = key
        if len(points) < 2 or width < 30 or height < 12:
            self.show_text(Text("tok/s chart: ") + Text("waiting for data" if len(points) < 2 else "needs more room",
                                                        style=style("muted")))
            return
        head = Text("tok/s (client): ", style="bold") + legend(TPS_SERIES) + Text("x: s ago", style=style("muted"))
        try:
            chart = Text.from_ansi(plot_tps(points, width, height - 1 - len(COUNT_SERIES), span))
        except (IndexError, ValueError, ZeroDivisionError) as exc:  # plotext on odd sizes; never fatal
            chart = Text(f"chart unavailable at this size ({type(exc).__name__})", style=style("muted"))
        self.show_text(head + "\n" + chart + count_lines(points, width))
