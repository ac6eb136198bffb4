"""The load engine in a process of its own, steered over a pipe with typed commands (tui/load/contract.py).

Why: in the app's process the UI thread holds the GIL while it composes a frame, and the engine
thread's chunk timestamps wait for it (measured: +10 ms TTFT at p50 during request bursts, +50–100
ms at p99). In its own process the engine has an interpreter to itself. Steering is sent and not
waited for; a question (a snapshot, the status, the records) waits at most REPLY_TIMEOUT_S for its
answer, and answers are numbered, so one that comes late is dropped rather than taken for the next
question's. Finished requests go to `--out` from the engine process, as they end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from tui.load.client import Target
from tui.load.contract import (
    Command,
    EngineStopped,
    GetRecords,
    GetSnapshot,
    GetStatus,
    Question,
    SetModel,
    SetRunning,
    Stop,
    TakeNewRecords,
    Update,
    Warm,
)
from tui.load.engine import WARM_TIMEOUT_S, LoadEngine
from tui.load.records import RequestRecord
from tui.load.gc_tuning import tune_process
from tui.load.settings import LoadSettings
from tui.load.snapshot import PhaseStatus, Snapshot

if TYPE_CHECKING:
    from tui.load.trace import Trace

REPLY_TIMEOUT_S = 2.0
ASK_AGAIN_S = 0.02  # status(wait_s) asks a child engine this often
FINAL = -1  # the number of the last answer, (the records kept, those not yet taken), sent as the process stops


@dataclasses.dataclass(frozen=True)
class SameRows:
    """A snapshot sent without its rows, which the asker holds: past a few hundred streams the engine reads them
    anew only every few seconds (tui/load/views.py), and they go over the pipe once, not with every snapshot."""

    snapshot: Snapshot


def _serve(conn, target: Target, settings: LoadSettings, out_path: str | None, read_timeout: float,
           keep_records: int | None, worker: int, workers: int, prompts: list[str] | None,
           conversations: list[tuple[str, ...]] | None, trace: Trace | None) -> None:
    """The engine process: apply commands from the pipe until Stop or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal reaches the whole group: the parent stops us
    tune_process()
    engine = LoadEngine(target, settings, read_timeout=read_timeout, out_path=out_path, keep_records=keep_records,
                        worker=worker, workers=workers, prompts=prompts, conversations=conversations, trace=trace)
    engine.start(running=False)
    # Every Update the sender made comes here in order and was checked there: the engine's count of them,
    # which its snapshots and phases carry, is the sender's.
    try:
        while True:
            try:
                command: Command = conn.recv()
            except EOFError:  # the app is gone
                break
            match command:
                case Stop():
                    break
                case Update(changes=changes, new_phase=True):
                    engine.begin(**changes)
                case Update(changes=changes):
                    engine.update(**changes)
                case SetModel(model=model):
                    engine.set_model(model)
                case SetRunning(running=True):
                    engine.resume()
                case SetRunning(running=False):
                    engine.pause()
                case Warm(seq=seq, connections=n):
                    with contextlib.suppress(Exception):  # a failure is left to the requests
                        engine.warm(n)
                    conn.send((seq, None))
                case GetSnapshot(seq=seq, rows_ns=held):
                    snap = engine.snapshot()
                    same = held and snap.rows_ns == held and snap.streams_left_off  # kept rows (tui/load/views.py)
                    conn.send((seq, SameRows(dataclasses.replace(snap, streams=())) if same else snap))
                case GetStatus(seq=seq):
                    conn.send((seq, engine.status()))
                case GetRecords(seq=seq):
                    conn.send((seq, engine.records))
                case TakeNewRecords(seq=seq):
                    conn.send((seq, engine.new_records()))
    finally:
        engine.stop()
        with contextlib.suppress(OSError):  # final: a request may have ended after the app last asked
            conn.send((FINAL, (engine.records, engine.new_records())))
            conn.close()


class EngineProcess:
    """An `Engine` (tui/load/contract.py) whose LoadEngine runs in a child process (spawned: no inherited threads).

    `out_path` is appended to (the caller empties it first), so several engine processes can share one file.
    """

    def __init__(self, target: Target, settings: LoadSettings | None = None, *, out_path: str | None = None,
                 read_timeout: float = 600.0, keep_records: int | None = None, worker: int = 0,
                 workers: int = 1, prompts: list[str] | None = None, conversations: list[tuple[str, ...]] | None = None,
                 trace: Trace | None = None) -> None:
        self.target = target
        self._inputs = (prompts, conversations, trace)  # handed to the child once, as it starts
        self._layout = (worker, workers)  # which share of the streams it runs (tui/load/pool.py)
        self._settings = (settings or LoadSettings()).validated()
        self._out_path, self._read_timeout, self._keep_records = out_path, read_timeout, keep_records
        self._conn = None
        self._process: multiprocessing.Process | None = None
        self._send_lock = threading.Lock()  # one writer on the pipe at a time
        self._ask_lock = threading.Lock()  # one question (send, then wait for its answer) at a time
        self._seq = self._version = 0
        self._running = False
        self._records: list[RequestRecord] = []
        self._untaken: list[RequestRecord] = []  # from the final answer: finished, not yet taken by new_records
        self._last: Snapshot | None = None
        self._failure: str | None = None  # set when the engine's process is found dead

    def start(self, running: bool = True) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, name="tokentop-engine", daemon=True,
                                        args=(child, self.target, self._settings, self._out_path, self._read_timeout,
                                              self._keep_records, *self._layout, *self._inputs))
        # multiprocessing hands its helper our stderr's file descriptor; a TUI replaces sys.stderr with
        # an object that has none (Textual's fileno() is -1), so lend it the real one while it starts.
        stderr, sys.stderr = sys.stderr, sys.__stderr__
        try:
            self._process.start()
        finally:
            sys.stderr = stderr
        child.close()
        if running:
            self.resume()

    @property
    def pids(self) -> list[int]:
        """The engine's process, while it runs."""
        return [self._process.pid] if self._process is not None and self._process.is_alive() else []

    # --- the pipe ---------------------------------------------------------------------------------
    def _dead(self) -> EngineStopped:
        self._process.join(1)
        self._failure = f"the load engine's process ended (exit code {self._process.exitcode})"
        return EngineStopped(self._failure)

    def _send(self, command: Command) -> None:
        if self._failure:
            raise EngineStopped(self._failure)
        try:
            with self._send_lock:
                self._conn.send(command)
        except (OSError, EOFError):
            raise self._dead() from None

    def _ask(self, question: type[Question], *args: Any, timeout: float = REPLY_TIMEOUT_S) -> Any:
        with self._ask_lock:
            self._seq += 1
            seq = self._seq
            self._send(question(seq, *args))
            deadline = time.monotonic() + timeout
            try:
                while self._conn.poll(max(0.0, deadline - time.monotonic())):
                    got, value = self._conn.recv()
                    if got == seq:
                        return value
            except (OSError, EOFError):
                raise self._dead() from None
            if not self._process.is_alive():
                raise self._dead()
            raise EngineStopped(f"the load engine has not answered for {timeout:g} s")

    # --- the Engine contract ----------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The engine's state. Once its process has died, or while it does not answer, the last state seen,
        saying why."""
        held = self._last.rows_ns if self._last is not None else 0
        try:
            snap = self._ask(GetSnapshot, held)
            if isinstance(snap, SameRows):
                snap = dataclasses.replace(snap.snapshot, streams=self._last.streams)
        except EngineStopped as exc:
            if self._last is None:
                raise
            if self._failure:
                self._running = False
                return dataclasses.replace(self._last, running=False, streams=(), waiting=0, streaming=0,
                                           aggregate_tps=0.0, mean_stream_tps=None, engine_error=str(exc))
            return dataclasses.replace(self._last, engine_error=str(exc))
        self._last = snap
        self._running = snap.running
        return snap

    def status(self, wait_s: float = 0.0) -> PhaseStatus:
        """The phase's progress; a dead or silent engine's says why (engine_error). `wait_s`: asked after a short
        wait (the child is asked again, not told: its pipe answers one question at a time)."""
        if wait_s > 0:
            time.sleep(min(wait_s, ASK_AGAIN_S))
        try:
            return self._ask(GetStatus)
        except EngineStopped as exc:
            return PhaseStatus(phase=-1, done=False, completed=0, engine_error=str(exc))

    def update(self, **changes: Any) -> LoadSettings:
        return self._change(changes, new_phase=False)

    def begin(self, **changes: Any) -> int:
        self._change(changes, new_phase=True)
        return self._version

    def _change(self, changes: dict[str, Any], new_phase: bool) -> LoadSettings:
        new = dataclasses.replace(self._settings, **changes).validated()  # a bad value raises here
        self._settings = new
        self._version += 1
        with contextlib.suppress(EngineStopped):  # steering a dead engine does nothing: the snapshot says why
            self._send(Update(changes, new_phase))
        return new

    def warm(self, connections: int) -> None:
        with contextlib.suppress(EngineStopped):  # a dead engine says so in its status
            self._ask(Warm, connections, timeout=WARM_TIMEOUT_S + REPLY_TIMEOUT_S)

    def set_model(self, model: str) -> None:
        if not model:
            raise ValueError("the model name cannot be empty")
        with contextlib.suppress(EngineStopped):
            self._send(SetModel(model))
        self.target = dataclasses.replace(self.target, model=model)

    def pause(self) -> None:
        with contextlib.suppress(EngineStopped):
            self._send(SetRunning(False))
        self._running = False

    def resume(self) -> None:
        with contextlib.suppress(EngineStopped):
            self._send(SetRunning(True))
            self._running = True

    @property
    def running(self) -> bool:
        return self._running

    @property
    def workers(self) -> int:
        return 1

    @property
    def settings(self) -> LoadSettings:
        return self._settings

    @property
    def settings_version(self) -> int:
        return self._version

    @property
    def records(self) -> list[RequestRecord]:
        """The finished requests kept (fetched from the engine process; for export and tests)."""
        if self._alive():
            with contextlib.suppress(EngineStopped):
                self._records = self._ask(GetRecords)
        return self._records

    def new_records(self) -> list[RequestRecord]:
        """The requests finished since the last call (after the process stopped: those it had not handed out)."""
        if self._alive():
            with contextlib.suppress(EngineStopped):
                return self._ask(TakeNewRecords)
        untaken, self._untaken = self._untaken, []
        return untaken

    def _alive(self) -> bool:
        return self._process is not None and self._process.is_alive() and not self._failure

    def stop(self, timeout: float = 2.0) -> None:
        """Stop every stream and the process, within `timeout` seconds; safe to call twice."""
        process = self._process
        if process is None or not process.is_alive():
            return
        deadline = time.monotonic() + timeout
        try:
            with self._send_lock:
                self._conn.send(Stop())
            with self._ask_lock:
                while self._conn.poll(max(0.0, deadline - time.monotonic())):
                    got, value = self._conn.recv()
                    if got == FINAL:
                        self._records, self._untaken = value
                        break
        except (OSError, EOFError):
            pass
        process.join(max(0.1, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(1)
        self._conn.close()
