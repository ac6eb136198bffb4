"""The CPU/RAM pane: a bar per core (like `top` then `1`), load average, RAM with the page cache,
swap, and the server's own process. It renders `HostSample`s it is handed; it never calls psutil.
"""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.widgets import Static

from tui.probes.host import HostSample
from tui.widgets.history import bar, human_bytes, size, sparkline

HISTORY = 120
CORE_CELL = 18  # "nn ██████████ 100%" plus a gap


def load_style(p: float) -> str:
    return "red" if p >= 90 else "yellow" if p >= 60 else "green"


class HostPane(Static):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "CPU / RAM"
        self._sample: HostSample | None = None
        self._cpu: deque[float] = deque(maxlen=HISTORY)
        self._ram: deque[float] = deque(maxlen=HISTORY)

    def show(self, sample: HostSample) -> None:
        self._sample = sample
        self._cpu.append(sample.cpu_total)
        self._ram.append(sample.mem_used / sample.mem_total * 100 if sample.mem_total else 0.0)
        self.refresh_view()

    def on_resize(self) -> None:
        self.refresh_view()

    def refresh_view(self) -> None:
        s = self._sample
        if s is None:
            self.update(Text("reading CPU and memory…", style="grey50"))
            return
        width = max(30, self.content_size.width)
        spark = max(0, min(30, width - 40))
        text = Text()
        text.append("CPU ", style="bold")
        text.append(f"{s.cpu_total:3.0f}%", style=load_style(s.cpu_total))
        text.append(f"  load {s.load_avg[0]:.2f} {s.load_avg[1]:.2f} {s.load_avg[2]:.2f}")
        text.append(f"  {len(s.cpu_percent)} cores")
        if spark:
            text.append(" " + sparkline(self._cpu, spark, top=100), style="cyan")
        columns = max(1, width // CORE_CELL)
        for i, pct in enumerate(s.cpu_percent):
            text.append("\n" if i % columns == 0 else "  ")
            filled, empty = bar(pct / 100, CORE_CELL - 10)
            text.append(f"{i:>2} ")
            text.append(filled, style=load_style(pct))
            text.append(empty, style="grey35")
            text.append(f" {pct:3.0f}%")
        ram = s.mem_used / s.mem_total if s.mem_total else 0.0
        filled, empty = bar(ram, 10)
        text.append("\nRAM  ", style="bold")
        text.append(filled, style=load_style(ram * 100))
        text.append(empty, style="grey35")
        text.append(f" {size(s.mem_used)}/{size(s.mem_total)} GiB used · {size(s.mem_available)} avail"
                    f" · {size(s.mem_cached)} cached")
        if spark:
            text.append(" " + sparkline(self._ram, max(0, spark - 14), top=100), style="magenta")
        swap = s.swap_used / s.swap_total if s.swap_total else 0.0
        filled, empty = bar(swap, 10)
        text.append("\nswap ", style="bold")
        text.append(filled, style=load_style(swap * 100))
        text.append(empty, style="grey35")
        text.append(f" {size(s.swap_used)}/{size(s.swap_total)} GiB")
        text.append("\nserver ", style="bold")
        if s.server is None:
            text.append("process not found on this machine", style="grey50")
        else:
            p = s.server
            text.append(f"{p.name} pid {p.pid}", style="bold yellow")
            text.append(f" · CPU {p.cpu_percent:.0f}% · RSS {human_bytes(p.rss)}")
            text.append(f" (by {p.found_by})", style="grey50")
        self.update(text)
