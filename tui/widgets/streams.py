"""One line per stream, drawn with Textual's line API: only rows whose stream changed are redrawn, and a row's
line is made only when it is drawn (a screen shows a few dozen of the 256 rows a snapshot may carry).

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
        self._views: tuple[StreamView, ...] = ()
        self._top = 0.0  # the fastest live rate: every row's bar is drawn against it
        self._strips: dict[int, Strip] = {}  # the rows drawn since their stream last changed, by row
        self._width = 0  # the widest row drawn so far

    def show(self, views: Sequence[StreamView]) -> None:
        views, old = tuple(views), self._views
        top = max((v.live_tps for v in views), default=0.0)
        changed = [i for i, view in enumerate(views) if i >= len(old) or old[i] != view or top != self._top]
        for i in changed:
            self._strips.pop(i, None)
        for i in range(len(views), len(old)):
            self._strips.pop(i, None)
        self._views, self._top = views, top
        if len(views) != len(old):
            self.virtual_size = Size(self._width, len(views))
            self.refresh()
            return
        scroll_y = self.scroll_offset.y
        for i in changed:
            if scroll_y <= i < scroll_y + self.size.height:
                self.refresh_lines(i)  # virtual row; Textual subtracts the scroll offset

    def forget(self) -> None:
        """Rebuild every row at the next show (their styles may have changed)."""
        self._views, self._strips = (), {}

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        i = y + scroll_y
        width = self.size.width
        if i >= len(self._views):
            return Strip.blank(width)
        strip = self._strips.get(i)
        if strip is None:
            strip = self._strips[i] = Strip(row_segments(self._views[i], self._top))
            if strip.cell_length > self._width:  # wider than any row so far: the view may scroll to it
                self._width = strip.cell_length
                self.call_later(self._widen)
        return strip.crop_extend(scroll_x, scroll_x + width, None)

    def _widen(self) -> None:
        if self._width > self.virtual_size.width:
            self.virtual_size = Size(self._width, len(self._views))
