"""The garbage collector, for a process that sends: full collections walk every live object (tens of ms with
thousands of streams in flight, every stamp that late), and an answer's objects make no cycles for them to
find (tui/load/transport.py `_Exchange.end`). So full collections come seldom, and what has lived a while
(modules, connections, streams in flight) is frozen out of them: it is still freed as ever when its last
reference goes, only never walked again.
"""

from __future__ import annotations

import asyncio
import gc
import sys

GIL_SWITCH_S = 0.0005  # a process that sends takes the GIL back from its other threads within 0.5 ms
FULL_GC_EVERY = 100  # young collections between full ones (Python's default: 10)
FREEZE_EVERY_S = 30.0


def tune_process() -> None:
    """For a process that sends: its loop gets the GIL back soon, and full collections come seldom."""
    sys.setswitchinterval(GIL_SWITCH_S)
    gen0, gen1, _ = gc.get_threshold()
    gc.set_threshold(gen0, gen1, FULL_GC_EVERY)


def freeze_long_lived() -> None:
    """The young generations collected (their cycles freed), then everything alive left out of full collections."""
    gc.collect(1)
    gc.freeze()


async def freeze_now_and_then(every_s: float = FREEZE_EVERY_S) -> None:
    """A task on the engine's loop: the app opens its connections as streams start, never all at once."""
    while True:
        await asyncio.sleep(every_s)
        freeze_long_lived()
