"""The garbage collector, for a process that sends.

Python collects its young objects by count: allocations less deallocations. While thousands of requests end and
as many begin (a closed loop's wave), deallocations cancel allocations, so the count barely moves while the young
list fills with the new requests' objects; the collection that finally comes walks tens of thousands of them
(2–5 ms), and the next older one 60,000 (30 ms): every chunk stamped in those pauses is that late. No cycle is
found in them (an answer's objects make none: tui/load/transport.py `_Exchange.end`).

So while an engine runs, collections go by time instead: the young objects every 5 ms while that takes a while (a
few hundred objects, well under a millisecond), every 50 ms while it is quick (a light load: the wake-ups would
cost more than the walks), and what survived is frozen every second, out of every later walk (still freed as
ever when its last reference goes). Every 10 minutes everything is walked once, so that a cycle frozen by mistake (an error
path's) is freed: one pause of tens to hundreds of ms, then nothing.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from contextlib import contextmanager

GIL_SWITCH_S = 0.0001  # a process that sends takes the GIL back from its other threads within 0.1 ms
YOUNG_EVERY_S = (0.005, 0.05)  # while young collections take over QUICK_NS; while they are quick
QUICK_NS = 100_000
FREEZE_EVERY_S = 1.0
FULL_EVERY_S = 600.0

_collectors = 0  # engine threads in this process collecting by time; Python's own collections are back when none is


def tune_process() -> None:
    """For a process that sends: its loop gets the GIL back soon."""
    sys.setswitchinterval(GIL_SWITCH_S)


def freeze_long_lived() -> None:
    """The young generations collected (their cycles freed), then everything alive left out of later walks."""
    gc.collect(1)
    gc.freeze()


@contextmanager
def collections_by_time():
    """Around an engine thread's loop: Python's collections by count are off until the last such thread in the
    process has ended, however its loop ended (a stop that timed out leaves its tasks unfinished)."""
    global _collectors
    _collectors += 1
    gc.disable()
    try:
        yield
    finally:
        _collectors -= 1
        if _collectors == 0:
            gc.enable()


async def collect_by_time(young_s: tuple[float, float] = YOUNG_EVERY_S, freeze_s: float = FREEZE_EVERY_S,
                          full_s: float = FULL_EVERY_S) -> None:
    """A task on an engine's loop, inside `collections_by_time`, for as long as the engine runs: the collections."""
    loop = asyncio.get_running_loop()
    next_freeze, next_full = loop.time() + freeze_s, loop.time() + full_s
    busy_s, light_s = young_s
    every_s = light_s
    while True:
        await asyncio.sleep(every_s)
        began = time.perf_counter_ns()
        gc.collect(0)
        every_s = busy_s if time.perf_counter_ns() - began > QUICK_NS else min(light_s, every_s * 2)
        now = loop.time()
        if now >= next_full:
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            next_full = now + full_s
        elif now >= next_freeze:
            gc.freeze()
            next_freeze = now + freeze_s
