"""The simulated server's own small HTTP/1.1: one request per connection, answered whole or streamed."""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass

MAX_BODY = 32 * 1024 * 1024
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           411: "Length Required", 500: "Internal Server Error", 503: "Service Unavailable"}
JSON_TYPE = "application/json; charset=utf-8"


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Request:
    method: str
    path: str
    body: bytes


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        line = await reader.readline()
        if not line.strip():
            return None  # connected and left without asking anything
        parts = line.decode("latin-1").split()
        if len(parts) != 3:
            raise HTTPError(400, "bad request line")
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
    except (ValueError, asyncio.LimitOverrunError):
        raise HTTPError(400, "request line or header too long") from None
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise HTTPError(411, "chunked request bodies are not supported; send Content-Length")
    length = headers.get("content-length", "0")
    if not length.isdigit() or int(length) > MAX_BODY:
        raise HTTPError(400, f"bad Content-Length {length!r}")
    body = await reader.readexactly(int(length))
    return Request(parts[0].upper(), parts[1].split("?", 1)[0], body)


def head(status: int, content_type: str, length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS[status]}", f"Content-Type: {content_type}",
             "Connection: close", "Server: tokentop-sim (SIMULATED)"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# Connections whose answer has begun: a failure after that can only cut them, not answer again.
_ANSWERED: weakref.WeakSet[asyncio.StreamWriter] = weakref.WeakSet()


def answer_begun(writer: asyncio.StreamWriter) -> bool:
    return writer in _ANSWERED


async def send(writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str = JSON_TYPE) -> None:
    _ANSWERED.add(writer)
    writer.write(head(status, content_type, len(body)) + body)
    await writer.drain()


class Stream:
    """A streamed body: the status line, headers and `preamble` go out with the first bytes."""

    def __init__(self, writer: asyncio.StreamWriter, content_type: str, preamble: bytes = b"") -> None:
        self.writer, self.content_type, self.preamble, self.started = writer, content_type, preamble, False

    async def write(self, data: bytes) -> None:
        if not self.started:
            data, self.started = head(200, self.content_type) + self.preamble + data, True
            _ANSWERED.add(self.writer)
        self.writer.write(data)
        await self.writer.drain()


async def until_eof(reader: asyncio.StreamReader) -> None:
    """Returns when the client hangs up (reads and drops anything it still sends)."""
    while await reader.read(65536):
        pass
