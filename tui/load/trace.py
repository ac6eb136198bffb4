"""A recorded workload (`--trace FILE`): when each request came, how long its prompt and answer were, and which
prompt blocks it shared with others; and prompts built so that a server's prefix cache sees that sharing.

Three formats, told apart by the first line's content, not the file's name:
- Mooncake JSONL: `{"timestamp": ms, "input_length": n, "output_length": n, "hash_ids": [...]}`, one id per
  512-token block of the prompt; equal ids are equal blocks (a shared system prompt, an earlier turn).
- BurstGPT CSV: `Timestamp` (seconds), `Request tokens`, `Response tokens` (and `Model`, `Total tokens`,
  `Log Type`, unused). BurstGPT marks a failed request with 0 tokens: such a row is left out and counted.
- Azure LLM inference CSV: `TIMESTAMP` (a date-time), `ContextTokens`, `GeneratedTokens`.
The CSV formats have no block ids: each request's prompt is its own.

The file is streamed a line at a time and at most MAX_REQUESTS requests are kept (more are said in a note).
"""

from __future__ import annotations

import csv
import functools
import itertools
import json
import math
import os
import random
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from tui.files import open_capped, utf8_lines
from tui.load.stats import percentile
from tui.load.synthetic import INSTRUCTION, WORDS
from tui.untrusted import one_line

MOONCAKE, BURSTGPT, AZURE = "mooncake", "burstgpt", "azure"
MAX_BYTES = 4 << 30  # a regular file is refused over this before a byte is read; reading stops at MAX_REQUESTS
MAX_LINE = 1 << 20  # a Mooncake line of a 1M-token prompt is about 16 KiB
MAX_REQUESTS = 1_000_000  # every request kept costs about 200 bytes (more with its block ids)
MAX_TOKENS = 10_000_000  # a longer prompt or answer is no real request (and its prompt would fill memory)
BLOCK_TOKENS = 512  # Mooncake's block size
FORMATS = "not a Mooncake JSONL, BurstGPT CSV or Azure CSV trace"
_COLUMNS = {  # the columns read: time, input tokens, output tokens
    BURSTGPT: ("Timestamp", "Request tokens", "Response tokens"),
    AZURE: ("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
}
_MOONCAKE_KEYS = ("timestamp", "input_length", "output_length", "hash_ids")
_Row = tuple[float, int, int, tuple[int, ...]]  # seconds as the file has them, input and output tokens, block ids


class TraceError(ValueError):
    """A trace that cannot be replayed; the message is one line that names the file (and the line)."""


@dataclass(frozen=True, slots=True)
class TraceRequest:
    at_s: float  # due time: seconds after the trace's first request, after the time scale
    input_tokens: int  # after the token scale (and the context cap), at least 1
    output_tokens: int
    blocks: tuple[int, ...]  # the prompt's block ids, in order; empty when the format has none
    index: int  # 0-based position among the kept requests, in file order


@dataclass(frozen=True)
class Trace:
    requests: tuple[TraceRequest, ...]  # in time order (stable: equal times keep file order)
    block_tokens: int  # tokens a block stands for, after the token scale
    format: str  # MOONCAKE, BURSTGPT or AZURE
    path: str
    notes: tuple[str, ...] = ()  # what was changed or left out, one line each
    time_scale: float = 1.0
    token_scale: float = 1.0

    @property
    def span_s(self) -> float:
        return self.requests[-1].at_s - self.requests[0].at_s if self.requests else 0.0

    def summary(self) -> str:
        """The plan in one line: requests, span, mean rate, input and output tokens p50/p99 (after scaling)."""
        n = len(self.requests)
        span = self.span_s
        when = f"over {span:,.1f} s ({n / span:,.2f}/s)" if span > 0 else "all at once"
        inputs = [r.input_tokens for r in self.requests]
        outputs = [r.output_tokens for r in self.requests]
        scaled = [f"--{what}-scale {scale:g}" for what, scale in (("token", self.token_scale),
                                                                   ("time", self.time_scale)) if scale != 1]
        return (f"trace {one_line(os.path.basename(self.path), 80)} ({self.format}):"
                f" {n:,} request{'s' if n != 1 else ''} {when};"
                f" input p50 {_p(inputs, 50)} p99 {_p(inputs, 99)} tokens,"
                f" output p50 {_p(outputs, 50)} p99 {_p(outputs, 99)}"
                + (f" (after {', '.join(scaled)})" if scaled else ""))


def _p(values: list[int], q: float) -> str:
    return f"{round(percentile(values, q) or 0):,}"


def load_trace(path: str | os.PathLike[str], *, time_scale: float = 1.0, token_scale: float = 1.0,
               max_requests: int | None = None, context_tokens: int | None = None) -> Trace:
    """The trace's requests (the first `max_requests` in file order, at most MAX_REQUESTS) in time order:
    `time_scale` X replays X times faster, `token_scale` multiplies every length and the block size, and
    `context_tokens` caps input + output to the model's context (the input is cut first)."""
    _check_options(time_scale, token_scale, max_requests, context_tokens)
    name = one_line(os.fspath(path))
    limit = min(max_requests or MAX_REQUESTS, MAX_REQUESTS)
    kept = _Kept()
    notes: list[str] = []
    failed = 0
    with open_capped(path, name, MAX_BYTES, TraceError) as f:
        lines = _lines(f, name)
        first = next(lines, None)
        if first is None:
            raise TraceError(f"{name}: empty")
        kind = _format_of(name, *first)
        rows = _mooncake(name, first, lines) if kind == MOONCAKE else _csv_rows(name, kind, first[1], lines)
        for row in rows:
            if row is None:
                failed += len(kept) < limit  # a failure past the last request kept is not counted
            elif len(kept) < limit:
                kept.add(row)
            else:
                if limit == MAX_REQUESTS and max_requests != MAX_REQUESTS:
                    notes.append(f"{name} holds more than {MAX_REQUESTS:,} requests; the first"
                                 f" {MAX_REQUESTS:,} are replayed")
                break
    if failed:
        notes.append(f"{failed:,} failed request{'s' if failed != 1 else ''} (0 tokens) left out")
    if not kept:
        raise TraceError(f"{name}: no requests" + (f" ({notes[-1]})" if failed else ""))
    largest = round(max(max(kept.inputs), max(kept.outputs)) * token_scale)
    if largest > MAX_TOKENS:
        raise TraceError(f"{name}: --token-scale {token_scale:g} makes a request of {largest:,} tokens"
                         f" (over {MAX_TOKENS:,})")
    block_tokens = max(1, round(BLOCK_TOKENS * token_scale))
    t0 = min(kept.times)
    requests = [TraceRequest((t - t0) / time_scale, max(1, round(tokens_in * token_scale)),
                             max(1, round(tokens_out * token_scale)), blocks, i)
                for i, (t, tokens_in, tokens_out, blocks) in enumerate(kept)]
    del kept
    if any(a.at_s > b.at_s for a, b in zip(requests, itertools.islice(requests, 1, None))):
        notes.append("the file's times are out of order: the requests are replayed in time order")
        requests.sort(key=lambda r: r.at_s)  # stable: equal times keep file order
    if context_tokens is not None:
        requests, cut = _capped(requests, context_tokens, block_tokens)
        if cut:
            notes.append(f"{cut:,} of {len(requests):,} requests cut to the model's context of"
                         f" {context_tokens:,} tokens")
    return Trace(tuple(requests), block_tokens, kind, os.fspath(path), tuple(notes), time_scale, token_scale)


class _Kept:
    """The rows kept, in file order, as packed columns: a million requests' rows cost 30 MB, not 150."""

    def __init__(self) -> None:
        self.times, self.inputs, self.outputs = array("d"), array("q"), array("q")
        self.blocks: list[tuple[int, ...]] = []

    def add(self, row: _Row) -> None:
        self.times.append(row[0])
        self.inputs.append(row[1])
        self.outputs.append(row[2])
        self.blocks.append(row[3])

    def __len__(self) -> int:
        return len(self.blocks)

    def __iter__(self) -> Iterator[_Row]:
        return zip(self.times, self.inputs, self.outputs, self.blocks)


def _check_options(time_scale: float, token_scale: float, max_requests: int | None,
                   context_tokens: int | None) -> None:
    for flag, scale in (("--time-scale", time_scale), ("--token-scale", token_scale)):
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise TraceError(f"{flag} must be a number more than 0, not {one_line(scale, 40)}")
    if max_requests is not None and max_requests < 1:
        raise TraceError(f"--max-requests must be 1 or more, not {max_requests}")
    if context_tokens is not None and context_tokens < 2:
        raise TraceError(f"a model's context of {context_tokens} tokens has no room for a prompt and an answer")


def _capped(requests: list[TraceRequest], context: int, block_tokens: int) -> tuple[list[TraceRequest], int]:
    """Each request cut to fit the context: its input first (the answer's length is what the trace asked
    for), never below 1 token each; a cut input keeps only the block ids it still covers."""
    out, cut = [], 0
    for r in requests:
        if r.input_tokens + r.output_tokens <= context:
            out.append(r)
            continue
        cut += 1
        tokens_in = max(1, context - r.output_tokens)
        tokens_out = context - tokens_in
        out.append(TraceRequest(r.at_s, tokens_in, tokens_out, r.blocks[:-(-tokens_in // block_tokens)], r.index))
    return out, cut


# --- reading -------------------------------------------------------------------------------------------------


def _lines(f: Any, name: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line that is not blank; a BOM at the start dropped."""
    return utf8_lines(f, name, TraceError, MAX_LINE, "trace line")


def _format_of(name: str, lineno: int, text: str) -> str:
    if text.lstrip().startswith("{"):
        obj = _json(name, lineno, text)
        if any(key in obj for key in _MOONCAKE_KEYS):
            return MOONCAKE
    else:
        header = set(_fields(text))
        for kind, columns in _COLUMNS.items():
            if header.issuperset(columns):
                return kind
    raise TraceError(f'{name}: {FORMATS} (line {lineno}: "{one_line(text, 60)}")')


def _json(name: str, lineno: int, text: str) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as e:  # a RecursionError: nested too deeply
        reason = getattr(e, "msg", None) or ("nested too deeply" if isinstance(e, RecursionError) else str(e))
        raise TraceError(f"{name} line {lineno}: not JSON ({one_line(reason, 100)})") from None
    if not isinstance(obj, dict):
        raise TraceError(f"{name} line {lineno}: not a JSON object")
    return obj


def _mooncake(name: str, first: tuple[int, str], rest: Iterator[tuple[int, str]]) -> Iterator[_Row]:
    for lineno, text in itertools.chain((first,), rest):
        where = f"{name} line {lineno}"
        obj = _json(name, lineno, text)
        missing = [key for key in _MOONCAKE_KEYS if key not in obj]
        if missing:
            raise TraceError(f"{where}: no {missing[0]} (a Mooncake line has {', '.join(_MOONCAKE_KEYS)})")
        blocks = obj["hash_ids"]
        if not isinstance(blocks, list):
            raise TraceError(f"{where}: hash_ids is not a list ({_shown(blocks)})")
        for i, h in enumerate(blocks):
            if not isinstance(h, int) or isinstance(h, bool):
                raise TraceError(f"{where}: hash_ids item {i + 1} is not a whole number ({_shown(h)})")
        ms = _number(where, "timestamp", obj["timestamp"])
        yield (ms / 1000, _length(where, "input_length", obj["input_length"]),
               _length(where, "output_length", obj["output_length"]), tuple(blocks))


def _csv_rows(name: str, kind: str, header_line: str, rest: Iterator[tuple[int, str]]) -> Iterator[_Row | None]:
    """Each row's (seconds, input, output, ()); None for a BurstGPT row of a failed request (0 tokens)."""
    header = _fields(header_line)
    at = [header.index(column) for column in _COLUMNS[kind]]
    need = max(at) + 1
    for lineno, text in rest:
        where = f"{name} line {lineno}"
        fields = _fields(text, strip=False)  # int() and float() take spaces; a date-time is stripped
        if len(fields) < need:
            raise TraceError(f"{where}: {len(fields)} field{'s' if len(fields) != 1 else ''}, not the"
                             f" {len(header)} of the header")
        (t_name, in_name, out_name), (t, tokens_in, tokens_out) = _COLUMNS[kind], (fields[i] for i in at)
        if kind == AZURE:
            seconds = _date_time(where, t_name, t.strip())
        else:
            seconds = _number(where, t_name, _parsed(where, t_name, t))
        tokens = (_length(where, in_name, _parsed(where, in_name, tokens_in), zero=kind == BURSTGPT),
                  _length(where, out_name, _parsed(where, out_name, tokens_out), zero=kind == BURSTGPT))
        yield None if 0 in tokens else (seconds, *tokens, ())


def _parsed(where: str, key: str, text: str) -> int | float:
    """A CSV field's number."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise TraceError(f"{where}: {key} is not a number ({_shown(text)})") from None


def _number(where: str, key: str, value: Any) -> float:
    """A time from the file: a finite number, 0 or more."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TraceError(f"{where}: {key} is not a number ({_shown(value)})")
    if not math.isfinite(value) or value < 0:
        raise TraceError(f"{where}: {key} must be a finite number, 0 or more, not {_shown(value)}")
    return float(value)


def _date_time(where: str, key: str, value: str) -> float:
    """Seconds since the epoch of an ISO date-time (one without a zone is taken as UTC)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise TraceError(f"{where}: {key} is not a date-time ({_shown(value)})") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def _length(where: str, key: str, value: Any, zero: bool = False) -> int:
    """A token count from the file: a whole number more than 0 (or 0 itself, with `zero`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not value.is_integer()):
        raise TraceError(f"{where}: {key} is not a whole number ({_shown(value)})")
    if value < 0 or (value == 0 and not zero):
        raise TraceError(f"{where}: {key} must be more than 0, not {_shown(value)}")
    if value > MAX_TOKENS:
        raise TraceError(f"{where}: {key} is over {MAX_TOKENS:,} tokens ({_shown(value)})")
    return int(value)


def _shown(value: Any) -> str:
    """A value from the file, for a message: JSON-quoted, on one line, short."""
    return one_line(json.dumps(value), 40)


def _fields(text: str, strip: bool = True) -> list[str]:
    # Most lines have no quotes: a split is several times faster than a csv reader per line.
    fields = next(csv.reader((text,))) if '"' in text else text.split(",")
    return [field.strip() for field in fields] if strip else fields


# --- prompts -------------------------------------------------------------------------------------------------


def trace_prompt(request: TraceRequest, block_tokens: int, per_word: float, overhead: float = 0.0,
                 salt: str = "") -> str:
    """A prompt of about `request.input_tokens` tokens as the server counts them (overhead + per_word × words,
    synthetic.Calibration's model; the overhead counts the instruction at the start and the chat template).

    It is the words of each block in turn, `block_tokens` worth each, the last block cut (or run on) to the
    length: block id h is always the same words, so requests that share their first k ids share their first
    k blocks of text and a server's prefix cache sees the trace's sharing. A request without block ids gets
    words of its own, drawn from its index. `salt` makes a run's text its own (the same ids, other words than
    another run's), so a server's cache holds no block of an earlier run."""
    if not (math.isfinite(per_word) and per_word > 0) or block_tokens < 1:
        raise ValueError(f"per_word must be more than 0 and block_tokens 1 or more, not {per_word}, {block_tokens}")
    words = max(1, round((request.input_tokens - overhead) / per_word))
    if not request.blocks:
        own = random.Random(f"trace request {salt}{request.index}").choices(WORDS, k=words)
        return f"{INSTRUCTION} {' '.join(own)}"
    per_block = max(1, round(block_tokens / per_word))
    parts: list[str] = []
    left, last = words, len(request.blocks) - 1
    for i, h in enumerate(request.blocks):
        take = left if i == last else min(per_block, left)
        # A run-on last block is not cached: its length is the request's own, and would crowd the cache out.
        parts.extend(_block_words(h, per_block, salt)[:take] if take <= per_block else _block_run(h, take, salt))
        left -= take
        if not left:
            break
    return f"{INSTRUCTION} {' '.join(parts)}"


@functools.lru_cache(maxsize=4096)  # 4,096 blocks of 512 words: about 16 MiB
def _block_words(h: int, n: int, salt: str = "") -> tuple[str, ...]:
    return _block_run(h, n, salt)


def _block_run(h: int, n: int, salt: str = "") -> tuple[str, ...]:
    """Block h's first n words. The first is WORDS[h % len(WORDS)], so blocks whose ids differ by less than
    len(WORDS) differ from their first word; the rest are drawn from a generator seeded by h, one draw a
    word, so a longer run of a block starts with its shorter one."""
    return (WORDS[h % len(WORDS)], *random.Random(f"trace block {salt}{h}").choices(WORDS, k=n - 1))
