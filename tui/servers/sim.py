"""tokentop sim: a SIMULATED LLM server. No model, no GPU: it makes up word-piece tokens.

It speaks ollama's API (/api/chat, /api/generate, /api/tags, /api/ps, /api/version) and the
OpenAI / llama.cpp flavour (/v1/chat/completions, /v1/models, /health, /metrics). Requests beyond
--parallel slots wait in a first-come queue, and each stream slows as more slots are busy, after the
seed article's A100 running llama3.1:70b (25.4 tok/s alone, 22.3 at two, 16.2 at four). --fault
injects refused connections, 503s, cut or malformed or stalled streams. Every answer names
"tokentop-sim", so it is never mistaken for a real server.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import hashlib
import json
import math
import random
import re
import sys
import threading
import time
import traceback
import uuid
import weakref
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

FAULT_KINDS = ("refuse", "busy", "cut", "malformed", "stall")
BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
DEFAULT_PORT = 11435
NS = 1_000_000_000
MAX_BODY = 32 * 1024 * 1024
WORDS = (
    "once upon a time there was a little robot who lived by the sea and every morning it walked "
    "along the shore to count the boats listen to the gulls and dream of the faraway places where "
    "the ships went when they sailed past the old lighthouse"
).split()
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           411: "Length Required", 500: "Internal Server Error", 503: "Service Unavailable"}
JSON_TYPE = "application/json; charset=utf-8"


@dataclass
class SimConfig:
    parallel: int = 4  # slots; requests beyond wait in a FIFO queue
    speed: float = 1.0  # multiplier on all simulated time
    # busy slots -> per-stream decode tok/s; interpolated, and the aggregate held beyond the last point
    profile: tuple[tuple[int, float], ...] = ((1, 25.4), (2, 22.3), (4, 16.2))
    prefill_tps: float = 400.0
    ttft_s: float | None = None  # a fixed slot → first token time instead of prefill + one decode step
    load_s: float = 0.0  # cold-start model load on the first request(s)
    faults: dict[str, float] = field(default_factory=dict)  # kind -> probability per request
    fault_after: int = 3  # cut / malformed / stall come after this many content tokens
    seed: int = 0
    model: str = "tokentop-sim:70b-simulated"
    version: str = "0.0.0-tokentop-sim"

    def __post_init__(self) -> None:
        if self.parallel < 1:
            raise ValueError(f"parallel must be 1 or more, not {self.parallel}")
        if not (0 < self.speed < math.inf and 0 < self.prefill_tps < math.inf):
            raise ValueError(f"speed and prefill tok/s must be numbers more than 0, not {self.speed}, {self.prefill_tps}")
        if self.ttft_s is not None and not 0 <= self.ttft_s < math.inf:
            raise ValueError(f"ttft must be a number of 0 or more, not {self.ttft_s}")
        if not 0 <= self.load_s < math.inf or self.fault_after < 0:
            raise ValueError("load time and fault_after must be numbers of 0 or more")
        if not self.profile or any(n < 1 or not r > 0 for n, r in self.profile):
            raise ValueError("profile needs (slots >= 1, tok/s > 0) points")
        if not self.model:
            raise ValueError("model name cannot be empty")
        for kind, p in self.faults.items():
            if kind not in FAULT_KINDS or not 0 <= p <= 1:
                raise ValueError(f"bad fault {kind}={p} (kinds: {', '.join(FAULT_KINDS)}; probability 0 to 1)")


def decode_rate(profile: tuple[tuple[int, float], ...], busy: int) -> float:
    """Per-stream tok/s with `busy` slots decoding."""
    points = sorted(profile)
    n = max(1, busy)
    if n <= points[0][0]:
        return points[0][1]
    for (n0, r0), (n1, r1) in zip(points, points[1:]):
        if n <= n1:
            return r0 + (r1 - r0) * (n - n0) / (n1 - n0)
    last_n, last_rate = points[-1]
    return last_rate * last_n / n


def parse_faults(spec: str) -> dict[str, float]:
    """"cut=0.5,busy=1" -> {"cut": 0.5, "busy": 1.0}; a kind alone means probability 1."""
    faults: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        kind, sep, value = (s.strip() for s in part.partition("="))
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r} in {spec!r} (choose from: {', '.join(FAULT_KINDS)})")
        try:
            probability = float(value) if sep else 1.0
        except ValueError:
            probability = float("nan")
        if not 0 <= probability <= 1:
            raise ValueError(f"fault {kind!r} needs a probability from 0 to 1, not {value!r}")
        faults[kind] = probability
    return faults


# --- HTTP plumbing --------------------------------------------------------------------------------

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


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


# Connections whose answer has begun: a failure after that can only cut them, not answer again.
_ANSWERED: weakref.WeakSet[asyncio.StreamWriter] = weakref.WeakSet()


async def send(writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str = JSON_TYPE) -> None:
    _ANSWERED.add(writer)
    writer.write(head(status, content_type, len(body)) + body)
    await writer.drain()


def error_body(path: str, message: str, kind: str = "invalid_request_error") -> bytes:
    if path.startswith("/v1/"):
        return dumps({"error": {"message": message, "type": kind}})
    return dumps({"error": message})


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


async def _eof(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


# --- the simulation ---------------------------------------------------------------------------------

def _text(content: Any) -> str:
    if isinstance(content, list):  # OpenAI content parts
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _number(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def token(i: int) -> str:
    word = WORDS[i % len(WORDS)]
    return word.capitalize() if i == 0 else " " + word


@dataclass
class Job:
    """One generation request and its clock (loop.time() seconds, real)."""

    kind: str  # "chat" / "generate" (ollama) or "openai"
    model: str
    stream: bool
    prompt_tokens: int
    n_tokens: int
    done_reason: str
    fault: str | None
    include_usage: bool = False
    arrival: float = 0.0
    load_wait: float = 0.0
    slot_at: float = 0.0
    prefill_end: float = 0.0
    decode_end: float = 0.0
    sent: int = 0
    id: str = field(default_factory=lambda: "chatcmpl-" + uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))


class SimServer:
    def __init__(self, config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or SimConfig()
        self.host, self.port = host, port
        self.busy = 0
        self._waiters: deque[asyncio.Future] = deque()
        self._rng = random.Random(self.config.seed)
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self._loaded = self.config.load_s <= 0
        self._loading: asyncio.Future | None = None
        self._started = int(time.time())

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    # Slots: a strict FIFO. A released slot is handed straight to the oldest waiter.
    async def _acquire(self) -> None:
        if self.busy < self.config.parallel and not self._waiters:
            self.busy += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed a slot just as the client left
            elif waiter in self._waiters:  # (a cancelled waiter may already be dropped by _release)
                self._waiters.remove(waiter)
            raise

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.busy -= 1

    async def _wait_loaded(self) -> float:
        """Cold start: the first request(s) wait for the simulated model load; returns the wait."""
        if self._loaded:
            return 0.0
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load())
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.shield(self._loading)  # a client that leaves must not cancel the load
        return loop.time() - start

    async def _load(self) -> None:
        await asyncio.sleep(self.config.load_s / self.config.speed)
        self._loaded = True

    # --- connections and routes ---
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        path = ""
        try:
            request = await read_request(reader)
            if request is not None:
                path = request.path
                await self._route(request, reader, writer)
        except HTTPError as exc:
            await send(writer, exc.status, error_body(path, exc.message))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away, or the server is closing
        except Exception:  # a bug here: show it, answer 500 (or cut an answer already begun), keep serving
            traceback.print_exc()
            if writer in _ANSWERED:
                writer.transport.abort()
            else:
                try:
                    await send(writer, 500, error_body(path, "internal error in tokentop sim", "server_error"))
                except (ConnectionError, asyncio.CancelledError):
                    pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _route(self, req: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        gets = {"/api/version": self._version, "/api/tags": self._tags, "/api/ps": self._ps,
                "/v1/models": self._models, "/health": lambda: {"status": "ok"}}
        posts = {"/api/chat": "chat", "/api/generate": "generate", "/v1/chat/completions": "openai"}
        if req.method == "GET" and req.path in gets:
            await send(writer, 200, dumps(gets[req.path]()))
        elif req.method == "GET" and req.path == "/metrics":
            await send(writer, 200, self._metrics().encode(), "text/plain; version=0.0.4; charset=utf-8")
        elif req.method == "POST" and req.path in posts:
            await self._generation(req, posts[req.path], reader, writer)
        elif req.path in gets or req.path in posts or req.path == "/metrics":
            raise HTTPError(405, f"method {req.method} not allowed on {req.path}")
        else:
            raise HTTPError(404, f"{req.path} not found (tokentop sim, SIMULATED server)")

    def _details(self) -> dict[str, Any]:
        return {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                "parameter_size": "70.6B (simulated)", "quantization_level": "Q4_K_M"}

    def _model_entry(self) -> dict[str, Any]:
        name = self.config.model
        return {"name": name, "model": name, "size": 42_520_413_916,
                "digest": hashlib.sha256(name.encode()).hexdigest(), "details": self._details()}

    def _version(self) -> dict[str, Any]:
        return {"version": self.config.version}

    def _tags(self) -> dict[str, Any]:
        return {"models": [{**self._model_entry(), "modified_at": _now_rfc3339()}]}

    def _ps(self) -> dict[str, Any]:
        if not self._loaded:
            return {"models": []}
        entry = self._model_entry()
        expires = (datetime.now(timezone.utc) + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
        return {"models": [{**entry, "size_vram": entry["size"], "expires_at": expires, "context_length": 4096}]}

    def _models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.config.model, "object": "model",
                                            "created": self._started, "owned_by": "tokentop-sim"}]}

    def _metrics(self) -> str:
        lines = []
        for prefix, note in (("tokentop_sim", " (SIMULATED)"), ("llamacpp", "")):
            for name, value, help_text in (("requests_processing", self.busy, "Number of requests processing."),
                                           ("requests_deferred", self.queued, "Number of requests deferred.")):
                lines += [f"# HELP {prefix}:{name} {help_text}{note}", f"# TYPE {prefix}:{name} gauge",
                          f"{prefix}:{name} {value}"]
        return "\n".join(lines) + "\n"

    # --- generation ---
    def _new_job(self, req: Request, kind: str) -> Job:
        try:
            body = json.loads(req.body)
        except ValueError as exc:
            raise HTTPError(400, f"invalid JSON body: {exc}") from None
        if not isinstance(body, dict):
            raise HTTPError(400, "the JSON body must be an object")
        model = body.get("model")
        if kind != "openai":
            if not model:
                raise HTTPError(400, "model is required")
            if model not in (self.config.model, self.config.model.removesuffix(":latest")):
                raise HTTPError(404, f'model "{model}" not found, try pulling it first')
        if kind == "generate":
            texts = [_text(body.get("prompt"))]
            ask = texts[0]
        else:
            messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
            texts = [_text(m.get("content")) for m in messages]
            users = [m for m in messages if m.get("role") == "user"] or messages
            ask = _text(users[-1].get("content")) if users else ""
        options = body.get("options") if isinstance(body.get("options"), dict) else {}
        source = body if kind == "openai" else options
        limit = _number(source.get("max_tokens" if kind == "openai" else "num_predict"))
        seed = _number(source.get("seed"))
        fault = self._draw_fault()
        n = self._length(ask, random.Random(seed) if seed is not None else self._rng)
        capped = limit is not None and 0 < limit < n
        stream_options = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
        return Job(kind=kind, model=model if isinstance(model, str) and model else self.config.model,
                   stream=bool(body.get("stream", kind != "openai")),
                   prompt_tokens=max(1, round(sum(len(t.split()) for t in texts) * 4 / 3)),
                   n_tokens=limit if capped else n, done_reason="length" if capped else "stop",
                   fault=fault, include_usage=bool(stream_options.get("include_usage")))

    def _draw_fault(self) -> str | None:
        chosen = None
        for kind in FAULT_KINDS:  # one draw per configured kind, always, so runs are reproducible
            if kind in self.config.faults and self._rng.random() < self.config.faults[kind] and chosen is None:
                chosen = kind
        return chosen

    @staticmethod
    def _length(ask: str, rng: random.Random) -> int:
        match = re.search(r"in (\d+) words", ask)
        if not match:
            return 20
        return max(1, round(int(match.group(1)) * 1.2 * rng.uniform(0.9, 1.1)))

    async def _generation(self, req: Request, kind: str, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        arrival = asyncio.get_running_loop().time()
        job = self._new_job(req, kind)
        job.arrival = arrival
        if job.fault == "refuse":
            writer.transport.abort()
        elif job.fault == "busy":
            await send(writer, 503, error_body(req.path, BUSY_MESSAGE, "api_error"))
        else:
            await self._until_disconnect(reader, self._serve(job, writer))

    async def _until_disconnect(self, reader: asyncio.StreamReader, work_coro) -> None:
        """Run the work, but cancel it as soon as the client hangs up (even while it is queued)."""
        work, watch = asyncio.ensure_future(work_coro), asyncio.ensure_future(_eof(reader))
        try:
            await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            work.cancel()
            watch.cancel()
            await asyncio.gather(work, watch, return_exceptions=True)
        error = None if work.cancelled() else work.exception()
        if error is not None and not isinstance(error, ConnectionError):
            raise error  # a bug, not a hang-up

    async def _serve(self, job: Job, writer: asyncio.StreamWriter) -> None:
        loop, cfg = asyncio.get_running_loop(), self.config
        job.load_wait = await self._wait_loaded()
        await self._acquire()
        try:
            job.slot_at = loop.time()
            prefill = cfg.ttft_s if cfg.ttft_s is not None else job.prompt_tokens / cfg.prefill_tps
            await asyncio.sleep(prefill / cfg.speed)
            job.prefill_end = due = loop.time()
            out = self._stream(job, writer)
            text = []
            fault_at = min(cfg.fault_after, job.n_tokens) if job.fault in ("cut", "malformed", "stall") else -1
            for i in range(job.n_tokens + 1):
                if i == fault_at and not await self._fault(job, out, writer):
                    return
                if i == job.n_tokens:
                    break
                if i or cfg.ttft_s is None:  # with a fixed TTFT the first token goes at once
                    due += 1 / (decode_rate(cfg.profile, self.busy) * cfg.speed)
                await asyncio.sleep(max(0.0, due - loop.time()))
                text.append(token(i))
                job.sent += 1
                if out is not None:
                    await out.write(self._chunk(job, text[-1]))
            job.decode_end = loop.time()
            if out is not None:
                await out.write(self._final_chunks(job))
            elif job.fault == "malformed":
                await send(writer, 200, self._bad_line(job))
            else:
                await send(writer, 200, dumps(self._whole(job, "".join(text))))
        finally:
            self._release()

    async def _fault(self, job: Job, out: Stream | None, writer: asyncio.StreamWriter) -> bool:
        """Apply a mid-stream fault; False when the response ends here."""
        if job.fault == "cut":
            writer.transport.abort()
            return False
        if job.fault == "stall":
            await asyncio.Event().wait()  # until the client leaves or the server closes
        if job.fault == "malformed" and out is not None:
            await out.write(self._bad_line(job))
        return True

    def _stream(self, job: Job, writer: asyncio.StreamWriter) -> Stream | None:
        if not job.stream:
            return None
        if job.kind != "openai":
            return Stream(writer, "application/x-ndjson")
        role = self._openai_chunk(job, {"role": "assistant", "content": None}, None)
        return Stream(writer, "text/event-stream", b"data: " + dumps(role) + b"\n\n")

    @staticmethod
    def _bad_line(job: Job) -> bytes:
        return b"data: {not json\n\n" if job.kind == "openai" else b'{"message": {"content": "bro\n'

    def _chunk(self, job: Job, piece: str) -> bytes:
        if job.kind == "openai":
            return b"data: " + dumps(self._openai_chunk(job, {"content": piece}, None)) + b"\n\n"
        return dumps(self._ollama_object(job, piece, done=False)) + b"\n"

    def _ollama_object(self, job: Job, content: str, done: bool) -> dict[str, Any]:
        obj: dict[str, Any] = {"model": job.model, "created_at": _now_rfc3339()}
        if job.kind == "chat":
            obj["message"] = {"role": "assistant", "content": content}
        else:
            obj["response"] = content
        obj["done"] = done
        if done:
            obj["done_reason"] = job.done_reason
            numbers = {"total_duration": self._ns(job.decode_end - job.arrival),
                       "load_duration": self._ns(job.load_wait),
                       "prompt_eval_count": job.prompt_tokens,
                       "prompt_eval_duration": self._ns(job.prefill_end - job.slot_at),
                       "eval_count": job.sent,
                       "eval_duration": self._ns(job.decode_end - job.prefill_end)}
            obj.update({k: v for k, v in numbers.items() if v})  # ollama omits zero numbers
        return obj

    def _ns(self, real_seconds: float) -> int:
        return int(real_seconds * self.config.speed * NS)  # simulated time

    def _openai_chunk(self, job: Job, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {"id": job.id, "object": "chat.completion.chunk", "created": job.created, "model": job.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    def _timings(self, job: Job) -> dict[str, Any]:
        prompt_ms = (job.prefill_end - job.slot_at) * self.config.speed * 1000
        predicted_ms = (job.decode_end - job.prefill_end) * self.config.speed * 1000
        return {"prompt_n": job.prompt_tokens, "prompt_ms": round(prompt_ms, 3),
                "prompt_per_second": job.prompt_tokens / prompt_ms * 1000 if prompt_ms > 0 else 0.0,
                "predicted_n": job.sent, "predicted_ms": round(predicted_ms, 3),
                "predicted_per_second": job.sent / predicted_ms * 1000 if predicted_ms > 0 else 0.0,
                "cache_n": 0}

    def _usage(self, job: Job) -> dict[str, int]:
        return {"prompt_tokens": job.prompt_tokens, "completion_tokens": job.sent,
                "total_tokens": job.prompt_tokens + job.sent}

    def _final_chunks(self, job: Job) -> bytes:
        if job.kind != "openai":
            return dumps(self._ollama_object(job, "", done=True)) + b"\n"
        events = [{**self._openai_chunk(job, {}, job.done_reason), "timings": self._timings(job)}]
        if job.include_usage:  # real llama.cpp also puts the timings here
            events.append({**self._openai_chunk(job, {}, None), "choices": [], "usage": self._usage(job),
                           "timings": self._timings(job)})
        return b"".join(b"data: " + dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"

    def _whole(self, job: Job, text: str) -> dict[str, Any]:
        if job.kind != "openai":
            return self._ollama_object(job, "", done=True) | (
                {"message": {"role": "assistant", "content": text}} if job.kind == "chat" else {"response": text})
        return {"id": job.id, "object": "chat.completion", "created": job.created, "model": job.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": job.done_reason}],
                "usage": self._usage(job), "timings": self._timings(job)}


# --- running it ---------------------------------------------------------------------------------------

class SimThread:
    """A SimServer on its own event loop in a daemon thread: `with SimThread(cfg) as sim: sim.url`."""

    def __init__(self, config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = SimServer(config, host, port)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: Exception | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> SimThread:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="tokentop-sim", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            await self.server.start()
        except Exception as exc:
            self._error = exc
            return
        finally:
            self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.server.close()

    def stop(self) -> None:
        if self._thread is None or not self._thread.is_alive() or self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(self._stop.set)
        except RuntimeError:  # the loop already ended
            pass
        self._thread.join(timeout=5)

    def __enter__(self) -> SimThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = SimConfig()
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port to listen on (default {DEFAULT_PORT}, next to ollama's 11434)")
    parser.add_argument("--parallel", type=int, default=d.parallel,
                        help=f"slots decoding at once; more requests wait in a queue (default {d.parallel})")
    parser.add_argument("--speed", type=float, default=d.speed,
                        help="time multiplier: 10 runs everything ten times faster (default 1)")
    parser.add_argument("--prefill-tps", type=float, default=d.prefill_tps,
                        help=f"simulated prompt tokens per second (default {d.prefill_tps:g})")
    parser.add_argument("--ttft", type=float, default=None, metavar="SECONDS",
                        help="fixed time from getting a slot to the first token, replacing prefill"
                             " (simulated seconds; for measuring the client's own TTFT error)")
    parser.add_argument("--load-time", type=float, default=d.load_s,
                        help="simulated cold-start model load before the first request, in seconds (default 0)")
    parser.add_argument("--fault", default="", metavar="SPEC",
                        help=f"inject faults, KIND=PROBABILITY,... with KIND one of {', '.join(FAULT_KINDS)}"
                             " (a KIND alone means always), e.g. cut=0.1,busy=0.05")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed for fault draws and answer lengths")
    parser.add_argument("--model", default=d.model, help=f"model name to serve (default {d.model})")


def run(args: argparse.Namespace) -> int:
    try:
        config = SimConfig(parallel=args.parallel, speed=args.speed, prefill_tps=args.prefill_tps, ttft_s=args.ttft,
                           load_s=args.load_time, faults=parse_faults(args.fault), seed=args.seed, model=args.model)
        if not 0 <= args.port <= 65535:
            raise ValueError(f"--port must be 0 to 65535, not {args.port}")
    except ValueError as exc:
        print(f"tokentop sim: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve_forever(SimServer(config, args.host, args.port)))
    except KeyboardInterrupt:
        return 0


async def _serve_forever(server: SimServer) -> int:
    try:
        await server.start()
    except OSError as exc:
        where = f"{server.host}:{server.port}"
        reason = "the port is in use (try --port)" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        print(f"tokentop sim: cannot listen on {where}: {reason}", file=sys.stderr)
        return 2
    cfg = server.config
    print(f"tokentop sim (SIMULATED server) listening on {server.url} — parallel {cfg.parallel}, speed {cfg.speed:g}",
          flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()
    return 0
