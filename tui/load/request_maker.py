"""What each request of a phase asks for: its record (what the tables group it by) and its prompt.

One place for the choice, so the app and the bench send the same requests for the same settings. With
--seed, a run sends the same prompts again: synthetic words drawn from (seed, phase, load, round, stream,
request), a prompt file shuffled by (seed, round, worker). Each worker takes every workers-th prompt.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

from tui.load.client import Target
from tui.load.prompt_file import PromptSource
from tui.load.prompts import PROMPT_FILE
from tui.load.wire import RequestSpec
from tui.load.records import RequestRecord
from tui.load.settings import LoadSettings, request_spec
from tui.load.synthetic import SYNTHETIC
from tui.load.synthetic import text as synthetic_text


class RequestMaker:
    def __init__(self, prompts: Sequence[str] | None, worker: int = 0, workers: int = 1) -> None:
        self._prompts = list(prompts)[worker::workers] or list(prompts) if prompts else None
        self._worker, self._workers = worker, workers
        self._source: PromptSource | None = None
        self._phase = -1

    def begin(self, settings: LoadSettings, phase: int) -> None:
        """A new phase: a prompt file starts again from its first (or, with --seed, shuffled) prompt."""
        self._phase = phase
        if self._prompts is not None:
            seed = settings.seed
            self._source = PromptSource(self._prompts, shuffle=seed is not None,
                                        seed=None if seed is None else seed * 1000 + settings.round * 64 + self._worker)

    def make(self, target: Target, settings: LoadSettings, stream: int, k: int, open_loop: bool
             ) -> tuple[RequestRecord, RequestSpec]:
        """Stream `stream`'s k-th request of the phase (in an open loop, the phase's k-th arrival)."""
        s = settings
        record = RequestRecord(stream=stream, concurrency=0 if open_loop else s.concurrency, words=s.words, mode=s.mode,
                               api=target.api, model=target.model, round=s.round, rate=s.rate if open_loop else None)
        spec = request_spec(target.model, s)
        if s.input_words:  # new words for every request: a prefix cache must not make this a cache test
            load = s.rate if open_loop else s.concurrency
            rng = random.Random(f"{s.seed}:{self._phase}:{load}:{s.round}:{stream}:{k}")
            record.mode = SYNTHETIC
            return record, dataclasses.replace(spec, prompt=synthetic_text(s.input_words, rng, s.shared_words))
        if self._source is not None:
            record.mode = PROMPT_FILE
            return record, dataclasses.replace(spec, prompt=self._source.next())
        return record, spec
