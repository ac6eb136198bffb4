"""The Textual app: a header line, the GPU and CPU/RAM panes, and the load pane.

No data logic here: the probes and the engine's snapshots are read by the poller (tui/polling.py), in
threads that post messages (the UI thread never waits on a probe or on the engine's pipe), a few times a
second, never per token; the panes only render what they are handed. Steering goes to the engine, which does not
answer it; the sliders then show the settings its next snapshot carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import events, on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.message import Message
from textual.widgets import Footer, Static

from tui.bench.capacity import CONCURRENCY, RATE, CapacitySearch, judge
from tui.load.discover import ServerInfo
from tui.load.history import LoadHistory, ObservedLimit
from tui.load.prompts import INPUT, OUTPUT
from tui.load.records import NS, write_jsonl
from tui.load.slo import slo_text
from tui.load.snapshot import Snapshot
from tui.panes.gpu import GpuPane
from tui.panes.host import HostPane
from tui.panes.load import LoadPane
from tui.polling import Poller
from tui.probes.fleet import FleetProbe, FleetSample
from tui.probes.gpu import GpuReading
from tui.probes.host import HostSample
from tui.probes.server import ServerSample
from tui.untrusted import one_line, visible
from tui.widgets.model_picker import ModelPicker
from tui.widgets.palette import Palette, style
from tui.widgets.slider import Slider

NARROW_BELOW = 120  # columns: below this the chart goes
CHART_EVERY = 2  # history points (seconds) between two redraws of the chart
HOLD_S = 15.0  # how long `f` holds each level by default (--hold)
DEFAULT_SLO = {"ttft_p99": 2.0}  # what `f` finds the capacity within when --slo is not given
SHORT_BELOW = 36  # rows: below this the panes are compact and the prompt line goes


class Sampled(Message):
    """A probe reading, posted from a poller thread; a slow UI may drop stale ones."""

    def __init__(self, sample: Any) -> None:
        super().__init__()
        self.sample = sample

    def can_replace(self, message: Message) -> bool:
        return type(message) is type(self)


class GpuSampled(Sampled):
    pass


class HostSampled(Sampled):
    pass


class ServerSampled(Sampled):
    pass


class FleetSampled(Sampled):
    pass


class FleetHistory(Sampled):
    """Each GPU's utilisation over the last minutes, read once at the start."""


class EngineSampled(Sampled):
    """The engine's snapshot, a few times a second: the one the load pane and the history draw."""


def header_text(info: ServerInfo) -> Text:
    """Most important first, so a narrow terminal cuts only the end: real or simulated, the model."""
    text = Text()
    text.append(" tokentop ", style=style("badge-brand"))
    text.append(" ")
    if info.simulated:
        text.append(" SIMULATED server ", style=style("badge-sim"))
    else:
        text.append(" real server ", style=style("badge-real"))
    text.append(" ")
    # cut: a server's 10,000-character model name must not push the panes off the screen
    text.append(one_line(info.model_label, 80), style=style("title"))
    text.append(visible(f" · {info.kind} {one_line(info.version or '', 40)}".rstrip() + f" · {info.api} API"
                        f" · {one_line(info.shown_url, 80)}"))
    return text


class TokentopApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "tokentop"
    BINDINGS = [
        Binding("space", "toggle", "start/pause"),
        Binding("plus,equals_sign", "load(1)", "load", key_display="+"),
        Binding("minus", "load(-1)", "", show=False),
        Binding("r", "shape", "rate"),
        Binding("right_square_bracket", "words(1)", "words", key_display="]"),
        Binding("left_square_bracket", "words(-1)", "", show=False),
        Binding("f", "find_capacity", "capacity"),
        Binding("escape", "stop_finding", "", show=False),
        Binding("m", "mode", "mode"),
        Binding("h", "next_host", "", show=False),
        Binding("p", "server_processes", "", show=False),
        Binding("M", "models", "model"),
        Binding("s", "screenshot", "screenshot"),
        Binding("e", "export", "export"),
        Binding("q,ctrl+c", "quit", "quit", key_display="q", priority=True),
    ]

    def __init__(self, *, engine: Any, info: ServerInfo, read_gpu: Callable[[], GpuReading],
                 read_host: Callable[[], HostSample], read_server: Callable[[], ServerSample] | None = None,
                 autostart: bool = False, notice: str | None = None, refresh_hz: float = 2.0,
                 poll_s: float = 1.0, prompt_label: str | None = None, slo: dict[str, float] | None = None,
                 hold_s: float = HOLD_S, fleet: FleetProbe | None = None) -> None:
        """`prompt_label`: what the prompts are when they are not the mode's (synthetic, or from a file).
        `slo` and `hold_s`: what `f` finds the capacity within, and how long it holds each level."""
        super().__init__()
        self.slo, self.hold_s = slo or DEFAULT_SLO, hold_s
        self.fleet_probe = fleet  # --prometheus: the fleet replaces the local GPU, host and server views
        self.fleet: FleetSample | None = None
        self.hunt: CapacitySearch | None = None  # the capacity search `f` is running
        self.prompt_label = prompt_label
        self.last_rate = engine.settings.rate or 1.0  # what `r` goes back to
        self.engine, self.info = engine, info
        self.read_gpu, self.read_host, self.read_server = read_gpu, read_host, read_server
        self.notice = notice  # one line shown once the app is up (e.g. why the demo is simulated)
        self.server: ServerSample | None = None
        self.gpu: GpuReading | None = None
        self.observed_limit = ObservedLimit()
        self.autostart = autostart
        self.refresh_hz, self.poll_s = refresh_hz, poll_s
        self.snap: Snapshot | None = None  # the newest engine snapshot
        self.host_seen = False
        self.recoloured = False  # the theme's colours have been read
        self.history = LoadHistory()
        self._history_ns: int | None = None
        self.poller = Poller(self, poll_s)  # the probes and the engine, each read in a thread of its own
        self._told: set[str] = set()

    def compose(self) -> ComposeResult:
        s = self.engine.settings
        yield Static(header_text(self.info), id="header")
        with Horizontal(id="monitors"):
            yield GpuPane(id="gpu")
            yield HostPane(id="host")
        yield LoadPane(s.concurrency, s.words, s.mode, s.output_tokens or s.max_tokens, s.output_tokens is not None,
                       rate=s.rate, prompt_label=self.prompt_label, id="load")
        yield Footer()
        yield Palette()

    def on_mount(self) -> None:
        # The theme's colours can be read once the styles are applied, after the first refresh; what was drawn
        # before then (with the defaults) is drawn again.
        self.call_after_refresh(self._recolour)
        self.watch(self, "theme", self._theme_changed, init=False)
        self.engine.start(running=self.autostart)
        self._fit(self.size.width, self.size.height)
        self.poller.poll(self.engine.snapshot, EngineSampled, 1 / self.refresh_hz)
        if self.fleet_probe is None:  # with --prometheus the fleet is drawn instead of this machine
            self.poller.poll(self.read_gpu, GpuSampled)
            self.poller.poll(self.read_host, HostSampled)
        if self.read_server is not None:
            self.poller.poll(self.read_server, ServerSampled)
        if (fleet := self.fleet_probe) is not None:  # the last minutes from Prometheus's memory first
            self.poller.poll(fleet.read, FleetSampled, first=lambda: FleetHistory(fleet.history()))
        if self.notice:
            self.say(self.notice, timeout=15)

    def _monitor_panes(self) -> tuple[GpuPane, HostPane] | None:
        """The GPU and host panes, or None when a reading arrives while the screen is torn down."""
        try:
            return self.query_one(GpuPane), self.query_one(HostPane)
        except NoMatches:
            return None

    def on_gpu_sampled(self, message: GpuSampled) -> None:
        self.gpu = message.sample
        if panes := self._monitor_panes():
            panes[0].show(message.sample)

    def action_next_host(self) -> None:
        """--prometheus: draw the next host's cores one by one."""
        if self.fleet_probe is None or not (panes := self._monitor_panes()):
            return
        chosen = panes[1].choose_next_host()
        self.say(f"cores of {chosen}" if chosen else "a row per host", title="hosts")

    def action_server_processes(self) -> None:
        """A line per process of the server's family in the host pane, or the sums alone again."""
        if self.fleet_probe is not None or not (panes := self._monitor_panes()):
            return
        host = panes[1]
        host.show_members = not host.show_members
        host.refresh_view()

    def on_fleet_history(self, message: FleetHistory) -> None:
        if panes := self._monitor_panes():
            panes[0].seed_fleet_history(message.sample)

    def on_fleet_sampled(self, message: FleetSampled) -> None:
        self.fleet = message.sample
        if panes := self._monitor_panes():
            panes[0].show_fleet(message.sample)
            panes[1].show_fleet(message.sample)
        if self.snap is not None:
            self._show_load(self.snap)

    def on_server_sampled(self, message: ServerSampled) -> None:
        self.server = message.sample
        if self.snap is not None:  # the server's view sits beside the client's: draw it now, not at the next snapshot
            self._show_load(self.snap)

    def on_engine_sampled(self, message: EngineSampled) -> None:
        self.snap = message.sample
        self._show_load(message.sample, history=True)

    def _show_load(self, snap: Snapshot, history: bool = False) -> None:
        try:
            pane = self.query_one(LoadPane)
        except NoMatches:  # the screen is being torn down
            return
        for problem in (snap.engine_error, snap.record_error):
            if problem and problem not in self._told:  # said once in a notification; the summary keeps it
                self._told.add(problem)
                self.say(problem, title="load", severity="error", timeout=30)
        power = sum(g.power for g in self.gpu.gpus if g.power) if self.gpu else None
        if self.fleet is not None:  # the fleet's GPUs are the ones the load runs on
            power = self.fleet.power_w
        # A snapshot taken before our newest update arrived would move the sliders back: show what we asked for.
        settings = snap.settings if snap.settings_version >= self.engine.settings_version else self.engine.settings
        pane.show(snap, settings, self.server, self.observed_limit.update(snap), power or None, self.fleet)
        if history and (self._history_ns is None or snap.taken_ns - self._history_ns >= NS):
            self._history_ns = snap.taken_ns
            server = self.server
            self.history.add(snap, server.running if server else None, server.waiting if server else None)
            # The chart scrolls, so each redraw rewrites most of it: every CHART_EVERY points keeps an SSH link light.
            if len(self.history.points) % CHART_EVERY == 1:
                pane.show_history(self.history.points)

    def on_host_sampled(self, message: HostSampled) -> None:
        if not (panes := self._monitor_panes()):
            return
        gpu_pane, host_pane = panes
        sample: HostSample = message.sample
        host_pane.show(sample)
        self.host_seen = True
        pids = frozenset(sample.server.family) if sample.server else frozenset()
        if pids != gpu_pane.server_pids:
            gpu_pane.server_pids = pids
            gpu_pane.refresh_view()

    def say(self, message: str, **options: Any) -> None:
        """A notification whose text is shown as it is: never read as markup, control characters visible."""
        self.notify(visible(message), markup=False, **options)

    def _theme_changed(self) -> None:
        """A new theme (ctrl+p): read its colours, then redraw what was drawn with the old ones."""
        self.call_after_refresh(self._recolour)

    def _recolour(self) -> None:
        try:
            self._redraw_in_theme()
        except NoMatches:  # the theme changed while the screen was being torn down: nothing left to draw
            pass

    def _redraw_in_theme(self) -> None:
        self.query_one(Palette).read()
        self.recoloured = True
        self.query_one("#header", Static).update(header_text(self.info))
        for pane in self.query_one(GpuPane), self.query_one(HostPane):
            pane.refresh_view()
        if self.snap is not None:
            self.query_one(LoadPane).redraw()
            self._show_load(self.snap)
        self.query_one(LoadPane).show_history(self.history.points)
        for slider in self.query(Slider):
            slider.refresh()

    # --- layout ---------------------------------------------------------------------------------
    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size.width, event.size.height)

    def _fit(self, width: int, height: int) -> None:
        self.screen.set_class(width < NARROW_BELOW, "narrow")
        self.screen.set_class(height < SHORT_BELOW, "short")
        for pane in self.query_one(GpuPane), self.query_one(HostPane):
            pane.compact = height < SHORT_BELOW
            pane.refresh_view()
        self.query_one(LoadPane).compact = height < SHORT_BELOW

    # --- steering -------------------------------------------------------------------------------
    @on(Slider.Changed, "#concurrency")
    def concurrency_changed(self, event: Slider.Changed) -> None:
        self.engine.update(concurrency=event.value)

    @on(Slider.Changed, "#words")
    def words_changed(self, event: Slider.Changed) -> None:
        self.engine.update(words=event.value)

    @on(Slider.Changed, "#rate")
    def rate_changed(self, event: Slider.Changed) -> None:
        if self.engine.settings.rate is not None:
            self.last_rate = event.value
            self.engine.update(rate=event.value)

    def action_load(self, delta: int) -> None:
        """+/-: one step of whichever slider drives the load (concurrency, or the open loop's rate)."""
        which = "#concurrency" if self.engine.settings.rate is None else "#rate"
        self.query_one(which, Slider).index += delta

    def action_shape(self) -> None:
        """Switch between a closed loop (N streams) and an open loop (a request rate)."""
        rate = self.last_rate if self.engine.settings.rate is None else None
        self.engine.update(rate=rate)
        self.query_one(LoadPane).show_shape(rate)

    def action_words(self, delta: int) -> None:
        self.query_one("#words", Slider).index += delta

    def action_mode(self) -> None:
        self.engine.update(mode=INPUT if self.engine.settings.mode == OUTPUT else OUTPUT)

    def action_models(self) -> None:
        models = self.info.models or [self.info.model]
        if len(models) < 2:
            self.say(f"the server offers one model: {self.info.model_label}", title="model")
            return
        loaded = [m.name for m in self.server.loaded] if self.server else self.info.loaded
        self.push_screen(ModelPicker(models, self.info.model, loaded), self.switch_model)

    def switch_model(self, model: str | None) -> None:
        if not model or model == self.info.model:
            return
        self.engine.set_model(model)
        self.info.model = model
        self.query_one("#header", Static).update(header_text(self.info))
        self.say(f"next requests go to {self.info.model_label}", title="model")

    def action_toggle(self) -> None:
        if self.engine.running:
            self.engine.pause()
        else:
            self.engine.resume()

    # --- the capacity finder -------------------------------------------------------------------------
    def action_find_capacity(self) -> None:
        """Step the load up and bisect, live, to the most it takes within the SLO (tui/bench/capacity.py)."""
        if self.hunt is not None:
            return
        settings = self.engine.settings
        self.hunt = CapacitySearch(RATE if settings.rate is not None else CONCURRENCY)
        self.say(f"finding the capacity within {slo_text(self.slo)}, {self.hold_s:g} s a level (Esc stops)", title="capacity")
        self.run_worker(self._find(settings, self.engine.running), group="capacity", exclusive=True)

    def action_stop_finding(self) -> None:
        if self.hunt is not None:
            self.workers.cancel_group(self, "capacity")

    async def _find(self, before: Any, was_running: bool) -> None:
        search = self.hunt
        pane = self.query_one(LoadPane)
        try:
            while (level := search.next_level()) is not None:
                self.engine.update(**{search.kind: level})
                pane.show_shape(level if search.kind == RATE else None)  # the rate slider shows its level
                if search.kind == CONCURRENCY:
                    pane.query_one("#concurrency", Slider).show_value(level)
                self.engine.resume()
                since = time.perf_counter_ns()
                await asyncio.sleep(self.hold_s)
                records = await asyncio.to_thread(lambda: list(self.engine.records))
                missed = judge(records, since, self.slo)
                search.record(level, missed)
                self.history.mark(f"{level:g} {'✓' if not missed else '✗'}")
            self.history.mark(f"knee {search.capacity:g}")
            self.say(search.summary(self.slo).replace("\n", " "), title="capacity", timeout=60)
        except asyncio.CancelledError:
            self.say("capacity search stopped; your setting is back", title="capacity")
            raise
        finally:
            self.hunt = None
            self.engine.update(concurrency=before.concurrency, rate=before.rate)
            if not was_running:
                self.engine.pause()
            with contextlib.suppress(NoMatches):  # the app may be closing
                pane.show_shape(before.rate)

    # --- files ----------------------------------------------------------------------------------
    def action_screenshot(self) -> None:
        try:
            path = self.save_screenshot()
        except OSError as exc:
            self.say(f"screenshot failed: {exc}", severity="error")
            return
        self.say(f"screenshot saved: {path}", title="screenshot")

    def action_export(self) -> None:
        """The finished requests, one JSON line each, and the per-second history beside them."""
        points = list(self.history.points)
        completed = self.snap.completed if self.snap else 0
        self.run_worker(lambda: self._export(points, completed), thread=True, group="export")

    def _export(self, points: list, completed: int) -> None:
        """In a thread: the records come over the engine's pipe."""
        records = list(self.engine.records)
        dropped = completed - len(records)
        stem = f"tokentop-{datetime.now():%Y%m%d-%H%M%S}"
        path, history = Path(f"{stem}.jsonl").resolve(), Path(f"{stem}-history.jsonl").resolve()
        try:
            write_jsonl(path, records)
            history.write_text("".join(json.dumps(asdict(p)) + "\n" for p in points))
        except OSError as exc:
            self.call_from_thread(self.say, f"export failed: {exc}", severity="error")
            return
        kept = f" (the newest; {dropped} older ones are only in --out)" if dropped > 0 else ""
        self.call_from_thread(self.say, f"{len(records)} finished request(s){kept} written to {path},"
                              f" per-second history to {history.name}", title="export")

    async def action_quit(self) -> None:
        self.shutdown()
        self.exit()

    def on_unmount(self) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        """Stop polling and every stream (within 2 s); safe to call twice."""
        self.poller.stop()
        self.engine.stop(timeout=2.0)
