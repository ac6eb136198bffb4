"""A paced OpenAI-compatible streaming server for measuring clients (not a test; pytest skips it).

    python tests/scripts/paced_server.py --port 0 --log server.jsonl [--ttft 0.1 --tokens 50 --rate 50]

Each `POST /v1/chat/completions` streams `--tokens` SSE events, one token per event, each in its own
write, on an absolute schedule: token i at arrival + ttft + i/rate (`--ttft-spread S` adds 0..S to the
ttft, evenly over the responses: thousands of requests sent at once need not all answer in one instant). `GET /v1/models` lists one model,
"paced"; everything else is 404 (so discovery sees an OpenAI-compatible server, not ollama).

Stamps are `time.perf_counter_ns()` (CLOCK_MONOTONIC on Linux: comparable across processes). One
JSON line per response goes to `--log` as soon as its last token is written, before the usage chunk
and `[DONE]`, so a client that has finished can already find its lines:
    {"id", "worker", "arrival_ns", "first_write_ns", "last_write_ns", "tokens", "max_late_ms", "complete"}
arrival = request headers parsed; first/last_write = just after the first/last token's write;
max_late_ms = the worst (write done − scheduled time) of its tokens.

`--workers K` runs K processes on one port (SO_REUSEPORT). It prints `listening PORT` once all are
ready, and stops by itself after `--lifetime` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

MODELS = json.dumps({"object": "list", "data": [{"id": "paced", "object": "model"}]}).encode()
MAX_HEADER = 64 * 1024
MAX_BODY = 1024 * 1024
BACKLOG = 4096


class Config:
    def __init__(self, ttft: float, tokens: int, rate: float, log_fd: int, worker: int, spread: float = 0.0) -> None:
        self.ttft_ns = int(ttft * 1e9)
        self.spread_ns = int(spread * 1e9)
        self.step_ns = int(1e9 / rate)
        self.tokens = tokens
        self.log_fd = log_fd
        self.worker = worker
        self.ids = itertools.count()


def chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk (Transfer-Encoding: chunked)."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def sse(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def plain_response(status: str, body: bytes, keep_alive: bool) -> bytes:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n")
    return head.encode() + body


class Stream:
    """One streaming response, driven by loop timers (plain callbacks: cheaper than a task per stream)."""

    def __init__(self, conn: HTTPConnection, arrival_ns: int, prompt_tokens: int) -> None:
        self.conn, self.cfg = conn, conn.cfg
        self.loop = asyncio.get_running_loop()
        number = next(self.cfg.ids)
        self.id = f"paced-{self.cfg.worker}-{number}-{arrival_ns}"
        self.arrival_ns = arrival_ns
        # --ttft-spread: the k-th response's first token waits a further (k × golden ratio mod 1) × spread,
        # as a real server's prefills come one batch after another; evenly spread for any number of requests.
        self.ttft_ns = self.cfg.ttft_ns + int((number * 0.6180339887498949) % 1.0 * self.cfg.spread_ns)
        self.prompt_tokens = prompt_tokens
        self.sent = 0
        self.first_write_ns = self.last_write_ns = None
        self.max_late_ns = 0
        self.timer: asyncio.TimerHandle | None = None
        self.logged = False
        # Every token event is this with its number in: cheaper than json.dumps 25,600 times a second.
        self.token_event = sse({"id": self.id, "object": "chat.completion.chunk", "model": "paced", "choices": [
            {"index": 0, "delta": {"content": "tok%d "}, "finish_reason": None}]})

    def start(self) -> None:
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                b"Transfer-Encoding: chunked\r\nConnection: " + (b"keep-alive" if self.conn.keep_alive else b"close")
                + b"\r\n\r\n")
        self.conn.transport.write(head)
        self._schedule()

    def due_ns(self) -> int:
        return self.arrival_ns + self.ttft_ns + self.sent * self.cfg.step_ns

    def _schedule(self) -> None:
        # loop.time() is time.monotonic(): the same clock as perf_counter_ns on Linux.
        self.timer = self.loop.call_at(self.due_ns() / 1e9, self._write_token)

    def _write_token(self) -> None:
        due = self.due_ns()
        self.conn.transport.write(chunk(self.token_event % self.sent))
        now = time.perf_counter_ns()
        self.max_late_ns = max(self.max_late_ns, now - due)
        self.sent += 1
        if self.first_write_ns is None:
            self.first_write_ns = now
        self.last_write_ns = now
        if self.sent < self.cfg.tokens:
            self._schedule()
        else:
            self._finish()

    def _finish(self) -> None:
        self.timer = None
        self.log(complete=True)
        final = {"id": self.id, "object": "chat.completion.chunk", "model": "paced",
                 "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}
        usage = {"id": self.id, "object": "chat.completion.chunk", "model": "paced", "choices": [],
                 "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.sent,
                           "total_tokens": self.prompt_tokens + self.sent}}
        tail = sse(final) + sse(usage) + b"data: [DONE]\n\n"
        self.conn.transport.write(chunk(tail) + b"0\r\n\r\n")
        self.conn.response_done()

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            self.log(complete=False)

    def log(self, complete: bool) -> None:
        if self.logged:
            return
        self.logged = True
        line = {"id": self.id, "worker": self.cfg.worker, "arrival_ns": self.arrival_ns,
                "first_write_ns": self.first_write_ns, "last_write_ns": self.last_write_ns, "tokens": self.sent,
                "max_late_ms": round(self.max_late_ns / 1e6, 3), "complete": complete}
        os.write(self.cfg.log_fd, (json.dumps(line) + "\n").encode())  # O_APPEND: whole lines across workers


class HTTPConnection(asyncio.Protocol):
    """HTTP/1.1 with keep-alive; one request at a time (a pipelined one waits in the buffer)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.stream: Stream | None = None
        self.keep_alive = True

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stream is not None:
            self.stream.cancel()
            self.stream = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.stream is None:
            self._next_request()

    def response_done(self) -> None:
        self.stream = None
        if not self.keep_alive:
            self.transport.close()
        elif self.buf:
            self._next_request()

    def _next_request(self) -> None:
        """Handle the buffered request if it is complete; at most one, then wait for its response."""
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEADER:
                self._reply("431 Request Header Fields Too Large", b"{}", keep_alive=False)
            return
        arrival_ns = time.perf_counter_ns()
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        method, path, version = (lines[0].split(" ") + ["", "", ""])[:3]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        if length > MAX_BODY or "chunked" in headers.get("transfer-encoding", ""):
            self._reply("413 Content Too Large", b"{}", keep_alive=False)
            return
        if len(self.buf) < end + 4 + length:
            return  # the body is still coming; parse the headers again then (stamped then, too)
        body = bytes(self.buf[end + 4:end + 4 + length])
        del self.buf[:end + 4 + length]
        connection = headers.get("connection", "").lower()
        self.keep_alive = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
        self._route(method, path.split("?")[0], body, arrival_ns)

    def _route(self, method: str, path: str, body: bytes, arrival_ns: int) -> None:
        if method == "POST" and path == "/v1/chat/completions":
            self.stream = Stream(self, arrival_ns, prompt_tokens=max(1, len(body.split()) - 4))
            self.stream.start()
        elif method == "GET" and path == "/v1/models":
            self._reply("200 OK", MODELS, self.keep_alive)
        else:
            self._reply("404 Not Found", b'{"error":"not found"}', self.keep_alive)

    def _reply(self, status: str, body: bytes, keep_alive: bool) -> None:
        self.keep_alive = keep_alive
        self.transport.write(plain_response(status, body, keep_alive))
        self.response_done()


def listening_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


async def serve(sock: socket.socket, cfg: Config, lifetime: float) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    loop.call_later(lifetime, lambda: stop.done() or stop.set_result(None))
    # backlog: create_server listens again, with 100 by default; 512 connects at once overflow that
    server = await loop.create_server(lambda: HTTPConnection(cfg), sock=sock, backlog=BACKLOG)
    try:
        await stop
    finally:
        server.close()


def run_worker(sock: socket.socket, args: argparse.Namespace, worker: int) -> None:
    log_fd = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        asyncio.run(serve(sock, Config(args.ttft, args.tokens, args.rate, log_fd, worker, args.ttft_spread),
                          args.lifetime))
    finally:
        os.close(log_fd)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    p.add_argument("--log", required=True, help="JSON-lines file, one line per response (appended)")
    p.add_argument("--ttft", type=float, default=0.1, help="seconds from arrival to the first token (0.1)")
    p.add_argument("--ttft-spread", type=float, default=0.0,
                   help="first tokens a further 0..S seconds later, evenly over the responses (0)")
    p.add_argument("--tokens", type=int, default=50, help="tokens per response (50)")
    p.add_argument("--rate", type=float, default=50.0, help="tokens per second per stream (50)")
    p.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    p.add_argument("--lifetime", type=float, default=600.0, help="stop by itself after this many seconds")
    args = p.parse_args(argv)
    sock = listening_socket(args.port)
    port = sock.getsockname()[1]
    children = []
    ready_r, ready_w = os.pipe()
    for worker in range(1, args.workers):
        pid = os.fork()
        if pid == 0:  # child: its own socket on the same port, so the kernel spreads connections
            sock.close()
            own = listening_socket(port)
            os.write(ready_w, b"r")
            try:
                run_worker(own, args, worker)
            finally:
                os._exit(0)
        children.append(pid)
    for _ in children:
        os.read(ready_r, 1)
    print(f"listening {port}", flush=True)
    try:
        run_worker(sock, args, 0)
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
    return 0


def start(log: str, *, ttft: float = 0.1, tokens: int = 50, rate: float = 50.0, workers: int = 1,
          lifetime: float = 600.0, timeout: float = 10.0, ttft_spread: float = 0.0) -> tuple[subprocess.Popen, int]:
    """Start the server as a subprocess; returns (process, port) once it listens."""
    cmd = [sys.executable, os.path.abspath(__file__), "--port", "0", "--log", log, "--ttft", str(ttft),
           "--ttft-spread", str(ttft_spread),
           "--tokens", str(tokens), "--rate", str(rate), "--workers", str(workers), "--lifetime", str(lifetime)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""  # "listening PORT", or "" if it exited
    if not line.startswith("listening "):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"paced server did not start: {line!r}")
    return proc, int(line.split()[1])


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def read_log(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


if __name__ == "__main__":
    sys.exit(main())
