"""The load pane: the sliders that steer the engine, a row per stream, the summary and the chart.

It renders engine `Snapshot`s and history points it is handed; the app owns the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from tui.load.history import LoadPoint
from tui.load.prompts import INPUT, TITLE_INSTRUCTION, WORD_STOPS
from tui.load.settings import CONCURRENCY_STOPS, RATE_STOPS, USER_STOPS, LoadSettings
from tui.load.snapshot import MANY_ROWS_EVERY_S, Snapshot
from tui.panes import fleet_text
from tui.probes.fleet import FleetSample
from tui.probes.server import OLLAMA_PARALLEL_NOTE, ServerSample
from tui.untrusted import visible
from tui.widgets.chart import LoadChart
from tui.widgets.drawing import fmt, sparkline
from tui.widgets.palette import style
from tui.widgets.slider import Slider
from tui.widgets.streams import HEADER, StreamTable
from tui.widgets.textbox import TextBox

MODE_NAMES = {"output": "story", "input": "title"}
ROWS_EVERY_NS = 1_000_000_000
MANY_ROWS_EVERY_NS = int(MANY_ROWS_EVERY_S * 1e9)  # past the rows a snapshot carries: the engine chooses them anew
SHOWN_MODELS = 3  # models in memory named on the server line; the rest are counted


def rate_shown(rate: float) -> str:
    return f"{rate:g}/s"


def summary_text(snap: Snapshot, power_w: float | None = None, compact: bool = False) -> Text:
    """The client's view. `compact` (short terminals) keeps what fits two 80-column lines."""
    text = Text()
    if snap.engine_error:
        text.append(f"■ stopped: {visible(snap.engine_error)}; restart tokentop to go on", style=style("alarm"))
        text.append(f"  done {snap.completed}  errors {snap.errors}")
        return text
    if snap.record_error:
        text.append(f"--out is no longer written ({visible(snap.record_error)})  ", style=style("alarm"))
    text.append("▶ running" if snap.running else "⏸ paused (space starts)", style=style("streaming") if snap.running
                else style("waiting"))
    if snap.settings.users is not None:
        text.append(f"  users {snap.settings.users}: thinking {snap.thinking}", style=style("quiet"))
    text.append(f"  streaming {snap.streaming}", style=style("streaming"))
    text.append(f"  waiting {snap.waiting}", style=style("waiting") if snap.waiting else "")
    if snap.sessions_done:
        text.append(f"  conversations done {snap.sessions_done}", style=style("quiet"))
    if snap.streams_left_off:
        text.append(f"  rows: {len(snap.streams)} of {len(snap.streams) + snap.streams_left_off} (the longest waiting,"
                    " the slowest, the newest)", style=style("muted"))
        text.append_text(bins_text(snap))
    if snap.settings.rate is not None:
        text.append_text(open_loop_text(snap, compact))
    text.append(f"  aggregate {snap.aggregate_tps:.1f} tok/s")
    text.append(f"  per-stream {fmt(snap.mean_stream_tps, '.1f')} tok/s")
    text.append(f"  TTFT p50 {fmt(snap.ttft_p50_s, '.2f')} s")
    if not compact:
        text.append(f"  done {snap.completed}")
    text.append(f"  errors {snap.errors}", style=style("error") if snap.errors else "")
    text.append("  (client)" if compact else "  (client-counted)", style=style("muted"))
    if snap.truncated:
        # "length": the cap when one is set (a full context is rarer), else the context
        why = "max tokens" if snap.settings.max_tokens or snap.settings.output_tokens else "length limit"
        text.append(f"  truncated {snap.truncated} ({why})", style=style("note"))
    if snap.cold_starts:
        text.append(f"  cold starts {snap.cold_starts}", style=style("note"))
    if snap.queue_wait_mean_s is not None and not compact:
        text.append(f"  queue wait {snap.queue_wait_mean_s:.2f} s mean (server durations, est.)")
    cost = snap.client_cost
    if cost is not None and cost.warning:
        text.append(f"  {cost.warning}", style=style("alarm"))
    elif cost is not None and cost.cpu is not None and not compact and (snap.streaming or snap.waiting):
        text.append(f"  engine CPU {cost.cpu:.0%} lag {fmt(cost.lag_p90_ms, '.0f')} ms", style=style("muted"))
    if power_w and snap.aggregate_tps > 0:
        text.append(f"  {power_w / snap.aggregate_tps:.2f} J/tok", style=style("accent"))
        if not compact:
            text.append(f" · {snap.aggregate_tps / power_w:.3f} tok/s/W (GPU W ÷ client tok/s)", style=style("accent"))
    return text


def bins_text(snap: Snapshot) -> Text:
    """Past the rows, the shape of all the streams: their TTFTs and live tok/s, a block a bin."""
    text = Text()
    for name, bins, low, high in (("TTFT", snap.ttft_bins, "0.05", "30+ s"), ("tok/s", snap.tps_bins, "1", "200+")):
        if bins and sum(bins):
            text.append(f"  {name} {low}", style=style("muted"))
            text.append(sparkline(bins, len(bins)), style=style("accent"))
            text.append(high, style=style("muted"))
    return text


def backlog_trend(snap: Snapshot) -> str | None:
    """"growing", "shrinking" or "steady": the backlog's slope against a margin for Poisson noise."""
    growth = snap.backlog_growth_rps
    if growth is None:
        return None
    margin = max(0.1, 0.05 * (snap.settings.rate or 0))
    return "growing" if growth > margin else "shrinking" if growth < -margin else "steady"


def open_loop_text(snap: Snapshot, compact: bool = False) -> Text:
    """The open loop: arrivals set, sent and finished per second, and where the backlog is heading."""
    text = Text()
    text.append(f"  sent {snap.sent_rps:.1f}/s", style=style("accent"))
    text.append(f" finished {snap.finished_rps:.1f}/s")
    trend = backlog_trend(snap)
    if trend is not None:
        growth = f" {snap.backlog_growth_rps:+.1f}/s" if not compact else ""
        text.append(f"  backlog {trend}{growth}",
                    style=style("alarm") if trend == "growing" else style("muted"))
    if snap.held or snap.held_total:
        text.append(f"  held back {snap.held} now, {snap.held_total} in all (max in flight"
                    f" {snap.settings.max_inflight})", style=style("note"))
    if snap.unsent:
        text.append(f"  unsent {snap.unsent}", style=style("note"))
    return text


def queue_text(snap: Snapshot, server: ServerSample | None = None) -> Text:
    n = snap.queued
    if not n or (server is not None and server.waiting == 0):  # the server says none queue: a long prefill
        return Text("")
    return Text(f"{n} waiting: the server is serving {snap.streaming} at a time", style=style("banner"))


def server_text(sample: ServerSample | None, snap: Snapshot, observed_limit: int | None,
                compact: bool = False) -> Text:
    """The server's own view beside the client's: its queue, slots, loaded models."""
    text = Text("server says ", style="bold")
    if sample is None:
        return text + Text("…", style=style("muted"))
    if sample.error:
        return text + Text(visible(sample.error), style=style("error"))
    if sample.waiting is not None:
        text.append(f"processing {sample.running}", style=style("streaming"))
        text.append(f" · queued {sample.waiting}", style=style("waiting") if sample.waiting else "")
        if sample.slots:
            text.append(f" · {sample.slots} slots")
        if sample.cache_usage is not None:
            text.append(f" · cache {sample.cache_usage:.0%}")
        if not compact:
            text.append(f"  ({sample.metrics_source})", style=style("muted"))
            text.append(f"  client sees waiting {snap.waiting}", style=style("quiet"))
    elif sample.slots:
        text.append(f"{sample.slots} slots (no /metrics: start it with --metrics for its queue)")
    else:
        text.append("no queue metrics", style=style("quiet"))
    if sample.kind == "ollama":
        limit = f"observed limit {observed_limit}" if observed_limit else "limit not seen yet"
        text.append(f"  {limit}" if compact else f"  {limit} ({OLLAMA_PARALLEL_NOTE})", style=style("quiet"))
    for model in sample.loaded[:SHOWN_MODELS]:
        if compact:  # only what needs acting on
            if model.cpu_fraction > 0.01:
                text.append(f"  {visible(model.name)} {model.cpu_fraction:.0%} on CPU", style=style("error"))
            continue
        text.append(f"  {visible(model.name)} {model.size / 2**30:.1f} GiB")
        if model.cpu_fraction > 0.01:
            text.append(f" {model.cpu_fraction:.0%} on CPU (slow)", style=style("error"))
        else:
            text.append(" 100% GPU")
        if model.context_length:
            text.append(f" ctx {model.context_length}")
    more = len(sample.loaded) - SHOWN_MODELS + sample.loaded_left_off
    if more > 0 and not compact:
        text.append(f"  +{more} more in memory", style=style("muted"))
    return text


def mode_text(mode: str, words: int, max_tokens: int | None = None, exact: bool = False,
              prompt_label: str | None = None) -> Text:
    """The prompt and the answer's length; `prompt_label` names prompts that are not the mode's own."""
    text = Text("mode ", style="bold")
    if prompt_label is not None:
        text.append(visible(prompt_label), style=style("title"))
    else:
        text.append(MODE_NAMES.get(mode, mode), style=style("title"))
    if prompt_label is not None:
        text.append("  (the m key does not change them)", style=style("quiet"))
    elif mode == INPUT:
        text.append(f"  '{TITLE_INSTRUCTION}' + a ~480-word text", style=style("quiet"))
    else:
        text.append(f"  'tell a story in {words} words:'", style=style("quiet"))
    if max_tokens is not None:
        text.append(f"  {'exactly' if exact else 'max'} {max_tokens} tokens")
    return text


class LoadPane(Vertical):
    def __init__(self, concurrency: int, words: int, mode: str, max_tokens: int | None = None, exact: bool = False, *,
                 rate: float | None = None, users: int | None = None, prompt_label: str | None = None,
                 on_slider: Callable[[str, float], None] = lambda name, value: None, id: str | None = None) -> None:
        """`on_slider(name, value)`: a slider was moved ("concurrency", "rate", "users" or "words")."""
        super().__init__(id=id)
        self._on_slider = on_slider
        self._prompt_label = prompt_label
        self.border_title = "load"
        self._concurrency, self._words, self._mode, self._rate, self._users = concurrency, words, mode, rate, users
        self._max_tokens, self._exact = max_tokens, exact
        self.compact = False  # set by the app on short terminals
        self._rows_ns: int | None = None  # when the engine read the stream rows drawn last (rows_ns), and how many
        self._rows_n = 0

    def compose(self) -> ComposeResult:
        with Horizontal(id="controls"):
            concurrency = Slider(sorted({*CONCURRENCY_STOPS, self._concurrency}), self._concurrency, "concurrency",
                                 on_change=self._moved("concurrency"), id="concurrency")
            rate = Slider(sorted({*RATE_STOPS, self._rate or 1.0}), self._rate or 1.0, "rate", shown=rate_shown,
                          on_change=self._moved("rate"), id="rate")
            users = Slider(sorted({*USER_STOPS, self._users or 10}), self._users or 10, "users",
                           on_change=self._moved("users"), id="users")
            concurrency.display = self._rate is None and self._users is None
            rate.display, users.display = self._rate is not None, self._users is not None
            yield concurrency
            yield rate
            yield users
            yield Slider(sorted({*WORD_STOPS, self._words}), self._words, "words", on_change=self._moved("words"),
                         id="words")
        yield TextBox(mode_text(self._mode, self._words, self._max_tokens, self._exact, self._prompt_label), id="mode")
        yield TextBox(id="summary")
        yield TextBox(id="server")
        yield TextBox(id="queue")
        with Horizontal(id="load-body"):
            with Vertical(id="streams-box"):
                yield Static(Text(HEADER, style="bold"), id="streams-header")
                yield StreamTable(id="streams")
            yield LoadChart(id="chart")
            yield TextBox(id="inside")

    def _moved(self, name: str) -> Callable[[float], None]:
        return lambda value: self._on_slider(name, value)

    def show(self, snap: Snapshot, settings: LoadSettings, server: ServerSample | None = None,
             observed_limit: int | None = None, power_w: float | None = None,
             fleet_sample: FleetSample | None = None) -> None:
        """`settings`: what the engine runs with (the sliders and the mode line follow it)."""
        self.query_one("#concurrency", Slider).show_value(settings.concurrency)
        self.show_shape(settings)
        self.query_one("#words", Slider).show_value(settings.words)
        if (settings.mode, settings.words) != (self._mode, self._words):
            self._mode, self._words = settings.mode, settings.words
            self.show_mode(settings.mode, settings.words)
        self.query_one("#summary", TextBox).show_text(summary_text(snap, power_w, self.compact))
        if fleet_sample is not None:  # --prometheus: every replica instead of the one server
            self.query_one("#server", TextBox).show_text(fleet_text.replica_text(fleet_sample, self.compact))
        else:
            self.query_one("#server", TextBox).show_text(server_text(server, snap, observed_limit, self.compact))
        self.query_one("#queue", TextBox).show_text(queue_text(snap, server))
        # Every visible row changes on every redraw (timers, rates): once a second keeps an SSH link light. Past the
        # rows a snapshot carries, the engine reads them anew every MANY_ROWS_EVERY_S: drawn when they are new.
        every = MANY_ROWS_EVERY_NS if snap.streams_left_off else ROWS_EVERY_NS
        if self._rows_ns is None or snap.rows_ns - self._rows_ns >= every or len(snap.streams) != self._rows_n:
            self._rows_ns, self._rows_n = snap.rows_ns, len(snap.streams)
            self.query_one(StreamTable).show(snap.streams)

    def show_shape(self, settings: LoadSettings) -> None:
        """The slider of the load that runs: concurrency in a closed loop, the rate in an open one, or users."""
        rate, users = settings.rate if settings.open_loop else None, settings.users
        self.query_one("#concurrency", Slider).display = rate is None and users is None and not settings.replay
        self.query_one("#rate", Slider).display = rate is not None
        self.query_one("#users", Slider).display = users is not None
        if rate is not None:
            self.query_one("#rate", Slider).show_value(rate)
        if users is not None:
            self.query_one("#users", Slider).show_value(users)

    def redraw(self) -> None:
        """Draw everything again at the next snapshot (after a theme change)."""
        self._rows_ns = None
        for box in self.query(TextBox):
            box.forget()
        self.query_one(StreamTable).forget()
        self.show_mode(self._mode, self._words)

    def show_mode(self, mode: str, words: int) -> None:
        self.query_one("#mode", TextBox).show_text(mode_text(mode, words, self._max_tokens, self._exact,
                                                             self._prompt_label))

    def show_inside(self, text: Text | None) -> None:
        """The server view in place of the chart (in place of the rows on a narrow screen); None closes it."""
        self.set_class(text is not None, "inside-open")
        if text is not None:
            self.query_one("#inside", TextBox).show_text(text)

    def show_history(self, points: Sequence[LoadPoint]) -> None:
        chart = self.query_one(LoadChart)
        if chart.display:
            chart.plot(points)
