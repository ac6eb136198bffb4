"""The CPU/RAM pane: a bar per core (like `top` then `1`), load average, RAM with the page cache,
swap, and the server's own process. It renders `HostSample`s it is handed; it never calls psutil.
"""

from __future__ import annotations

from collections import deque

from rich.text import Text

from tui.panes import fleet_text
from tui.probes.fleet import FleetSample
from tui.probes.host import HostSample, ProcessSample
from tui.untrusted import visible
from tui.widgets.drawing import (CORE_CELL, append_bar, core_bars, human_bytes, load_block, load_style, size,
                                 sparkline)
from tui.widgets.palette import style
from tui.widgets.textbox import TextBox

HISTORY = 120
MAX_CORE_ROWS = 8


class HostPane(TextBox):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "CPU / RAM"
        self._sample: HostSample | None = None
        self._cpu: deque[float] = deque(maxlen=HISTORY)
        self._ram: deque[float] = deque(maxlen=HISTORY)
        self.compact = False
        self._fleet: FleetSample | None = None  # with --prometheus: a row per host instead
        self.chosen: str | None = None  # the host whose cores are drawn one by one (the h key)
        self.show_members = False  # the p key: a line per process of the server's family

    def choose_next_host(self) -> str | None:
        """The next host's cores, then none again; returns the host now chosen."""
        hosts = [h.host for h in self._fleet.hosts] if self._fleet else []
        if not hosts:
            return None
        at = hosts.index(self.chosen) + 1 if self.chosen in hosts else 0
        self.chosen = hosts[at] if at < len(hosts) else None
        self.refresh_view()
        return self.chosen

    def show_fleet(self, sample: FleetSample) -> None:
        self._fleet = sample
        self.border_title = "hosts (Prometheus)"
        self.refresh_view()

    def show(self, sample: HostSample) -> None:
        self._sample = sample
        self._cpu.append(sample.cpu_total)
        self._ram.append(sample.mem_used / sample.mem_total * 100 if sample.mem_total else 0.0)
        self.refresh_view()

    def on_resize(self) -> None:
        self.refresh_view()

    def refresh_view(self) -> None:
        if self._fleet is not None:
            self.show_text(fleet_text.host_text(self._fleet, max(30, self.content_size.width), self.compact, self.chosen))
            return
        s = self._sample
        if s is None:
            self.show_text(Text("reading CPU and memory…", style=style("muted")))
            return
        width = max(30, self.content_size.width)
        spark = max(0, min(40, width - 44))
        text = Text()
        text.append("CPU ", style="bold")
        text.append(f"{s.cpu_total:3.0f}%", style=load_style(s.cpu_total))
        text.append(f"  load {s.load_avg[0]:.2f} {s.load_avg[1]:.2f} {s.load_avg[2]:.2f}  {len(s.cpu_percent)} cores")
        if spark and not self.compact:
            text.append("  " + sparkline(self._cpu, spark, top=100), style=style("accent"))
        self._cores(text, s.cpu_percent, width)
        ram = s.mem_used / s.mem_total if s.mem_total else 0.0
        text.append("\nRAM  ", style="bold")
        if not self.compact:
            append_bar(text, ram, 10)
        text.append(f" {size(s.mem_used)}/{size(s.mem_total)} GiB · avail {size(s.mem_available)}"
                    f" · cache {size(s.mem_cached)}")
        if spark and not self.compact:
            text.append("  " + sparkline(self._ram, max(0, spark - 16), top=100), style=style("note"))
        if s.swap_total and not self.compact:
            text.append("\nswap ", style="bold")
            append_bar(text, s.swap_used / s.swap_total, 10)
            text.append(f" {size(s.swap_used)}/{size(s.swap_total)} GiB")
        text.append("\nserver ", style="bold")
        if s.server is None:
            text.append("process not found on this machine", style=style("muted"))
        else:
            self._server(text, s.server, width)
        self.show_text(text)

    def _server(self, text: Text, p: ProcessSample, width: int) -> None:
        """The family's sums on one line; with `p`, a line per member (its starter first)."""
        line = Text()
        line.append(f"{visible(p.name)} pid {p.pid}", style=style("server"))
        others = len(p.members) - 1
        if others > 0:
            line.append(f" +{others}", style=style("server"))
        line.append(f" · CPU {p.cpu_percent:.0f}% · RSS {human_bytes(p.rss)}")
        line.append(f" (by {p.found_by})", style=style("muted"))
        hint = f"  p: all {len(p.members)}"
        if others > 0 and not self.show_members and len("server ") + len(line) + len(hint) <= width:
            line.append(hint, style=style("muted"))
        text.append_text(line)
        if not self.show_members:
            return
        for m in p.members:
            row = Text(f"  {m.pid:>7} ", style=style("muted"))
            row.append(f"{m.cpu_percent:5.0f}% {human_bytes(m.rss):>9}  ")
            row.append(visible(m.name), style=style("server"))
            if m.command:
                row.append("  " + visible(m.command), style=style("muted"))
            row.truncate(width, overflow="ellipsis")
            text.append("\n")
            text.append_text(row)

    def _cores(self, text: Text, cores: tuple[float, ...], width: int) -> None:
        if len(cores) > max(1, width // CORE_CELL) * (2 if self.compact else MAX_CORE_ROWS):
            # Too many cores for a bar each: one block per core, its height the load.
            for i, pct in enumerate(cores):
                if i % (width - 4) == 0:
                    text.append("\n    ")
                text.append(load_block(pct), style=load_style(pct))
            return
        core_bars(text, cores, width)
