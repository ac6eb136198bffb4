"""Reading an HTTP answer from a server tokentop does not control (discovery, /metrics, /api/ps, /props,
Prometheus, calibration): one rule for every such body.

The body is capped once decoded, and the decoding itself is bounded: 1 MB of gzip on the wire can be 1 GiB
decoded, so it is inflated piece by piece with zlib's `max_length`, never whole. The whole request has one
deadline: httpx's timeouts bound each read, not the request, so a server trickling a byte every 2 s never
trips them. The deadline is checked as each piece arrives (the wait for a piece is bounded by the deadline
too). Every failure is an httpx.HTTPError, as a failed request already was. (The streaming chat requests have
their own transport, tui/load/transport.py, with its own limits.)
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass
from typing import Any

import httpx

MAX_BODY = 8 << 20  # decoded bytes; the largest real answer seen is a few hundred KiB (vLLM's /metrics)
# Only what can be inflated with a bound: a server that uses another encoding (br, zstd) is refused.
ACCEPT_ENCODING = "gzip, deflate"


class AnswerTooBig(httpx.HTTPError):
    """The body, decoded, is over the cap."""


class AnswerTooSlow(httpx.TimeoutException):
    """The whole answer did not arrive within the deadline."""


@dataclass(frozen=True)
class Reply:
    """A whole answer: its status, headers and decoded body."""

    status_code: int
    headers: httpx.Headers
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; ValueError for anything that is not (nesting too deep included)."""
        try:
            return json.loads(self.content)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def fetch(client: httpx.Client, url: str, *, method: str = "GET", deadline: float | None = None,
          limit: int = MAX_BODY, headers: dict[str, str] | None = None, **options: Any) -> Reply:
    """`method url` on `client`, its body read whole within `deadline` seconds (default: the client's read
    timeout) and at most `limit` bytes once decoded. `options` go to httpx (params=, json=)."""
    if deadline is None:
        deadline = client.timeout.read or 30.0
    ends = time.monotonic() + deadline
    sent = {"Accept-Encoding": ACCEPT_ENCODING, **(headers or {})}
    with client.stream(method, url, headers=sent, timeout=deadline, **options) as response:
        if response.is_stream_consumed:  # read already: a response made in memory (httpx.MockTransport)
            body = response.content
        else:
            body = _body(response, limit, ends, deadline)
    if len(body) > limit:
        raise AnswerTooBig(_too_big(limit))
    return Reply(response.status_code, response.headers, body)


def _body(response: httpx.Response, limit: int, ends: float, deadline: float) -> bytes:
    inflate = _inflater(response.headers.get("content-encoding", ""))
    declared = response.headers.get("content-length", "")
    if inflate is None and declared.isascii() and declared.isdigit() and int(declared[:20]) > limit:
        raise AnswerTooBig(_too_big(limit))
    pieces, size = [], 0
    for raw in response.iter_raw():
        piece = inflate.feed(raw, limit - size) if inflate is not None else raw
        size += len(piece)
        if size > limit:
            raise AnswerTooBig(_too_big(limit))
        pieces.append(piece)
        if time.monotonic() > ends:
            raise AnswerTooSlow(f"no whole answer within {deadline:g} s")
    return b"".join(pieces)


def _too_big(limit: int) -> str:
    # no URL in these messages: it may hold a password, and the caller names the server (masked) itself
    return f"the answer is over {limit >> 20} MiB"


class _Inflate:
    """gzip or deflate, inflated at most `room + 1` bytes at a time: a bomb is stopped past the cap, not after."""

    def __init__(self, wbits: int) -> None:
        self._wbits = wbits
        self._zlib = zlib.decompressobj(wbits)
        self._started = False

    def feed(self, data: bytes, room: int) -> bytes:
        try:
            out = self._zlib.decompress(data, max(0, room) + 1)
        except zlib.error:
            if self._started or self._wbits != zlib.MAX_WBITS:
                raise httpx.DecodingError("the answer's compressed body is broken") from None
            # "deflate" is zlib-wrapped by the standard and raw by some servers (httpx accepts both, so do we)
            self._wbits, self._zlib = -zlib.MAX_WBITS, zlib.decompressobj(-zlib.MAX_WBITS)
            return self.feed(data, room)
        self._started = True
        return out


def _inflater(encoding: str) -> _Inflate | None:
    """None for a body sent as it is."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return _Inflate(zlib.MAX_WBITS | 16)
    if encoding == "deflate":
        return _Inflate(zlib.MAX_WBITS)
    raise httpx.DecodingError(f"the answer is encoded as {encoding[:20]!r}, which tokentop does not read")
