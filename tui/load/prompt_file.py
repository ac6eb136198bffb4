"""Prompts read from a file (`--prompts FILE`), and a source that hands them out in turn.

The file is JSONL, one object a line, or one JSON array of such objects (ShareGPT datasets are
published that way). A usable object is `{"prompt": "..."}` or a conversation, ShareGPT's
`{"conversations": [{"from": "human", "value": "..."}, ...]}` or OpenAI's
`{"messages": [{"role": "user", "content": "..."}, ...]}`, whose first human turn is the prompt; or, read as
conversations (read_conversations), whose human turns are the prompts of one conversation, in order.
Valid JSON without a usable prompt is skipped and counted; anything else is a PromptFileError. The file is
read a line (an item) at a time, and at most MAX_PROMPTS prompts are kept.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import random
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

from tui.files import open_capped, utf8_lines
from tui.untrusted import one_line

MAX_BYTES = 512 << 20
MAX_LINE = 16 << 20  # a line or an array item: a million tokens of text is about 4 MiB
# More are left off (and said): every prompt kept is held in every load process.
MAX_PROMPTS = 100_000
CHUNK = 1 << 20
_SPACE = re.compile(r"[ \t\r\n]*")
_HUMAN = ("human", "user")
T = TypeVar("T")


class PromptFileError(ValueError):
    """A prompt file that cannot be used; the message is one line and starts with the file's name."""


def _prompt_of(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    prompt = obj.get("prompt")
    if isinstance(prompt, str) and prompt.strip():
        return prompt
    for key in ("conversations", "messages"):
        turns = obj.get(key)
        if not isinstance(turns, list):
            continue
        for turn in turns:
            if isinstance(turn, dict) and turn.get("from", turn.get("role")) in _HUMAN:
                text = turn.get("value", turn.get("content"))
                return text if isinstance(text, str) and text.strip() else None
    return None


def _turns_of(obj: Any) -> tuple[str, ...] | None:
    """Every human turn of a conversation, in order (a `{"prompt": ...}` object is one turn); turns that are not
    text, or only whitespace, are left out; None when none is left."""
    if not isinstance(obj, dict):
        return None
    prompt = obj.get("prompt")
    if isinstance(prompt, str) and prompt.strip():
        return (prompt,)
    for key in ("conversations", "messages"):
        turns = obj.get(key)
        if isinstance(turns, list):
            human = tuple(text for turn in turns
                          if isinstance(turn, dict) and turn.get("from", turn.get("role")) in _HUMAN
                          and isinstance(text := turn.get("value", turn.get("content")), str) and text.strip())
            if human:
                return human
    return None


def _not_json(name: str, error: Exception | str, lineno: int | None) -> PromptFileError:
    where = f"{name} line {lineno}" if lineno else name
    # JSONDecodeError's msg is the reason alone; a RecursionError (nesting) or a too-long integer has no msg.
    reason = error if isinstance(error, str) else getattr(error, "msg", None) or (
        "nested too deeply" if isinstance(error, RecursionError) else str(error))
    return PromptFileError(f"{where}: not JSON ({one_line(reason, 100)})")


class PromptFile(NamedTuple):
    prompts: list[str]  # in file order
    skipped: int  # lines (array items) of valid JSON without a usable prompt
    left_off: bool = False  # the file holds more than MAX_PROMPTS prompts: only the first are kept


def read_prompt_file(path: str | os.PathLike[str]) -> PromptFile:
    """The file's prompts in file order (at most MAX_PROMPTS), and how many of its lines (array items) had none.

    Streamed: a line or an array item at a time, so memory holds the prompts, not the file's parsed JSON (a
    small JSON object costs about 25 times its size in Python)."""
    return PromptFile(*_read(path, _prompt_of))


class ConversationFile(NamedTuple):
    conversations: list[tuple[str, ...]]  # each one's human turns in order, in file order
    skipped: int  # lines (array items) of valid JSON without a human turn
    left_off: bool = False  # the file holds more than MAX_PROMPTS conversations: only the first are kept


def read_conversations(path: str | os.PathLike[str]) -> ConversationFile:
    """The file's conversations (at most MAX_PROMPTS), each as its human turns in order: the prompts a user in
    a conversation sends one after another. Read as read_prompt_file reads (the same formats and errors)."""
    return ConversationFile(*_read(path, _turns_of))


def _read(path: str | os.PathLike[str], usable: Callable[[Any], T | None]) -> tuple[list[T], int, bool]:
    """What `usable` makes of each line (array item) that it can use, at most MAX_PROMPTS; how many it could
    not use; whether more were left off."""
    name = one_line(os.fspath(path))
    kept: list[T] = []
    skipped, left_off = 0, False
    with open_capped(path, name, MAX_BYTES, PromptFileError) as f:
        head, lineno = _skip_space(f)
        if head is None:
            raise PromptFileError(f"{name}: empty")
        unit = "item" if head == b"[" else "line"
        for item in (_ArrayItems(f, name, lineno) if unit == "item" else _lines(f, name, lineno)):
            got = usable(item)
            if got is None:
                skipped += 1
            elif len(kept) == MAX_PROMPTS:
                left_off = True
                break
            else:
                kept.append(got)
    if not kept:
        raise PromptFileError(f'{name}: no usable prompt (each {unit} needs {{"prompt": "..."}}'
                              ' or ShareGPT {"conversations": [...]} with a human turn)')
    return kept, skipped, left_off


def _skip_space(f: io.BufferedReader) -> tuple[bytes | None, int]:
    """Past a BOM and leading whitespace: the first other byte (None in an empty file) and its line number."""
    if f.peek(3).startswith(codecs.BOM_UTF8):
        f.read(3)
    lineno = 1
    while head := f.peek(1):
        rest = head.lstrip(b" \t\r\n")
        skipped = len(head) - len(rest)
        lineno += head.count(b"\n", 0, skipped)
        f.read(skipped)
        if rest:
            return rest[:1], lineno
    return None, lineno


def _lines(f: io.BufferedReader, name: str, lineno: int) -> Iterator[Any]:
    """JSONL: each line's JSON."""
    for number, text in utf8_lines(f, name, PromptFileError, MAX_LINE, "prompt", first=lineno):
        try:
            yield json.loads(text)
        except (ValueError, RecursionError) as e:
            raise _not_json(name, e, number) from None


class _ArrayItems:
    """One JSON array, item by item, read a chunk at a time (a file written on one line has no lines to split)."""

    def __init__(self, f: io.BufferedReader, name: str, lineno: int) -> None:
        self._f, self._name = f, name
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._text, self._at = "", 0  # what is read and not yet parsed starts at _text[_at]
        self._lines_before = lineno - 1  # newlines before _text[0]
        self._eof = False
        self._json = json.JSONDecoder()
        self._more()

    def __iter__(self) -> Iterator[Any]:
        self._at = 1  # past the "["
        if self._next_char() == "]":
            self._at += 1
        else:
            while True:
                yield self._item()
                after = self._next_char()
                self._at += 1
                if after == "]":
                    break
                if after != ",":
                    raise _not_json(self._name, "Expecting ',' delimiter", self._line(self._at - 1))
        if self._next_char() is not None:
            raise _not_json(self._name, "Extra data", self._line(self._at))

    def _item(self) -> Any:
        if self._next_char() is None:
            raise _not_json(self._name, "Expecting value", self._line(self._at))
        while True:
            try:
                item, end = self._json.raw_decode(self._text, self._at)
            except RecursionError as e:
                raise _not_json(self._name, e, self._line(self._at)) from None
            except json.JSONDecodeError as e:
                # An item cut at the chunk's end fails near that end (or in its unterminated string): read on.
                cut = e.pos >= len(self._text) - 10 or e.msg.startswith("Unterminated string")
                if not cut or self._eof:
                    raise _not_json(self._name, e, self._lines_before + e.lineno) from None
                if len(self._text) - self._at > MAX_LINE:
                    raise PromptFileError(f"{self._name} line {self._line(self._at)}: an item over"
                                          f" {MAX_LINE >> 20} MiB (no prompt is that long)") from None
                self._more(len(self._text) - self._at)
                continue
            if end > len(self._text) - 16 and not self._eof:  # a number may go on in the next chunk ("1" of "1e-7")
                self._more()
                continue
            self._at = end
            return item

    def _next_char(self) -> str | None:
        """The next character that is not whitespace (not consumed), or None at the end of the file."""
        while True:
            match = _SPACE.match(self._text, self._at)
            self._at = match.end()
            if self._at < len(self._text):
                return self._text[self._at]
            if self._eof:
                return None
            self._more()

    def _more(self, at_least: int = 0) -> None:
        data = self._f.read(max(CHUNK, at_least))
        try:
            text = self._utf8.decode(data, final=not data)
        except UnicodeDecodeError as e:
            lineno = self._line(len(self._text)) + e.object.count(b"\n", 0, e.start)
            raise PromptFileError(f"{self._name} line {lineno}: not UTF-8 (byte 0x{e.object[e.start]:02x})") from None
        self._eof = not data
        if self._at > CHUNK:  # drop what is parsed
            self._lines_before += self._text.count("\n", 0, self._at)
            self._text, self._at = self._text[self._at:], 0
        self._text += text

    def _line(self, at: int) -> int:
        return self._lines_before + self._text.count("\n", 0, at) + 1


def load_prompts(path: str | os.PathLike[str]) -> list[str]:
    """The file's prompts in file order (see read_prompt_file)."""
    return read_prompt_file(path)[0]


class _Rounds(Generic[T]):
    """Hands out the items one at a time, starting over when all have been given.

    With shuffle, each round is a fresh shuffle from `random.Random(seed)`: the same seed gives the
    same sequence of rounds.
    """

    _what = "item"

    def __init__(self, items: Sequence[T], shuffle: bool = False, seed: int | None = None) -> None:
        if not items:
            raise ValueError(f"{type(self).__name__} needs at least one {self._what}")
        self._items = list(items)
        self._rng = random.Random(seed) if shuffle else None
        self._round: list[T] = []
        self._index = 0

    def __len__(self) -> int:
        return len(self._items)

    def next(self) -> T:
        if self._index >= len(self._round):
            self._round = list(self._items)
            if self._rng is not None:
                self._rng.shuffle(self._round)
            self._index = 0
        self._index += 1
        return self._round[self._index - 1]


class PromptSource(_Rounds[str]):
    """The prompts in turn (or each round shuffled, with a seed); next() is one prompt."""

    _what = "prompt"


class ConversationSource(_Rounds[tuple[str, ...]]):
    """The conversations in turn (or each round shuffled, with a seed); next() is one conversation's human turns."""

    _what = "conversation"
