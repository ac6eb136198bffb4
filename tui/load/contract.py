"""What every load engine offers: the in-process `LoadEngine`, the `EngineProcess` (one engine in a child
process), the `EnginePool` (several), and the tests' doubles. The app and the bench know only this.

Steering never waits for the engine: `update` and `begin` check the values where they are called (a bad one
raises ValueError there and changes nothing) and the engine applies them soon after. A snapshot carries the
settings the engine runs with, the one source of truth for what is on screen, and how many updates they
include: one taken before the newest update arrived is known as late, and its settings are not shown. A
phase with an end (a bench cell, a capacity level) is followed with `status()` and its requests collected
with `new_records()` (tui/load/phase.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tui.load.records import RequestRecord
from tui.load.settings import LoadSettings
from tui.load.snapshot import PhaseStatus, Snapshot


class EngineStopped(RuntimeError):
    """The engine's process is gone (killed, or crashed), or stopped answering: no more requests will run."""


class Engine(Protocol):
    @property
    def running(self) -> bool: ...

    @property
    def settings(self) -> LoadSettings: ...

    @property
    def settings_version(self) -> int:
        """How many updates `settings` includes; a snapshot with a lower count was taken before the newest."""

    @property
    def records(self) -> Sequence[RequestRecord]: ...

    @property
    def workers(self) -> int:
        """How many processes send its requests."""

    def start(self, running: bool = True) -> None: ...

    def stop(self, timeout: float = 2.0) -> None: ...

    def update(self, **changes: Any) -> LoadSettings: ...

    def begin(self, **changes: Any) -> int:
        """A new phase with these settings; its number, as `status().phase` will say once it runs."""

    def warm(self, connections: int) -> None:
        """Open connections for a phase's first requests (blocks until they are open, or have failed)."""

    def status(self, wait_s: float = 0.0) -> PhaseStatus:
        """How far the phase has got; with `wait_s`, once it is done or after at most that long."""

    def new_records(self) -> list[RequestRecord]:
        """The requests finished since the last call."""

    def set_model(self, model: str) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def snapshot(self) -> Snapshot: ...


# --- the commands an engine process takes over its pipe (`seq` numbers the ones that get a reply) -------

@dataclass(frozen=True)
class Update:
    changes: dict[str, Any] = field(default_factory=dict)
    new_phase: bool = False  # Engine.begin rather than Engine.update


@dataclass(frozen=True)
class SetModel:
    model: str


@dataclass(frozen=True)
class SetRunning:
    running: bool


@dataclass(frozen=True)
class Warm:
    seq: int
    connections: int


@dataclass(frozen=True)
class GetSnapshot:
    seq: int
    rows_ns: int = 0  # the asker holds the rows read then: a snapshot whose rows are those comes without them


@dataclass(frozen=True)
class GetStatus:
    seq: int


@dataclass(frozen=True)
class GetRecords:
    seq: int


@dataclass(frozen=True)
class TakeNewRecords:
    seq: int


@dataclass(frozen=True)
class Stop:
    pass


Question = Warm | GetSnapshot | GetStatus | GetRecords | TakeNewRecords  # each gets one answer
Command = Update | SetModel | SetRunning | Question | Stop
