"""What a simulated answer says on the wire: the made-up tokens, and ollama's NDJSON objects or the
OpenAI / llama.cpp SSE chunks and bodies for a Job. Durations are reported in simulated time."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from tui.servers.sim.http import Stream

NS = 1_000_000_000
WORDS = (
    "once upon a time there was a little robot who lived by the sea and every morning it walked "
    "along the shore to count the boats listen to the gulls and dream of the faraway places where "
    "the ships went when they sailed past the old lighthouse"
).split()


def token(i: int) -> str:
    word = WORDS[i % len(WORDS)]
    return word.capitalize() if i == 0 else " " + word


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def error_body(path: str, message: str, kind: str = "invalid_request_error") -> bytes:
    if path.startswith("/v1/"):
        return dumps({"error": {"message": message, "type": kind}})
    return dumps({"error": message})


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
    continuous_usage: bool = False  # vLLM's continuous_usage_stats: usage so far in every chunk
    arrival: float = 0.0
    load_wait: float = 0.0
    slot_at: float = 0.0
    prefill_end: float = 0.0
    decode_end: float = 0.0
    sent: int = 0
    id: str = field(default_factory=lambda: "chatcmpl-" + uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))


def open_stream(job: Job, writer: asyncio.StreamWriter) -> Stream | None:
    """The streamed body for a job (ollama NDJSON, or SSE led by the role chunk); None when not streamed."""
    if not job.stream:
        return None
    if job.kind != "openai":
        return Stream(writer, "application/x-ndjson")
    role = openai_chunk(job, {"role": "assistant", "content": None}, None)
    return Stream(writer, "text/event-stream", b"data: " + dumps(role) + b"\n\n")


def bad_line(job: Job) -> bytes:
    return b"data: {not json\n\n" if job.kind == "openai" else b'{"message": {"content": "bro\n'


def chunk(job: Job, piece: str) -> bytes:
    if job.kind == "openai":
        return b"data: " + dumps(openai_chunk(job, {"content": piece}, None)) + b"\n\n"
    return dumps(ollama_object(job, piece, done=False)) + b"\n"


def final_chunks(job: Job, speed: float) -> bytes:
    if job.kind != "openai":
        return dumps(ollama_done(job, speed)) + b"\n"
    events = [{**openai_chunk(job, {}, job.done_reason), "timings": timings(job, speed)}]
    if job.include_usage:  # real llama.cpp also puts the timings here
        events.append({**openai_chunk(job, {}, None), "choices": [], "usage": usage(job),
                       "timings": timings(job, speed)})
    return b"".join(b"data: " + dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def whole(job: Job, text: str, speed: float) -> dict[str, Any]:
    """The answer to a request that did not ask to stream."""
    if job.kind != "openai":
        return ollama_done(job, speed) | (
            {"message": {"role": "assistant", "content": text}} if job.kind == "chat" else {"response": text})
    return {"id": job.id, "object": "chat.completion", "created": job.created, "model": job.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": job.done_reason}],
            "usage": usage(job), "timings": timings(job, speed)}


# --- ollama ---

def ollama_object(job: Job, content: str, done: bool) -> dict[str, Any]:
    obj: dict[str, Any] = {"model": job.model, "created_at": now_rfc3339()}
    if job.kind == "chat":
        obj["message"] = {"role": "assistant", "content": content}
    else:
        obj["response"] = content
    obj["done"] = done
    return obj


def ollama_done(job: Job, speed: float) -> dict[str, Any]:
    """The last object: why it ended, and ollama's counts and durations."""
    obj = ollama_object(job, "", done=True)
    obj["done_reason"] = job.done_reason
    numbers = {"total_duration": _ns(job.decode_end - job.arrival, speed),
               "load_duration": _ns(job.load_wait, speed),
               "prompt_eval_count": job.prompt_tokens,
               "prompt_eval_duration": _ns(job.prefill_end - job.slot_at, speed),
               "eval_count": job.sent,
               "eval_duration": _ns(job.decode_end - job.prefill_end, speed)}
    obj.update({k: v for k, v in numbers.items() if v})  # ollama omits zero numbers
    return obj


def _ns(real_seconds: float, speed: float) -> int:
    return int(real_seconds * speed * NS)  # simulated time


# --- OpenAI / llama.cpp ---

def openai_chunk(job: Job, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    obj = {"id": job.id, "object": "chat.completion.chunk", "created": job.created, "model": job.model,
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return obj | {"usage": usage(job)} if job.continuous_usage else obj


def timings(job: Job, speed: float) -> dict[str, Any]:
    prompt_ms = (job.prefill_end - job.slot_at) * speed * 1000
    predicted_ms = (job.decode_end - job.prefill_end) * speed * 1000
    return {"prompt_n": job.prompt_tokens, "prompt_ms": round(prompt_ms, 3),
            "prompt_per_second": job.prompt_tokens / prompt_ms * 1000 if prompt_ms > 0 else 0.0,
            "predicted_n": job.sent, "predicted_ms": round(predicted_ms, 3),
            "predicted_per_second": job.sent / predicted_ms * 1000 if predicted_ms > 0 else 0.0,
            "cache_n": 0}


def usage(job: Job) -> dict[str, int]:
    return {"prompt_tokens": job.prompt_tokens, "completion_tokens": job.sent,
            "total_tokens": job.prompt_tokens + job.sent}
