"""A small slider over a list of allowed values (our own: textual-slider is GPL-3.0).

Keys: ←/→ one step, Home/End the ends. Mouse: click or drag on the track.
Posts `Slider.Changed` whenever the value changes, by key, mouse or code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from tui.widgets.palette import style

# How long a value the slider posted wins over the value it is shown from elsewhere: until the engine says the
# same, or this long (the engine may refuse or clamp it). Without it, a refresh between a key press and the
# handling of its Changed puts the old value back and a second quick press is lost.
POSTED_WINS_S = 1.0


class Slider(Widget, can_focus=True):
    BINDINGS = [
        Binding("left", "step(-1)", "less", show=False),
        Binding("right", "step(1)", "more", show=False),
        Binding("home", "jump(0)", "min", show=False),
        Binding("end", "jump(-1)", "max", show=False),
    ]

    DEFAULT_CSS = """
    Slider { height: 1; width: 1fr; min-width: 16; }
    Slider:focus { text-style: bold; }
    """

    index: reactive[int] = reactive(0)

    class Changed(Message):
        def __init__(self, slider: Slider, value: float) -> None:
            super().__init__()
            self.slider, self.value = slider, value

        @property
        def control(self) -> Slider:
            return self.slider

    def __init__(self, values: Sequence[float], value: float, label: str, *, shown: Callable[[float], str] = str,
                 id: str | None = None) -> None:
        """`shown` writes a value for the end of the slider (default: as it is)."""
        if not values:
            raise ValueError("a slider needs at least one value")
        self.values = tuple(values)
        self.label = label
        self.shown = shown
        self._dragging = False
        self._posted: tuple[float, float] | None = None  # (value, when) of the last Changed not yet shown back
        super().__init__(id=id)
        self.set_reactive(Slider.index, self._nearest(value))

    @property
    def value(self) -> float:
        return self.values[self.index]

    @value.setter
    def value(self, value: float) -> None:
        self.index = self._nearest(value)

    def show_value(self, value: float) -> None:
        """Show a value set elsewhere (the engine runs with it) without posting Changed; a value between the
        stops becomes a stop of its own."""
        if self._posted is not None:
            posted, when = self._posted
            if value != posted and time.monotonic() - when < POSTED_WINS_S:
                return
            self._posted = None
        if value == self.value or self._dragging:
            return
        if value not in self.values:
            self.values = tuple(sorted({*self.values, value}))
        self.set_reactive(Slider.index, self.values.index(value))
        self.refresh()

    def _nearest(self, value: float) -> int:
        return min(range(len(self.values)), key=lambda i: (abs(self.values[i] - value), i))

    def validate_index(self, index: int) -> int:
        return max(0, min(len(self.values) - 1, index))

    def watch_index(self, old: int, new: int) -> None:
        if old != new:
            self._posted = (self.values[new], time.monotonic())
            self.post_message(self.Changed(self, self.values[new]))

    def action_step(self, delta: int) -> None:
        self.index += delta

    def action_jump(self, where: int) -> None:
        self.index = 0 if where == 0 else len(self.values) - 1

    # --- drawing -------------------------------------------------------------------------------
    def _track(self) -> tuple[int, int]:
        """(first column, width) of the track inside the widget."""
        head = len(self.label) + 1
        tail = max(len(self.shown(v)) for v in self.values) + 1
        return head, max(3, self.size.width - head - tail)

    def render(self) -> Text:
        head, width = self._track()
        last = len(self.values) - 1
        knob = round(self.index * (width - 1) / last) if last else 0
        text = Text(self.label + " ", style="bold" if self.has_focus else "")
        text.append("━" * knob, style=style("accent"))
        text.append("●", style="bold" if self.has_focus else "")
        text.append("─" * (width - knob - 1), style=style("muted"))
        text.append(" " + self.shown(self.value), style="bold")
        return text

    # --- mouse ---------------------------------------------------------------------------------
    def _index_at(self, x: int) -> int:
        head, width = self._track()
        last = len(self.values) - 1
        if width <= 1 or not last:
            return 0
        return round(max(0, min(width - 1, x - head)) * last / (width - 1))

    def on_mouse_down(self, event: events.MouseDown) -> None:
        self._dragging = True
        self.capture_mouse()
        self.focus()
        self.index = self._index_at(event.x)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        if self._dragging:
            self.index = self._index_at(event.x)

    def on_mouse_up(self, event: events.MouseUp) -> None:
        if self._dragging:
            self._dragging = False
            self.release_mouse()
