"""A modal list of the server's models (ollama /api/tags, OpenAI /v1/models); Enter picks, Esc cancels."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from tui.untrusted import visible


class ModelPicker(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "cancel")]
    DEFAULT_CSS = """
    ModelPicker { align: center middle; }
    ModelPicker > OptionList { width: auto; min-width: 40; max-width: 90%; height: auto; max-height: 80%;
                               border: round $accent; }
    """

    def __init__(self, models: Iterable[str], current: str, loaded: Iterable[str] = ()) -> None:
        super().__init__()
        self.models, self.current, self.loaded = list(models), current, set(loaded)

    def compose(self) -> ComposeResult:
        options = []
        for name in self.models:
            marks = [m for m, on in (("current", name == self.current), ("loaded", name in self.loaded)) if on]
            label = Text(visible(name))  # a server's text: never markup, control characters visible
            if marks:
                label.append(f"  ({', '.join(marks)})", style="dim")
            options.append(Option(label, id=name))
        picker = OptionList(*options)
        picker.border_title = "model for the next requests"
        yield picker

    def on_mount(self) -> None:
        picker = self.query_one(OptionList)
        if self.current in self.models:
            picker.highlighted = self.models.index(self.current)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
