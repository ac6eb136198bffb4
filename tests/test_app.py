"""The app driven by Textual's pilot against the simulated server: sliders, queueing, no GPU, quitting."""

from __future__ import annotations

import asyncio
import json

import pytest

from tui.cli import make_app
from tui.load.discover import discover
from tui.load.settings import MAX_CONCURRENCY, LoadSettings
from tui.panes.load import LoadPane
from tui.probes.gpu import GpuProbe
from tui.widgets.slider import Slider
from tui.widgets.streams import StreamTable


def sim_app(sim, out_path=None, autostart=True, **settings):
    target, info = discover(sim.url)
    return make_app(target, info, LoadSettings(**settings), autostart=autostart, out_path=out_path)


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
        await pilot.press("+", "+")
        await until(lambda: app.engine.settings.concurrency == 3, pilot)  # the slider's message comes after
        slider = app.query_one("#concurrency", Slider)
        slider.focus()
        await pilot.press("right")
        await until(lambda: app.engine.settings.concurrency == 4, pilot)
        await pilot.press("end")
        await until(lambda: app.engine.settings.concurrency == MAX_CONCURRENCY, pilot)
        await pilot.press("home")
        await until(lambda: app.engine.settings.concurrency == 0, pilot)
        # A click on the track's far end moves the knob there.
        await pilot.click(slider, offset=(slider.size.width - 4, 0))
        await until(lambda: app.engine.settings.concurrency == MAX_CONCURRENCY, pilot)
        await pilot.press("home", "+", "+")  # back to a load this machine runs in a test
        await pilot.press("]")
        await until(lambda: app.engine.settings.words == 50, pilot)
        await pilot.press("m")
        await until(lambda: app.engine.settings.mode == "input", pilot)
        await pilot.press("space")
        await until(lambda: app.engine.running, pilot)


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
    target, info = discover(sim.url)
    app = make_app(target, info, LoadSettings(concurrency=1, words=25), autostart=False,
                   slo={"ttft_p99": 0.25}, hold_s=1.5)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("f")
        slider = app.query_one("#concurrency", Slider)
        # it steps 1, 2, 4 (then 3) by itself, the slider with it
        await until(lambda: app.engine.settings.concurrency > 1 and slider.value == app.engine.settings.concurrency,
                    pilot)
        await until(lambda: app.hunt is None, pilot, timeout=20)
        await until(lambda: any("knee 2" in (p.mark or "") for p in app.history.points), pilot)
        marks = " ".join(p.mark for p in app.history.points if p.mark)
        assert marks == "1 ✓ 2 ✓ 4 ✗ 3 ✗ knee 2"
        assert app.engine.settings.concurrency == 1 and not app.engine.running  # as the user had it
        app.hold_s = 5.0  # long enough to be stopped half way
        await pilot.press("f")
        await until(lambda: app.hunt is not None and app.engine.running, pilot)
        await pilot.press("escape")  # stops the search and puts the setting back
        await until(lambda: app.hunt is None and app.engine.settings.concurrency == 1, pilot)
        assert not app.engine.running
        assert sum("knee" in (p.mark or "") for p in app.history.points) == 1  # the stopped one found none


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


async def test_quitting_mid_run_leaves_complete_jsonl(sim_factory, tmp_path):
    out = tmp_path / "run.jsonl"
    app = sim_app(sim_factory(parallel=4, speed=20), out_path=str(out), concurrency=6, words=50)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(lambda: len(app.engine.records) >= 6 and app.engine.snapshot().streaming, pilot)
        started = asyncio.get_running_loop().time()
        await pilot.press("q")
        assert asyncio.get_running_loop().time() - started < 2.5
    lines = out.read_text().splitlines()
    assert len(lines) == len(app.engine.records) >= 6
    for line in lines:
        record = json.loads(line)
        assert record["error"] is None and record["output_tokens"] > 0
    assert not app.engine._process.is_alive()  # the engine's own process is gone


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


async def test_a_dead_engine_process_is_said_not_a_crash(sim_factory, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = sim_app(sim_factory(parallel=4, speed=20), concurrency=4, words=50)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(lambda: app.engine.snapshot().streaming, pilot)
        app.engine._process.kill()
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

    from test_snapshots import fixed_host
    from tui.probes.family import Member

    members = (Member(2412, "python", 3.0, 700 * 2**20, "python -m vllm.entrypoints.openai.api_server"),
               Member(2456, "VLLM::EngineCore", 91.0, 660 * 2**20),
               Member(2496, "VLLM::Worker\x1b[31m", 100.0, 2 * 2**30))
    server = replace(fixed_host().server, pid=2412, name="vllm", cpu_percent=194.0, family=(2412, 2456, 2496),
                     members=members)
    sim = sim_factory(speed=20)
    target, info = discover(sim.url)
    app = make_app(target, info, LoadSettings(concurrency=0), read_host=lambda: replace(fixed_host(), server=server))
    async with app.run_test(size=(160, 48)) as pilot:
        line = await until(lambda: "vllm pid" in (t := pane_text(app, "#host")) and t, pilot)
        assert "vllm pid 2412 +2 · CPU 194%" in line and "p: all 3" in line and "EngineCore" not in line
        await pilot.press("p")
        listed = await until(lambda: "EngineCore" in (t := pane_text(app, "#host")) and t, pilot)
        assert "python -m vllm.entrypoints" in listed and "91%" in listed
        assert "VLLM::Worker␛[31m" in listed  # a control character shown, never obeyed
        await pilot.press("p")
        await until(lambda: "EngineCore" not in pane_text(app, "#host"), pilot)
