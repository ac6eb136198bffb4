"""The two prompts of the seed article's benchmark.

output mode ("story"): `tell a story in {words} words:` — the answer's length is the variable.
input mode ("title"): `give a title for below text in 10 words: ` + a ~480-word public-domain text
(Jane Austen, "Pride and Prejudice", 1813, the opening of Chapter 1; see title_text.txt) — a long,
fixed prompt and a short answer, so prefill dominates; `--words` does not apply.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

OUTPUT = "output"
INPUT = "input"
MODES = (OUTPUT, INPUT)
PROMPT_FILE = "prompt-file"  # the records' mode when the prompts come from --prompts FILE
TRACE_MODE = "trace"  # the records' mode when a trace's lengths make the prompts (--trace FILE)
WORD_STOPS = (25, 50, 100, 200, 400, 800, 1600)

TITLE_INSTRUCTION = "give a title for below text in 10 words: "


@cache
def title_text() -> str:
    raw = resources.files("tui.load").joinpath("title_text.txt").read_text(encoding="utf-8")
    return "\n".join(line for line in raw.splitlines() if not line.startswith("#")).strip()


def build_prompt(mode: str, words: int) -> str:
    if mode == OUTPUT:
        return f"tell a story in {words} words:"
    if mode == INPUT:
        return TITLE_INSTRUCTION + title_text()
    raise ValueError(f"unknown mode {mode!r} (choose from: {', '.join(MODES)})")
