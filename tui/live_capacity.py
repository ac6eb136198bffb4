"""`f` in the app: the capacity search of the bench (tui/load/capacity.py), run live on the app's engine.

The load in flight finishes first; then each level is a phase held for `hold_s` seconds that then drains,
so every request of the level is judged, not only the ones quick enough to end inside the hold, and none
of another level's queues in front of it; the sliders follow the engine as it steps. Esc (a
cancel) stops it. Either way the user's own setting comes back, paused again if it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tui.load.capacity import CONCURRENCY, RATE, CapacitySearch, search_capacity
from tui.load.contract import Engine
from tui.load.history import LoadHistory
from tui.load.phase import run_phase
from tui.load.records import RequestRecord
from tui.load.slo import Broken, slo_text

Say = Callable[..., None]  # the app's notification: say(text, title=…, timeout=…)


class LiveCapacity:
    def __init__(self, engine: Engine, history: LoadHistory, slo: dict[str, float], hold_s: float, say: Say) -> None:
        self.engine, self.history, self.slo, self.hold_s, self.say = engine, history, slo, hold_s, say
        self.search: CapacitySearch | None = None  # while one runs

    @property
    def running(self) -> bool:
        return self.search is not None

    async def run(self) -> None:
        """One search from the engine's present load; its kind follows the loop the user is in."""
        engine = self.engine
        before, was_running = engine.settings, engine.running
        search = self.search = CapacitySearch(RATE if before.rate is not None else CONCURRENCY)
        self.say(f"finding the capacity within {slo_text(self.slo)}, {self.hold_s:g} s a level (Esc stops)",
                 title="capacity")

        async def run_level(level: float) -> list[RequestRecord]:
            engine.resume()
            shape = {"rate": level} if search.kind == RATE else {"rate": None, "concurrency": int(level)}
            return (await run_phase(engine, {**shape, "duration_s": self.hold_s, "requests_per_stream": None})).records

        def heard(level: float, missed: list[Broken]) -> None:
            self.history.mark(f"{level:g} {'✓' if not missed else '✗'}")

        try:
            engine.resume()  # the requests in flight finish first: none of them may queue in front of a level's
            await run_phase(engine, {"concurrency": 0, "rate": None, "requests_per_stream": 1})
            await search_capacity(search, run_level, self.slo, heard)
            self.history.mark(f"knee {search.capacity:g}")
            self.say(search.summary(self.slo).replace("\n", " "), title="capacity", timeout=60)
        except asyncio.CancelledError:
            self.say("capacity search stopped; your setting is back", title="capacity")
            raise
        finally:
            self.search = None
            engine.begin(concurrency=before.concurrency, rate=before.rate, duration_s=None, requests_per_stream=None,
                         start_ns=None)
            if not was_running:
                engine.pause()
