"""The simulated server (SimServer): its slots and queue, cold start, faults, and routes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import time
import traceback
from collections import deque
from datetime import datetime, timedelta, timezone
from typing import Any

from tui.servers.sim import wire
from tui.servers.sim.config import FAULT_KINDS, SimConfig, decode_rate
from tui.servers.sim.http import HTTPError, Request, Stream, answer_begun, read_request, send, until_eof
from tui.servers.sim.wire import Job, dumps, error_body

BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"


def _text(content: Any) -> str:
    if isinstance(content, list):  # OpenAI content parts
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _number(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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
            if answer_begun(writer):
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
        return {"models": [{**self._model_entry(), "modified_at": wire.now_rfc3339()}]}

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
        ignore_eos = kind == "openai" and body.get("ignore_eos") is True and limit is not None and limit > 0
        capped = ignore_eos or (limit is not None and 0 < limit < n)
        stream_options = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
        include_usage = bool(stream_options.get("include_usage"))
        return Job(kind=kind, model=model if isinstance(model, str) and model else self.config.model,
                   stream=bool(body.get("stream", kind != "openai")),
                   prompt_tokens=max(1, round(sum(len(t.split()) for t in texts) * 4 / 3)),
                   n_tokens=limit if capped else n, done_reason="length" if capped else "stop",
                   fault=fault, include_usage=include_usage,
                   continuous_usage=include_usage and bool(stream_options.get("continuous_usage_stats")))

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
        work, watch = asyncio.ensure_future(work_coro), asyncio.ensure_future(until_eof(reader))
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
            step = cfg.service_s / job.n_tokens if cfg.service_s is not None else None  # simulated s a token
            if step is not None:
                prefill = step
            else:
                prefill = cfg.ttft_s if cfg.ttft_s is not None else job.prompt_tokens / cfg.prefill_tps
                if cfg.jitter:
                    prefill *= self._rng.lognormvariate(0.0, cfg.jitter)
            await asyncio.sleep(prefill / cfg.speed)
            job.prefill_end = due = loop.time()
            out = wire.open_stream(job, writer)
            text, unsent = [], 0
            fault_at = min(cfg.fault_after, job.n_tokens) if job.fault in ("cut", "malformed", "stall") else -1
            for i in range(job.n_tokens + 1):
                if i == fault_at and not await self._fault(job, out, writer):
                    return
                if i == job.n_tokens:
                    break
                if step is not None:  # counted from the slot, so sleeps that overshoot do not add up
                    due = job.slot_at + (i + 1) * step / cfg.speed
                elif i or cfg.ttft_s is None:  # with a fixed TTFT the first token goes at once
                    due += 1 / (decode_rate(cfg.profile, self.busy) * cfg.speed)
                await asyncio.sleep(max(0.0, due - loop.time()))
                text.append(wire.token(i))
                job.sent += 1
                unsent += 1
                if out is not None and (unsent == cfg.tokens_per_chunk or job.sent == job.n_tokens):
                    await out.write(wire.chunk(job, "".join(text[-unsent:])))
                    unsent = 0
            job.decode_end = loop.time()
            if out is not None:
                await out.write(wire.final_chunks(job, cfg.speed))
            elif job.fault == "malformed":
                await send(writer, 200, wire.bad_line(job))
            else:
                await send(writer, 200, dumps(wire.whole(job, "".join(text), cfg.speed)))
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
            await out.write(wire.bad_line(job))
        return True
