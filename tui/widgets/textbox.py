"""A Static that repaints only when its text changed, and re-lays-out only when its shape may have.

(`Static.update` lays the whole screen out again by default; at 5 Hz that was most of the idle cost.)
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class TextBox(Static):
    _shown: Text | None = None

    def show_text(self, text: Text) -> None:
        old = self._shown
        if old is not None and old == text:
            return
        self._shown = text
        reshaped = old is None or len(old.plain) != len(text.plain) or old.plain.count("\n") != text.plain.count("\n")
        self.update(text, layout=reshaped)

    def forget(self) -> None:
        """Repaint at the next show_text, even if the text is the same (its styles may have changed)."""
        self._shown = None
