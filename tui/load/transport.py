"""The streaming requests' HTTP/1.1 layer: an asyncio Protocol over httptools' C parser, with kept-alive
connections. Each piece of the body is handed on, with its arrival time, from `data_received` itself.

Why not an HTTP library here: measured against a paced server (tests/scripts/bench_streams.py), httpx cost 5-7x
the CPU per chunk of a minimal asyncio client and spread "N requests at once" over a second; aiohttp cost
1.7-2.3x (a StreamReader, a Task wake-up and a timer re-armed for every piece). This layer does no per-piece
work beyond the parser's callback. httpx stays for discovery and the probes, where cost does not matter.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

import httptools

Sink = Callable[[bytes, int], None]  # (a piece of the body, perf_counter_ns when it arrived)

# Every connection of a pool reads into the pool's one buffer (recv_into): the parser copies out what it keeps
# before the loop reads again. asyncio's plain Protocol gets a fresh 256 KiB bytes from each recv, which glibc
# serves with mmap, then mremap and munmap: three system calls a chunk, measured at 4,096 streams (strace -c).
READ_BUFFER_BYTES = 256 * 1024


class TransportError(Exception):
    """kind: "connect", "closed" (before any answer), "cut" (mid-answer), "timeout", "malformed"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Response:
    """The status and headers (names lower-cased) of an answer; the body goes to a sink."""

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status, self.headers = status, headers

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


class _Connection(asyncio.BufferedProtocol):
    """One TCP connection; one exchange at a time on it. It reads into `buffer`, which its pool's other
    connections share: each read is parsed whole before the loop makes the next."""

    def __init__(self, buffer: memoryview) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._exchange: _Exchange | None = None
        self._buffer = buffer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self._exchange is not None:
            self._exchange.feed(self._buffer[:nbytes])
        else:  # bytes nobody asked for on an idle connection: it cannot be trusted again
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._exchange is not None:
            self._exchange.lost(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class _Exchange:
    """One request's answer, parsed as its bytes arrive (httptools calls the on_* methods). Its head goes to
    `sink_for` as soon as it is read, and its body to the sink that returns: the request's task wakes once, at
    the end (`done`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sink_for: Callable[[Response], Sink]) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done: asyncio.Future[None] = loop.create_future()
        self.response: Response | None = None
        self.sink_for: Callable[[Response], Sink] | None = sink_for
        self.sink: Sink | None = None
        self.last_ns = time.perf_counter_ns()
        self._headers: dict[str, str] = {}
        self._name = b""
        self.complete = self.failed = self.keep_alive = False

    # --- bytes in ---
    def feed(self, data: memoryview) -> None:
        """A read, in the pool's shared buffer: the parser's callbacks get copies (bytes)."""
        self.last_ns = time.perf_counter_ns()
        if self.failed or self.parser is None:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(TransportError("malformed", f"not a valid HTTP answer ({exc})"))

    def end(self) -> None:
        """Done with: the parser (which holds this object's callbacks, a cycle) and the sink let go, so an
        answer's objects are freed at once rather than by the garbage collector's slow full pass."""
        self.parser = self.sink = self.sink_for = None

    def lost(self, exc: Exception | None) -> None:
        if self.complete or self.parser is None:
            return
        if self.response is None:
            self.fail(TransportError("closed", "the server closed the connection before answering"))
        elif not self._framed():  # no length and not chunked: the body ends with the connection
            self.on_message_complete()
        else:
            self.fail(TransportError("cut", f"connection closed mid-answer ({type(exc).__name__ if exc else 'EOF'})"))

    def fail(self, error: Exception) -> None:
        self.failed = True
        if not self.done.done():
            self.done.set_exception(error)
            self.done.exception()  # marked retrieved: a cancelled request no longer awaits it

    def _framed(self) -> bool:
        return "content-length" in self._headers or "chunked" in self._headers.get("transfer-encoding", "").lower()

    # --- httptools callbacks ---
    def on_header(self, name: bytes, value: bytes) -> None:
        if name:
            self._name = name
        key = self._name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self._headers[key] = self._headers.get(key, "") + text if not name else text

    def on_headers_complete(self) -> None:
        if self.response is not None or self.sink_for is None:
            return
        self.response = Response(self.parser.get_status_code(), self._headers)
        try:
            self.sink = self.sink_for(self.response)
        except Exception as exc:
            self.fail(exc)

    def on_body(self, body: bytes) -> None:
        if self.sink is None or self.failed:
            return
        try:
            self.sink(body, self.last_ns)
        except Exception as exc:  # the sink wants no more of this answer (or broke): end it
            self.fail(exc)

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()  # read now: the parser resets after this callback
        if not self.done.done():
            self.done.set_result(None)


class ConnectionPool:
    """Kept-alive connections per (scheme, host, port); make one per event loop, `await close()` it."""

    def __init__(self, connect_timeout: float = 10.0) -> None:
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._connect_timeout = connect_timeout
        self._ssl: ssl.SSLContext | None = None
        self._buffer = memoryview(bytearray(READ_BUFFER_BYTES))  # the connections' one read buffer

    async def _connect(self, scheme: str, host: str, port: int) -> _Connection:
        idle = self._idle.get((scheme, host, port), [])
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return await self._open(scheme, host, port)

    async def _open(self, scheme: str, host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        if scheme == "https" and self._ssl is None:
            self._ssl = ssl.create_default_context()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self._buffer), host, port, ssl=self._ssl if scheme == "https" else None),
                self._connect_timeout)
        except TimeoutError:
            raise TransportError("connect", f"no connection within {self._connect_timeout:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise TransportError("connect", exc.strerror or str(exc) or type(exc).__name__) from None
        return conn

    async def warm(self, url: str, count: int) -> None:
        """Open connections until `count` lie idle for `url`'s server, so requests sent together go together
        (a cell's first round would otherwise wait on its TCP connects). A failure here is left to the requests."""
        key = _key(urlsplit(url))
        idle = self._idle.setdefault(key, [])
        idle[:] = [conn for conn in idle if not conn.closed]
        opened = await asyncio.gather(*(self._open(*key) for _ in range(count - len(idle))), return_exceptions=True)
        for conn in opened:
            if isinstance(conn, _Connection):
                idle.append(conn)

    def _release(self, key: tuple[str, str, int], conn: _Connection, reusable: bool) -> None:
        conn._exchange = None
        if reusable and not conn.closed:
            self._idle.setdefault(key, []).append(conn)
        else:
            conn.close()

    async def post(self, url: str, body: bytes, headers: dict[str, str], sink_for: Callable[[Response], Sink],
                   read_timeout: float, fresh: bool = False) -> Response:
        """POST `body`; hand the answer's head to `sink_for`, which returns where its body pieces go.

        Returns when the answer has ended. Raises TransportError; a cancelled call closes its connection.
        `fresh`: on a new connection, not a kept-alive one (a retry after the server closed one: the others
        it kept as long may be closing too).
        """
        parts = urlsplit(url)
        key = scheme, host, port = _key(parts)
        conn = await (self._open(*key) if fresh else self._connect(*key))
        loop = asyncio.get_running_loop()
        exchange = conn._exchange = _Exchange(loop, sink_for)
        watchdog = _Watchdog(loop, exchange, read_timeout)
        reusable = False
        try:
            conn.transport.write(_request_bytes(parts, host, port, body, headers))
            await exchange.done
            reusable = exchange.keep_alive
            return exchange.response
        finally:
            watchdog.cancel()
            exchange.end()
            self._release(key, conn, reusable)

    async def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()


class _Watchdog:
    """Fails the exchange after `timeout` seconds without a byte; one timer, re-armed only when it fires."""

    def __init__(self, loop: asyncio.AbstractEventLoop, exchange: _Exchange, timeout: float) -> None:
        self._loop, self._exchange, self._timeout = loop, exchange, timeout
        self._handle = loop.call_later(timeout, self._check)

    def _check(self) -> None:
        silent = (time.perf_counter_ns() - self._exchange.last_ns) / 1e9
        if silent >= self._timeout:
            self._exchange.fail(TransportError("timeout", f"no data for {self._timeout:g} s (--timeout)"))
        else:
            self._handle = self._loop.call_later(self._timeout - silent, self._check)

    def cancel(self) -> None:
        self._handle.cancel()


def _key(parts) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL: which kept-alive connections serve it."""
    return parts.scheme, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def _request_bytes(parts, host: str, port: int, body: bytes, headers: dict[str, str]) -> bytes:
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = f"[{host}]" if ":" in host else host
    if port != (443 if parts.scheme == "https" else 80):
        host_header += f":{port}"
    lines = [f"POST {path} HTTP/1.1", f"Host: {host_header}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", "Accept-Encoding: identity", "Connection: keep-alive"]
    if parts.username is not None and not any(k.lower() == "authorization" for k in headers):
        user_pass = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        lines.append(f"Authorization: Basic {base64.b64encode(user_pass).decode()}")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
