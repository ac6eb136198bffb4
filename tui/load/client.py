"""Send one streaming request and fill its record as the bytes arrive.

A failed request is data: every failure ends up in `record.error_kind` / `record.error`, and
only cancellation propagates (after the record is marked "cancelled"). The HTTP layer is
tui/load/transport.py (why not an HTTP library: see there).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import time
from dataclasses import dataclass

from tui.load.wire import (
    MAX_LINE_BYTES,
    OLLAMA,
    LineTooLong,
    RequestSpec,
    chat_body,
    chat_path,
    decoder_for,
    error_from_body,
    ollama_event,
    openai_whole_event,
)
from tui.load.records import RequestRecord
from tui.load.transport import ConnectionPool, Response, Sink, TransportError
from tui.untrusted import Redactor, mask_url, one_line, url_password


@dataclass(frozen=True)
class Target:
    """Where requests go. The API key only ever goes into the Authorization header."""

    url: str
    api: str
    model: str
    api_key: str | None = None
    usage_per_chunk: bool = False  # ask for the token count in every chunk (vLLM, SGLang: continuous_usage_stats)

    def headers(self) -> dict[str, str]:
        if self.api_key and self.api != OLLAMA:
            return {"Authorization": f"Bearer {self.api_key}"}
        return {}

    @property
    def shown_url(self) -> str:
        """The URL as people see it: any password in it masked."""
        return mask_url(self.url)

    def redactor(self) -> Redactor:
        """Masks the key and the URL's password in texts that a server may have echoed them into."""
        return Redactor(self.api_key, url_password(self.url))


class StreamClient:
    """Kept-alive connections and the read timeout; make it on the loop that uses it, close it there."""

    def __init__(self, read_timeout: float = 600.0, connect_timeout: float = 10.0) -> None:
        # The read timeout is the longest silence allowed between two chunks, queueing included:
        # a request queued behind others legitimately waits a long time for its first byte.
        self.read_timeout = read_timeout
        self.pool = ConnectionPool(connect_timeout)

    async def close(self) -> None:
        await self.pool.close()

    async def __aenter__(self) -> StreamClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def make_client(read_timeout: float = 600.0, connect_timeout: float = 10.0) -> StreamClient:
    return StreamClient(read_timeout, connect_timeout)


async def stream_once(
    client: StreamClient,
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
    record.forced_length = spec.force_length and target.api != OLLAMA  # ollama has no way to force it
    try:
        await _attempts(client, target, spec, record)
    finally:
        if record.error:
            record.error = one_line(target.redactor()(record.error))
    if record.end_ns is None:
        record.end_ns = time.perf_counter_ns()
    return record


async def _attempts(client: StreamClient, target: Target, spec: RequestSpec, record: RequestRecord) -> None:
    url = target.url.rstrip("/") + chat_path(target.api)
    body = json.dumps(chat_body(target.api, spec, target.usage_per_chunk)).encode()
    for attempt in (1, 2):
        answer = _Answer(record, target.api)
        try:
            await client.pool.post(url, body, target.headers(), answer.sink_for, client.read_timeout,
                                   fresh=attempt > 1)
            answer.finish()
        except asyncio.CancelledError:
            _fail(record, "cancelled", "cancelled by the client")
            raise
        except _Stop:  # the answer carried an error (already recorded): its connection is closed
            pass
        except TransportError as exc:
            if exc.kind == "closed" and attempt == 1:  # a kept-alive connection the server had just closed
                record.retried = True
                continue
            message = f"cannot connect to {target.shown_url}: {exc}" if exc.kind == "connect" else str(exc)
            if exc.kind == "closed":
                message += ", twice"
            _fail(record, exc.kind, message)
        except LineTooLong as exc:
            _fail(record, "malformed", str(exc))
        except Exception as exc:  # an answer of a shape we did not expect: data, not a crash
            _fail(record, "malformed", f"unexpected answer ({type(exc).__name__}: {exc})")
        break


class _Stop(Exception):
    """Raised in a sink to end an answer that carried an error."""


class _Answer:
    """Where one answer's body goes: decoded as it streams, or kept whole (errors, unstreamed JSON)."""

    def __init__(self, record: RequestRecord, api: str) -> None:
        self.record, self.api = record, api
        self.response: Response | None = None
        self.decoder = decoder_for(api)
        self.body = bytearray()
        self.got_final = False

    def sink_for(self, response: Response) -> Sink:
        self.response = response
        self.record.http_status = response.status
        if response.status >= 300 or response.content_type == "application/json":
            return self.keep
        return self.stream

    def keep(self, piece: bytes, t: int) -> None:
        self.body += piece
        if len(self.body) > MAX_LINE_BYTES:
            raise LineTooLong(f"answer over {MAX_LINE_BYTES // 2**20} MiB")

    def stream(self, piece: bytes, t: int) -> None:
        for event in self.decoder.feed(piece):
            self.got_final |= _apply(self.record, event, t)
            if self.record.error_kind:
                raise _Stop

    def finish(self) -> None:
        record, response = self.record, self.response
        status = response.status
        if 300 <= status < 400:
            where = response.headers.get("location") or "nowhere (no Location header)"
            _fail(record, "http", f"HTTP {status}: redirected to {where} (not followed: point --url there)")
        elif status >= 400:
            detail = error_from_body(bytes(self.body))
            record.retry_after_s = retry_after(response.headers.get("retry-after"))
            if record.retry_after_s is not None:
                detail += f" (retry after {response.headers['retry-after'].strip()} s)"
            _fail(record, "http", f"HTTP {status}: {detail}")
        elif response.content_type == "application/json":
            _whole_answer(record, self.api, bytes(self.body))
        else:
            t = time.perf_counter_ns()
            for event in self.decoder.close():
                self.got_final |= _apply(record, event, t)
                if record.error_kind:
                    return
            if not self.got_final:
                _fail(record, "cut", "stream ended before the server said it was done")


def _whole_answer(record: RequestRecord, api: str, body: bytes) -> None:
    """A 200 with one JSON body: the server ignored `stream: true`. An answer, but no TTFT to claim."""
    record.streamed = False
    try:
        obj = json.loads(body)
    except ValueError:
        _fail(record, "malformed", f"not streamed and not JSON: {body[:80]!r}")
        return
    if not isinstance(obj, dict):
        _fail(record, "malformed", f"not streamed, and the JSON is not an object: {body[:80]!r}")
        return
    event = ollama_event(obj) if api == OLLAMA else openai_whole_event(obj)
    if event.error:
        _fail(record, event.error_kind or "server", event.error)
        return
    _apply(record, event, time.perf_counter_ns())
    record.first_token_ns = record.last_token_ns = None  # one body: no first token was seen before the end
    del record.chunk_ns[:]


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number, or an HTTP date), or None."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _apply(record: RequestRecord, event, t: int) -> bool:
    """Fold one event into the record; True when it says the response is complete."""
    if event.error:
        _fail(record, event.error_kind or "server", event.error)
        return False
    before = record.server_output_tokens or 0
    # With per-chunk usage a chunk whose count rises carries tokens even when its text is empty: vLLM sends
    # "" for a token that ends inside a UTF-8 character (an emoji's first bytes). A finishing chunk's count
    # is the total, not a rise.
    counted = event.tokens_so_far is not None and event.tokens_so_far > before and event.done_reason is None
    if event.content and record.answer_parts is not None:  # a conversation: the next turn resends it
        record.answer_parts.append(event.content)
    if event.content or event.reasoning or counted:
        if record.first_token_ns is None:
            record.first_token_ns = t
        record.last_token_ns = t
        if event.tokens_so_far is not None and len(record.chunk_tokens) == len(record.chunk_ns):
            record.chunk_tokens.append(max(0, int(event.tokens_so_far - before)))  # this chunk's: the rise
        record.chunk_ns.append(t)
    if event.output_tokens:
        record.server_output_tokens = event.output_tokens
    if event.prompt_tokens:
        record.prompt_tokens = event.prompt_tokens
    if event.timings:
        record.timings = event.timings
    if event.response_id and record.response_id is None:
        record.response_id = event.response_id
    if event.done_reason:
        record.done_reason = event.done_reason
    return event.final or event.done_reason is not None


def _fail(record: RequestRecord, kind: str, message: str) -> None:
    record.error_kind = kind
    record.error = message
    record.end_ns = time.perf_counter_ns()
