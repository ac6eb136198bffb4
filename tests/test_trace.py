import json
import math
import os
import threading
import time
from pathlib import Path

import pytest


from tui import files
from tui.load import trace
from tui.load.stats import percentile
from tui.load.synthetic import INSTRUCTION, WORDS
from tui.load.trace import Trace, TraceError, TraceRequest, load_trace, trace_prompt

ROOT = Path(__file__).resolve().parent.parent
# The slice of Mooncake's public trace the project shares, kept with the tests (tests/data/traces/README.md).
SAMPLE = ROOT / "tests" / "data" / "traces" / "mooncake_synthetic_1001-1200.jsonl"
BURSTGPT_HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def write(tmp_path, text, name="trace.jsonl") -> str:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return str(path)


def mooncake(*rows) -> str:
    """JSONL lines of (timestamp ms, input, output, hash ids)."""
    return "".join(json.dumps({"timestamp": t, "input_length": i, "output_length": o, "hash_ids": list(h)}) + "\n"
                   for t, i, o, h in rows)


def error_of(path, **options) -> str:
    with pytest.raises(TraceError) as info:
        load_trace(path, **options)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    return message


@pytest.fixture
def sample() -> Path:
    return SAMPLE


def sample_rows(sample: Path) -> list[dict]:
    return [json.loads(line) for line in sample.read_text().splitlines()]


# --- the shared sample: a slice of Mooncake's public trace -----------------------------------------------------


def test_the_mooncake_sample_in_time_order_from_zero(sample):
    rows = sample_rows(sample)
    got = load_trace(sample)
    assert got.format == "mooncake" and got.path == str(sample) and got.block_tokens == 512 and got.notes == ()
    assert len(got.requests) == 200
    assert [r.index for r in got.requests] == list(range(200))  # the file is in time order already
    ats = [r.at_s for r in got.requests]
    assert ats == sorted(ats) and ats[0] == 0
    t0 = rows[0]["timestamp"]
    for request, row in zip(got.requests, rows):
        assert request.at_s == pytest.approx((row["timestamp"] - t0) / 1000)
        assert (request.input_tokens, request.output_tokens) == (row["input_length"], row["output_length"])
        assert request.blocks == tuple(row["hash_ids"])
    assert got.span_s == pytest.approx((rows[-1]["timestamp"] - t0) / 1000)


def test_the_sample_summary_is_the_plan_in_one_line(sample):
    rows = sample_rows(sample)
    span = (rows[-1]["timestamp"] - rows[0]["timestamp"]) / 1000
    inputs = [r["input_length"] for r in rows]
    assert round(percentile(inputs, 50)) == 2800 and round(percentile(inputs, 99)) == 57540
    assert f"{span:.1f}" == "56.4" and f"{200 / span:.2f}" == "3.55"
    assert load_trace(sample).summary() == (
        "trace mooncake_synthetic_1001-1200.jsonl (mooncake): 200 requests over 56.4 s (3.55/s);"
        " input p50 2,800 p99 57,540 tokens, output p50 185 p99 777")
    scaled = load_trace(sample, time_scale=10, token_scale=0.02)
    assert scaled.summary() == (
        "trace mooncake_synthetic_1001-1200.jsonl (mooncake): 200 requests over 5.6 s (35.49/s);"
        " input p50 56 p99 1,151 tokens, output p50 4 p99 16 (after --token-scale 0.02, --time-scale 10)")


@pytest.mark.parametrize("time_scale", [10, 0.5])
def test_time_scale_replays_faster_or_slower(sample, time_scale):
    plain, scaled = load_trace(sample), load_trace(sample, time_scale=time_scale)
    assert [r.at_s for r in scaled.requests] == pytest.approx([r.at_s / time_scale for r in plain.requests])
    assert [r.input_tokens for r in scaled.requests] == [r.input_tokens for r in plain.requests]


@pytest.mark.parametrize("token_scale, block_tokens", [(0.02, 10), (2, 1024), (0.0001, 1)])
def test_token_scale_shrinks_or_grows_every_length_and_the_block(sample, token_scale, block_tokens):
    plain, scaled = load_trace(sample), load_trace(sample, token_scale=token_scale)
    assert scaled.block_tokens == block_tokens
    for a, b in zip(plain.requests, scaled.requests):
        assert b.input_tokens == max(1, round(a.input_tokens * token_scale))
        assert b.output_tokens == max(1, round(a.output_tokens * token_scale))
        assert b.blocks == a.blocks and b.at_s == a.at_s
    assert min(r.output_tokens for r in scaled.requests) >= 1


def test_max_requests_takes_the_first_n(sample):
    got = load_trace(sample, max_requests=50)
    assert [r.index for r in got.requests] == list(range(50))
    assert [r.blocks for r in got.requests] == [tuple(row["hash_ids"]) for row in sample_rows(sample)[:50]]
    assert got.notes == () and got.summary().startswith("trace mooncake_synthetic_1001-1200.jsonl (mooncake): 50 ")
    assert len(load_trace(sample, max_requests=10_000).requests) == 200


def test_context_cap_cuts_the_input_first_and_says_how_many(sample):
    plain = load_trace(sample)
    got = load_trace(sample, context_tokens=2048)
    over = [r for r in plain.requests if r.input_tokens + r.output_tokens > 2048]
    assert 0 < len(over) < 200
    assert got.notes == (f"{len(over)} of 200 requests cut to the model's context of 2,048 tokens",)
    for a, b in zip(plain.requests, got.requests):
        if a.input_tokens + a.output_tokens <= 2048:
            assert b == a
        else:
            assert b.output_tokens == a.output_tokens and b.input_tokens == 2048 - a.output_tokens
            assert b.blocks == a.blocks[:math.ceil(b.input_tokens / 512)]


def test_context_cap_keeps_one_token_of_prompt_when_the_answer_alone_is_too_long(tmp_path):
    path = write(tmp_path, mooncake((0, 100, 5000, [1]), (10, 10, 10, [2])))
    got = load_trace(path, context_tokens=100)
    assert [(r.input_tokens, r.output_tokens) for r in got.requests] == [(1, 99), (10, 10)]
    assert got.notes == ("1 of 2 requests cut to the model's context of 100 tokens",)


def test_context_cap_after_the_token_scale(tmp_path):
    path = write(tmp_path, mooncake((0, 10_000, 1000, range(20))))
    got = load_trace(path, token_scale=0.1, context_tokens=512)
    assert got.block_tokens == 51
    assert (got.requests[0].input_tokens, got.requests[0].output_tokens) == (412, 100)
    assert got.requests[0].blocks == tuple(range(9))  # 412 tokens: 9 blocks of 51


# --- formats, told apart by content ----------------------------------------------------------------------------


def test_out_of_order_times_are_replayed_in_time_order_stably(tmp_path):
    path = write(tmp_path, mooncake((3000, 1, 1, [1]), (1000, 2, 2, [2]), (3000, 3, 3, [3]), (2000, 4, 4, [4])))
    got = load_trace(path)
    assert [(r.at_s, r.index, r.input_tokens) for r in got.requests] == [
        (0.0, 1, 2), (1.0, 3, 4), (2.0, 0, 1), (2.0, 2, 3)]
    assert got.notes == ("the file's times are out of order: the requests are replayed in time order",)


def test_burstgpt_csv_with_its_failed_requests_left_out(tmp_path):
    path = write(tmp_path, BURSTGPT_HEADER + "5,ChatGPT,472,18,490,Conversation log\n"
                 "45,ChatGPT,1087,0,1087,Conversation log\n\n"
                 "45.5,GPT-4,417,276,693,API log\n"
                 '118,"GPT-4, big",0,20,20,API log\n', name="burst.csv")
    got = load_trace(path)
    assert got.format == "burstgpt" and got.block_tokens == 512
    assert got.requests == (TraceRequest(0.0, 472, 18, (), 0), TraceRequest(40.5, 417, 276, (), 1))
    assert got.notes == ("2 failed requests (0 tokens) left out",)


def test_burstgpt_columns_are_found_by_name(tmp_path):
    path = write(tmp_path, '\ufeff"Log Type","Response tokens","Request tokens","Timestamp"\r\n'
                 'API log,7,70,10\r\nAPI log,8,80,12\r\n', name="burst.csv")
    got = load_trace(path)
    assert got.format == "burstgpt"
    assert [(r.at_s, r.input_tokens, r.output_tokens) for r in got.requests] == [(0.0, 70, 7), (2.0, 80, 8)]


def test_azure_csv_times_are_relative_to_the_first_row(tmp_path):
    path = write(tmp_path, AZURE_HEADER + "2023-11-16 18:15:46.6805900,374,44\n"
                 "2023-11-16 18:15:50.9951690,396,109\n2023-11-16 18:16:46.6805900,20000,5000\n", name="az.csv")
    got = load_trace(path, time_scale=2)
    assert got.format == "azure"
    assert [r.at_s for r in got.requests] == pytest.approx([0, 4.314579 / 2, 30])
    assert [(r.input_tokens, r.output_tokens, r.blocks) for r in got.requests] == [
        (374, 44, ()), (396, 109, ()), (20000, 5000, ())]


def test_azure_time_zones_are_honoured(tmp_path):
    path = write(tmp_path, AZURE_HEADER + "2024-05-10 00:00:00.009930+00:00,5,5\n"
                 "2024-05-10 02:00:01.009930+02:00,6,6\n", name="az.csv")
    assert [r.at_s for r in load_trace(path).requests] == pytest.approx([0, 1])


def test_the_format_is_told_by_content_not_the_name(tmp_path):
    assert load_trace(write(tmp_path, mooncake((0, 5, 5, [1])), name="looks.csv")).format == "mooncake"
    assert load_trace(write(tmp_path, BURSTGPT_HEADER + "1,m,2,3,5,API log\n", name="x.jsonl")).format == "burstgpt"
    assert load_trace(write(tmp_path, AZURE_HEADER + "2023-11-16 18:15:46,1,1\n", name="x.json")).format == "azure"


@pytest.mark.parametrize("text, line", [
    ('{"prompt": "not a trace"}\n', '{"prompt": "not a trace"}'),
    ("Timestamp,Request tokens\n1,2\n", "Timestamp,Request tokens"),
    ("\n\nTIMESTAMP,ContextTokens\n", "TIMESTAMP,ContextTokens"),
    ("[1, 2, 3]\n", "[1, 2, 3]"),
])
def test_an_unknown_format_is_one_line_that_shows_its_first_line(tmp_path, text, line):
    path = write(tmp_path, text)
    lineno = text.count("\n", 0, text.index(line)) + 1
    assert error_of(path) == (f'{path}: not a Mooncake JSONL, BurstGPT CSV or Azure CSV trace'
                              f' (line {lineno}: "{line}")')


def test_file_content_in_a_message_is_shown_visibly(tmp_path):
    path = write(tmp_path, "evil\x1b]0;pwned\x07,\x9b2J\n")
    message = error_of(path)
    assert "\x1b" not in message and "\x07" not in message and "\x9b" not in message
    assert message.endswith('(line 1: "evil\u241b]0;pwned\u2407,\\x9b2J")')
    named = str(tmp_path / "x\x1b[2J.jsonl")
    assert error_of(named).endswith("x\u241b[2J.jsonl: no such file")


# --- bad input: one line naming the file and the line -----------------------------------------------------------


@pytest.mark.parametrize("lines, says", [
    (['{"timestamp": 0, "input_length": 5, "output_length": 5, "hash_ids": [1]}', "not json"],
     "line 2: not JSON (Expecting value)"),
    (['{"timestamp": 0, "input_length": 5, "output_length": 5, "hash_ids": [1]}', "[1]"],
     "line 2: not a JSON object"),
    (['{"timestamp": 0, "input_length": 5, "hash_ids": [1]}'],
     "line 1: no output_length (a Mooncake line has timestamp, input_length, output_length, hash_ids)"),
    (['{"timestamp": "soon", "input_length": 5, "output_length": 5, "hash_ids": [1]}'],
     'line 1: timestamp is not a number ("soon")'),
    (['{"timestamp": -1, "input_length": 5, "output_length": 5, "hash_ids": [1]}'],
     "line 1: timestamp must be a finite number, 0 or more, not -1"),
    (['{"timestamp": NaN, "input_length": 5, "output_length": 5, "hash_ids": [1]}'],
     "line 1: timestamp must be a finite number, 0 or more, not NaN"),
    (['{"timestamp": 1e999, "input_length": 5, "output_length": 5, "hash_ids": [1]}'],
     "line 1: timestamp must be a finite number, 0 or more, not Infinity"),
    (['{"timestamp": 0, "input_length": 0, "output_length": 5, "hash_ids": [1]}'],
     "line 1: input_length must be more than 0, not 0"),
    (['{"timestamp": 0, "input_length": 5, "output_length": -3, "hash_ids": [1]}'],
     "line 1: output_length must be more than 0, not -3"),
    (['{"timestamp": 0, "input_length": 5.5, "output_length": 5, "hash_ids": [1]}'],
     "line 1: input_length is not a whole number (5.5)"),
    (['{"timestamp": 0, "input_length": "5", "output_length": 5, "hash_ids": [1]}'],
     'line 1: input_length is not a whole number ("5")'),
    (['{"timestamp": 0, "input_length": true, "output_length": 5, "hash_ids": [1]}'],
     "line 1: input_length is not a whole number (true)"),
    (['{"timestamp": 0, "input_length": 99999999999, "output_length": 5, "hash_ids": [1]}'],
     "line 1: input_length is over 10,000,000 tokens (99999999999)"),
    (['{"timestamp": 0, "input_length": 5, "output_length": 5, "hash_ids": "1,2"}'],
     'line 1: hash_ids is not a list ("1,2")'),
    (['{"timestamp": 0, "input_length": 5, "output_length": 5, "hash_ids": [1, 2, "x"]}'],
     'line 1: hash_ids item 3 is not a whole number ("x")'),
    (['{"timestamp": 0, "input_length": 5, "output_length": 5, "hash_ids": [1.0]}'],
     "line 1: hash_ids item 1 is not a whole number (1.0)"),
    (["", '{"timestamp": 0, "input_length": 5, "output_length": 5, "hash_ids": [1]}', "", "{"],
     "line 4: not JSON (Expecting property name enclosed in double quotes)"),
    ([BURSTGPT_HEADER.strip(), "5,ChatGPT,472,18,490,Conversation log", "6,ChatGPT,472"],
     "line 3: 3 fields, not the 6 of the header"),
    ([BURSTGPT_HEADER.strip(), "later,ChatGPT,472,18,490,Conversation log"],
     'line 2: Timestamp is not a number ("later")'),
    ([BURSTGPT_HEADER.strip(), "-5,ChatGPT,472,18,490,Conversation log"],
     "line 2: Timestamp must be a finite number, 0 or more, not -5"),
    ([BURSTGPT_HEADER.strip(), "inf,ChatGPT,472,18,490,Conversation log"],
     "line 2: Timestamp must be a finite number, 0 or more, not Infinity"),
    ([BURSTGPT_HEADER.strip(), "5,ChatGPT,many,18,490,Conversation log"],
     'line 2: Request tokens is not a number ("many")'),
    ([BURSTGPT_HEADER.strip(), "5,ChatGPT,472,-18,490,Conversation log"],
     "line 2: Response tokens must be more than 0, not -18"),
    ([AZURE_HEADER.strip(), "2023-11-16 18:15:46.6805900,374,44", "yesterday,1,1"],
     'line 3: TIMESTAMP is not a date-time ("yesterday")'),
    ([AZURE_HEADER.strip(), "2023-11-16 18:15:46.6805900,0,44"],
     "line 2: ContextTokens must be more than 0, not 0"),
    ([AZURE_HEADER.strip(), "2023-11-16 18:15:46.6805900,374,4.5"],
     "line 2: GeneratedTokens is not a whole number (4.5)"),
])
def test_a_bad_line_is_one_line_naming_the_file_and_the_line(tmp_path, lines, says):
    path = write(tmp_path, "\n".join(lines) + "\n")
    assert error_of(path) == f"{path} {says}"


def test_not_utf8_names_the_line(tmp_path):
    path = write(tmp_path, mooncake((0, 5, 5, [1])).encode() + b'{"timestamp": 1, "caf\xe9": 1}\n')
    assert error_of(path) == f"{path} line 2: not UTF-8 (byte 0xe9)"


def test_a_line_over_the_cap_is_refused(tmp_path):
    path = write(tmp_path, mooncake((0, 5, 5, [1])) + "{" + " " * trace.MAX_LINE + "}\n")
    assert error_of(path) == f"{path} line 2: over 1 MiB (no trace line is that long)"


@pytest.mark.parametrize("text, says", [
    ("", "empty"),
    (" \n\n\t\r\n", "empty"),
    (BURSTGPT_HEADER, "no requests"),
    (BURSTGPT_HEADER + "1,m,0,5,5,API log\n2,m,5,0,5,API log\n", "no requests (2 failed requests (0 tokens) left out)"),
])
def test_a_trace_without_requests(tmp_path, text, says):
    path = write(tmp_path, text)
    assert error_of(path) == f"{path}: {says}"


def test_a_token_scale_that_makes_an_impossible_request(tmp_path):
    path = write(tmp_path, mooncake((0, 100_000, 5, [1])))
    assert error_of(path, token_scale=1000) == (f"{path}: --token-scale 1000 makes a request of 100,000,000 tokens"
                                                " (over 10,000,000)")


@pytest.mark.parametrize("options, says", [
    ({"time_scale": 0}, "--time-scale must be a number more than 0, not 0"),
    ({"time_scale": -2.0}, "--time-scale must be a number more than 0, not -2.0"),
    ({"time_scale": math.nan}, "--time-scale must be a number more than 0, not nan"),
    ({"token_scale": math.inf}, "--token-scale must be a number more than 0, not inf"),
    ({"token_scale": 0.0}, "--token-scale must be a number more than 0, not 0.0"),
    ({"max_requests": 0}, "--max-requests must be 1 or more, not 0"),
    ({"context_tokens": 1}, "a model's context of 1 tokens has no room for a prompt and an answer"),
])
def test_bad_options_are_one_line_before_the_file_is_read(tmp_path, options, says):
    assert error_of(str(tmp_path / "never read.jsonl"), **options) == says


# --- the file itself: through the capped reader -----------------------------------------------------------------


def test_missing_file_directory_and_device(tmp_path):
    missing = str(tmp_path / "none.jsonl")
    assert error_of(missing) == f"{missing}: no such file"
    assert error_of(str(tmp_path)) == f"{tmp_path}: a directory, not a file"
    started = time.monotonic()
    assert error_of("/dev/zero") == "/dev/zero: a device, not a file"
    assert time.monotonic() - started < 1


def test_a_file_over_the_byte_cap_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(trace, "MAX_BYTES", 4096)
    path = write(tmp_path, mooncake(*((t, 5, 5, [t]) for t in range(100))))
    assert error_of(path) == f"{path}: too big ({os.path.getsize(path):,} bytes; the limit is 4 KiB)"


def test_a_fifo_nobody_writes_to_is_one_line_after_a_bounded_wait(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "PIPE_WAIT_S", 0.2)
    path = tmp_path / "fifo"
    os.mkfifo(path)
    started = time.monotonic()
    assert error_of(str(path)) == f"{path}: a pipe nothing was written to for 0.2 s"
    assert time.monotonic() - started < 2


def test_a_fifo_that_is_written_is_read(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)

    def writer():
        with open(path, "w") as f:  # waits for the reader to open its end
            f.write(mooncake((0, 5, 5, [1]), (500, 6, 6, [1, 2])))

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    got = load_trace(path)
    thread.join(5)
    assert [(r.at_s, r.blocks) for r in got.requests] == [(0.0, (1,)), (0.5, (1, 2))]


def test_at_most_max_requests_are_kept_and_said(tmp_path, monkeypatch):
    monkeypatch.setattr(trace, "MAX_REQUESTS", 5)
    path = write(tmp_path, mooncake(*((t, 5, 5, [t]) for t in range(8))))
    got = load_trace(path)
    assert len(got.requests) == 5
    assert got.notes == (f"{path} holds more than 5 requests; the first 5 are replayed",)
    assert load_trace(path, max_requests=3).notes == ()
    assert load_trace(path, max_requests=5).notes == ()
    assert len(load_trace(path, max_requests=50).notes) == 1
    exact = write(tmp_path, mooncake(*((t, 5, 5, [t]) for t in range(5))), name="five.jsonl")
    assert load_trace(exact).notes == ()


# --- prompts whose equal block ids are equal text ---------------------------------------------------------------


def words_of(prompt: str) -> list[str]:
    assert prompt.startswith(INSTRUCTION + " ")
    return prompt[len(INSTRUCTION) + 1:].split(" ")


def request(blocks, tokens, index=0) -> TraceRequest:
    return TraceRequest(0.0, tokens, 10, tuple(blocks), index)


def test_equal_first_ids_give_equal_first_blocks_of_text():
    a = words_of(trace_prompt(request([1, 2, 3, 4], 64), 16, 1.0))
    b = words_of(trace_prompt(request([1, 2, 9], 48), 16, 1.0))
    assert len(a) == 64 and len(b) == 48
    assert a[:32] == b[:32]  # the first two blocks
    assert a[32] != b[32]  # block 3 and block 9 differ from their first word
    assert words_of(trace_prompt(request([1, 2, 3, 4], 64, index=7), 16, 1.0)) == a  # ids, not the index


def test_different_first_ids_differ_from_the_first_word():
    texts = [words_of(trace_prompt(request([h, 1000], 32), 16, 1.0)) for h in range(len(WORDS))]
    assert len({t[0] for t in texts}) == len(WORDS)
    assert all(t[16:] == texts[0][16:] for t in texts)  # the same second block after different first ones


def test_the_samples_sharing_shows_in_its_text(sample):
    got = load_trace(sample, token_scale=0.02)
    texts = [words_of(trace_prompt(r, got.block_tokens, 1.0)) for r in got.requests]
    sharing = []
    for i, (a, text_a) in enumerate(zip(got.requests, texts)):
        for b, text_b in zip(got.requests[i + 1:], texts[i + 1:]):
            k = next((n for n, (x, y) in enumerate(zip(a.blocks, b.blocks)) if x != y),
                     min(len(a.blocks), len(b.blocks)))
            if k:
                sharing.append(k)
                shared = min(k * got.block_tokens, len(text_a), len(text_b))
                assert text_a[:shared] == text_b[:shared]
            if k < min(len(a.blocks), len(b.blocks)) and k * got.block_tokens < min(len(text_a), len(text_b)) and (
                    a.blocks[k] % len(WORDS) != b.blocks[k] % len(WORDS)):
                assert text_a[k * got.block_tokens] != text_b[k * got.block_tokens]
    assert sorted(sharing) == [1, 38, 49, 110]  # the pairs of this slice that share a prefix, and its blocks


@pytest.mark.parametrize("per_word, overhead", [(1.0, 0.0), (1.0, 17.0), (1.31, 9.5), (0.8, 3.0)])
def test_the_length_is_near_the_requested_tokens(per_word, overhead):
    for blocks, tokens in (([5, 6, 7], 1500), ([5], 3000), ([5, 6], 700), ((), 900), ([1], 1)):
        words = len(words_of(trace_prompt(request(blocks, tokens), 512, per_word, overhead)))
        assert words >= 1
        if tokens > overhead:
            assert abs(overhead + per_word * words - tokens) <= per_word / 2 + 1e-9


def test_a_prompt_longer_than_its_blocks_runs_the_last_block_on():
    short = words_of(trace_prompt(request([3, 4], 32), 16, 1.0))
    long = words_of(trace_prompt(request([3, 4], 100), 16, 1.0))
    assert len(long) == 100 and long[:32] == short


def test_requests_without_blocks_have_text_of_their_own():
    first = trace_prompt(request((), 200, index=1), 512, 1.0)
    assert trace_prompt(request((), 200, index=1), 512, 1.0) == first
    second = words_of(trace_prompt(request((), 200, index=2), 512, 1.0))
    assert len(second) == 200 and second != words_of(first)
    assert sum(x == y for x, y in zip(second, words_of(first))) < 20  # unrelated draws, not a shifted copy


def test_a_50k_token_prompt_builds_fast():
    big = request(range(10_000, 10_098), 50_000)
    best = math.inf
    for _ in range(3):
        trace._block_words.cache_clear()  # cold: every block drawn afresh
        started = time.perf_counter()
        prompt = trace_prompt(big, 512, 1.0, 20.0)
        best = min(best, time.perf_counter() - started)
    assert len(words_of(prompt)) == 49_980
    assert best < 0.05, f"{best * 1000:.1f} ms"


def test_bad_prompt_arguments():
    with pytest.raises(ValueError):
        trace_prompt(request([1], 10), 16, 0.0)
    with pytest.raises(ValueError):
        trace_prompt(request([1], 10), 0, 1.0)


def test_a_trace_is_plain_data(sample):
    got = load_trace(sample, max_requests=2)
    assert isinstance(got, Trace) and isinstance(got.requests, tuple)
    with pytest.raises(AttributeError):
        got.requests[0].at_s = 5  # frozen


def test_a_summary_of_requests_all_at_one_time(tmp_path):
    one = load_trace(write(tmp_path, mooncake((7, 100, 3, [1]))))
    assert one.summary() == (f"trace {Path(one.path).name} (mooncake): 1 request all at once;"
                             " input p50 100 p99 100 tokens, output p50 3 p99 3")
    same = load_trace(write(tmp_path, AZURE_HEADER + "2023-11-16 18:15:46,4,1\n" * 3, name="x\x1b.csv"))
    assert same.summary() == ("trace x\u241b.csv (azure): 3 requests all at once;"
                              " input p50 4 p99 4 tokens, output p50 1 p99 1")
