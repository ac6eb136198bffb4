"""What a stream and a token cost in memory. A measurement, not a test (pytest skips it).

    python tests/scripts/memory_per_stream.py --streams 256,1024,4096

Per open stream: the engine runs in this process against tests/scripts/paced_server.py with a TTFT far away
(every stream sent, its connection open, waiting for its first token); the RSS of this process at each N, the
engine's own process-wide cost per stream being the slope between the counts. Per token kept: a finished
record's bytes (its object, its stamps and counts) with 0 and with 10,000 chunks, by tracemalloc.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))
import paced_server  # noqa: E402

from tui.limits import raise_open_files  # noqa: E402
from tui.load.client import Target  # noqa: E402
from tui.load.engine import LoadEngine  # noqa: E402
from tui.load.records import RequestRecord  # noqa: E402
from tui.load.settings import LoadSettings  # noqa: E402


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def open_streams(url: str, n: int) -> float:
    """RSS (MB) with n streams sent and waiting for their first token."""
    engine = LoadEngine(Target(url, "openai", "paced"), LoadSettings(concurrency=n, words=10))
    engine.start(running=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and engine.snapshot().waiting < n:
            time.sleep(0.5)
        time.sleep(2)
        gc.collect()
        waiting = engine.snapshot().waiting
        if waiting < n:
            print(f"  only {waiting} of {n} streams were waiting", file=sys.stderr)
        return rss_mb()
    finally:
        engine.stop(timeout=5)


def record_bytes(chunks: int) -> int:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    record = RequestRecord(stream=0, concurrency=1, words=10, mode="output", api="openai", model="paced")
    for i in range(chunks):
        record.chunk_ns.append(1_000_000_000 + i)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del record
    return after - before


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--streams", default="256,1024,4096")
    args = p.parse_args()
    raise_open_files()
    counts = [int(x) for x in args.streams.split(",")]
    log = Path(tempfile.mkdtemp(prefix="tokentop-mem-")) / "server.jsonl"
    server, port = paced_server.start(str(log), ttft=3600.0, tokens=10, rate=10.0, lifetime=3600)
    try:
        base = rss_mb()
        rows = [(n, open_streams(f"http://127.0.0.1:{port}", n)) for n in counts]
    finally:
        paced_server.stop(server)
    print(f"this process before any stream: {base:.1f} MB")
    for (n, mb), (prev_n, prev_mb) in zip(rows, [(0, base), *rows[:-1]]):
        print(f"{n:>6} streams waiting: RSS {mb:.1f} MB, {(mb - prev_mb) * 2**20 / (n - prev_n) / 1024:.1f} KB a stream"
              f" from {prev_n}")
    empty, full = record_bytes(0), record_bytes(10_000)
    print(f"a finished record: {empty} B with no chunk, {(full - empty) / 10_000:.1f} B a chunk more (stamps kept)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
