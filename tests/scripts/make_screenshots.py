"""Make the README's screenshots: the real app against `tokentop sim` (4 slots, 8 streams).

    python tests/scripts/make_screenshots.py
    python tests/scripts/make_screenshots.py --out DIR --name gpu-box --sizes 160x48,80x24 --seconds 10

Writes screenshots/tokentop-WxH.svg for 80x24, 120x40 and 160x48, and tokentop-rate-160x48.svg (the open
loop past the server's capacity: its backlog growing). Each run of the app lasts ~15 s
so the chart has some history and the queue has turned over. With --name, only the streams at the sizes
given (the GPU box's check: tests/scripts/gpu_box.sh).
"""

from __future__ import annotations

import argparse
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
                name: str = "tokentop", out: Path = OUT) -> Path:
    target, info = discover(url)
    app = make_app(target, info, settings, autostart=True)
    path = out / f"{name}-{size[0]}x{size[1]}.svg"
    async with app.run_test(size=size) as pilot:
        await pilot.pause(seconds)
        app.save_screenshot(path.name, str(out))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="the README's screenshots, of the app against `tokentop sim`")
    p.add_argument("--out", type=Path, default=OUT, help=f"the folder (default {OUT})")
    p.add_argument("--name", help="only the streams, as NAME-WxH.svg")
    p.add_argument("--sizes", default=",".join(f"{w}x{h}" for w, h in SIZES), help="WxH,... (default %(default)s)")
    p.add_argument("--seconds", type=float, default=15.0, help="how long each run of the app lasts (default 15)")
    args = p.parse_args(argv)
    sizes = [tuple(int(x) for x in size.split("x")) for size in args.sizes.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    with SimProcess(speed=2) as sim:
        for size in sizes:
            print(asyncio.run(shoot(sim.url, size, args.seconds, name=args.name or "tokentop", out=args.out)))
        if not args.name:
            print(asyncio.run(shoot(sim.url, (160, 48), args.seconds + 5, RATE, "tokentop-rate", args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
