"""Send one streaming request and fill its record as the bytes arrive.

A failed request is data: every failure ends up in `record.error_kind` / `record.error`, and
only cancellation propagates (after the record is marked "cancelled").
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from tui.load.protocols import OLLAMA, RequestSpec, chat_body, chat_path, decoder_for, error_from_body
from tui.load.records import RequestRecord


@dataclass(frozen=True)
class Target:
    """Where requests go. The API key only ever goes into the Authorization header."""

    url: str
    api: str
    model: str
    api_key: str | None = None

    def headers(self) -> dict[str, str]:
        if self.api_key and self.api != OLLAMA:
            return {"Authorization": f"Bearer {self.api_key}"}
        return {}


def make_client(read_timeout: float = 600.0, connect_timeout: float = 10.0) -> httpx.AsyncClient:
    # The read timeout is the longest silence allowed between two chunks, queueing included:
    # a request queued behind others legitimately waits a long time for its first byte.
    timeout = httpx.Timeout(connect_timeout, read=read_timeout, write=connect_timeout, pool=None)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=128)
    return httpx.AsyncClient(timeout=timeout, limits=limits)


async def stream_once(
    client: httpx.AsyncClient,
    target: Target,
    spec: RequestSpec,
    record: RequestRecord,
) -> RequestRecord:
    """Run one request to its end. Fills `record` in place and returns it.

    A connection closed before any answer is tried once more (a kept-alive connection the server had
    just closed: the request never started). The record says so (`retried`), and its times count from
    the first try: that is what the user waited.
    """
    record.sent_at = time.time()
    record.send_ns = time.perf_counter_ns()
    for attempt in (1, 2):
        try:
            await _exchange(client, target, spec, record)
        except asyncio.CancelledError:
            _fail(record, "cancelled", "cancelled by the client")
            raise
        except httpx.TimeoutException as exc:
            _fail(record, "timeout", f"{type(exc).__name__}: no data for too long")
        except httpx.ConnectError as exc:
            _fail(record, "connect", f"cannot connect to {target.url}: {exc or type(exc).__name__}")
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            if record.http_status is None:
                if attempt == 1:
                    record.retried = True
                    continue
                _fail(record, "closed", f"the server closed the connection before answering, twice"
                                        f" ({type(exc).__name__})")
            else:
                _fail(record, "cut", f"connection closed mid-stream ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            _fail(record, "http", f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # an answer of a shape we did not expect: data, not a crash
            _fail(record, "malformed", f"unexpected answer ({type(exc).__name__}: {exc})"[:200])
        break
    if record.end_ns is None:
        record.end_ns = time.perf_counter_ns()
    return record


async def _exchange(client: httpx.AsyncClient, target: Target, spec: RequestSpec, record: RequestRecord) -> None:
    url = target.url.rstrip("/") + chat_path(target.api)
    decoder = decoder_for(target.api)
    got_final = False
    async with client.stream("POST", url, json=chat_body(target.api, spec), headers=target.headers()) as response:
        record.http_status = response.status_code
        if response.status_code >= 400:
            detail = error_from_body(await response.aread())
            _fail(record, "http", f"HTTP {response.status_code}: {detail}")
            return
        async for data in response.aiter_bytes():
            t = time.perf_counter_ns()
            for event in decoder.feed(data):
                got_final |= _apply(record, event, t)
                if record.error_kind:
                    return
        for event in decoder.close():
            got_final |= _apply(record, event, time.perf_counter_ns())
            if record.error_kind:
                return
    if not got_final:
        _fail(record, "cut", "stream ended before the server said it was done")


def _apply(record: RequestRecord, event, t: int) -> bool:
    """Fold one event into the record; True when it says the response is complete."""
    if event.error:
        _fail(record, event.error_kind or "server", event.error)
        return False
    if event.content or event.reasoning:
        if record.first_token_ns is None:
            record.first_token_ns = t
        record.last_token_ns = t
        record.chunk_ns.append(t)
    if event.output_tokens:
        record.server_output_tokens = event.output_tokens
    if event.prompt_tokens:
        record.prompt_tokens = event.prompt_tokens
    if event.timings:
        record.timings = event.timings
    if event.done_reason:
        record.done_reason = event.done_reason
    return event.final or event.done_reason is not None


def _fail(record: RequestRecord, kind: str, message: str) -> None:
    record.error_kind = kind
    record.error = message
    record.end_ns = time.perf_counter_ns()
