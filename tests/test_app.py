"""The app driven by Textual's pilot against the simulated server: sliders, queueing, no GPU, quitting.

Most tests run the engine in this process (fast); those about the engine's own process are marked slow."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import psutil
import pytest

from tui.cli import make_app
from tui.load.discover import discover
from tui.load.engine import LoadEngine
from tui.load.settings import MAX_CONCURRENCY, LoadSettings
from tui.panes.load import LoadPane
from tui.probes.gpu import GpuProbe
from tui.widgets.slider import Slider
from tui.widgets.streams import StreamTable


def sim_app(sim, out_path=None, autostart=True, in_process=True, slo=None, hold_s=15.0, **settings):
    """The app on the simulated server; its engine in this process, or (in_process=False) in one of its own."""
    target, info = discover(sim.url)
    engine = LoadEngine(target, LoadSettings(**settings), out_path=out_path) if in_process else None
    return make_app(target, info, LoadSettings(**settings), autostart=autostart, out_path=out_path, workers=1,
                    engine=engine, slo=slo, hold_s=hold_s)


def received(app):
    """The settings the engine itself runs with (its snapshot), not the app's copy of what it sent."""
    return app.engine.snapshot().settings


async def until(predicate, pilot, timeout=10.0):
    for _ in range(int(timeout / 0.05)):
        value = predicate()
        if value:
            return value
        await pilot.pause(0.05)
    raise AssertionError("condition not met in time")


def pane_text(app, selector: str) -> str:
    return str(app.query_one(selector).render())


async def test_concurrency_slider_and_keys_steer_the_engine(sim_factory):
    app = sim_app(sim_factory(speed=20), autostart=False, concurrency=1, words=25)
    async with app.run_test(size=(160, 48)) as pilot:
        slider = app.query_one("#concurrency", Slider)
        await pilot.press("+", "+")
        assert received(app).concurrency == 3 and slider.value == 3  # at once: one path down, in the key's handler
        await pilot.pause(0.6)  # snapshots came back meanwhile and left it where it is
        assert slider.value == 3
        slider.focus()
        await pilot.press("right")
        assert received(app).concurrency == 4
        await pilot.press("end")
        assert received(app).concurrency == MAX_CONCURRENCY
        await pilot.press("home")
        assert received(app).concurrency == 0
        # A click on the track's far end moves the knob there.
        await pilot.click(slider, offset=(slider.size.width - 4, 0))
        assert received(app).concurrency == MAX_CONCURRENCY
        await pilot.press("home", "+", "+")  # back to a load this machine runs in a test
        await pilot.press("]")
        assert received(app).words == 50
        await pilot.press("m")
        assert received(app).mode == "input"
        await pilot.press("space")
        await until(lambda: app.engine.running, pilot)
        # and the engine runs what it received: two streams, each asking for the title of the long text
        await until(lambda: len(app.engine.snapshot().streams) == 2, pilot)
        await until(lambda: app.engine.records and app.engine.records[0].mode == "input", pilot)


async def test_the_r_key_switches_to_a_rate_whose_backlog_grows_live_past_capacity(sim_factory):
    sim = sim_factory(parallel=2, service_s=1.0, speed=10)  # serves 20 requests/s in real time
    app = sim_app(sim, concurrency=1, words=25)
    async with app.run_test(size=(160, 48)) as pilot:
        assert not app.query_one("#rate", Slider).display
        await pilot.press("r")
        assert app.engine.settings.rate == 1.0 and app.query_one("#rate", Slider).display
        assert not app.query_one("#concurrency", Slider).display
        for _ in range(11):  # + steps the rate now: 1 → 70 requests/s on the slider's stops
            await pilot.press("+")
        assert app.engine.settings.rate == 70.0
        assert "70/s" in str(app.query_one("#rate", Slider).render())
        await until(lambda: "backlog growing" in pane_text(app, "#summary"), pilot, timeout=15)
        summary = pane_text(app, "#summary")
        assert "sent " in summary and "finished " in summary
        await pilot.press("r")  # back to the closed loop, at the concurrency it had
        assert app.engine.settings.rate is None and app.engine.settings.concurrency == 1
        assert app.query_one("#concurrency", Slider).display


async def test_f_finds_the_capacity_live_marks_the_knee_and_restores_the_setting(sim_factory):
    # a third stream waits 0.5 s for a slot; a first request on a cold connection in a busy CI stays under 0.25
    sim = sim_factory(parallel=2, service_s=5.0, speed=10)
    app = sim_app(sim, autostart=False, slo={"ttft_p99": 0.25}, hold_s=1.5, concurrency=1, words=25)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("f")
        slider = app.query_one("#concurrency", Slider)
        # it steps 1, 2, 4 (then 3) by itself, the slider with it
        await until(lambda: received(app).concurrency > 1 and slider.value == received(app).concurrency, pilot)
        await until(lambda: not app.capacity.running, pilot, timeout=30)
        await until(lambda: any("knee 2" in (p.mark or "") for p in app.history.points), pilot)
        marks = " ".join(p.mark for p in app.history.points if p.mark)
        assert marks == "1 ✓ 2 ✓ 4 ✗ 3 ✗ knee 2"
        # each level's requests all finished before it was judged: none was cut short by the next level
        assert not [r for r in app.engine.records if r.error_kind]
        assert received(app).concurrency == 1 and not app.engine.running  # as the user had it
        app.capacity.hold_s = 5.0  # long enough to be stopped half way
        await pilot.press("f")
        await until(lambda: app.capacity.running and app.engine.running, pilot)
        await pilot.press("escape")  # stops the search and puts the setting back
        await until(lambda: not app.capacity.running and received(app).concurrency == 1, pilot)
        assert not app.engine.running
        assert sum("knee" in (p.mark or "") for p in app.history.points) == 1  # the stopped one found none


async def test_f_lets_the_load_in_flight_finish_before_the_first_level(sim_factory):
    # 8 streams on 2 slots: six queue. Were the first level sent among them, it would wait seconds for a slot.
    sim = sim_factory(parallel=2, service_s=5.0, speed=10)
    app = sim_app(sim, slo={"ttft_p99": 0.25}, hold_s=1.0, concurrency=8, words=25)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(lambda: app.engine.snapshot().waiting >= 4, pilot)
        await pilot.press("f")
        await until(lambda: any((p.mark or "").startswith("1 ") for p in app.history.points), pilot, timeout=20)
        assert "1 ✓" in " ".join(p.mark for p in app.history.points if p.mark)
        await pilot.press("escape")
        await until(lambda: not app.capacity.running and received(app).concurrency == 8, pilot)
        assert app.engine.running  # the user's load runs again


async def test_eight_streams_on_four_slots_four_wait_then_start(sim_factory):
    sim = sim_factory(parallel=4, speed=5)
    app = sim_app(sim, concurrency=8, words=100)  # ~1.5 s a request: the queue is there long enough to see
    async with app.run_test(size=(160, 48)) as pilot:
        await until(lambda: "streaming 4" in pane_text(app, "#summary") and "waiting 4" in pane_text(app, "#summary"),
                    pilot)
        await until(lambda: "4 waiting: the server is serving 4 at a time" in pane_text(app, "#queue"), pilot)
        snap = app.engine.snapshot()
        waiting = {v.index for v in snap.streams if v.state == "waiting"}
        assert len(waiting) == 4
        table = app.query_one(StreamTable)
        assert table.virtual_size.height == 8
        # The waiting ones start as the first ones finish.
        await until(lambda: any(v.index in waiting and v.state == "streaming"
                                for v in app.engine.snapshot().streams), pilot)


async def test_no_gpu_renders_one_calm_line(sim_factory):
    if GpuProbe().read().gpus:
        pytest.skip("this machine has a GPU: the no-GPU line cannot show (tests/test_snapshots.py draws both)")
    app = sim_app(sim_factory(speed=20), concurrency=0)
    async with app.run_test(size=(120, 40)) as pilot:
        text = await until(lambda: (t := pane_text(app, "#gpu")) and "…" not in t and t, pilot)
        assert "\n" not in text.strip() and "NVML" in text
        assert app.query_one(LoadPane)  # and everything else is there


@pytest.mark.slow  # the engine in a process of its own
async def test_quitting_mid_run_leaves_complete_jsonl(sim_factory, tmp_path):
    out = tmp_path / "run.jsonl"
    app = sim_app(sim_factory(parallel=4, speed=20), out_path=str(out), in_process=False, concurrency=6, words=50)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(lambda: len(app.engine.records) >= 6 and app.engine.snapshot().streaming, pilot)
        (pid,) = app.engine.pids
        started = asyncio.get_running_loop().time()
        await pilot.press("q")
        assert asyncio.get_running_loop().time() - started < 2.5
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(app.engine.records) >= 6
    cut = [r for r in records if r["error_kind"] == "cancelled"]  # those in flight at the quit: data too
    assert cut and all(r["error"] is None and r["output_tokens"] > 0 for r in records if r not in cut)
    assert not app.engine.pids and not psutil.pid_exists(pid)  # the engine's own process is gone


async def test_export_writes_requests_and_history(sim_factory, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = sim_app(sim_factory(parallel=4, speed=20), concurrency=2, words=25)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(lambda: len(app.engine.records) >= 2 and len(app.history.points) >= 2, pilot)
        await pilot.press("e")
    (requests,) = tmp_path.glob("tokentop-*[0-9].jsonl")
    (history,) = tmp_path.glob("tokentop-*-history.jsonl")
    assert all(json.loads(line)["output_tokens"] for line in requests.read_text().splitlines())
    points = [json.loads(line) for line in history.read_text().splitlines()]
    assert len(points) >= 2 and {"aggregate_tps", "concurrency", "server_waiting"} <= set(points[0])


@pytest.mark.slow  # the engine in a process of its own
async def test_a_dead_engine_process_is_said_not_a_crash(sim_factory, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = sim_app(sim_factory(parallel=4, speed=20), in_process=False, concurrency=4, words=50)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(lambda: app.engine.snapshot().streaming, pilot)
        os.kill(app.engine.pids[0], signal.SIGKILL)
        await until(lambda: "stopped: the load engine's process ended" in pane_text(app, "#summary"), pilot)
        await pilot.press("+", "]", "m", "space", "e")  # steering a dead engine does nothing, and says nothing new
        assert app.is_running and "stopped" in pane_text(app, "#summary")
        await pilot.press("q")
    assert app.return_code in (0, None)


async def test_an_out_file_that_fails_is_said_in_the_summary(sim_factory):
    # /dev/full opens, then every write fails with "No space left on device".
    app = sim_app(sim_factory(parallel=4, speed=20), out_path="/dev/full", concurrency=2, words=25)
    async with app.run_test(size=(160, 48)) as pilot:
        text = await until(lambda: (t := pane_text(app, "#summary")) and "--out is no longer written" in t and t,
                           pilot)
        assert "No space left on device" in text and "▶ running" in text  # the load goes on
        await until(lambda: app.engine.snapshot().completed >= 3, pilot)
        await pilot.press("q")


async def test_p_lists_the_server_family_and_hides_it_again(sim_factory):
    from dataclasses import replace

    from fakes import fixed_host
    from tui.probes.family import Member

    members = (Member(2412, "python", 3.0, 700 * 2**20, "python -m vllm.entrypoints.openai.api_server"),
               Member(2456, "VLLM::EngineCore", 91.0, 660 * 2**20),
               Member(2496, "VLLM::Worker\x1b[31m", 100.0, 2 * 2**30))
    server = replace(fixed_host().server, pid=2412, name="vllm", cpu_percent=194.0, family=(2412, 2456, 2496),
                     members=members)
    sim = sim_factory(speed=20)
    target, info = discover(sim.url)
    app = make_app(target, info, LoadSettings(concurrency=0), engine=LoadEngine(target, LoadSettings(concurrency=0)),
                   read_host=lambda: replace(fixed_host(), server=server))
    async with app.run_test(size=(160, 48)) as pilot:
        line = await until(lambda: "vllm pid" in (t := pane_text(app, "#host")) and t, pilot)
        assert "vllm pid 2412 +2 · CPU 194%" in line and "p: all 3" in line and "EngineCore" not in line
        await pilot.press("p")
        listed = await until(lambda: "EngineCore" in (t := pane_text(app, "#host")) and t, pilot)
        assert "python -m vllm.entrypoints" in listed and "91%" in listed
        assert "VLLM::Worker␛[31m" in listed  # a control character shown, never obeyed
        await pilot.press("p")
        await until(lambda: "EngineCore" not in pane_text(app, "#host"), pilot)


async def test_the_u_key_switches_to_users_whose_slider_steers_the_engine(sim_factory):
    app = sim_app(sim_factory(parallel=2, speed=10), concurrency=2, words=25, think_s=0.2, turns=(2, 3))
    async with app.run_test(size=(160, 48)) as pilot:
        assert not app.query_one("#users", Slider).display
        await pilot.press("u")
        assert received(app).users == 10 and app.query_one("#users", Slider).display
        assert not app.query_one("#concurrency", Slider).display
        await pilot.press("+")  # + steps the users now
        assert received(app).users == 15
        await until(lambda: "users 15: thinking" in pane_text(app, "#summary"), pilot)
        await until(lambda: any(r.turn == 2 for r in app.engine.records), pilot, timeout=15)
        await pilot.press("u")  # back to the streams it had
        assert received(app).users is None and received(app).concurrency == 2


async def test_the_server_view_is_read_only_while_open_and_shows_where_the_time_goes(sim_factory):
    """`i` opens the server view; nothing is asked of the server before, and nothing after it closes. The simulated
    ollama reports its durations (at speed 1, in real time), so the split is its own, its queue included."""
    from tui.probes.inside import InsideProbe

    sim = sim_factory(parallel=2, speed=1)
    made: list[InsideProbe] = []

    def make() -> InsideProbe:
        made.append(InsideProbe(sim.url, "ollama"))
        return made[-1]

    target, info = discover(sim.url)
    settings = LoadSettings(concurrency=3, words=25)
    app = make_app(target, info, settings, autostart=True, workers=1, engine=LoadEngine(target, settings),
                   make_inside=make)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(lambda: app.engine.records, pilot, timeout=15)
        assert not made and not app.query_one("#inside").display
        await pilot.press("i")
        assert len(made) == 1
        await until(lambda: "network + client" in pane_text(app, "#inside"), pilot, timeout=15)
        shown = pane_text(app, "#inside")
        assert "server inside · ollama" in shown and "\nqueue " in shown and "prefill" in shown and "(server)" in shown
        assert app.query_one("#inside").display and not app.query_one("#chart").display
        await pilot.press("i")
        assert not app.query_one("#inside").display and app.query_one("#chart").display
        assert app.inside.sample is None and len(made) == 1
