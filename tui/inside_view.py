"""The `i` key: the server view (tui/panes/inside_text.py) in the load pane, read only while it is open.

Each opening starts a fresh probe (its rates start from then) and a daemon-thread poller of its own; closing
stops the poller, and the probe is closed in a thread (a read in flight must not hold the UI).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tui.messages import InsideSampled
from tui.polling import Poller
from tui.probes.inside import InsideSample


class InsideView:
    def __init__(self, app: Any, make_probe: Callable[[], Any] | None) -> None:
        self._app, self._make_probe = app, make_probe
        self._poller: Poller | None = None
        self._probe: Any = None
        self.sample: InsideSample | None = None

    @property
    def open(self) -> bool:
        return self._poller is not None

    @property
    def available(self) -> bool:
        return self._make_probe is not None

    def toggle(self) -> None:
        if self.open:
            self.close()
        elif self._make_probe is not None:
            self._probe = self._make_probe()
            self._poller = Poller(self._app)
            self._poller.poll(self._probe.read, InsideSampled)

    def close(self) -> None:
        poller, probe = self._poller, self._probe
        self._poller = self._probe = self.sample = None
        if poller is not None:
            poller.stop()
        if probe is not None:
            threading.Thread(target=probe.close, name="tokentop-inside-close", daemon=True).start()
