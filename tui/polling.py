"""Reading the probes and the engine's snapshots off the UI thread: a daemon thread for each reader.

Daemon threads, not Textual's thread workers: those run in the event loop's default executor, which is joined at
exit, so a probe stuck in a slow read held `q` for as long as the read took (66 s was measured against a
Prometheus that trickled its answer). Each reader's next read starts only when its last one has finished, so
slow reads never pile up; once stopped, a read that comes back late is dropped, never posted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class Polls:
    def __init__(self, post: Callable[[Any], object], log: Callable[[str], object]) -> None:
        self._post, self._log = post, log
        self._stop = threading.Event()

    def start(self, name: str, read: Callable[[], Any], wrap: Callable[[Any], Any], every_s: float,
              first: tuple[Callable[[], Any], Callable[[Any], Any]] | None = None) -> None:
        """Post `wrap(read())` every `every_s` seconds; `first`: a (read, wrap) done once before."""
        threading.Thread(target=self._run, args=(name, read, wrap, every_s, first), name=f"tokentop-{name}",
                         daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self, name: str, read: Callable[[], Any], wrap: Callable[[Any], Any], every_s: float,
             first: tuple[Callable[[], Any], Callable[[Any], Any]] | None) -> None:
        if first is not None:
            self._once(name, *first)
        while not self._stop.is_set():
            self._once(name, read, wrap)
            self._stop.wait(every_s)

    def _once(self, name: str, read: Callable[[], Any], wrap: Callable[[Any], Any]) -> None:
        try:
            sample = read()
        except Exception as exc:  # a reader that fails says so once a poll, in the log, and goes on
            self._log(f"{name}: {type(exc).__name__}: {exc}")
            return
        if not self._stop.is_set():  # quitting: the loop this would go to may be gone
            self._post(wrap(sample))
