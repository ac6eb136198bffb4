"""Fixed stand-ins for the probes' data sources, for tests and snapshot tests (no GPU needed)."""

from __future__ import annotations

import contextlib
import dataclasses

from nvitop import NA

from tui.load.discover import ServerInfo
from tui.load.settings import LoadSettings
from tui.load.snapshot import ERROR, STREAMING, WAITING, Snapshot, StreamView
from tui.probes.family import Member
from tui.probes.gpu import GpuProbe, GpuReading
from tui.probes.host import HostSample, ProcessSample

GiB = 1024**3


class FakeProcess:
    """Shaped like nvitop's GpuProcess, as far as the probe uses it."""

    def __init__(self, pid: int, user: str, command: str, gpu_memory: int) -> None:
        self.pid = pid
        self._user, self._command, self._gpu_memory = user, command, gpu_memory

    def username(self):
        return self._user

    def command(self):
        return self._command

    def name(self):
        return self._command.split()[0].rsplit("/", 1)[-1]

    def gpu_memory(self):
        return self._gpu_memory


class FakeDevice:
    """Shaped like nvitop's Device. GPU 0 is busy serving a model, GPU 1 is idle.

    Units as nvitop gives them: power in milliwatts, memory in bytes, PCIe in KiB/s, NA when absent.
    """

    BUSY = dict(utilization=97, memory_used=44 * GiB, temperature=64, power=298_000, clocks=(1410, 1593),
                pcie=(1_234_567, 45_678))
    IDLE = dict(utilization=0, memory_used=GiB // 2, temperature=31, power=61_000, clocks=(210, 1593),
                pcie=(0, 0))

    def __init__(self, index: int) -> None:
        self._index = index
        self._values = self.BUSY if index == 0 else self.IDLE

    @property
    def index(self) -> int:
        return self._index

    @contextlib.contextmanager
    def oneshot(self):
        yield

    def name(self):
        return "NVIDIA A100-SXM4-80GB"

    def gpu_utilization(self):
        return self._values["utilization"]

    def memory_used(self):
        return self._values["memory_used"]

    def memory_total(self):
        return 80 * GiB

    def temperature(self):
        return self._values["temperature"]

    def power_usage(self):
        return self._values["power"]

    def power_limit(self):
        return 400_000

    def fan_speed(self):
        return NA  # data-centre GPUs report no fan

    def sm_clock(self):
        return self._values["clocks"][0]

    def memory_clock(self):
        return self._values["clocks"][1]

    def pcie_rx_throughput(self):
        return self._values["pcie"][0]

    def pcie_tx_throughput(self):
        return self._values["pcie"][1]

    def processes(self):
        if self._index != 0:
            return {}
        command = "/usr/bin/ollama runner --model /usr/share/ollama/.ollama/models/blobs/sha256-6a0746a1ec1a --port 36787"
        return {4242: FakeProcess(4242, "ollama", command, 42 * GiB)}


def fake_gpu_reading() -> GpuReading:
    return GpuProbe(devices=lambda: [FakeDevice(0), FakeDevice(1)]).read()


def fixed_host() -> HostSample:
    return HostSample(
        cpu_percent=(92.0, 88.0, 35.0, 12.0, 7.0, 64.0, 3.0, 41.0), cpu_total=42.75, load_avg=(3.12, 2.40, 1.05),
        mem_total=251 * GiB, mem_used=23 * GiB, mem_available=220 * GiB, mem_cached=41 * GiB,
        swap_total=8 * GiB, swap_used=0, server=ProcessSample(4200, "ollama", 104.0, 2 * GiB, "port", (4200, 4242), (
            Member(4200, "ollama", 4.0, 150 * 2**20, "ollama serve"),  # owns the port; its runner holds the model
            Member(4242, "ollama", 100.0, 2 * GiB - 150 * 2**20, "ollama runner --model /usr/share/ollama/.ollama/"
                   "models/blobs/sha256-6a0746a1ec1a --port 36787"))),
    )


def frozen_snapshot() -> Snapshot:
    states = [STREAMING] * 4 + [WAITING] * 3 + [ERROR]
    views = []
    for i, state in enumerate(states):
        streaming = state == STREAMING
        views.append(StreamView(
            index=i, state=state, requests_done=2 if i < 4 else 1,
            waited_s=0.41 + i / 100 if streaming else 6.5 - i / 10, ttft_s=0.41 + i / 100 if streaming else None,
            tokens=61 + 7 * i if streaming else 0, live_tps=16.2 - i / 5 if streaming else 0.0,
            e2e_s=4.2 + i / 10 if streaming else 6.5 - i / 10,
            error="HTTP 503: server busy, please try again." if state == ERROR else None,
        ))
    return Snapshot(
        taken_ns=0, running=True, settings=LoadSettings(concurrency=8, words=100), streams=tuple(views),
        waiting=3, streaming=4, completed=9, errors=1, aggregate_tps=63.4, mean_stream_tps=15.9, ttft_p50_s=0.43,
    )


class FrozenEngine:
    """Engine-shaped, showing one fixed snapshot."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap, self.settings, self.running, self.records = snap, snap.settings, snap.running, []
        self.settings_version = 0

    def start(self, running: bool = True) -> None:
        pass

    def stop(self, timeout: float = 2.0) -> None:
        pass

    def snapshot(self) -> Snapshot:
        return self.snap

    def set_model(self, model: str) -> None:
        self.model = model

    def update(self, **changes) -> LoadSettings:
        self.settings = dataclasses.replace(self.settings, **changes)
        return self.settings


INFO = ServerInfo("http://127.0.0.1:11434", "ollama", "ollama", "0.12.3", "llama3.1:70b", ["llama3.1:70b"])
