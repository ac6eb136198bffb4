"""Prompts read from a file (`--prompts FILE`), and a source that hands them out in turn.

The file is JSONL, one object a line, or one JSON array of such objects (ShareGPT datasets are
published that way). A usable object is `{"prompt": "..."}` or a conversation, ShareGPT's
`{"conversations": [{"from": "human", "value": "..."}, ...]}` or OpenAI's
`{"messages": [{"role": "user", "content": "..."}, ...]}`, whose first human turn is the prompt.
Valid JSON without a usable prompt is skipped and counted; anything else is a PromptFileError.
"""

from __future__ import annotations

import json
import os
import random
from typing import Any

from tui.files import read_text_file
from tui.untrusted import one_line

MAX_BYTES = 512 << 20
_HUMAN = ("human", "user")


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


def _not_json(name: str, error: Exception, lineno: int | None) -> PromptFileError:
    where = f"{name} line {lineno}" if lineno else name
    # JSONDecodeError's msg is the reason alone; a RecursionError (nesting) or a too-long integer has no msg.
    reason = getattr(error, "msg", None) or ("nested too deeply" if isinstance(error, RecursionError) else str(error))
    return PromptFileError(f"{where}: not JSON ({one_line(reason, 100)})")


def read_prompt_file(path: str | os.PathLike[str]) -> tuple[list[str], int]:
    """The file's prompts in file order, and how many of its lines (array items) had none."""
    name = one_line(os.fspath(path))
    text = read_text_file(path, name, MAX_BYTES, PromptFileError)
    if not text.strip():
        raise PromptFileError(f"{name}: empty")
    if text.lstrip().startswith("["):
        unit = "item"
        try:
            items = json.loads(text)
        except (ValueError, RecursionError) as e:
            raise _not_json(name, e, getattr(e, "lineno", None)) from None
    else:
        unit, items = "line", []
        # Split on "\n" only: str.splitlines would also split at U+2028, which JSON allows inside a string.
        for lineno, line in enumerate(text.split("\n"), 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except (ValueError, RecursionError) as e:
                    raise _not_json(name, e, lineno) from None
    found = [_prompt_of(item) for item in items]
    prompts = [p for p in found if p is not None]
    if not prompts:
        raise PromptFileError(f'{name}: no usable prompt (each {unit} needs {{"prompt": "..."}}'
                              ' or ShareGPT {"conversations": [...]} with a human turn)')
    return prompts, len(found) - len(prompts)


def load_prompts(path: str | os.PathLike[str]) -> list[str]:
    """The file's prompts in file order (see read_prompt_file)."""
    return read_prompt_file(path)[0]


class PromptSource:
    """Hands out the prompts one at a time, starting over when all have been given.

    With shuffle, each round is a fresh shuffle from `random.Random(seed)`: the same seed gives the
    same sequence of rounds.
    """

    def __init__(self, prompts: list[str], shuffle: bool = False, seed: int | None = None) -> None:
        if not prompts:
            raise ValueError("PromptSource needs at least one prompt")
        self._prompts = list(prompts)
        self._rng = random.Random(seed) if shuffle else None
        self._round: list[str] = []
        self._index = 0

    def __len__(self) -> int:
        return len(self._prompts)

    def next(self) -> str:
        if self._index >= len(self._round):
            self._round = list(self._prompts)
            if self._rng is not None:
                self._rng.shuffle(self._round)
            self._index = 0
        self._index += 1
        return self._round[self._index - 1]
