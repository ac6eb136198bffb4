"""What each request of a phase asks for: its record (what the tables group it by) and its prompt.

One place for the choice, so the app and the bench send the same requests for the same settings. With
--seed, a run sends the same prompts again: synthetic words drawn from (seed, phase, load, round, stream,
request), a prompt file shuffled by (seed, round, worker). Each worker takes every workers-th prompt.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tui.load.client import Target
from tui.load.prompt_file import ConversationSource, PromptSource
from tui.load.prompts import PROMPT_FILE, TRACE_MODE
from tui.load.wire import RequestSpec
from tui.load.records import RequestRecord
from tui.load.settings import LoadSettings, request_spec
from tui.load.synthetic import SYNTHETIC
from tui.load.synthetic import text as synthetic_text

if TYPE_CHECKING:
    from tui.load.trace import Trace, TraceRequest


@dataclass
class Conversation:
    """One user's conversation: its turns, the file's human turns if it came from one, what was said so far."""

    session: int
    turns: int
    rng: random.Random  # its own draws: turns, think times
    scripted: tuple[str, ...] | None = None
    history: list[tuple[str, str]] = field(default_factory=list)  # (the user's prompt, the answer), turn by turn
    prompt: str = ""  # the turn in flight's

    def think_s(self, s: LoadSettings) -> float:
        """The pause before the next turn: think_s each (fixed), or drawn with that mean."""
        if not s.think_s:
            return 0.0
        return s.think_s if s.think == "fixed" else self.rng.expovariate(1 / s.think_s)

    def answered(self, record: RequestRecord) -> None:
        """The turn in flight and its answer join the history (the record lets go of the answer's text)."""
        self.history.append((self.prompt, "".join(record.answer_parts or ())))
        record.answer_parts = None


class RequestMaker:
    def __init__(self, prompts: Sequence[str] | None, worker: int = 0, workers: int = 1,
                 conversations: Sequence[tuple[str, ...]] | None = None, trace: Trace | None = None) -> None:
        self._prompts = list(prompts)[worker::workers] or list(prompts) if prompts else None
        self._conversations = list(conversations)[worker::workers] or list(conversations) if conversations else None
        self._worker, self._workers = worker, workers
        self._trace = trace
        self._source: PromptSource | None = None
        self._scripts: ConversationSource | None = None
        self._phase = -1

    def begin(self, settings: LoadSettings, phase: int) -> None:
        """A new phase: a prompt file starts again from its first (or, with --seed, shuffled) prompt."""
        self._phase = phase
        seed = None if settings.seed is None else settings.seed * 1000 + settings.round * 64 + self._worker
        if self._prompts is not None:
            self._source = PromptSource(self._prompts, shuffle=seed is not None, seed=seed)
        if self._conversations is not None:
            self._scripts = ConversationSource(self._conversations, shuffle=seed is not None, seed=seed)

    def conversation(self, settings: LoadSettings, session: int, rng: random.Random) -> Conversation:
        """A new conversation of settings.turns turns (at most the file's conversation's human turns)."""
        turns = rng.randint(*settings.turns)
        scripted = self._scripts.next() if self._scripts is not None else None
        return Conversation(session, min(turns, len(scripted)) if scripted else turns, rng, scripted)

    def make(self, target: Target, settings: LoadSettings, stream: int, k: int, open_loop: bool,
             talk: Conversation | None = None, item: TraceRequest | None = None) -> tuple[RequestRecord, RequestSpec]:
        """Stream `stream`'s k-th request of the phase (in an open loop, the phase's k-th arrival); in a
        conversation, its next turn, the history resent; a trace's request, as long as the trace says."""
        s = settings
        record = RequestRecord(stream=stream, concurrency=0 if open_loop or talk else s.concurrency, words=s.words,
                               mode=s.mode, api=target.api, model=target.model, round=s.round,
                               rate=s.rate if open_loop else None)
        spec = request_spec(target.model, s)
        if talk is not None:
            record.users, record.session, record.turn = s.users, talk.session, len(talk.history) + 1
            record.answer_parts = []
            spec = dataclasses.replace(spec, history=tuple(talk.history))
        if item is not None:
            return self._replayed(record, spec, s, item)
        if talk is not None and talk.scripted:
            record.mode = PROMPT_FILE
            spec = dataclasses.replace(spec, prompt=talk.scripted[len(talk.history)])
        elif s.input_words:  # new words for every request: a prefix cache must not make this a cache test
            load = s.rate if open_loop else s.users if talk else s.concurrency
            rng = random.Random(f"{s.seed}:{s.salt}:{self._phase}:{load}:{s.round}:{stream}:{k}")
            record.mode = SYNTHETIC
            spec = dataclasses.replace(spec, prompt=synthetic_text(s.input_words, rng, s.shared_words))
        elif self._source is not None:
            record.mode = PROMPT_FILE
            spec = dataclasses.replace(spec, prompt=self._source.next())
        if talk is not None:
            talk.prompt = spec.prompt
        return record, spec

    def _replayed(self, record: RequestRecord, spec: RequestSpec, s: LoadSettings, item: TraceRequest
                  ) -> tuple[RequestRecord, RequestSpec]:
        """A trace's request: its blocks as text (equal ids, equal text), exactly its output tokens."""
        from tui.load.trace import BLOCK_TOKENS, trace_prompt

        per_word, overhead = s.calibration or (1.0, 0.0)
        record.mode, record.trace_index, record.rate = TRACE_MODE, item.index, None
        prompt = trace_prompt(item, self._trace.block_tokens if self._trace else BLOCK_TOKENS, per_word, overhead,
                              s.salt)
        return record, dataclasses.replace(spec, prompt=prompt, max_tokens=item.output_tokens, force_length=True)
