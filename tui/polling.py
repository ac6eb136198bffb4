"""The app's background readers: the probes and the engine's snapshots, each read in a daemon thread of its own
and posted to the app as its message (tui/messages.py). The UI thread never waits on a probe or on the engine's pipe; the next
read starts only when the last has finished, so slow reads never pile up.

Daemon threads, not Textual's thread workers: those run in the event loop's default executor, which is joined
at exit, so a probe stuck in a slow read held `q` for as long as the read took (66 s was measured against a
Prometheus that trickled its answer). Once stopped, a reading that comes back late is dropped, never posted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class Poller:
    def __init__(self, app: Any, every_s: float = 1.0) -> None:
        self._app = app  # the Textual app: its post_message is safe to call from a thread
        self.every_s = every_s
        self._stop = threading.Event()

    def poll(self, read: Callable[[], Any], message: Callable[[Any], Any],
             every_s: float | Callable[[], float] | None = None, first: Callable[[], Any] | None = None) -> None:
        """`read()` posted as `message(sample)` every `every_s` seconds (a function: asked after each read);
        `first()`, if given, posted once before."""
        def loop() -> None:
            if first is not None:
                self._post(first)
            while not self._stop.is_set():
                self._post(lambda: message(read()))
                self._stop.wait((every_s() if callable(every_s) else every_s) or self.every_s)

        name = getattr(message, "__name__", "poll")
        # Started after the first refresh: by then every pane has composed its parts, so no reading meets a pane
        # half built (a reading posted at once could reach the load pane before its summary line existed).
        self._app.call_after_refresh(threading.Thread(target=loop, name=f"tokentop-{name}", daemon=True).start)

    def _post(self, make: Callable[[], Any]) -> None:
        try:
            made = make()
            if not self._stop.is_set():  # quitting: the loop this would go to may be gone
                self._app.post_message(made)
        except Exception as exc:  # a reader that fails says so in the log, once a poll, and goes on
            self._app.log.error(f"poll: {type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self._stop.set()
