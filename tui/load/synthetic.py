"""Synthetic prompts of N input tokens as the server counts them, without a tokenizer of our own.

The text is common English words, each one token after a space in the usual tokenizers, drawn afresh
for every request (so a prefix cache does not turn the test into a cache test). How many tokens the
server counts for W words — its chat template included — is measured once per model from its own
reports (OpenAI `usage.prompt_tokens`, ollama `prompt_eval_count`), with two prompts of different
lengths: tokens = overhead + per_word × W.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

import httpx

from tui.http_read import fetch
from tui.load.client import Target
from tui.load.wire import OLLAMA, RequestSpec, chat_body, chat_path
from tui.untrusted import count

# Short, frequent words: one token each (with the space before them) in Llama, Qwen, SmolLM and GPT tokenizers.
WORDS = (
    "the of and to in is was for on that with as by at from his it an were are which this be or has had not "
    "but also first one their its new after who they have her she two been other when there all during into "
    "school time may years more most only over city some world would where later up such used many can "
    "state about national out known university united then made since under three both film well year "
    "being team south high series through part these north due including because any them while world "
    "early around several each went back same well last very long found little between game him what did "
    "people could four life five like war began local member water place based left own good order major "
    "group among took way best side large home day set next music men house land five work great line end"
).split()
WORDS = tuple(dict.fromkeys(WORDS))
SYNTHETIC = "synthetic"  # the records' mode
INSTRUCTION = "Repeat the last word of this list:"
PROBE_WORDS = (64, 512)


class CalibrationError(Exception):
    """The server would not say how many prompt tokens it counted; the message is one line."""


def text(words: int, rng: random.Random, shared: int = 0) -> str:
    """`words` words after the instruction; the first `shared` of them the same in every prompt (a prefix a
    cache can reuse, on purpose: --shared-prefix), the rest drawn from `rng`."""
    prefix = _shared_words(min(shared, words))
    return INSTRUCTION + " " + " ".join([*prefix, *(rng.choice(WORDS) for _ in range(words - len(prefix)))])


@functools.lru_cache(maxsize=8)
def _shared_words(n: int) -> tuple[str, ...]:
    """The first n words of every prompt with a shared prefix: drawn once (a request's path does not redo it)."""
    prefix = random.Random("tokentop shared prefix")
    return tuple(prefix.choice(WORDS) for _ in range(n))


@dataclass(frozen=True)
class Calibration:
    overhead: float  # tokens of the chat template and the instruction
    per_word: float

    def words_for(self, tokens: int) -> int:
        return max(1, round((tokens - self.overhead) / self.per_word))

    def shared_words_for(self, tokens: int) -> int:
        """The words of a shared prefix of `tokens` tokens: the template and instruction before them count."""
        return max(0, round((tokens - self.overhead) / self.per_word))


def prompt_tokens(client: httpx.Client, target: Target, prompt: str) -> int:
    """What the server counts for `prompt` (one short, unstreamed request)."""
    spec = RequestSpec(model=target.model, prompt=prompt, max_tokens=1, temperature=0.0)
    body = {**chat_body(target.api, spec), "stream": False}
    body.pop("stream_options", None)
    try:
        response = fetch(client, target.url.rstrip("/") + chat_path(target.api), method="POST", json=body,
                         headers=target.headers())
        data = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise CalibrationError(f"cannot measure prompt tokens: {type(exc).__name__}") from None
    usage = data.get("usage") if isinstance(data, dict) else None
    counted = count(data.get("prompt_eval_count")) if target.api == OLLAMA else (
        count(usage.get("prompt_tokens")) if isinstance(usage, dict) else None)
    if not counted:
        raise CalibrationError(f"the server does not report prompt tokens (HTTP {response.status_code}),"
                               " so --input-tokens cannot be calibrated")
    return counted


def calibrate(target: Target, seed: int = 0, timeout: float = 120.0) -> Calibration:
    rng = random.Random(seed)
    with httpx.Client(timeout=timeout) as client:
        small, large = (prompt_tokens(client, target, text(w, rng)) for w in PROBE_WORDS)
    per_word = (large - small) / (PROBE_WORDS[1] - PROBE_WORDS[0])
    if per_word <= 0:
        raise CalibrationError(f"the server counted {small} and {large} tokens for longer and longer prompts")
    return Calibration(small - per_word * PROBE_WORDS[0], per_word)


def trace_calibration(target: Target, timeout: float, say=None) -> tuple[float, float]:
    """(tokens a word, template tokens) for a trace's prompts; a server that will not say is taken as one token a
    word, and that is said (the trace's times and shares still hold, its lengths only roughly)."""
    import sys

    try:
        found = calibrate(target, 0, timeout)
    except CalibrationError as exc:
        (say or (lambda line: print(line, file=sys.stderr)))(
            f"tokentop: {exc}; the trace's prompts assume one token a word")
        return 1.0, 0.0
    return found.per_word, found.overhead
