"""Wire protocols: build a streaming request, and turn the response bytes into events.

Two protocols:
- ollama native: POST /api/chat, NDJSON (one JSON object per line);
- OpenAI-compatible: POST /v1/chat/completions, Server-Sent Events, always asking for the usage chunk.

The decoders are incremental and correct for any split of the byte stream: lines are cut on the
newline *byte*, which never occurs inside a multi-byte UTF-8 character, so a chunk boundary inside a
line or inside a character only delays that line until its end arrives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tui.untrusted import count, numbers_only

OLLAMA = "ollama"
OPENAI = "openai"
APIS = (OLLAMA, OPENAI)


@dataclass(slots=True)  # one a chunk: attributes without a __dict__ are quicker to make and set
class Event:
    """One meaningful piece of a response stream.

    content: text delta ("" when the piece carries none).
    final: the server said the response is complete (ollama done:true, OpenAI finish_reason / [DONE]).
    error: an error the server put inside the stream, or a line we could not parse.
    error_kind: "server" (an error object in the stream) or "malformed" (not valid JSON).
    """

    content: str = ""
    reasoning: str = ""  # a thinking model's reasoning text: generated tokens too, just not the answer
    final: bool = False
    done_reason: str | None = None
    output_tokens: int | None = None  # server-reported (eval_count / usage.completion_tokens)
    tokens_so_far: int | None = None  # per-chunk usage (continuous_usage_stats): the count in a chunk with choices
    prompt_tokens: int | None = None
    timings: dict[str, Any] | None = None  # ollama durations (ns) or llama.cpp `timings`, kept whole
    error: str | None = None
    error_kind: str | None = None
    response_id: str | None = None  # the server's id for the response (OpenAI chunk `id`)


MAX_LINE_BYTES = 4 * 2**20  # a protocol line longer than this is not an answer: the request is ended


class LineTooLong(ValueError):
    """A line went past MAX_LINE_BYTES without ending."""


class LineSplitter:
    """Bytes in, complete lines out (without their CR/LF); linear in the bytes fed, however they are split.

    Only the new bytes are searched for a newline, and the unfinished line grows in a bytearray
    (amortised appends), so a long line in many small pieces costs what it would in one piece.
    """

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self.pending = bytearray()  # the unfinished line's bytes so far
        self._max = max_line

    def feed(self, data: bytes) -> list[str]:
        end = data.rfind(b"\n")
        if end < 0:
            self.pending += data
            self._check(len(self.pending))
            return []
        block = bytes(self.pending) + data[:end] if self.pending else data[:end]
        self.pending = bytearray(data[end + 1:])
        lines = block.split(b"\n")
        if len(block) > self._max:
            self._check(max(map(len, lines)))
        self._check(len(self.pending))
        return [line.rstrip(b"\r").decode("utf-8", errors="replace") for line in lines]

    def close(self) -> list[str]:
        rest, self.pending = bytes(self.pending).rstrip(b"\r"), bytearray()
        return [rest.decode("utf-8", errors="replace")] if rest else []

    def _check(self, length: int) -> None:
        if length > self._max:
            raise LineTooLong(f"line over {self._max // 2**20} MiB without an end")


class NDJSONDecoder:
    """ollama's NDJSON stream → events."""

    def __init__(self) -> None:
        self._lines = LineSplitter()

    def feed(self, data: bytes) -> list[Event]:
        return [e for line in self._lines.feed(data) if (e := self._line(line))]

    def close(self) -> list[Event]:
        return [e for line in self._lines.close() if (e := self._line(line))]

    @staticmethod
    def _line(line: str) -> Event | None:
        if not line.strip():
            return None
        try:
            obj = json.loads(line)
        except ValueError:
            return Event(error=f"malformed line: {line[:80]!r}", error_kind="malformed")
        if not isinstance(obj, dict):
            return Event(error=f"malformed line: {line[:80]!r}", error_kind="malformed")
        return ollama_event(obj)


OLLAMA_DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


def ollama_event(obj: dict[str, Any]) -> Event:
    if "error" in obj:
        return Event(error=str(obj["error"]), error_kind="server")
    message = obj.get("message")
    if isinstance(message, dict):  # /api/chat
        content, reasoning = message.get("content") or "", message.get("thinking") or ""
    else:  # /api/generate
        content, reasoning = obj.get("response") or "", obj.get("thinking") or ""
    if not obj.get("done"):
        return Event(content=str(content), reasoning=str(reasoning))
    # Final chunk: every numeric field is omitted when zero.
    timings = {k: count(obj.get(k)) or 0 for k in OLLAMA_DURATIONS}
    return Event(
        content=str(content),
        reasoning=str(reasoning),
        final=True,
        done_reason=text_or_none(obj.get("done_reason")),
        output_tokens=count(obj.get("eval_count")) or 0,
        prompt_tokens=count(obj.get("prompt_eval_count")) or 0,
        timings=timings,
    )


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class SSEDecoder:
    """OpenAI-style Server-Sent Events → events.

    Follows the SSE rules that matter here: `:` lines are comments (pings), `data:` with or without
    one space, several `data` lines in one event are joined with newlines, a blank line dispatches,
    and a stream that ends without a blank line or without `[DONE]` still yields its last event.
    Errors come as `{"error": …}` data, as an `event: error` event, or (llama.cpp's server) as an
    `error: {…}` line of their own.
    """

    def __init__(self) -> None:
        self._lines = LineSplitter()
        self._data: list[str] = []
        self._event = ""

    def feed(self, data: bytes) -> list[Event]:
        if (data.startswith(b"data: ") and data.find(b"\n") == len(data) - 2 and data.endswith(b"\n\n")
                and b"\r" not in data and not self._data and not self._event and not self._lines.pending):
            # The common piece, one token's event whole: `data: {…}` and a blank line. Its payload, at once.
            return [self._payload_event(data[6:-2].decode("utf-8", errors="replace"))]
        return self._handle(self._lines.feed(data))

    def close(self) -> list[Event]:
        events = self._handle(self._lines.close())
        return events + self._dispatch()

    def _handle(self, lines: list[str]) -> list[Event]:
        events: list[Event] = []
        for line in lines:
            if line == "":
                events += self._dispatch()
            elif line.startswith(":"):
                continue
            else:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "data":
                    self._data.append(value)
                elif name == "event":
                    self._event = value
                elif name == "error":
                    events.append(_error_event(value))
                # other fields (id:, retry:) carry nothing we use
        return events

    def _dispatch(self) -> list[Event]:
        event, self._event = self._event, ""
        if not self._data:
            return []
        payload, self._data = "\n".join(self._data), []
        if event == "error":
            return [_error_event(payload)]
        return [self._payload_event(payload)]

    @staticmethod
    def _payload_event(payload: str) -> Event:
        """The event a `data` payload makes."""
        if payload.strip() == "[DONE]":
            return Event(final=True)
        try:
            obj = json.loads(payload)
        except ValueError:
            return Event(error=f"malformed event: {payload[:80]!r}", error_kind="malformed")
        if not isinstance(obj, dict):
            return Event(error=f"malformed event: {payload[:80]!r}", error_kind="malformed")
        return openai_event(obj)


def _error_event(payload: str) -> Event:
    """An error the server sent as an SSE field or event: its message if JSON, else the text."""
    try:
        obj = json.loads(payload)
    except ValueError:
        return Event(error=payload[:200] or "error event", error_kind="server")
    if isinstance(obj, dict) and "error" in obj:
        obj = obj["error"]
    message = obj.get("message", obj) if isinstance(obj, dict) else obj
    return Event(error=str(message)[:200], error_kind="server")


def openai_event(obj: dict[str, Any]) -> Event:
    if "error" in obj:
        err = obj["error"]
        message = err.get("message", err) if isinstance(err, dict) else err
        return Event(error=str(message), error_kind="server")
    event = Event()
    if isinstance(obj.get("id"), str):
        event.response_id = obj["id"]
    choices = obj.get("choices") or []
    if choices and isinstance(choices[0], dict):
        choice = choices[0]
        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
        event.content = str(delta.get("content") or "")
        event.reasoning = str(delta.get("reasoning_content") or delta.get("reasoning") or "")
        event.done_reason = text_or_none(choice.get("finish_reason"))
    usage = obj.get("usage")
    if isinstance(usage, dict):
        event.output_tokens = count(usage.get("completion_tokens"))
        event.prompt_tokens = count(usage.get("prompt_tokens"))
        if choices:
            event.tokens_so_far = event.output_tokens
    if isinstance(obj.get("timings"), dict):
        event.timings = numbers_only(obj["timings"])
    return event


def openai_whole_event(obj: dict[str, Any]) -> Event:
    """A whole `chat.completion` body (a server that ignored `stream: true`) as one final event."""
    choices = obj.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        delta = {"content": message.get("content"), "reasoning_content": message.get("reasoning_content")} \
            if isinstance(message, dict) else {}
        obj = {**obj, "choices": [{**choices[0], "delta": delta}]}
    event = openai_event(obj)
    event.final = True
    return event


@dataclass
class RequestSpec:
    """What one request asks for; protocol-neutral."""

    model: str
    prompt: str
    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None
    num_ctx: int | None = None  # ollama only
    force_length: bool = False  # exactly max_tokens: ignore_eos + min_tokens (not ollama: it has no such option)
    history: tuple[tuple[str, str], ...] = ()  # a conversation's earlier turns: (the user's prompt, the answer)


def chat_path(api: str) -> str:
    return "/api/chat" if api == OLLAMA else "/v1/chat/completions"


def chat_body(api: str, spec: RequestSpec, usage_per_chunk: bool = False) -> dict[str, Any]:
    messages = [message for prompt, answer in spec.history
                for message in ({"role": "user", "content": prompt}, {"role": "assistant", "content": answer})]
    messages.append({"role": "user", "content": spec.prompt})
    if api == OLLAMA:
        options: dict[str, Any] = {}
        if spec.max_tokens is not None:
            options["num_predict"] = spec.max_tokens
        if spec.temperature is not None:
            options["temperature"] = spec.temperature
        if spec.seed is not None:
            options["seed"] = spec.seed
        if spec.num_ctx is not None:
            options["num_ctx"] = spec.num_ctx
        body: dict[str, Any] = {"model": spec.model, "messages": messages, "stream": True}
        if options:
            body["options"] = options
        return body
    body = {
        "model": spec.model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True, **({"continuous_usage_stats": True} if usage_per_chunk else {})},
    }
    if spec.max_tokens is not None:
        body["max_tokens"] = spec.max_tokens
    if spec.temperature is not None:
        body["temperature"] = spec.temperature
    if spec.seed is not None:
        body["seed"] = spec.seed
    if spec.force_length and spec.max_tokens is not None:
        body["ignore_eos"] = True  # llama.cpp, vLLM, SGLang
        body["min_tokens"] = spec.max_tokens  # vLLM, SGLang
    return body


def decoder_for(api: str) -> NDJSONDecoder | SSEDecoder:
    return NDJSONDecoder() if api == OLLAMA else SSEDecoder()


def error_from_body(body: bytes) -> str:
    """The message of an HTTP error response, in either protocol's shape, on one line."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        obj = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:200]
    if isinstance(obj, dict) and "error" in obj:
        err = obj["error"]
        if isinstance(err, dict):
            err = err.get("message", err)
        return " ".join(str(err).split())[:200]
    return " ".join(text.split())[:200]
