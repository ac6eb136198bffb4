"""The load engine in a process of its own, steered over a pipe: same interface as `LoadEngine`.

Why: in the app's process the UI thread holds the GIL while it composes a frame, and the engine
thread's chunk timestamps wait for it (measured: +10 ms TTFT at p50 during request bursts, +50–100
ms at p99). In its own process the engine has an interpreter to itself; the UI asks for a snapshot a
few times a second (one pipe round trip, well under a millisecond) and never touches its timing.
Finished requests go to `--out` from the engine process, as they end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import sys
import threading
from collections import deque
from typing import Any

from tui.load.client import Target
from tui.load.engine import LoadEngine, LoadSettings, Snapshot
from tui.load.records import JsonlWriter, RequestRecord


def _serve(conn, target: Target, settings: LoadSettings, out_path: str | None, read_timeout: float,
           keep_records: int | None) -> None:
    """The engine process: run (method, args, kwargs) from the pipe until "stop" or the pipe closes.

    A method name that is an attribute, not a callable (records), returns its value.
    """
    writer = JsonlWriter(out_path) if out_path else None
    engine = LoadEngine(target, settings, read_timeout=read_timeout, on_record=writer.write if writer else None,
                        keep_records=keep_records)
    engine.start(running=False)
    try:
        while True:
            try:
                name, args, kwargs = conn.recv()
            except EOFError:  # the app is gone
                break
            if name == "stop":
                break
            try:
                value = getattr(engine, name)
                if callable(value):
                    value = value(*args, **kwargs)
                elif isinstance(value, (list, deque)):
                    value = list(value)  # a copy: the engine's thread appends to the original
                reply = ("ok", value)
            except Exception as exc:  # a bad value: the caller raises it again
                reply = ("error", exc)
            conn.send(reply)
    finally:
        engine.stop()
        if writer is not None:
            writer.close()
        records = list(engine.records)  # final: a request may have ended after the app last asked
        try:
            conn.send(("ok", records))
            conn.close()
        except OSError:
            pass


class EngineStopped(RuntimeError):
    """The engine's process is gone (killed, or crashed): no more requests will run."""


class EngineProcess:
    """`LoadEngine`'s interface, with the engine in a child process (spawned: no inherited threads)."""

    def __init__(self, target: Target, settings: LoadSettings | None = None, *, out_path: str | None = None,
                 read_timeout: float = 600.0, keep_records: int | None = None) -> None:
        self.target = target
        self._settings = (settings or LoadSettings()).validated()
        self._out_path, self._read_timeout, self._keep_records = out_path, read_timeout, keep_records
        self._conn = None
        self._process: multiprocessing.Process | None = None
        self._lock = threading.Lock()  # one request/reply on the pipe at a time
        self._running = False
        self._records: list[RequestRecord] = []
        self._last: Snapshot | None = None
        self._failure: str | None = None  # set when the engine's process is found dead

    def start(self, running: bool = True) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, name="tokentop-engine", daemon=True,
                                        args=(child, self.target, self._settings, self._out_path, self._read_timeout,
                                              self._keep_records))
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

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self._failure:
            raise EngineStopped(self._failure)
        try:
            with self._lock:
                self._conn.send((name, args, kwargs))
                status, result = self._conn.recv()
        except (OSError, EOFError):
            self._process.join(1)
            self._failure = f"the load engine's process ended (exit code {self._process.exitcode})"
            raise EngineStopped(self._failure) from None
        if status == "error":
            raise result
        return result

    # --- the LoadEngine interface ---------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The engine's state; once its process has died, the last state seen, stopped, saying why."""
        try:
            snap = self._last = self._call("snapshot")
        except EngineStopped as exc:
            if self._last is None:
                raise
            self._running = False
            return dataclasses.replace(self._last, running=False, streams=(), waiting=0, streaming=0,
                                       aggregate_tps=0.0, mean_stream_tps=None, engine_error=str(exc))
        self._running, self._settings = snap.running, snap.settings
        return snap

    # Steering a dead engine does nothing: the snapshot already says it has stopped.
    def update(self, **changes: Any) -> LoadSettings:
        with contextlib.suppress(EngineStopped):
            self._settings = self._call("update", **changes)
        return self._settings

    def set_model(self, model: str) -> None:
        with contextlib.suppress(EngineStopped):
            self._call("set_model", model)
            self.target = Target(self.target.url, self.target.api, model, self.target.api_key)

    def pause(self) -> None:
        with contextlib.suppress(EngineStopped):
            self._call("pause")
        self._running = False

    def resume(self) -> None:
        with contextlib.suppress(EngineStopped):
            self._call("resume")
            self._running = True

    @property
    def running(self) -> bool:
        return self._running

    @property
    def settings(self) -> LoadSettings:
        return self._settings

    @property
    def records(self) -> list[RequestRecord]:
        """The finished requests kept (fetched from the engine process; for export and tests)."""
        if self._process is not None and self._process.is_alive():
            with contextlib.suppress(EngineStopped):
                self._records = self._call("records")
        return self._records

    def stop(self, timeout: float = 2.0) -> None:
        """Stop every stream and the process, within `timeout` seconds; safe to call twice."""
        process = self._process
        if process is None or not process.is_alive():
            return
        try:
            with self._lock:
                self._conn.send(("stop", (), {}))
                if self._conn.poll(timeout):
                    self._records = self._conn.recv()[1]
        except (OSError, EOFError):
            pass
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join(1)
        self._conn.close()
