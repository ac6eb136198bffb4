"""The GPU pane: each GPU's load, memory, power, clocks, PCIe, a short history, and its processes.

It renders `GpuReading`s it is handed (read by the app in a thread of its own); it never calls NVML.
"""

from __future__ import annotations

import math
from collections import deque

from rich.text import Text

from tui.panes import fleet_text
from tui.probes.fleet import FleetSample
from tui.probes.gpu import GpuReading, GpuSample
from tui.untrusted import visible
from tui.widgets.drawing import append_bar, fmt, human_bytes, load_style, size, sparkline
from tui.widgets.palette import style
from tui.widgets.textbox import TextBox

HISTORY = 120


class GpuPane(TextBox):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "GPU"
        self._reading: GpuReading | None = None
        self._util: dict[int, deque[float | None]] = {}
        self._mem: dict[int, deque[float | None]] = {}
        self.server_pids: frozenset[int] = frozenset()  # the server process and its children
        self.compact = False
        self._fleet: FleetSample | None = None  # with --prometheus: every GPU of every host instead
        self._fleet_util: dict[tuple[str, str], deque[float | None]] = {}

    def show_fleet(self, sample: FleetSample) -> None:
        self._fleet = sample
        self.border_title = "GPUs (Prometheus)"
        for gpu in sample.gpus:
            self._fleet_util.setdefault((gpu.host, gpu.index), deque(maxlen=HISTORY)).append(gpu.util)
        self.refresh_view()

    def show_fleet_history(self, history: dict[tuple[str, str], list[float]]) -> None:
        """What Prometheus remembers of each GPU's utilisation, before the live readings."""
        for key, values in history.items():
            seeded = deque((v if v is not None and math.isfinite(v) else None for v in values), maxlen=HISTORY)
            seeded.extend(self._fleet_util.get(key, ()))
            self._fleet_util[key] = seeded
        self.refresh_view()

    def show(self, reading: GpuReading) -> None:
        self._reading = reading
        for gpu in reading.gpus:
            self._util.setdefault(gpu.index, deque(maxlen=HISTORY)).append(gpu.utilization)
            frac = mem_fraction(gpu)
            self._mem.setdefault(gpu.index, deque(maxlen=HISTORY)).append(None if frac is None else frac * 100)
        self.refresh_view()

    def on_resize(self) -> None:
        self.refresh_view()

    def refresh_view(self) -> None:
        if self._fleet is not None:
            self.show_text(fleet_text.gpu_text(self._fleet, max(30, self.content_size.width), self.compact,
                                          self._fleet_util))
            return
        reading = self._reading
        if reading is None:
            self.show_text(Text("reading GPUs…", style=style("muted")))
            return
        self.set_class(not reading.gpus, "-none")
        if not reading.gpus:
            self.show_text(Text(reading.error or "no NVIDIA GPU found", style=style("quiet")))
            return
        width = max(30, self.content_size.width)
        text = Text()
        for gpu in reading.gpus:
            if text:
                text.append("\n")
            self._gpu_lines(text, gpu, width)
        self.show_text(text)

    def _gpu_lines(self, text: Text, gpu: GpuSample, width: int) -> None:
        spark = max(0, min(40, width - 50))
        frac = mem_fraction(gpu)
        text.append(f"{gpu.index} ", style="bold")
        text.append(visible(gpu.name.removeprefix("NVIDIA ") if self.compact else gpu.name), style=style("title"))
        text.append("  util ")
        text.append(f"{fmt(gpu.utilization, '.0f', 'N/A')}%", style=load_style(gpu.utilization))
        if self.compact:
            text.append(f"  mem {size(gpu.memory_used)}/{size(gpu.memory_total)} GiB")
        elif spark:
            text.append("  " + sparkline(self._util[gpu.index], spark, top=100), style=style("accent"))
        if not self.compact:
            text.append("\n  mem ")
            append_bar(text, frac, max(10, min(30, width - 26 - spark)))
            text.append(f" {size(gpu.memory_used)}/{size(gpu.memory_total)} GiB")
            if spark:
                text.append("  " + sparkline(self._mem[gpu.index], spark, top=100), style=style("note"))
        clocks = f"SM {fmt(gpu.sm_clock, 'd', 'N/A')} mem {fmt(gpu.memory_clock, 'd', 'N/A')} MHz"
        pcie = f"PCIe rx {kib(gpu.pcie_rx)} tx {kib(gpu.pcie_tx)}"
        fan = f"fan {fmt(gpu.fan, '.0f', 'N/A')}{'%' if gpu.fan is not None else ''}"
        power = f"{fmt(gpu.power, '.0f', 'N/A')}/{fmt(gpu.power_limit, '.0f', 'N/A')} W"
        parts = [f"{fmt(gpu.temperature, '.0f', 'N/A')}°C", power, fan, clocks, pcie]
        if self.compact:
            parts.remove(fan)
        line = "  " + "  ".join(parts)
        if len(line) <= width or self.compact:
            text.append("\n" + line)
        else:
            text.append("\n  " + "  ".join(parts[:4]) + "\n  " + pcie)
        for proc in gpu.processes[: 1 if self.compact else 3]:
            mark = proc.pid in self.server_pids
            text.append("\n  ")
            text.append(f"{proc.pid:>7} {visible(proc.user[:10]):<10} {human_bytes(proc.gpu_memory):>9}  ",
                        style=style("server") if mark else "")
            if mark:
                text.append("◀ server ", style=style("server"))
            text.append(visible(proc.command), style=style("server") if mark else style("quiet"))
        if len(gpu.processes) > (1 if self.compact else 3):
            text.append(f"\n  … {len(gpu.processes) - (1 if self.compact else 3)} more", style=style("muted"))
        if not gpu.processes and not self.compact:
            text.append("\n  no GPU processes", style=style("muted"))


def mem_fraction(gpu: GpuSample) -> float | None:
    if gpu.memory_used is None or not gpu.memory_total:
        return None
    return gpu.memory_used / gpu.memory_total


def kib(rate: float | None) -> str:
    if rate is None:
        return "N/A"
    return f"{rate / 1024:.1f} MiB/s" if rate >= 1024 else f"{rate:.0f} KiB/s"
