"""The Textual app: a header line, the GPU and CPU/RAM panes, and the load pane; it composes them and routes.

No data logic here: the probes and the engine's snapshots are read by the poller (tui/polling.py), a few
times a second, never per token; the panes only render what they are handed. Steering goes to the engine
once (a key or a slider move, in its own handler); the panes show the settings its snapshots carry, or
ours while a snapshot predates our newest change (the settings version). The capacity search (`f`,
tui/live_capacity.py) and the export (`e`, tui/export.py) are objects of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.widgets import Footer, Static

from tui.export import export_run
from tui.inside_view import InsideView
from tui.live_capacity import LiveCapacity
from tui.load.contract import Engine
from tui.load.discover import ServerInfo
from tui.load.history import LoadHistory, ObservedLimit
from tui.load.records import NS
from tui.load.snapshot import Snapshot
from tui.messages import (EngineSampled, FleetHistory, FleetSampled, GpuSampled, HostSampled, InsideSampled,
                          ServerSampled)
from tui.panes.gpu import GpuPane
from tui.panes.host import HostPane
from tui.panes.inside_text import inside_text
from tui.panes.load import LoadPane
from tui.polling import Poller
from tui.probes.fleet import FleetProbe, FleetSample
from tui.probes.gpu import GpuReading
from tui.probes.host import HostSample
from tui.probes.server import ServerSample
from tui.steering import Steering
from tui.untrusted import one_line, visible
from tui.widgets.model_picker import ModelPicker
from tui.widgets.palette import Palette, style
from tui.widgets.slider import Slider

NARROW_BELOW = 120  # columns: below this the chart goes
CHART_EVERY = 2  # history points (seconds) between two redraws of the chart
# Past the rows a snapshot carries (thousands of streams, drawn as counts and bins): a snapshot a second, not two,
# and the chart every 4 s (the rows every 2 s: tui/load/views.py). The UI's share of a core at 4,096 streams
# went from 3.4-3.6 % to 2.0-2.4 %, of which 1.0-1.2 % is its idle cost (README, Performance).
MANY_STREAMS_EVERY_S = 1.0
MANY_STREAMS_CHART_EVERY = 4
HOLD_S = 15.0  # how long `f` holds each level by default (--hold)
DEFAULT_SLO = {"ttft_p99": 2.0}  # what `f` finds the capacity within when --slo is not given
SHORT_BELOW = 36  # rows: below this the panes are compact and the prompt line goes


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
        Binding("u", "users", "users"),
        Binding("right_square_bracket", "words(1)", "words", key_display="]"),
        Binding("left_square_bracket", "words(-1)", "", show=False),
        Binding("f", "find_capacity", "capacity"),
        Binding("i", "inside", "server view"),
        Binding("escape", "stop_finding", "", show=False),
        Binding("m", "mode", "mode"),
        Binding("h", "next_host", "", show=False),
        Binding("p", "server_processes", "", show=False),
        Binding("M", "models", "model"),
        Binding("s", "screenshot", "screenshot"),
        Binding("e", "export", "export"),
        Binding("q,ctrl+c", "quit", "quit", key_display="q", priority=True),
    ]

    def __init__(self, *, engine: Engine, info: ServerInfo, read_gpu: Callable[[], GpuReading],
                 read_host: Callable[[], HostSample], read_server: Callable[[], ServerSample] | None = None,
                 autostart: bool = False, notice: str | None = None, refresh_hz: float = 2.0,
                 poll_s: float = 1.0, prompt_label: str | None = None, slo: dict[str, float] | None = None,
                 hold_s: float = HOLD_S, fleet: FleetProbe | None = None,
                 make_inside: Callable[[], Any] | None = None) -> None:
        """`prompt_label`: what the prompts are when they are not the mode's (synthetic, or from a file).
        `slo` and `hold_s`: what `f` finds the capacity within, and how long it holds each level.
        `make_inside`: a new probe of the server's inside (tui/probes/inside.py) each time `i` opens the view."""
        super().__init__()
        self.fleet_probe = fleet  # --prometheus: the fleet replaces the local GPU, host and server views
        self.fleet: FleetSample | None = None
        self.prompt_label = prompt_label
        self.steering = Steering(engine)
        self.engine, self.info = engine, info
        self.read_gpu, self.read_host, self.read_server = read_gpu, read_host, read_server
        self.notice = notice  # a line kept under the header (why the demo is simulated, and the fix)
        self.server: ServerSample | None = None
        self.gpu: GpuReading | None = None
        self.observed_limit = ObservedLimit()
        self.autostart = autostart
        self.refresh_hz = refresh_hz
        self.poller = Poller(self, poll_s)
        self.snap: Snapshot | None = None  # the newest engine snapshot
        self.host_seen = False
        self.recoloured = False  # the theme's colours have been read
        self.history = LoadHistory()
        self.capacity = LiveCapacity(engine, self.history, slo or DEFAULT_SLO, hold_s, self.say)
        self._history_ns: int | None = None
        self._told: set[str] = set()
        self.inside = InsideView(self, make_inside)

    def compose(self) -> ComposeResult:
        s = self.engine.settings
        yield Static(header_text(self.info), id="header")
        if self.notice:
            yield Static(Text(visible(self.notice)), id="notice")
        with Horizontal(id="monitors"):
            yield GpuPane(id="gpu")
            yield HostPane(id="host")
        yield LoadPane(s.concurrency, s.words, s.mode, s.output_tokens or s.max_tokens, s.output_tokens is not None,
                       rate=s.rate, users=s.users, prompt_label=self.prompt_label,
                       on_slider=self.steering.slider_moved,
                       id="load")
        yield Footer()
        yield Palette()

    def on_mount(self) -> None:
        # The theme's colours can be read once the styles are applied, after the first refresh; what was drawn
        # before then (with the defaults) is drawn again.
        self.call_after_refresh(self._recolour)
        self.watch(self, "theme", self._theme_changed, init=False)
        self.engine.start(running=self.autostart)
        self._fit(self.size.width, self.size.height)
        self.poller.poll(self.engine.snapshot, EngineSampled, self._snapshot_every)
        if self.fleet_probe is None:  # with --prometheus the fleet is drawn instead of this machine
            self.poller.poll(self.read_gpu, GpuSampled)
            self.poller.poll(self.read_host, HostSampled)
        else:  # the last minutes from Prometheus's own memory first (the sparklines start full), then live
            fleet = self.fleet_probe
            self.poller.poll(fleet.read, FleetSampled, first=lambda: FleetHistory(fleet.history()))
        if self.read_server is not None:
            self.poller.poll(self.read_server, ServerSampled)

    def _snapshot_every(self) -> float:
        """Seconds to the next snapshot (asked in the poller's thread): past the rows a snapshot carries, once
        a second."""
        snap = self.snap
        return MANY_STREAMS_EVERY_S if snap is not None and snap.streams_left_off else 1 / self.refresh_hz

    def _monitor_panes(self) -> tuple[GpuPane, HostPane] | None:
        """The GPU and host panes, or None when a reading arrives while the screen is torn down."""
        try:
            return self.query_one(GpuPane), self.query_one(HostPane)
        except NoMatches:
            return None

    # --- what the poller posts --------------------------------------------------------------------
    def on_gpu_sampled(self, message: GpuSampled) -> None:
        self.gpu = message.sample
        if panes := self._monitor_panes():
            panes[0].show(message.sample)

    def on_host_sampled(self, message: HostSampled) -> None:
        if not (panes := self._monitor_panes()):
            return
        gpu_pane, host_pane = panes
        sample = message.sample
        host_pane.show(sample)
        self.host_seen = True
        pids = frozenset(sample.server.family) if sample.server else frozenset()
        if pids != gpu_pane.server_pids:
            gpu_pane.server_pids = pids
            gpu_pane.refresh_view()

    def on_fleet_history(self, message: FleetHistory) -> None:
        if panes := self._monitor_panes():
            panes[0].show_fleet_history(message.sample)

    def on_fleet_sampled(self, message: FleetSampled) -> None:
        self.fleet = message.sample
        if panes := self._monitor_panes():
            panes[0].show_fleet(message.sample)
            panes[1].show_fleet(message.sample)
        self._redraw_load()

    def on_server_sampled(self, message: ServerSampled) -> None:
        self.server = message.sample
        self._redraw_load()  # the server's view sits beside the client's: draw it now, not at the next snapshot

    def on_inside_sampled(self, message: InsideSampled) -> None:
        if self.inside.open:  # a reading that comes back after the view closed is dropped
            self.inside.sample = message.sample
            self._redraw_load()

    def on_engine_sampled(self, message: EngineSampled) -> None:
        self.snap = message.sample
        self._show_load(message.sample, history=True)

    def _redraw_load(self) -> None:
        if self.snap is not None:
            self._show_load(self.snap)

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
        # The one echo guard: a snapshot taken before our newest change would move the sliders back.
        settings = snap.settings if snap.settings_version >= self.engine.settings_version else self.engine.settings
        try:
            pane.show(snap, settings, self.server, self.observed_limit.update(snap), power or None, self.fleet)
            pane.show_inside(inside_text(self.inside.sample, snap.split) if self.inside.open else None)
        except NoMatches:  # torn down between the two queries: its children go first
            return
        if history and (self._history_ns is None or snap.taken_ns - self._history_ns >= NS):
            self._history_ns = snap.taken_ns
            server = self.server
            self.history.add(snap, server.running if server else None, server.waiting if server else None)
            # The chart scrolls, so each redraw rewrites most of it: every CHART_EVERY points keeps an SSH link light.
            if len(self.history.points) % (MANY_STREAMS_CHART_EVERY if snap.streams_left_off else CHART_EVERY) == 1:
                pane.show_history(self.history.points)

    def say(self, message: str, **options: Any) -> None:
        """A notification whose text is shown as it is: never read as markup, control characters visible."""
        self.notify(visible(message), markup=False, **options)

    # --- the theme and the layout -------------------------------------------------------------------
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

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size.width, event.size.height)

    def _fit(self, width: int, height: int) -> None:
        self.screen.set_class(width < NARROW_BELOW, "narrow")
        self.screen.set_class(height < SHORT_BELOW, "short")
        for pane in self.query_one(GpuPane), self.query_one(HostPane):
            pane.compact = height < SHORT_BELOW
            pane.refresh_view()
        self.query_one(LoadPane).compact = height < SHORT_BELOW

    # --- steering: each goes to the engine once (tui/steering.py), then the load pane is drawn again ---------
    def action_load(self, delta: int) -> None:
        """+/-: one step of whichever slider drives the load (concurrency, the open loop's rate, or users)."""
        self.query_one(self.steering.load_slider(), Slider).index += delta

    def action_shape(self) -> None:
        self.steering.switch_rate()
        self._redraw_load()

    def action_users(self) -> None:
        self.steering.switch_users()
        self._redraw_load()

    def action_words(self, delta: int) -> None:
        self.query_one("#words", Slider).index += delta

    def action_mode(self) -> None:
        self.steering.switch_mode()
        self._redraw_load()

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
        self.steering.toggle_running()

    def action_find_capacity(self) -> None:
        """Step the load up and bisect, live, to the most it takes within the SLO (tui/live_capacity.py)."""
        if not self.capacity.running:
            self.run_worker(self.capacity.run(), group="capacity", exclusive=True)

    def action_stop_finding(self) -> None:
        if self.capacity.running:
            self.workers.cancel_group(self, "capacity")

    def action_inside(self) -> None:
        """The server view: its slots or its scheduler, its latencies, where the time goes; `i` again closes it."""
        if self.fleet_probe is not None:
            self.say("the server view reads one server; with --prometheus the fleet is shown", title="server view")
            return
        if not self.inside.available:
            self.say("no server to look inside", title="server view")
            return
        self.inside.toggle()
        self.query_one(LoadPane).show_inside(inside_text(None, None) if self.inside.open else None)
        self._redraw_load()

    # --- the host pane's views -------------------------------------------------------------------------
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

    # --- files ----------------------------------------------------------------------------------
    def action_screenshot(self) -> None:
        try:
            path = self.save_screenshot()
        except OSError as exc:
            self.say(f"screenshot failed: {exc}", severity="error")
            return
        self.say(f"screenshot saved: {path}", title="screenshot")

    def action_export(self) -> None:
        """The finished requests and the per-second history, written in a thread (the records come over a pipe)."""
        points = list(self.history.points)
        completed = self.snap.completed if self.snap else 0

        def export() -> None:
            try:
                said = export_run(self.engine.records, points, completed)
            except OSError as exc:
                self.call_from_thread(self.say, f"export failed: {exc}", severity="error")
                return
            self.call_from_thread(self.say, said, title="export")

        self.run_worker(export, thread=True, group="export")

    async def action_quit(self) -> None:
        self.shutdown()
        self.exit()

    def on_unmount(self) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        """Stop polling and every stream (within 2 s); safe to call twice."""
        self.poller.stop()
        self.inside.close()
        self.engine.stop(timeout=2.0)
