"""The app's background readers: the probes and the engine's snapshots, each read in a thread worker of its own
and posted to the app as its message (tui/messages.py). The UI thread never waits on a probe or on the
engine's pipe; the next read starts only when the last has finished, so slow reads never pile up."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from textual.app import App

from tui.messages import Sampled


class Poller:
    def __init__(self, app: App, every_s: float = 1.0) -> None:
        self._app = app
        self.every_s = every_s
        self._stop = threading.Event()

    def poll(self, read: Callable[[], Any], message: Callable[[Any], Sampled], every_s: float | None = None,
             first: Callable[[], Sampled] | None = None) -> None:
        """`read()` posted as `message(sample)` every `every_s` seconds; `first()`, if given, posted once before."""
        def loop() -> None:
            if first is not None:
                self._post(first)
            while not self._stop.is_set():
                self._post(lambda: message(read()))
                self._stop.wait(every_s or self.every_s)

        self._app.run_worker(loop, thread=True, group=getattr(message, "__name__", "poll"))

    def _post(self, make: Callable[[], Sampled]) -> None:
        try:
            self._app.post_message(make())
        except Exception as exc:  # a reader that fails says so in the log, once a poll, and goes on
            self._app.log.error(f"poll: {type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self._stop.set()
