"""What the app's background readers post to it: one message class per sample type, each carrying its sample.

A slow UI may drop a stale one: a newer message of the same class replaces it in the queue.
"""

from __future__ import annotations

from textual.message import Message

from tui.load.snapshot import Snapshot
from tui.probes.fleet import FleetSample
from tui.probes.gpu import GpuReading
from tui.probes.host import HostSample
from tui.probes.inside import InsideSample
from tui.probes.server import ServerSample


class Sampled(Message):
    def can_replace(self, message: Message) -> bool:
        return type(message) is type(self)


class GpuSampled(Sampled):
    def __init__(self, sample: GpuReading) -> None:
        super().__init__()
        self.sample = sample


class HostSampled(Sampled):
    def __init__(self, sample: HostSample) -> None:
        super().__init__()
        self.sample = sample


class ServerSampled(Sampled):
    def __init__(self, sample: ServerSample) -> None:
        super().__init__()
        self.sample = sample


class InsideSampled(Sampled):
    """The server view (the `i` key), once a second while it is open."""

    def __init__(self, sample: InsideSample) -> None:
        super().__init__()
        self.sample = sample


class FleetSampled(Sampled):
    def __init__(self, sample: FleetSample) -> None:
        super().__init__()
        self.sample = sample


class FleetHistory(Sampled):
    """Each GPU's utilisation over the last minutes, read once at the start."""

    def __init__(self, sample: dict[tuple[str, str], list[float]]) -> None:  # (host, GPU) → utilisation %
        super().__init__()
        self.sample = sample


class EngineSampled(Sampled):
    """The engine's snapshot, a few times a second: the one the load pane and the history draw."""

    def __init__(self, sample: Snapshot) -> None:
        super().__init__()
        self.sample = sample
