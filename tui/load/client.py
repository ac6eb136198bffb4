"""Send one streaming request and fill its record as the bytes arrive.

A failed request is data: every failure ends up in `record.error_kind` / `record.error`, and
only cancellation propagates (after the record is marked "cancelled").

The streaming path uses aiohttp (C HTTP parser; measured in tests/bench_streams.py, see the README):
httpx's pure-Python path cost 3–5x its CPU per chunk and its connection pool spread "N requests at once"
over seconds. httpx stays for discovery and the probes, where cost does not matter.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import time
from dataclasses import dataclass

import aiohttp

from tui.load.protocols import (
    MAX_LINE_BYTES, OLLAMA, LineTooLong, RequestSpec, chat_body, chat_path, decoder_for, error_from_body,
    ollama_event, openai_whole_event,
)
from tui.load.records import RequestRecord
from tui.untrusted import Redactor, mask_url, one_line, url_password


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

    @property
    def shown_url(self) -> str:
        """The URL as people see it: any password in it masked."""
        return mask_url(self.url)

    def redactor(self) -> Redactor:
        """Masks the key and the URL's password in texts that a server may have echoed them into."""
        return Redactor(self.api_key, url_password(self.url))


def make_client(read_timeout: float = 600.0, connect_timeout: float = 10.0) -> aiohttp.ClientSession:
    """A session for streaming requests; create it on the loop that will use it, close it with `await .close()`.

    The read timeout is the longest silence allowed between two chunks, queueing included: a request
    queued behind others legitimately waits a long time for its first byte.
    """
    timeout = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=connect_timeout, sock_read=read_timeout)
    connector = aiohttp.TCPConnector(limit=0, force_close=False, enable_cleanup_closed=True)
    # identity: a compressed stream would hold tokens back in the decompressor and blur their times
    return aiohttp.ClientSession(timeout=timeout, connector=connector, auto_decompress=False,
                                 headers={"Accept-Encoding": "identity"})


async def stream_once(
    client: aiohttp.ClientSession,
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
    try:
        await _attempts(client, target, spec, record)
    finally:
        if record.error:
            record.error = one_line(target.redactor()(record.error))
    if record.end_ns is None:
        record.end_ns = time.perf_counter_ns()
    return record


async def _attempts(client: aiohttp.ClientSession, target: Target, spec: RequestSpec,
                    record: RequestRecord) -> None:
    for attempt in (1, 2):
        try:
            await _exchange(client, target, spec, record)
        except asyncio.CancelledError:
            _fail(record, "cancelled", "cancelled by the client")
            raise
        except TimeoutError:
            _fail(record, "timeout", "no data for too long (--timeout)")
        except aiohttp.ClientConnectorError as exc:
            _fail(record, "connect", f"cannot connect to {target.shown_url}: {exc.os_error or exc}")
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as exc:
            if record.http_status is None:
                if attempt == 1:  # a kept-alive connection the server had just closed: the request never started
                    record.retried = True
                    continue
                _fail(record, "closed", f"the server closed the connection before answering, twice"
                                        f" ({type(exc).__name__})")
            else:
                _fail(record, "cut", f"connection closed mid-stream ({type(exc).__name__})")
        except aiohttp.ClientResponseError as exc:  # not HTTP as aiohttp's parser knows it
            _fail(record, "malformed", f"not a valid HTTP answer ({exc.message or type(exc).__name__})")
        except aiohttp.ClientError as exc:
            _fail(record, "http", f"{type(exc).__name__}: {exc}")
        except LineTooLong as exc:  # leaving the `async with` unread closed the connection
            _fail(record, "malformed", str(exc))
        except Exception as exc:  # an answer of a shape we did not expect: data, not a crash
            _fail(record, "malformed", f"unexpected answer ({type(exc).__name__}: {exc})")
        break


async def _exchange(client: aiohttp.ClientSession, target: Target, spec: RequestSpec, record: RequestRecord) -> None:
    url = target.url.rstrip("/") + chat_path(target.api)
    body = json.dumps(chat_body(target.api, spec)).encode()
    headers = {"Content-Type": "application/json", **target.headers()}
    async with client.post(url, data=body, headers=headers, allow_redirects=False) as response:
        record.http_status = status = response.status
        if 300 <= status < 400:
            where = response.headers.get("Location") or "nowhere (no Location header)"
            _fail(record, "http", f"HTTP {status}: redirected to {where} (not followed: point --url there)")
        elif status >= 400:
            detail = error_from_body(await _read_capped(response))
            record.retry_after_s = retry_after(response.headers.get("Retry-After"))
            if record.retry_after_s is not None:
                detail += f" (retry after {response.headers['Retry-After'].strip()} s)"
            _fail(record, "http", f"HTTP {status}: {detail}")
        elif response.content_type == "application/json":
            _whole_answer(record, target.api, await _read_capped(response))
        else:
            await _stream(record, target.api, response)
        if record.error_kind:
            response.close()  # never drain what is left of a failed answer: it may not end


async def _stream(record: RequestRecord, api: str, response: aiohttp.ClientResponse) -> None:
    decoder = decoder_for(api)
    got_final = False
    async for data in response.content.iter_any():
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


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    body = bytearray()
    async for data in response.content.iter_any():
        body += data
        if len(body) > MAX_LINE_BYTES:
            raise LineTooLong(f"answer over {MAX_LINE_BYTES // 2**20} MiB")
    return bytes(body)


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
    record.chunk_ns.clear()


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
    if event.response_id and record.response_id is None:
        record.response_id = event.response_id
    if event.done_reason:
        record.done_reason = event.done_reason
    return event.final or event.done_reason is not None


def _fail(record: RequestRecord, kind: str, message: str) -> None:
    record.error_kind = kind
    record.error = message
    record.end_ns = time.perf_counter_ns()
