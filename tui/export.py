"""`e` in the app: the finished requests kept, one JSON line each, and the per-second history beside them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from tui.load.history import LoadPoint
from tui.load.records import RequestRecord, write_jsonl


def export_run(records: Sequence[RequestRecord], points: Sequence[LoadPoint], completed: int) -> str:
    """Write both files in the working folder; the sentence saying where. OSError when they cannot be written.

    `completed`: how many requests have finished in all (more than `records` when the oldest were let go)."""
    stem = f"tokentop-{datetime.now():%Y%m%d-%H%M%S}"
    path, history = Path(f"{stem}.jsonl").resolve(), Path(f"{stem}-history.jsonl").resolve()
    write_jsonl(path, list(records))
    history.write_text("".join(json.dumps(asdict(p)) + "\n" for p in points))
    dropped = completed - len(records)
    kept = f" (the newest; {dropped} older ones are only in --out)" if dropped > 0 else ""
    return f"{len(records)} finished request(s){kept} written to {path}, per-second history to {history.name}"
