"""The load chart: aggregate and mean per-stream tok/s over time, with the concurrency setting.

plotext keeps global state, so `plot` must run on the UI thread only (it does: the app's timer).
"""

from __future__ import annotations

from collections.abc import Sequence

import plotext as plt
from rich.text import Text
from textual.widgets import Static

from tui.load.history import LoadPoint


def build_chart(points: Sequence[LoadPoint], width: int, height: int) -> str:
    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("clear")
    plt.frame(False)
    if len(points) < 2:
        plt.title("tok/s over time: waiting for data")
        return plt.build()
    t0 = points[-1].t_s
    xs = [p.t_s - t0 for p in points]
    plt.plot(xs, [p.aggregate_tps for p in points], label="aggregate tok/s", color="cyan", marker="braille")
    plt.plot(xs, [p.mean_stream_tps or 0.0 for p in points], label="per-stream tok/s", color="green",
             marker="braille")
    plt.plot(xs, [p.concurrency for p in points], label="concurrency", color="yellow", marker="braille",
             yside="right")
    plt.plot(xs, [p.waiting for p in points], label="waiting", color="red", marker="braille", yside="right")
    plt.xlabel("seconds ago (client-counted tok/s)")
    return plt.build()


class LoadChart(Static):
    DEFAULT_CSS = """
    LoadChart { height: 1fr; min-height: 6; }
    """

    def plot(self, points: Sequence[LoadPoint]) -> None:
        width, height = self.content_size
        if width < 20 or height < 5:
            self.update("")
            return
        self.update(Text.from_ansi(build_chart(points, width, height)))
