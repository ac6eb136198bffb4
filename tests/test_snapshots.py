"""SVG snapshots of the whole app with fixed inputs: two fake GPUs, a fixed host, a frozen load.

Update after an intended change of the screen: `python -m pytest tests/test_snapshots.py --snapshot-update`.
"""

from __future__ import annotations


import pytest

from fakes import INFO, FrozenEngine, fake_gpu_reading, fixed_host, frozen_snapshot
from tui.cli import make_app
from tui.load.client import Target
from tui.load.discover import ServerInfo
from tui.load.history import LoadPoint
from tui.probes.gpu import GpuReading
from tui.probes.server import LoadedModel, ServerSample

GiB = 2**30


def fixed_server() -> ServerSample:
    model = LoadedModel("llama3.1:70b", 42 * GiB, 36 * GiB, 8192)
    return ServerSample("ollama", "0.12.3", loaded=(model,))


def frozen_app(gpu: GpuReading, info: ServerInfo = INFO):
    """Built by the command line's factory, with a frozen engine and fixed probes handed in."""
    engine = FrozenEngine(frozen_snapshot())
    return make_app(Target(info.url, info.api, info.model), info, engine.settings, engine=engine,
                    read_gpu=lambda: gpu, read_host=fixed_host, read_server=fixed_server,
                    poll_s=3600)  # one reading of each probe: a second would add to the sparklines


async def first_readings(pilot) -> None:
    """Until every pane has drawn its first reading (they arrive from thread workers)."""
    app = pilot.app
    for _ in range(200):
        if app.snap is not None and app.gpu is not None and app.host_seen and app.server is not None and app.recoloured:
            break
        await pilot.pause(0.01)
    await pilot.pause()


async def add_history(pilot) -> None:
    await first_readings(pilot)
    app = pilot.app
    points = [LoadPoint(t_s=float(t), aggregate_tps=min(t, 20) * 3.2, mean_stream_tps=25.4 - min(t, 20) / 2,
                        concurrency=1 if t < 10 else 8, streaming=min(t // 5 + 1, 4), waiting=0 if t < 10 else 4)
              for t in range(60)]
    app.history.points.extend(points)
    app.query_one("#load").show_history(app.history.points)
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_app_with_two_gpus(snap_compare, size):
    assert snap_compare(frozen_app(fake_gpu_reading()), terminal_size=size, run_before=add_history)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_app_without_a_gpu(snap_compare, size):
    reading = GpuReading(gpus=(), error="no NVIDIA GPU/driver found (NVML not available)")
    assert snap_compare(frozen_app(reading), terminal_size=size, run_before=add_history)


async def test_model_picker_switches_the_engine_and_the_header():
    info = ServerInfo("http://127.0.0.1:11434", "ollama", "ollama", "0.12.3", "llama3.1:70b",
                      ["llama3.1:70b", "qwen3:32b"], ["llama3.1:70b"])
    app = frozen_app(fake_gpu_reading(), info)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("M")
        await pilot.press("down", "enter")
        await pilot.pause()
        assert app.engine.model == "qwen3:32b"
        assert "qwen3:32b" in str(app.query_one("#header").render())


async def test_a_theme_restyles_every_pane():
    from tui.widgets.palette import style

    app = frozen_app(fake_gpu_reading())
    async with app.run_test(size=(120, 40)) as pilot:
        await first_readings(pilot)
        before = style("waiting")
        app.theme = "gruvbox"
        for _ in range(100):
            await pilot.pause(0.01)
            if style("waiting") != before:
                break
        assert style("waiting") != before
        await pilot.pause(0.1)
        title = style("title").color.get_truecolor().hex  # the model's name in the header, in the new colour
        assert title in app.export_screenshot()
