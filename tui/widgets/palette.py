"""Colours by meaning. The panes draw Rich text with `style("waiting")`, never a colour name; the colours live in
app.tcss as the component classes of an invisible `Palette` widget, in the theme's variables, so a Textual
theme (ctrl+p, "theme") restyles every pane. Until the app has read its theme, the defaults below serve
(the tests' text builders use them too). The one exception is the chart's plotted lines: plotext takes only
its own colour names (tui/widgets/chart.py).
"""

from __future__ import annotations

from rich.style import Style
from textual.widget import Widget

DEFAULTS = {
    "waiting": "bold yellow",  # sent, no first token yet
    "streaming": "bold green",
    "done": "grey62",
    "error": "bold red",
    "muted": "grey50",  # qualifiers: (client-counted), units, empty bar cells
    "quiet": "grey62",  # secondary facts
    "alarm": "bold white on red",  # the engine stopped, --out no longer written, client-bound
    "banner": "bold black on yellow",  # the live queue
    "accent": "cyan",  # sparklines, J/token
    "title": "bold cyan",  # names: the model, a GPU
    "note": "magenta",  # a finished request's note: truncated, cold start
    "load-low": "green",
    "load-mid": "yellow",
    "load-high": "bold red",
    "bar-empty": "grey35",
    "badge-real": "bold black on green",
    "badge-sim": "bold black on yellow",
    "badge-brand": "bold black on cyan",
    "server": "bold yellow",  # the server's own process, marked in the GPU and CPU panes
}

_styles: dict[str, Style] = {meaning: Style.parse(text) for meaning, text in DEFAULTS.items()}


def style(meaning: str) -> Style:
    return _styles[meaning]


class Palette(Widget):
    """Invisible; its component classes (app.tcss) carry the colours. `read()` after every theme change."""

    COMPONENT_CLASSES = {f"palette--{meaning}" for meaning in DEFAULTS}
    DEFAULT_CSS = "Palette { display: none; }"

    def read(self) -> None:
        self._rich_style_cache.clear()  # recomputed from the new theme's values
        for meaning in DEFAULTS:
            # The full style has the theme's colours blended (muted text is a translucent colour); its background
            # is kept only where the class sets one (badges, alarms), so text sits on whatever pane it is in.
            full = self.get_component_rich_style(f"palette--{meaning}")
            own = self.get_component_rich_style(f"palette--{meaning}", partial=True)
            _styles[meaning] = Style(color=full.color, bgcolor=full.bgcolor if own.bgcolor else None, bold=own.bold,
                                     italic=own.italic, underline=own.underline)
