"""One record per request, and the figures derived from it.

Times are `time.perf_counter_ns()` stamps taken on the engine's loop as each chunk arrives.
Every derived figure says where it comes from: `tokens_source` is "server" when the server
reported the output token count (ollama eval_count, OpenAI usage.completion_tokens), else
"client" (content chunks counted). The server_* figures are server-reported, the rest are
measured by the client.
"""

from __future__ import annotations

import json
import os
import threading
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NS = 1_000_000_000
COLD_START_NS = NS // 2


@dataclass(slots=True)  # no __dict__: a finished record is about half the size
class RequestRecord:
    stream: int
    concurrency: int
    words: int
    mode: str
    api: str
    model: str
    send_ns: int = 0
    sent_at: float = 0.0  # wall clock (time.time()) at send, for files
    first_token_ns: int | None = None
    last_token_ns: int | None = None
    end_ns: int | None = None
    # Compact arrays, 8 bytes an entry (a list of Python ints costs about 36): an hour of streams keeps millions.
    chunk_ns: array = field(default_factory=lambda: array("q"))  # arrival of each content chunk
    chunk_tokens: array = field(default_factory=lambda: array("q"))  # tokens each chunk carried, if the server said
    server_output_tokens: int | None = None
    prompt_tokens: int | None = None
    timings: dict[str, Any] | None = None  # ollama durations (ns) or llama.cpp `timings`, whole
    done_reason: str | None = None
    http_status: int | None = None
    error_kind: str | None = None
    error: str | None = None
    round: int = 0
    retried: bool = False  # the connection closed before any answer and the request was sent again
    response_id: str | None = None  # the server's id for this response, when it gives one
    streamed: bool = True  # False: the server ignored `stream: true` and sent one body (no TTFT)
    retry_after_s: float | None = None  # what a 429/503's Retry-After asked for
    forced_length: bool = False  # the server was asked for exactly max tokens (ignore_eos); ollama cannot be
    rate: float | None = None  # open loop: the arrival rate (requests/s) of its cell; None in a closed loop
    planned_ns: int | None = None  # open loop: when its arrival was due (send_ns is later if it was held back)
    held_back: bool = False  # open loop: waited at the client for room under the in-flight ceiling
    warmup: bool = False  # sent in the warm-up: kept, and left out of every figure
    cancelled_by_plan: bool = False  # closed by the client on purpose (--cancel-share): not an error
    users: int | None = None  # users in conversations: how many in its cell
    session: int | None = None  # its conversation, and its turn in it (1, 2, …)
    turn: int | None = None
    ends_session: bool = False  # the conversation's last turn, answered: the user is done
    trace_index: int | None = None  # a trace's request: its place in the trace
    node: str | None = None  # --ray: the cluster node that sent it (its times are that node's clock)
    answer_parts: list[str] | None = field(default=None, repr=False, compare=False)  # kept for the next turn only

    # --- state -----------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.end_ns is not None

    @property
    def ok(self) -> bool:
        """Finished as asked: no error, and not closed on purpose before its end."""
        return self.finished and self.error_kind is None and not self.cancelled_by_plan

    # --- tokens ------------------------------------------------------------------------------
    @property
    def client_tokens(self) -> int:
        return len(self.chunk_ns)

    @property
    def output_tokens(self) -> int:
        if self.server_output_tokens:
            return self.server_output_tokens
        return self.client_tokens

    @property
    def tokens_source(self) -> str:
        return "server" if self.server_output_tokens else "client"

    # --- client-measured times ----------------------------------------------------------------
    @property
    def ttft_s(self) -> float | None:
        if self.first_token_ns is None:
            return None
        return (self.first_token_ns - self.send_ns) / NS

    @property
    def e2e_s(self) -> float | None:
        if self.end_ns is None:
            return None
        return (self.end_ns - self.send_ns) / NS

    @property
    def decode_tps(self) -> float | None:
        """(tokens − 1) / (last token − first token): the per-stream decode speed."""
        if self.first_token_ns is None or self.last_token_ns is None:
            return None
        span = (self.last_token_ns - self.first_token_ns) / NS
        if span <= 0 or self.output_tokens < 2:
            return None
        return (self.output_tokens - 1) / span

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first: (e2e − TTFT) / (tokens − 1), as vLLM's bench defines it."""
        ttft, e2e = self.ttft_s, self.e2e_s
        if ttft is None or e2e is None or self.output_tokens < 2:
            return None
        return (e2e - ttft) / (self.output_tokens - 1)

    @property
    def tokens_per_chunk(self) -> list[float]:
        """What each chunk carried: the server's per-chunk counts when it gave them for every chunk (vLLM's
        continuous usage stats), else its final count spread evenly over the chunks, else one token each."""
        n = len(self.chunk_ns)
        if len(self.chunk_tokens) == n:
            return [float(k) for k in self.chunk_tokens]
        if self.server_output_tokens and n:
            return [self.server_output_tokens / n] * n
        return [1.0] * n

    @property
    def itl_s(self) -> list[float]:
        """Inter-token latencies: each gap between two chunks shared by the tokens the later chunk carried.

        A server that packs k tokens a chunk shows k gaps of gap/k, so ITL does not shrink or grow k-fold.
        A chunk that carried no token passes its gap on to the next one.
        """
        chunks, tokens = self.chunk_ns, self.tokens_per_chunk
        gaps: list[float] = []
        since = chunks[0] if chunks else 0
        for t, k in zip(chunks[1:], tokens[1:]):
            if k > 0:
                gaps += [(t - since) / NS / k] * max(1, round(k))
                since = t
        return gaps

    @property
    def article_tps(self) -> float | None:
        """tokens / e2e: the article's "Average Speed" (includes queueing and prefill)."""
        e2e = self.e2e_s
        if not e2e or not self.output_tokens:
            return None
        return self.output_tokens / e2e

    # --- server-reported -----------------------------------------------------------------------
    @property
    def server_decode_tps(self) -> float | None:
        t = self.timings or {}
        if self.api == "ollama":
            if t.get("eval_duration") and self.server_output_tokens:
                return self.server_output_tokens / (t["eval_duration"] / NS)
            return None
        value = t.get("predicted_per_second")
        return float(value) if value else None

    @property
    def server_prefill_tps(self) -> float | None:
        t = self.timings or {}
        if self.api == "ollama":
            if t.get("prompt_eval_duration") and self.prompt_tokens:
                return self.prompt_tokens / (t["prompt_eval_duration"] / NS)
            return None
        value = t.get("prompt_per_second")
        return float(value) if value else None

    @property
    def queue_wait_s(self) -> float | None:
        """ollama only: total − load − prompt_eval − eval ≈ time queued for a slot (estimate)."""
        t = self.timings or {}
        if self.api != "ollama" or not t.get("total_duration"):
            return None
        rest = t["total_duration"] - t.get("load_duration", 0) - t.get("prompt_eval_duration", 0)
        return max(0, rest - t.get("eval_duration", 0)) / NS

    @property
    def cold_start(self) -> bool:
        """ollama: the model was loaded for this request (load_duration over half a second)."""
        return self.api == "ollama" and (self.timings or {}).get("load_duration", 0) > COLD_START_NS

    @property
    def truncated(self) -> bool:
        """The server stopped at a token limit (num_predict / max_tokens, or the context), not by choice; a
        length forced on purpose (--output-tokens) is the answer asked for, not a truncation."""
        return self.done_reason == "length" and not self.forced_length

    @property
    def note(self) -> str | None:
        """What a user should know about this finished request, in a few words."""
        notes = []
        if self.truncated:
            notes.append("truncated (length)")
        if self.cold_start:
            notes.append(f"cold start {self.timings['load_duration'] / NS:.1f}s")
        if self.queue_wait_s is not None and self.queue_wait_s >= 0.1:
            notes.append(f"queued {self.queue_wait_s:.1f}s (server est.)")
        return ", ".join(notes) or None

    # --- files ----------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        def r(x: float | None, nd: int = 4) -> float | None:
            return None if x is None else round(x, nd)

        return {
            "concurrency": self.concurrency,
            "words": self.words,
            "mode": self.mode,
            "round": self.round,
            "stream": self.stream,
            "api": self.api,
            "model": self.model,
            "sent_at": round(self.sent_at, 6),
            "send_ns": self.send_ns,  # time.perf_counter_ns() (CLOCK_MONOTONIC): comparable across processes
            "response_id": self.response_id,
            "ttft_s": r(self.ttft_s, 6),
            "e2e_s": r(self.e2e_s, 6),
            "output_tokens": self.output_tokens,
            "tokens_source": self.tokens_source,
            "client_chunks": self.client_tokens,
            "prompt_tokens": self.prompt_tokens,
            "decode_tps": r(self.decode_tps, 2),
            "seed_tps": r(self.article_tps, 2),  # the key files have always had
            "server_decode_tps": r(self.server_decode_tps, 2),
            "server_prefill_tps": r(self.server_prefill_tps, 2),
            "queue_wait_s": r(self.queue_wait_s),
            "cold_start": self.cold_start,
            "truncated": self.truncated,
            "server_timings": self.timings,
            "done_reason": self.done_reason,
            "http_status": self.http_status,
            "error_kind": self.error_kind,
            "error": self.error,
            "retried": self.retried,
            "streamed": self.streamed,
            "retry_after_s": self.retry_after_s,
            "forced_length": self.forced_length,
            "rate": self.rate,
            "planned_ns": self.planned_ns,
            "held_back": self.held_back,
            "warmup": self.warmup,
            "cancelled_by_plan": self.cancelled_by_plan,
            "users": self.users,
            "session": self.session,
            "turn": self.turn,
            "ends_session": self.ends_session,
            "trace_index": self.trace_index,
            "node": self.node,
            "chunk_offsets_ms": [round((t - self.send_ns) / 1e6, 3) for t in self.chunk_ns],
            "chunk_tokens": self.chunk_tokens.tolist() if len(self.chunk_tokens) == len(self.chunk_ns) else None,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> RequestRecord:
        """A record back from its JSON line: every figure above can be computed again from the file."""
        send = int(obj["send_ns"])
        chunks = [send + round(ms * 1e6) for ms in obj.get("chunk_offsets_ms") or []]
        e2e = obj.get("e2e_s")
        record = cls(
            stream=obj["stream"], concurrency=obj["concurrency"], words=obj["words"], mode=obj["mode"],
            api=obj["api"], model=obj["model"], send_ns=send, sent_at=obj.get("sent_at") or 0.0,
            first_token_ns=chunks[0] if chunks else None, last_token_ns=chunks[-1] if chunks else None,
            end_ns=None if e2e is None else send + round(e2e * NS), chunk_ns=array("q", chunks),
            chunk_tokens=array("q", [k for k in obj.get("chunk_tokens") or []
                                     if isinstance(k, int) and not isinstance(k, bool) and 0 <= k < 2**31]),
            server_output_tokens=obj["output_tokens"] if obj.get("tokens_source") == "server" else None,
            prompt_tokens=obj.get("prompt_tokens"), timings=obj.get("server_timings"),
            done_reason=obj.get("done_reason"), http_status=obj.get("http_status"),
            error_kind=obj.get("error_kind"), error=obj.get("error"), round=obj.get("round", 0),
            retried=obj.get("retried", False), response_id=obj.get("response_id"),
            streamed=obj.get("streamed", True), retry_after_s=obj.get("retry_after_s"),
            forced_length=obj.get("forced_length", False), rate=obj.get("rate"), planned_ns=obj.get("planned_ns"),
            held_back=obj.get("held_back", False), warmup=obj.get("warmup", False),
            cancelled_by_plan=obj.get("cancelled_by_plan", False), users=obj.get("users"), session=obj.get("session"),
            turn=obj.get("turn"), ends_session=obj.get("ends_session", False), trace_index=obj.get("trace_index"),
            node=obj.get("node") if isinstance(obj.get("node"), str) else None,
        )
        if e2e is not None and record.end_ns is not None and chunks:
            record.end_ns = max(record.end_ns, chunks[-1])  # both are rounded to 1 µs
        return record


class JsonlWriter:
    """One JSON line per finished request, in whole lines, so an interrupted run leaves whole lines.

    Each line is written at once, or with `held`, kept until `flush()` (or `close()`) writes those kept in one
    go: the engine flushes every few tenths of a second, where a write per request cost it a few per cent of a
    core at hundreds of requests a second. `write` and `flush` may be called from any thread.
    """

    def __init__(self, path: str | Path, append: bool = False, held: bool = False) -> None:
        # O_APPEND and whole lines in each write(): several processes can share the file without mixing lines.
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        self._fd: int | None = os.open(path, flags, 0o644)
        self._lock = threading.Lock()
        self._held: list[str] | None = [] if held else None

    def write(self, record: RequestRecord) -> None:
        line = json.dumps(record.to_json()) + "\n"
        if self._held is not None:
            with self._lock:
                self._held.append(line)
            return
        with self._lock:
            self._write(line.encode())

    def flush(self) -> None:
        """Write the lines held (OSError if the disk is full: the lines not written are dropped)."""
        with self._lock:
            if self._held:
                lines, self._held[:] = "".join(self._held).encode(), []
                self._write(lines)

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            return
        view = memoryview(data)
        while view:  # a regular file takes it whole unless the disk is full (then OSError)
            view = view[os.write(self._fd, view):]

    def close(self) -> None:
        try:
            self.flush()
        finally:
            with self._lock:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None


def write_jsonl(path: str | Path, records: list[RequestRecord]) -> None:
    writer = JsonlWriter(path)
    try:
        for record in records:
            writer.write(record)
    finally:
        writer.close()


def read_jsonl(path: str | Path) -> list[RequestRecord]:
    """The records of a JSONL file written by --out."""
    with open(path, encoding="utf-8") as f:
        return [RequestRecord.from_json(json.loads(line)) for line in f if line.strip()]
