import json
import os

import pytest

from tui import files
from tui.load import prompt_file
from tui.load.prompt_file import (
    ConversationFile,
    ConversationSource,
    PromptFileError,
    PromptSource,
    load_prompts,
    read_conversations,
    read_prompt_file,
)


def write(tmp_path, text, name="prompts.jsonl"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return str(path)


def error_of(path) -> str:
    with pytest.raises(PromptFileError) as info:
        load_prompts(path)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert message.startswith(str(path))
    return message


def jsonl(*objects) -> str:
    return "".join(json.dumps(o) + "\n" for o in objects)


def test_jsonl_prompts_in_file_order_kept_as_given(tmp_path):
    path = write(tmp_path, jsonl({"prompt": "first"}, {"prompt": "  second\n"}, {"prompt": "third", "id": 3}))
    assert load_prompts(path) == ["first", "  second\n", "third"]


def test_blank_lines_crlf_and_bom_are_fine(tmp_path):
    path = write(tmp_path, b'\xef\xbb\xbf{"prompt": "a"}\r\n\r\n   \n{"prompt": "b"}')
    assert read_prompt_file(path)[:2] == (["a", "b"], 0)


def test_unicode_line_separator_inside_a_prompt_does_not_split_the_line(tmp_path):
    path = write(tmp_path, json.dumps({"prompt": "one\u2028two"}, ensure_ascii=False) + "\n")
    assert load_prompts(path) == ["one\u2028two"]


def test_sharegpt_takes_the_first_human_turn(tmp_path):
    conversation = {"conversations": [
        {"from": "system", "value": "be nice"},
        {"from": "human", "value": "what is 2+2?"},
        {"from": "gpt", "value": "4"},
        {"from": "human", "value": "and 3+3?"},
    ]}
    assert load_prompts(write(tmp_path, jsonl(conversation))) == ["what is 2+2?"]


def test_openai_style_turns_in_conversations_or_messages(tmp_path):
    path = write(tmp_path, jsonl(
        {"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
                      {"role": "assistant", "content": "hello"}]},
        {"conversations": [{"from": "user", "value": "from user"}]},
        {"conversations": [{"role": "user", "content": "role in conversations"}]},
    ))
    assert load_prompts(path) == ["hi", "from user", "role in conversations"]


def test_lines_without_a_usable_prompt_are_skipped_and_counted(tmp_path):
    path = write(tmp_path, jsonl(
        {"prompt": "kept"},
        {"prompt": "   "},
        {"prompt": 42},
        {"text": "no prompt key"},
        {"conversations": [{"from": "gpt", "value": "only the model speaks"}]},
        {"conversations": [{"from": "human", "value": ""}, {"from": "human", "value": "later"}]},
        [1, 2],
        "a string",
        {"prompt": "also kept"},
    ))
    assert read_prompt_file(path)[:2] == (["kept", "also kept"], 7)
    assert load_prompts(path) == ["kept", "also kept"]


def test_one_json_array_file(tmp_path):
    items = [
        {"id": "a", "conversations": [{"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"}]},
        {"id": "b", "conversations": []},
        {"prompt": "q2"},
    ]
    path = write(tmp_path, "\n  " + json.dumps(items, indent=2), name="sharegpt.json")
    assert read_prompt_file(path)[:2] == (["q1", "q2"], 1)


def test_missing_file(tmp_path):
    path = str(tmp_path / "prompts.jsonl")
    assert error_of(path) == f"{path}: no such file"


def test_directory(tmp_path):
    assert error_of(str(tmp_path)) == f"{tmp_path}: a directory, not a file"


def test_unreadable_file(tmp_path, monkeypatch):
    path = write(tmp_path, jsonl({"prompt": "secret"}))
    os.chmod(path, 0)
    if os.geteuid() == 0:  # root reads a mode-0 file anyway, so the refusal is simulated
        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied", path)
        monkeypatch.setattr(files, "open", refuse, raising=False)
    assert error_of(path) == f"{path}: permission denied"


def test_empty_and_whitespace_only_files(tmp_path):
    for text in ("", " \n\n\t\n"):
        path = write(tmp_path, text)
        assert error_of(path) == f"{path}: empty"


def test_not_json_names_the_line(tmp_path):
    path = write(tmp_path, jsonl({"prompt": "ok"}, {"prompt": "ok"}) + "this is not json\n" + jsonl({"prompt": "x"}))
    assert error_of(path) == f"{path} line 3: not JSON (Expecting value)"


def test_bad_json_array_names_the_line(tmp_path):
    path = write(tmp_path, '[\n  {"prompt": "a"},\n  {"prompt": }\n]\n', name="p.json")
    assert error_of(path) == f"{path} line 3: not JSON (Expecting value)"


def test_deeply_nested_json_is_an_error_not_a_crash(tmp_path):
    path = write(tmp_path, '{"prompt": "a"}\n' + "[" * 200_000 + "\n")
    assert error_of(path) == f"{path} line 2: not JSON (nested too deeply)"


def test_not_utf8_names_the_line(tmp_path):
    path = write(tmp_path, b'{"prompt": "a"}\n{"prompt": "caf\xe9"}\n')
    assert error_of(path) == f"{path} line 2: not UTF-8 (byte 0xe9)"


def test_no_usable_prompt(tmp_path):
    path = write(tmp_path, jsonl({"text": "a"}, {"conversations": [{"from": "gpt", "value": "b"}]}))
    assert error_of(path) == (f'{path}: no usable prompt (each line needs {{"prompt": "..."}}'
                              ' or ShareGPT {"conversations": [...]} with a human turn)')
    array = write(tmp_path, '[{"text": "a"}]', name="p.json")
    assert error_of(array).startswith(f'{array}: no usable prompt (each item needs {{"prompt": "..."}}')


def test_file_over_the_cap_is_refused_with_its_size(tmp_path):
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as f:
        f.truncate(prompt_file.MAX_BYTES + 1)  # sparse: no disk is used and nothing is read
    assert error_of(str(path)) == f"{path}: too big (536,870,913 bytes; the limit is 512 MiB)"


def test_control_characters_in_the_file_name_are_shown_visibly(tmp_path):
    path = str(tmp_path / "evil\x1b]0;pwned\x07.jsonl")
    with pytest.raises(PromptFileError) as info:
        load_prompts(path)
    message = str(info.value)
    assert "\x1b" not in message and "\x07" not in message
    assert message.endswith("evil\u241b]0;pwned\u2407.jsonl: no such file")


def test_in_order_without_shuffle_and_cycling(tmp_path):
    source = PromptSource(["a", "b", "c"])
    assert len(source) == 3
    assert [source.next() for _ in range(7)] == ["a", "b", "c", "a", "b", "c", "a"]


def test_shuffle_is_deterministic_per_seed_and_reshuffles_each_round():
    prompts = [f"p{i}" for i in range(20)]
    first = PromptSource(prompts, shuffle=True, seed=7)
    second = PromptSource(prompts, shuffle=True, seed=7)
    sequence = [first.next() for _ in range(60)]
    assert sequence == [second.next() for _ in range(60)]
    rounds = [sequence[i:i + 20] for i in range(0, 60, 20)]
    assert all(sorted(r) == sorted(prompts) for r in rounds)  # every prompt once a round
    assert rounds[0] != prompts and rounds[0] != rounds[1]
    other = PromptSource(prompts, shuffle=True, seed=8)
    assert [other.next() for _ in range(20)] != rounds[0]


def test_source_copies_its_list_and_needs_a_prompt():
    prompts = ["a", "b"]
    source = PromptSource(prompts)
    prompts.append("c")
    assert len(source) == 2 and [source.next() for _ in range(3)] == ["a", "b", "a"]
    with pytest.raises(ValueError, match="PromptSource needs at least one prompt"):
        PromptSource([])


# --- conversations: every human turn, in order ------------------------------------------------------------------


def test_sharegpt_conversations_give_their_human_turns_in_order(tmp_path):
    path = write(tmp_path, jsonl(
        {"conversations": [{"from": "system", "value": "be nice"}, {"from": "human", "value": "what is 2+2?"},
                           {"from": "gpt", "value": "4"}, {"from": "human", "value": "and 3+3?"},
                           {"from": "gpt", "value": "6"}, {"from": "human", "value": "thanks"}]},
        {"conversations": [{"from": "human", "value": "one question"}, {"from": "gpt", "value": "one answer"}]},
    ))
    assert read_conversations(path) == ConversationFile(
        [("what is 2+2?", "and 3+3?", "thanks"), ("one question",)], 0, False)
    assert load_prompts(path) == ["what is 2+2?", "one question"]  # the prompts are still the first turns


def test_openai_messages_give_their_user_turns_and_never_the_assistants(tmp_path):
    path = write(tmp_path, jsonl(
        {"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
                      {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"},
                      {"role": "assistant", "content": "see you"}]},
        {"conversations": [{"role": "user", "content": "role in conversations"}, {"role": "tool", "content": "x"}]},
    ))
    conversations = read_conversations(path).conversations
    assert conversations == [("hi", "bye"), ("role in conversations",)]
    assert not {"hello", "see you", "sys", "x"} & {turn for c in conversations for turn in c}


def test_a_prompt_object_is_a_one_turn_conversation(tmp_path):
    path = write(tmp_path, jsonl({"prompt": "alone"}, {"prompt": " spaced \n"}))
    assert read_conversations(path).conversations == [("alone",), (" spaced \n",)]


def test_empty_and_odd_turns_are_left_out_and_a_conversation_without_any_is_skipped(tmp_path):
    path = write(tmp_path, jsonl(
        {"conversations": [{"from": "human", "value": ""}, {"from": "human", "value": "later"},
                           {"from": "human", "value": "   "}, {"from": "human", "value": 7},
                           {"from": "human"}, "not a turn", None, {"value": "nobody said it"},
                           {"from": "human", "value": "last"}]},
        {"conversations": [{"from": "gpt", "value": "only the model speaks"}]},
        {"conversations": "not a list"},
        {"messages": []},
        [1, 2],
        {"prompt": "   ", "messages": [{"role": "user", "content": "from messages"}]},
    ))
    assert read_conversations(path) == ConversationFile([("later", "last"), ("from messages",)], 4, False)


def test_conversations_in_one_json_array(tmp_path):
    items = [
        {"id": "a", "conversations": [{"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"},
                                      {"from": "human", "value": "q2"}]},
        {"id": "b", "conversations": []},
    ]
    path = write(tmp_path, json.dumps(items, indent=2), name="sharegpt.json")
    assert read_conversations(path) == ConversationFile([("q1", "q2")], 1, False)


def test_conversations_are_read_with_the_prompt_files_errors(tmp_path):
    path = write(tmp_path, jsonl({"prompt": "ok"}) + "not json\n")
    with pytest.raises(PromptFileError, match=r"line 2: not JSON \(Expecting value\)$"):
        read_conversations(path)
    none = write(tmp_path, jsonl({"conversations": [{"from": "gpt", "value": "b"}]}), name="none.jsonl")
    with pytest.raises(PromptFileError, match="no usable prompt"):
        read_conversations(none)
    with pytest.raises(PromptFileError, match="empty$"):
        read_conversations(write(tmp_path, "", name="empty.jsonl"))


def test_at_most_max_prompts_conversations_are_kept_and_said(tmp_path, monkeypatch):
    monkeypatch.setattr(prompt_file, "MAX_PROMPTS", 2)
    path = write(tmp_path, jsonl(*({"conversations": [{"from": "human", "value": f"q{i}"}]} for i in range(3))))
    assert read_conversations(path) == ConversationFile([("q0",), ("q1",)], 0, True)
    assert read_prompt_file(path).left_off


def test_conversation_source_cycles_in_turn():
    conversations = [("a1", "a2"), ("b1",), ("c1", "c2", "c3")]
    source = ConversationSource(conversations)
    assert len(source) == 3
    assert [source.next() for _ in range(5)] == [("a1", "a2"), ("b1",), ("c1", "c2", "c3"), ("a1", "a2"), ("b1",)]


def test_conversation_source_shuffles_deterministically_per_seed():
    conversations = [(f"q{i}", f"r{i}") for i in range(20)]
    first, second = ConversationSource(conversations, shuffle=True, seed=3), ConversationSource(
        conversations, shuffle=True, seed=3)
    sequence = [first.next() for _ in range(40)]
    assert sequence == [second.next() for _ in range(40)]
    assert sorted(sequence[:20]) == sorted(conversations) == sorted(sequence[20:])
    assert sequence[:20] != conversations and sequence[:20] != sequence[20:]
    other = ConversationSource(conversations, shuffle=True, seed=4)
    assert [other.next() for _ in range(20)] != sequence[:20]
    with pytest.raises(ValueError, match="ConversationSource needs at least one conversation"):
        ConversationSource([])
