"""The client's own cost: a loop that runs late, or a busy core, is said plainly; an idle one is not."""

import asyncio
import time

from tui.bench.render import client_bound
from tui.load.selfcost import ClientCost, CostMonitor


async def watch(blocker=None, seconds: float = 0.8) -> ClientCost:
    monitor = CostMonitor(window_s=10)
    sampling = asyncio.ensure_future(monitor.sample())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if blocker:
            blocker()
        await asyncio.sleep(0.01)
    sampling.cancel()
    return monitor.cost()


async def test_an_idle_loop_is_not_the_bottleneck():
    cost = await watch()
    assert cost.warning is None and cost.cpu < 0.5 and cost.span_s > 0.5


async def test_a_loop_held_up_by_its_own_work_says_it_is_the_bottleneck():
    cost = await watch(blocker=lambda: time.sleep(0.02))  # 20 ms of work between every wake-up
    assert cost.lag_p90_ms > 5 and "client-bound" in cost.warning


def test_a_busy_core_says_so_and_a_short_look_says_nothing():
    assert "uses 95% of a core" in ClientCost(1.0, 2.0, 0.95, span_s=2).warning
    assert ClientCost(50.0, 60.0, 0.95, span_s=0.1).warning is None


def test_the_bench_prints_a_line_per_client_bound_cell():
    rows = [{"concurrency": 512, "words": 25, "client_warning": "client-bound: x"}, {"concurrency": 1, "words": 25}]
    assert client_bound(rows) == "WARNING 512 x 25: client-bound: x\n"
