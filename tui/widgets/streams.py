"""One line per stream, drawn with Textual's line API: only rows whose text changed are redrawn.

(A DataTable redraws every visible row on any change — about 40 ms at 64 rows here; this costs a
few ms.) The widget is handed `StreamView`s and never reads the engine itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.load.snapshot import DONE, ERROR, STREAMING, WAITING, StreamView
from tui.untrusted import visible
from tui.widgets.drawing import bar, fmt
from tui.widgets.palette import style

# "(client)" sits over the rate bars, beside what it qualifies, where narrow layouts still show it.
HEADER = f"{'#':>3} {'state':<9} {'waited':>7} {'TTFT':>6} {'tokens':>6} {'tok/s':>6} {'(client)':10} {'e2e':>7} {'reqs':>4}"
PLAIN = Style()


def row_segments(view: StreamView, top_tps: float) -> list[Segment]:
    """The cells of one row. Tokens and tok/s are client-counted chunks (the header says so)."""
    muted, state = style("muted"), style(view.state) if view.state in (WAITING, STREAMING, DONE, ERROR) else PLAIN
    filled, empty = bar(view.live_tps / top_tps if top_tps > 0 else 0, 10)
    if view.state == ERROR:  # the error's first words in place of the rate bar
        filled, empty = "", f"{visible(view.error or '')[:10]:<10}"
    segments = [
        Segment(f"{view.index:>3} ", PLAIN),
        Segment(f"{view.state:<9} ", state),
        Segment(f"{view.waited_s:>6.1f}s ", style("waiting") if view.state == WAITING else PLAIN),
        Segment(f"{fmt(view.ttft_s, '5.2f'):>5}{'s' if view.ttft_s is not None else ' '} ", PLAIN),
        Segment(f"{view.tokens:>6} ", PLAIN),
        Segment(f"{view.live_tps:>6.1f} " if view.state == STREAMING else f"{'':>6} ", PLAIN),
        Segment(filled, style("load-low")),
        Segment(empty + " ", style("error") if view.state == ERROR else muted),
        Segment(f"{view.e2e_s:>6.1f}s ", PLAIN),
        Segment(f"{view.requests_done:>4}", muted),
    ]
    if view.state == ERROR and view.error:
        segments.append(Segment("  " + visible(view.error)[10:], style("error")))
    elif view.note:
        segments.append(Segment("  " + view.note, style("note")))
    return segments


class StreamTable(ScrollView):
    DEFAULT_CSS = """
    StreamTable { height: 1fr; min-height: 2; background: $background; overflow-x: hidden; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._rows: list[list[Segment]] = []
        self._strips: list[Strip] = []

    def show(self, views: Sequence[StreamView]) -> None:
        top = max((v.live_tps for v in views), default=0.0)
        rows = [row_segments(v, top) for v in views]
        old = self._rows
        self._rows = rows
        self._strips = [self._strips[i] if i < len(old) and old[i] == row else Strip(row)
                        for i, row in enumerate(rows)]
        width = max((s.cell_length for s in self._strips), default=0)
        if len(rows) != len(old):
            self.virtual_size = Size(width, len(rows))
            self.refresh()
            return
        if width > self.virtual_size.width:
            self.virtual_size = Size(width, len(rows))
        scroll_y = self.scroll_offset.y
        for i, row in enumerate(rows):
            if old[i] != row and scroll_y <= i < scroll_y + self.size.height:
                self.refresh_lines(i)  # virtual row; Textual subtracts the scroll offset

    def forget(self) -> None:
        """Rebuild every row at the next show (their styles may have changed)."""
        self._rows, self._strips = [], []

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        i = y + scroll_y
        width = self.size.width
        if i >= len(self._strips):
            return Strip.blank(width)
        return self._strips[i].crop_extend(scroll_x, scroll_x + width, None)
