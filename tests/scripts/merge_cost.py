"""What merging the workers' snapshots costs the app (several times a second). A measurement, not a test.

    python tests/scripts/merge_cost.py --workers 1,4,16

Each worker's snapshot is a full one: MAX_ROWS stream rows, 256 recent TTFTs, TTFT and tok/s bins, a split.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from fakes import frozen_snapshot  # noqa: E402

from tui.load.pool import merge  # noqa: E402
from tui.load.time_split import RecentSplit  # noqa: E402
from tui.load.views import MAX_ROWS  # noqa: E402


def worker_snapshot(worker: int):
    base = frozen_snapshot()
    rows = tuple(dataclasses.replace(base.streams[i % len(base.streams)], index=worker * MAX_ROWS + i)
                 for i in range(MAX_ROWS))
    return dataclasses.replace(base, streams=rows, recent_ttfts_s=tuple(0.1 + i / 1000 for i in range(256)),
                               ttft_bins=(1,) * 10, tps_bins=(1,) * 9, streams_left_off=1000,
                               split=RecentSplit(256, 0.2, 2.0, {"prefill": 0.1, "decode": 1.8}, "llama.cpp timings"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", default="1,4,16")
    p.add_argument("--repeat", type=int, default=200)
    args = p.parse_args()
    for n in (int(x) for x in args.workers.split(",")):
        snaps = [worker_snapshot(w) for w in range(n)]
        settings = snaps[0].settings
        start = time.perf_counter()
        for _ in range(args.repeat):
            merge(snaps, settings)
        each_ms = (time.perf_counter() - start) / args.repeat * 1000
        print(f"{n:>3} workers ({n * MAX_ROWS:,} rows): {each_ms:.2f} ms a merge; at 5 snapshots a second"
              f" {each_ms * 5 / 10:.1f} % of a core")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
