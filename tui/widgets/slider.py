"""A small slider over a list of allowed values (our own: textual-slider is GPL-3.0).

Keys: ←/→ one step, Home/End the ends. Mouse: click or drag on the track. A move by key, mouse or code
calls `on_change(value)` at once, in the same handler: the value is with its owner (the engine) before any
later refresh could show an older one. `show_value` shows a value from elsewhere without calling it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.reactive import reactive
from textual.widget import Widget

from tui.widgets.palette import style


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

    def __init__(self, values: Sequence[float], value: float, label: str, *, shown: Callable[[float], str] = str,
                 on_change: Callable[[float], None] = lambda value: None, id: str | None = None) -> None:
        """`shown` writes a value for the end of the slider (default: as it is)."""
        if not values:
            raise ValueError("a slider needs at least one value")
        self.values = tuple(values)
        self.label = label
        self.shown = shown
        self.on_change = on_change
        self._dragging = False
        super().__init__(id=id)
        self.set_reactive(Slider.index, self._nearest(value))

    @property
    def value(self) -> float:
        return self.values[self.index]

    @value.setter
    def value(self, value: float) -> None:
        self.index = self._nearest(value)

    def show_value(self, value: float) -> None:
        """Show a value set elsewhere (the engine runs with it) without calling on_change; a value between the
        stops becomes a stop of its own."""
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
            self.on_change(self.values[new])

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
