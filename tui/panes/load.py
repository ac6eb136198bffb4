"""The load pane: the sliders that steer the engine, a row per stream, the summary and the chart.

It renders engine `Snapshot`s and history points it is handed; the app owns the engine.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from tui.load.engine import WAITING, Snapshot
from tui.load.history import LoadPoint
from tui.load.prompts import INPUT, WORD_STOPS
from tui.widgets.chart import LoadChart
from tui.widgets.history import fmt
from tui.widgets.slider import Slider
from tui.widgets.streams import HEADER, StreamTable
from tui.widgets.textbox import TextBox

MAX_CONCURRENCY = 64
MODE_NAMES = {"output": "story", "input": "title"}
# A stream counts as queued, not just in prefill, once it has waited this long with others streaming.
QUEUED_AFTER_S = 0.3


def queued(snap: Snapshot) -> int:
    if not snap.streaming:
        return 0
    return sum(1 for v in snap.streams if v.state == WAITING and v.waited_s >= QUEUED_AFTER_S)


def summary_text(snap: Snapshot) -> Text:
    text = Text()
    text.append("▶ running" if snap.running else "⏸ paused (space starts)", style="bold green" if snap.running
                else "bold yellow")
    text.append(f"  streaming {snap.streaming}", style="bold green")
    text.append(f"  waiting {snap.waiting}", style="bold yellow" if snap.waiting else "")
    text.append(f"  aggregate {snap.aggregate_tps:.1f} tok/s")
    text.append(f"  per-stream {fmt(snap.mean_stream_tps, '.1f')} tok/s")
    text.append(f"  TTFT p50 {fmt(snap.ttft_p50_s, '.2f')} s")
    text.append(f"  done {snap.completed}")
    text.append(f"  errors {snap.errors}", style="bold red" if snap.errors else "")
    text.append("  (client-counted)", style="grey50")
    return text


def queue_text(snap: Snapshot) -> Text:
    n = queued(snap)
    if not n:
        return Text("")
    return Text(f"{n} waiting: the server is serving {snap.streaming} at a time", style="bold black on yellow")


def mode_text(mode: str, words: int) -> Text:
    text = Text("mode ", style="bold")
    text.append(MODE_NAMES.get(mode, mode), style="bold cyan")
    if mode == INPUT:
        text.append("  'give a title for below text in 10 words: ' + a 484-word text", style="grey62")
    else:
        text.append(f"  'tell a story in {words} words:'", style="grey62")
    return text


class LoadPane(Vertical):
    def __init__(self, concurrency: int, words: int, mode: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "load"
        self._concurrency, self._words, self._mode = concurrency, words, mode

    def compose(self) -> ComposeResult:
        with Horizontal(id="controls"):
            yield Slider(range(MAX_CONCURRENCY + 1), self._concurrency, "concurrency", id="concurrency")
            yield Slider(WORD_STOPS, self._words, "words", id="words")
        yield TextBox(mode_text(self._mode, self._words), id="mode")
        yield TextBox(id="summary")
        yield TextBox(id="queue")
        with Horizontal(id="load-body"):
            with Vertical(id="streams-box"):
                yield Static(Text(HEADER, style="bold"), id="streams-header")
                yield StreamTable(id="streams")
            yield LoadChart(id="chart")

    def show(self, snap: Snapshot) -> None:
        self.query_one("#summary", TextBox).show_text(summary_text(snap))
        self.query_one("#queue", TextBox).show_text(queue_text(snap))
        self.query_one(StreamTable).show(snap.streams)

    def show_mode(self, mode: str, words: int) -> None:
        self.query_one("#mode", TextBox).show_text(mode_text(mode, words))

    def show_history(self, points: Sequence[LoadPoint]) -> None:
        chart = self.query_one(LoadChart)
        if chart.display:
            chart.plot(points)
