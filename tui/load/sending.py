"""One request as its phase plans it: a share of them closed by the client on purpose (people who give up),
and those sent in the warm-up marked, so every figure can leave them out."""

from __future__ import annotations

import asyncio
import random

from tui.load.client import StreamClient, Target, stream_once
from tui.load.records import NS, RequestRecord
from tui.load.settings import LoadSettings
from tui.load.wire import RequestSpec


def gives_up(settings: LoadSettings, phase: int, stream: int, k: int) -> bool:
    """Whether this request is one the plan closes early: a seeded draw, the same in every run with --seed."""
    share = settings.cancel_share
    return share > 0 and random.Random(f"{settings.seed}:cancel:{phase}:{stream}:{k}").random() < share


async def send(client: StreamClient, target: Target, spec: RequestSpec, record: RequestRecord,
               settings: LoadSettings, give_up: bool, phase_start_ns: int) -> None:
    try:
        if give_up:
            await asyncio.wait_for(stream_once(client, target, spec, record), settings.cancel_after_s)
        else:
            await stream_once(client, target, spec, record)
    except TimeoutError:  # closed on purpose: not an error; its tokens so far are kept
        if record.error_kind == "cancelled":
            record.error_kind = record.error = None
            record.cancelled_by_plan = True
    finally:
        warmup = settings.warmup_s
        record.warmup = warmup is not None and record.send_ns < phase_start_ns + int(warmup * NS)
