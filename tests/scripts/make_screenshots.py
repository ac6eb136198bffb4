"""Make the README's screenshots: the real app against `tokentop sim` (4 slots, 8 streams).

    python tests/scripts/make_screenshots.py

Writes screenshots/tokentop-WxH.svg for 80x24, 120x40 and 160x48, and tokentop-rate-160x48.svg (the open
loop past the server's capacity: its backlog growing). Each run of the app lasts ~15 s
so the chart has some history and the queue has turned over.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tui.cli import make_app
from tui.load.discover import discover
from tui.load.settings import LoadSettings
from tui.servers.simproc import SimProcess

OUT = Path(__file__).resolve().parents[2] / "screenshots"
SIZES = ((80, 24), (120, 40), (160, 48))
STREAMS = LoadSettings(concurrency=8, words=100)
RATE = LoadSettings(rate=2.0, words=100)  # past what 4 slots serve at 2x speed (about 1.3 requests/s)


async def shoot(url: str, size: tuple[int, int], seconds: float, settings: LoadSettings = STREAMS,
                name: str = "tokentop") -> Path:
    target, info = discover(url)
    app = make_app(target, info, settings, autostart=True)
    path = OUT / f"{name}-{size[0]}x{size[1]}.svg"
    async with app.run_test(size=size) as pilot:
        await pilot.pause(seconds)
        app.save_screenshot(path.name, str(OUT))
    return path


def main() -> int:
    with SimProcess(speed=2) as sim:
        url = sim.url
        OUT.mkdir(exist_ok=True)
        for size in SIZES:
            print(asyncio.run(shoot(url, size, 15.0)))
        print(asyncio.run(shoot(url, (160, 48), 20.0, RATE, "tokentop-rate")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
