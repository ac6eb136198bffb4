"""Steering the engine from keys and sliders: each change goes to the engine once, from its own handler.

The panes then show the settings the engine's snapshots carry (the app guards against a snapshot older
than the newest change with the settings version). No Textual here: the app calls these and redraws.
"""

from __future__ import annotations

from tui.load.contract import Engine
from tui.load.prompts import INPUT, OUTPUT


class Steering:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.last_rate = engine.settings.rate or 1.0  # what `r` goes back to
        self.last_users = engine.settings.users or 10  # what `u` goes back to

    def slider_moved(self, name: str, value: float) -> None:
        """A slider's new value ("concurrency", "rate", "users" or "words"); a hidden one's is not the load's."""
        settings = self.engine.settings
        if name == "rate":
            if settings.rate is not None:
                self.last_rate = value
                self.engine.update(rate=value)
        elif name == "users":
            if settings.users is not None:
                self.last_users = int(value)
                self.engine.update(users=int(value))
        else:
            self.engine.update(**{name: int(value)})

    def load_slider(self) -> str:
        """The id of the slider that drives the load now (`+`/`-` step it)."""
        settings = self.engine.settings
        return "#users" if settings.users is not None else "#rate" if settings.rate is not None else "#concurrency"

    def switch_rate(self) -> None:
        """Between a closed loop (N streams) and an open loop (a request rate)."""
        self.engine.update(rate=self.last_rate if self.engine.settings.rate is None else None, users=None)

    def switch_users(self) -> None:
        """Between N streams (or a rate) and N users in conversations."""
        self.engine.update(users=self.last_users if self.engine.settings.users is None else None, rate=None)

    def switch_mode(self) -> None:
        self.engine.update(mode=INPUT if self.engine.settings.mode == OUTPUT else OUTPUT)

    def toggle_running(self) -> None:
        if self.engine.running:
            self.engine.pause()
        else:
            self.engine.resume()
