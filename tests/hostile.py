#!/usr/bin/env python3
"""A hostile LLM server for tests: one fault per server, raw asyncio, loopback only.

It answers discovery like an OpenAI-compatible server (`GET /api/version` → 404, `GET /v1/models`)
or, with `ollama=True` / `--ollama`, like ollama (`/api/version`, `/api/tags`, `/api/ps`, NDJSON
`/api/chat`), and answers every chat request with its fault (see FAULTS); DISCOVERY_FAULTS break the
model list, PROBE_FAULTS what the server probe reads (/metrics, /api/ps). Every server stops by
itself after `lifetime` seconds; every loop in it is bounded in count and in time.

In a thread:      with HostileServer("stall") as server: server.url
As a process:     python tests/hostile.py --fault stall --port 0    (prints its URL when ready)
Killed, restarted on the same port: server.stop(); …; server.start()
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import random
import signal
import socket
import struct
import sys
import threading
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

HOSTS = ("127.0.0.1", "::1")
MODEL = "hostile-model"
MAX_HEAD = 64 * 1024  # request line + headers
MAX_BODY = 1024 * 1024
IO_TIMEOUT = 10.0  # for reading one request
MAX_SEEN = 1000  # requests remembered in `seen`
TOKENS = ("Once", " upon", " a", " time", ",", " a", " little", " robot", " walked", " by", " the", " sea", ".")
EVIL_NAMES = ("bad[/]", "[reverse]x", "m\x1b]0;pwned\x07\x1b[31m")  # markup; an OSC title + a CSI colour
EVIL_ERROR = "\x1b[2J\x1b[31mboom [bold red]x[/]"  # clear screen + red, and Rich markup
REDIRECT_TO = "http://127.0.0.1:1/elsewhere"
HTML_TAIL = "TAIL-OF-THE-HTML-PAGE"  # near the end of HTML_500: an error message must not carry it
HTML_500 = (
    "<!DOCTYPE html>\n<html>\n<head><title>500 Internal Server Error</title>\n"
    "<style>body { font-family: sans-serif; }</style></head>\n<body>\n"
    "<h1>Internal Server Error</h1>\n"
    + "<p>The proxy in front of the model server had a bad day.</p>\n" * 60
    + f"<!-- {HTML_TAIL} -->\n</body>\n</html>\n"
)
# Token literals as they sit between the JSON quotes, raw bytes and all: none of them is valid UTF-8
# except the escaped lone surrogate (valid JSON, not a character) and the last one, which is whole.
BAD_UTF8 = (b'"caf\xc3"', b'"\xff\xfe ok"', b'"\xed\xa0\x80"', b'"\xc0\xaf"', b'"\\ud800 lone"', b'" caf\xc3\xa9"')
REASONS = {200: "OK", 302: "Found", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 429: "Too Many Requests", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable"}
JSON_TYPE = "application/json; charset=utf-8"


@dataclass
class Options:
    model: str = MODEL
    ollama: bool = False
    tokens: int = 5  # content tokens of a good answer
    delay: float = 0.01  # seconds between tokens
    status: int = 500  # `status` fault
    headers: tuple[tuple[str, str], ...] = ()  # `status` fault: extra response headers
    body: str | None = None  # `status` fault: the body (default: a JSON error of either API's shape)
    size: int = 10 * 1024 * 1024  # `long_line` fault: bytes in the one line
    seed: int = 0  # `reset` fault
    lifetime: float = 300.0  # the server stops by itself after this many seconds

    def __post_init__(self) -> None:
        self.headers = tuple((str(k), str(v)) for k, v in dict(self.headers).items())
        if not (0 <= self.tokens <= 10_000 and 0 <= self.delay <= 60 and 0 < self.lifetime <= 3600
                and 0 < self.size <= 1 << 30 and 100 <= self.status <= 999):
            raise ValueError("hostile server: an option is out of range")


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes = b""

    def json(self) -> dict:
        with contextlib.suppress(ValueError):
            obj = json.loads(self.body)
            if isinstance(obj, dict):
                return obj
        return {}


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """One HTTP/1.1 request, or None when the client went away or sent nonsense."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, OSError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return None
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    body = b""
    try:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            for _ in range(10_000):  # a chunked request body (few clients send one)
                size = int((await asyncio.wait_for(reader.readuntil(b"\r\n"), IO_TIMEOUT)).split(b";")[0], 16)
                piece = await asyncio.wait_for(reader.readexactly(size + 2), IO_TIMEOUT)
                if size == 0:
                    break
                body += piece[:-2]
                if len(body) > MAX_BODY:
                    return None
        else:
            length = int(headers.get("content-length") or 0)
            if not 0 <= length <= MAX_BODY:
                return None
            body = await asyncio.wait_for(reader.readexactly(length), IO_TIMEOUT) if length else b""
    except (ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, OSError):
        return None
    return Request(parts[0], parts[1].split("?", 1)[0], headers, body)


# --- the two wire formats ---------------------------------------------------------------------------

def _lit(text: str) -> bytes:
    return json.dumps(text).encode()


class SSE:
    """OpenAI-compatible Server-Sent Events."""

    content_type = "text/event-stream"

    def __init__(self, model: str, rid: str) -> None:
        self.model, self.rid = _lit(model), _lit(rid)

    def _chunk(self, delta: bytes, finish: bytes = b"null") -> bytes:
        return (b'data: {"id":%s,"object":"chat.completion.chunk","created":1764028800,"model":%s,'
                b'"choices":[{"index":0,"delta":%s,"finish_reason":%s}]}\n\n' % (self.rid, self.model, delta, finish))

    def token(self, literal: bytes) -> bytes:
        return self._chunk(b'{"content":%s}' % literal)

    def done(self, tokens: int) -> bytes:
        usage = (b'data: {"id":%s,"object":"chat.completion.chunk","created":1764028800,"model":%s,"choices":[],'
                 b'"usage":{"prompt_tokens":5,"completion_tokens":%d,"total_tokens":%d}}\n\n'
                 % (self.rid, self.model, tokens, tokens + 5))
        return self._chunk(b"{}", b'"stop"') + usage + b"data: [DONE]\n\n"

    def error(self, message: str) -> bytes:
        return b"data: " + json.dumps({"error": {"message": message, "type": "server_error"}}).encode() + b"\n\n"

    def line_start(self) -> bytes:
        return b"data: "

    def whole(self, text: str, tokens: int) -> dict:
        return {"id": json.loads(self.rid), "object": "chat.completion", "created": 1764028800,
                "model": json.loads(self.model),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": tokens + 5}}

    @staticmethod
    def error_body(message: str) -> dict:
        return {"error": {"message": message, "type": "invalid_request_error"}}


class NDJSON:
    """ollama's newline-delimited JSON."""

    content_type = "application/x-ndjson"

    def __init__(self, model: str, rid: str) -> None:
        self.model = _lit(model)

    def token(self, literal: bytes) -> bytes:
        return (b'{"model":%s,"created_at":"2026-11-25T00:00:00Z","message":{"role":"assistant","content":%s},'
                b'"done":false}\n' % (self.model, literal))

    def _final(self, tokens: int) -> dict:
        return {"model": json.loads(self.model), "created_at": "2026-11-25T00:00:00Z", "done": True,
                "done_reason": "stop", "total_duration": 120_000_000, "load_duration": 1_000_000,
                "prompt_eval_count": 5, "prompt_eval_duration": 10_000_000, "eval_count": tokens,
                "eval_duration": 100_000_000}

    def done(self, tokens: int) -> bytes:
        final = self._final(tokens)
        final["message"] = {"role": "assistant", "content": ""}
        return json.dumps(final).encode() + b"\n"

    def error(self, message: str) -> bytes:
        return json.dumps({"error": message}).encode() + b"\n"

    def line_start(self) -> bytes:
        return b'{"model":"x","message":{"content":"'

    def whole(self, text: str, tokens: int) -> dict:
        final = self._final(tokens)
        final["message"] = {"role": "assistant", "content": text}
        return final

    @staticmethod
    def error_body(message: str) -> dict:
        return {"error": message}


# --- one connection ---------------------------------------------------------------------------------

class Conn:
    """One request on one connection, and the ways to answer it. Every answer says Connection: close."""

    def __init__(self, server: HostileServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 request: Request, n: int) -> None:
        self.server, self.options = server, server.options
        self.reader, self.writer, self.request, self.n = reader, writer, request, n
        wire = NDJSON if self.options.ollama else SSE
        self.wire = wire(self.options.model, f"r-{n}")
        self._chunked = False

    async def send(self, data: bytes) -> None:
        if self.writer.is_closing():
            raise ConnectionResetError("the client went away")
        self.writer.write(data)
        await self.writer.drain()

    async def head(self, status: int = 200, content_type: str | None = None,
                   headers: tuple[tuple[str, str], ...] = (), length: int | None = None) -> None:
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Whatever')}",
                 f"Content-Type: {content_type or self.wire.content_type}", "Connection: close",
                 "Cache-Control: no-cache"]
        lines += [f"{name}: {value}" for name, value in headers]
        self._chunked = length is None
        lines.append("Transfer-Encoding: chunked" if self._chunked else f"Content-Length: {length}")
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))

    async def chunk(self, data: bytes) -> None:
        await self.send(b"%x\r\n%s\r\n" % (len(data), data) if self._chunked else data)

    async def end(self) -> None:
        if self._chunked:
            await self.send(b"0\r\n\r\n")

    async def whole(self, status: int, body: bytes, content_type: str = JSON_TYPE,
                    headers: tuple[tuple[str, str], ...] = ()) -> None:
        await self.head(status, content_type, headers, length=len(body))
        await self.send(body)

    async def json(self, status: int, obj: object, headers: tuple[tuple[str, str], ...] = ()) -> None:
        await self.whole(status, json.dumps(obj).encode(), JSON_TYPE, headers)

    async def tokens(self, count: int) -> None:
        for i in range(count):
            await self.chunk(self.wire.token(_lit(TOKENS[i % len(TOKENS)])))
            await asyncio.sleep(self.options.delay)

    async def idle(self) -> None:
        """Say nothing until the client goes away or the server stops (the handler is cancelled then)."""
        for _ in range(100_000):
            data = await self.reader.read(65536)
            if not data:
                return

    def reset(self) -> None:
        """Close with SO_LINGER 0: the client gets a TCP RST, not a FIN."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


# --- the faults: each answers one chat request ----------------------------------------------------------

async def normal(c: Conn) -> None:
    await c.head()
    await normal_rest(c)


async def silent(c: Conn) -> None:
    await c.idle()


async def headers_only(c: Conn) -> None:
    await c.head()
    await c.idle()


async def stall(c: Conn) -> None:
    await c.head()
    await c.tokens(3)
    await c.idle()


async def status(c: Conn) -> None:
    o = c.options
    if o.body is not None:
        body = o.body.encode("utf-8")
        kind = "text/html; charset=utf-8" if o.body.lstrip().startswith("<") else JSON_TYPE
    else:
        body, kind = json.dumps(c.wire.error_body(f"hostile status {o.status}")).encode(), JSON_TYPE
    await c.whole(o.status, body, kind, o.headers)


async def bad_utf8(c: Conn) -> None:
    await c.head()
    for literal in BAD_UTF8:
        await c.chunk(c.wire.token(literal))
        await asyncio.sleep(c.options.delay)
    # a good character cut in two by the writes: only its line's end makes it whole
    event = c.wire.token(b'"caf\xc3\xa9!"')
    cut = event.index(b"\xc3") + 1
    await c.chunk(event[:cut])
    await asyncio.sleep(c.options.delay)
    await c.chunk(event[cut:])
    await c.chunk(c.wire.done(len(BAD_UTF8) + 1))
    await c.end()


async def endless(c: Conn) -> None:
    await c.head()
    interval = max(c.options.delay, 0.02)
    for _ in range(int(c.options.lifetime / interval) + 1):
        await c.chunk(c.wire.token(b'"."'))
        await asyncio.sleep(interval)


async def long_line(c: Conn) -> None:
    await c.head()
    start = c.wire.line_start()
    await c.chunk(start)
    piece = b"x" * 1024
    for _ in range(max(0, c.options.size - len(start)) // 1024):
        await c.chunk(piece)  # as fast as the client reads
    await c.chunk(b'"}}\n\n' if c.options.ollama else b"\n\n")
    await c.end()


async def reset(c: Conn) -> None:
    when = c.server.rng.choice(("before", "after_headers", "mid", "whole"))
    c.server.resets += when != "whole"
    if when == "before":
        return c.reset()
    await c.head()
    if when == "after_headers":
        await asyncio.sleep(0.02)
        return c.reset()
    if when == "mid":
        await c.tokens(2)
        await asyncio.sleep(0.02)
        return c.reset()
    await normal_rest(c)


async def normal_rest(c: Conn) -> None:
    await c.tokens(c.options.tokens)
    await c.chunk(c.wire.done(c.options.tokens))
    await c.end()


async def not_streamed(c: Conn) -> None:
    await c.json(200, c.wire.whole("Once upon a time a little robot walked.", 7))


async def evil_names(c: Conn) -> None:
    if c.n % 2:  # an HTTP error whose message is escapes and markup
        await c.json(500, c.wire.error_body(EVIL_ERROR))
        return
    await c.head()  # the same, inside a stream that had begun well
    await c.tokens(1)
    await c.chunk(c.wire.error(EVIL_ERROR))
    await c.end()


async def echo_key(c: Conn) -> None:
    key = c.request.headers.get("authorization", "")
    await c.json(401, c.wire.error_body(f"invalid key {key}"))


FAULTS: dict[str, Callable[[Conn], Awaitable[None]]] = {
    f.__name__: f for f in (normal, silent, headers_only, stall, status, bad_utf8, endless, long_line, reset,
                            not_streamed, evil_names, echo_key)
}
# These break discovery; chat answers as `normal` does.
DISCOVERY_FAULTS = ("bad_discovery_data", "bad_discovery_id_number", "bad_discovery_id_list", "unauthorized")
# These break what the server probe reads (/metrics, /api/ps); discovery and chat answer as `normal` does.
PROBE_FAULTS = ("metrics_bomb", "metrics_absurd", "many_loaded")
ABSURD_METRICS = "vllm:num_requests_running 1e300\nvllm:num_requests_waiting 3\nvllm:kv_cache_usage_perc 4200\n"
LOADED = 10_000  # many_loaded: models in memory


@functools.cache
def gzip_bomb() -> bytes:
    """1 GiB of zeros, gzipped: about 1 MB on the wire (made a MiB at a time: the test's memory stays small)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(1 << 20)
    return b"".join(packer.compress(zeros) for _ in range(1024)) + packer.flush()


def model_list(fault: str, options: Options) -> tuple[int, object]:
    """(status, body) of the model list: /v1/models, or /api/tags with ollama."""
    ollama = options.ollama
    names: list[object] = list(EVIL_NAMES) if fault == "evil_names" else [options.model]
    if fault == "unauthorized":
        return 401, SSE.error_body("missing or invalid API key") if not ollama else {"error": "unauthorized"}
    if fault == "bad_discovery_data":
        return 200, {"models": 5} if ollama else {"object": "list", "data": 5}
    if fault == "bad_discovery_id_number":
        names = [5]
    elif fault == "bad_discovery_id_list":
        names = [["a", "b"]]
    if ollama:
        return 200, {"models": [{"name": n, "model": n, "size": 1000, "digest": "0" * 64,
                                 "modified_at": "2026-11-25T00:00:00Z", "details": {}} for n in names]}
    return 200, {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "hostile"} for n in names]}


# --- the server -------------------------------------------------------------------------------------------

class HostileServer:
    """One fault, on 127.0.0.1 (or ::1), a free port unless one is given; in a daemon thread with start()."""

    def __init__(self, fault: str = "normal", *, host: str = "127.0.0.1", port: int = 0, **options) -> None:
        if fault not in FAULTS and fault not in DISCOVERY_FAULTS and fault not in PROBE_FAULTS:
            raise ValueError(f"unknown fault {fault!r} (choose from:"
                             f" {', '.join([*FAULTS, *DISCOVERY_FAULTS, *PROBE_FAULTS])})")
        if host not in HOSTS:
            raise ValueError(f"loopback only: {', '.join(HOSTS)}")
        self.fault, self.host, self.port = fault, host, port
        self.options = Options(**options)
        self.rng = random.Random(self.options.seed)
        self.chat_requests = 0  # chat requests answered so far (ids r-1, r-2, …)
        self.resets = 0
        self.seen: list[Request] = []  # the newest MAX_SEEN requests, discovery included
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._handlers: set[asyncio.Task] = set()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host if ':' not in self.host else f'[{self.host}]'}:{self.port}"

    # --- running ---
    async def serve(self, ready: Callable[[], None] = lambda: None) -> None:
        """Serve until stop() or the lifetime ends; calls `ready` once listening (or failing to)."""
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True,
                                                limit=MAX_HEAD)
        except BaseException as exc:
            self._error = exc
            ready()
            raise
        self.port = server.sockets[0].getsockname()[1]
        ready()
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.options.lifetime)
        finally:
            server.close()
            for task in list(self._handlers):  # killed: every open connection goes too
                task.cancel()
            if self._handlers:
                await asyncio.wait(list(self._handlers), timeout=5)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5)

    def start(self) -> HostileServer:
        """Start in a daemon thread (again on the same port after stop())."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("already running")
        ready = threading.Event()
        self._error = None
        self._thread = threading.Thread(target=self._run, args=(ready,), name=f"hostile-{self.fault}", daemon=True)
        self._thread.start()
        if not ready.wait(10) or self._error is not None:
            raise RuntimeError(f"hostile server did not start: {self._error!r}")
        return self

    def _run(self, ready: threading.Event) -> None:
        with contextlib.suppress(Exception):
            asyncio.run(self.serve(ready.set))
        ready.set()

    def stop(self) -> None:
        """Stop listening and drop every connection (as a killed server would). start() brings it back."""
        loop, stop, thread = self._loop, self._stop, self._thread
        if thread is None or not thread.is_alive() or loop is None or stop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended
            loop.call_soon_threadsafe(stop.set)
        thread.join(10)

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- answering ---
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._handlers.add(task)
        try:
            request = await read_request(reader)
            if request is not None:
                self.seen = (self.seen + [request])[-MAX_SEEN:]
                await self._route(reader, writer, request)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass  # the client went away: that is its right
        except asyncio.CancelledError:
            pass  # stop(): the server was killed; end quietly (asyncio 3.11 logs a cancelled handler as an error)
        finally:
            self._handlers.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _route(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: Request) -> None:
        o, fault = self.options, self.fault
        chat_path = "/api/chat" if o.ollama else "/v1/chat/completions"
        if request.method == "POST" and request.path in (chat_path, "/api/generate" if o.ollama else chat_path):
            self.chat_requests += 1
            conn = Conn(self, reader, writer, request, self.chat_requests)
            await FAULTS.get(fault, normal)(conn)
            return
        conn = Conn(self, reader, writer, request, 0)
        path = request.path
        if request.method != "GET":
            await conn.json(405, {"error": "method not allowed"})
        elif path == "/api/version" and o.ollama:
            await conn.json(200, {"version": "0.9.0"})
        elif path == ("/api/tags" if o.ollama else "/v1/models"):
            await conn.json(*model_list(fault, o))
        elif path == "/v1/models" and o.ollama:  # ollama answers this too
            await conn.json(200, {"object": "list", "data": [{"id": o.model, "object": "model"}]})
        elif path == "/metrics" and fault == "metrics_bomb":
            await conn.whole(200, gzip_bomb(), "text/plain; version=0.0.4", (("Content-Encoding", "gzip"),))
        elif path == "/metrics" and fault == "metrics_absurd":
            await conn.whole(200, ABSURD_METRICS.encode(), "text/plain; version=0.0.4")
        elif path == "/api/ps" and o.ollama:
            loaded = [] if fault.startswith("bad_discovery") else [o.model]
            if fault == "many_loaded":
                loaded = [f"{o.model[:100]}-{i}" for i in range(LOADED)]
            await conn.json(200, {"models": [{"name": n, "model": n, "size": 1000, "size_vram": 1000,
                                              "context_length": 4096, "expires_at": "2099-01-01T00:00:00Z",
                                              "details": {}} for n in loaded]})
        else:
            await conn.whole(404, b"404 page not found", "text/plain; charset=utf-8")


# --- as a process ----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fault", default="normal", choices=[*FAULTS, *DISCOVERY_FAULTS, *PROBE_FAULTS])
    p.add_argument("--host", default="127.0.0.1", choices=HOSTS)
    p.add_argument("--port", type=int, default=0, help="0: a free port")
    p.add_argument("--lifetime", type=float, default=300.0, help="stop by itself after this many seconds")
    p.add_argument("--ollama", action="store_true", help="answer like ollama (NDJSON /api/chat)")
    p.add_argument("--model", default=MODEL)
    p.add_argument("--tokens", type=int, default=5)
    p.add_argument("--delay", type=float, default=0.01)
    p.add_argument("--status", type=int, default=500)
    p.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'")
    p.add_argument("--body", help="status fault: the body ('@html': an HTML error page)")
    p.add_argument("--size", type=int, default=10 * 1024 * 1024)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    headers = tuple((name.strip(), value.strip()) for name, _, value in (h.partition(":") for h in args.header))
    body = HTML_500 if args.body == "@html" else args.body
    try:
        server = HostileServer(args.fault, host=args.host, port=args.port, lifetime=args.lifetime,
                               ollama=args.ollama, model=args.model, tokens=args.tokens, delay=args.delay,
                               status=args.status, headers=headers, body=body, size=args.size, seed=args.seed)
    except ValueError as exc:
        p.error(str(exc))

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, lambda: server._stop and server._stop.set())
        await server.serve(lambda: print(server.url, flush=True))

    try:
        asyncio.run(run())
    except OSError as exc:
        print(f"hostile: cannot listen: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
