"""`tokentop bench --ray ADDRESS`: the bench's workers as Ray actors spread over a cluster's nodes.

Each actor runs the same engine as a local worker (`LoadEngine`, worker k of n: its share of the streams), on
a node of its own where the cluster has them (a placement group of one CPU a worker, spread). A phase starts
at one agreed instant: the driver names it on its wall clock and each node turns that into its own monotonic
clock, so the spread of the nodes' starts is as good as their clocks' agreement (NTP); each node's clock
times only its own requests. Records come back to the driver, which writes the one --out, stamped with the
node that sent them. A worker whose node dies loses what it had in flight: those requests are recorded as
errors of kind "lost", named for the node, and the run goes on with the others.
"""

from __future__ import annotations

import dataclasses
import socket
from array import array
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tui.load.client import Target
from tui.load.pool import merge, merge_statuses
from tui.load.records import JsonlWriter, RequestRecord
from tui.load.settings import LoadSettings
from tui.load.snapshot import PhaseStatus, Snapshot

if TYPE_CHECKING:
    from tui.load.trace import Trace

CONNECT_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 60.0  # for the placement group and the actors to start
IN_FLIGHT_EVERY_S = 0.5  # how often the driver learns what each worker has in flight (to record it if lost)


class RayError(Exception):
    """Ray is missing, the cluster cannot be reached, or it has too few CPUs: one line for the user."""


def connect(address: str, workers: int | None) -> int:
    """Join the cluster at `address` ("auto", "ray://host:10001", "host:6379"); the workers to run there:
    `workers`, or one a node. RayError when it cannot be joined or has too few CPUs."""
    try:
        import ray
    except ImportError:
        raise RayError("--ray needs Ray: pip install 'tokentop[ray]'") from None
    if address != "auto":
        _reachable(address)
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False, ignore_reinit_error=True)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, ValueError, RuntimeError: all one line
        raise RayError(f"--ray {address}: cannot join the cluster ({type(exc).__name__}: {exc})"[:300]) from None
    _messages_to_stderr()
    cpus = ray.available_resources().get("CPU", 0.0)
    workers = workers or sum(1 for node in ray.nodes() if node.get("Alive"))
    if cpus < workers:
        ray.shutdown()
        raise RayError(f"--ray {address}: the cluster has {cpus:g} CPUs free, and --workers {workers} needs "
                       f"one each")
    return workers


def _reachable(address: str) -> None:
    """A cluster address nothing answers at is said at once: Ray itself would wait for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise RayError(f"--ray takes auto, HOST:PORT or ray://HOST:PORT, not {address[:80]!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise RayError(f"--ray {address}: cannot join the cluster ({exc.strerror or exc})") from None


def _messages_to_stderr() -> None:
    """Ray prints the cluster's messages (a raylet that died, say) on the driver's stdout, where the bench's
    table and its JSON go: they go to stderr instead. (A private function of Ray's; left alone if it moves.)"""
    try:
        from ray._private import worker
    except ImportError:
        return
    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "tokentop", False):
        return

    def to_stderr(data: dict, ignore_prefix: bool) -> None:
        original({**data, "is_err": True}, ignore_prefix)

    to_stderr.tokentop = True
    worker.print_to_stdstream = to_stderr


def start_spread_ms(records: Sequence[RequestRecord]) -> float | None:
    """How far apart the nodes' first sends were (their wall clocks): the agreed start as each node kept it."""
    first: dict[str, float] = {}
    for record in records:
        if record.node is not None and record.sent_at and record.error_kind != "lost":
            first[record.node] = min(first.get(record.node, record.sent_at), record.sent_at)
    return (max(first.values()) - min(first.values())) * 1000 if len(first) > 1 else None


def _worker_class():
    import ray

    @ray.remote
    class RayWorker:
        """One engine on one node; its records carry the node's name."""

        def __init__(self, target: Target, settings: LoadSettings, options: dict[str, Any]) -> None:
            from tui.load.engine import LoadEngine
            from tui.load.gc_tuning import tune_process

            tune_process()
            node_id = ray.get_runtime_context().get_node_id()
            self.node = f"{socket.gethostname()}/{node_id[:8]}"  # two nodes may share a host
            self.engine = LoadEngine(target, settings, **options)

        def name(self) -> str:
            return self.node

        def start(self, running: bool) -> None:
            self.engine.start(running)

        def stop(self, timeout: float) -> list[RequestRecord]:
            self.engine.stop(timeout)
            return self._named(self.engine.new_records())

        def update(self, changes: dict[str, Any]) -> None:
            self.engine.update(**changes)

        def begin(self, changes: dict[str, Any], start_wall_ns: int | None) -> int:
            if start_wall_ns is not None:  # the agreed instant, on this node's own monotonic clock
                changes = changes | {"start_ns": time.perf_counter_ns() + (start_wall_ns - time.time_ns())}
            return self.engine.begin(**changes)

        def warm(self, connections: int) -> None:
            self.engine.warm(connections)

        def status(self, wait_s: float) -> PhaseStatus:
            return self.engine.status(wait_s)

        def new_records(self) -> list[RequestRecord]:
            return self._named(self.engine.new_records())

        def in_flight(self) -> list[RequestRecord]:
            """What it has in flight, without the chunks so far: enough to record each as lost."""
            return self._named([dataclasses.replace(r, chunk_ns=array("q"), chunk_tokens=array("q"), timings=None,
                                                    answer_parts=None) for r in self.engine.in_flight()])

        def snapshot(self) -> Snapshot:
            return self.engine.snapshot()

        def call(self, method: str, *args: Any) -> None:  # set_model, pause, resume
            getattr(self.engine, method)(*args)

        def _named(self, records: list[RequestRecord]) -> list[RequestRecord]:
            for record in records:
                record.node = self.node
            return records

    return RayWorker


class RayPool:
    """An `Engine` (tui/load/contract.py) made of `workers` Ray actors."""

    start_ahead_ns = 250_000_000  # a phase is announced this long before it starts: a call to every node first

    def __init__(self, target: Target, settings: LoadSettings | None = None, *, workers: int,
                 out_path: str | None = None, read_timeout: float = 600.0, keep_records: int | None = None,
                 prompts: Sequence[str] | None = None, conversations: Sequence[tuple[str, ...]] | None = None,
                 trace: Trace | None = None) -> None:
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        self.target = target
        self._settings = (settings or LoadSettings()).validated()
        self._workers = workers
        self._version = 0
        self._writer = JsonlWriter(out_path, append=True) if out_path else None
        self._lock = threading.Lock()
        self._held: list[RequestRecord] = []  # lost or cut short by the stop, not yet handed out
        self._in_flight: dict[int, list[RequestRecord]] = {}
        self._in_flight_at = 0.0
        self._pg = placement_group([{"CPU": 1}] * workers, strategy="SPREAD")
        try:
            ray.get(self._pg.ready(), timeout=READY_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - GetTimeoutError: the CPUs went elsewhere meanwhile
            ray.util.remove_placement_group(self._pg)
            raise RayError(f"--ray: {workers} CPUs could not be reserved in {READY_TIMEOUT_S:g} s ({exc})") from None
        worker_class = _worker_class()
        self._actors = {
            k: worker_class.options(num_cpus=1, scheduling_strategy=PlacementGroupSchedulingStrategy(
                self._pg, placement_group_bundle_index=k)).remote(
                target, self._settings, dict(read_timeout=read_timeout, keep_records=keep_records, worker=k,
                                             workers=workers, prompts=prompts, conversations=conversations,
                                             trace=trace))
            for k in range(workers)}
        self.nodes = dict(zip(self._actors, ray.get([a.name.remote() for a in self._actors.values()],
                                                    timeout=READY_TIMEOUT_S)))
        self.notes: list[str] = []  # what went wrong meanwhile (a node that died), for the bench to say

    # --- calling every live actor ---------------------------------------------------------------
    def _all(self, method: str, *args: Any) -> dict[int, Any]:
        """Call `method` on every live actor at once; a dead one is recorded as lost and left out."""
        import ray

        gone = tuple(e for e in (getattr(ray.exceptions, name, None) for name in
                                 ("RayActorError", "ActorDiedError", "ActorUnavailableError")) if e is not None)
        refs = {k: getattr(actor, method).remote(*args) for k, actor in list(self._actors.items())}
        answers = {}
        for k, ref in refs.items():
            try:
                answers[k] = ray.get(ref)
            except gone as exc:
                self._lose(k, exc)
        return answers

    def _lose(self, k: int, exc: Exception) -> None:
        node = self.nodes.get(k, f"worker {k}")
        self._actors.pop(k, None)
        lost = []
        for record in self._in_flight.pop(k, []):
            record.error_kind, record.end_ns = "lost", record.send_ns
            record.error = f"its node {node} died mid-request ({type(exc).__name__})"
            lost.append(record)
        with self._lock:
            self._held += lost
        self.notes.append(f"node {node} died: its {len(lost)} request(s) in flight are recorded as lost")

    def _write(self, records: list[RequestRecord]) -> list[RequestRecord]:
        if self._writer is not None:
            for record in records:
                self._writer.write(record)
        return records

    # --- the Engine contract --------------------------------------------------------------------
    def start(self, running: bool = True) -> None:
        self._all("start", running)

    def stop(self, timeout: float = 2.0) -> None:
        if not self._actors and self._writer is None:
            return
        leftover = [r for records in self._all("stop", timeout).values() for r in records]
        with self._lock:
            self._held += leftover
        for actor in self._actors.values():
            import ray

            ray.kill(actor)
        self._actors.clear()

    def close(self) -> None:
        import ray

        self.stop()
        ray.util.remove_placement_group(self._pg)
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def update(self, **changes: Any) -> LoadSettings:
        self._settings = dataclasses.replace(self._settings, **changes).validated()
        self._version += 1
        self._all("update", changes)
        return self._settings

    def begin(self, **changes: Any) -> int:
        self._settings = dataclasses.replace(self._settings, **changes).validated()
        self._version += 1
        start_ns = changes.pop("start_ns", None)
        start_wall_ns = None if start_ns is None else time.time_ns() + (start_ns - time.perf_counter_ns())
        phases = self._all("begin", changes, start_wall_ns)
        return min(phases.values(), default=self._version)

    def warm(self, connections: int) -> None:
        self._all("warm", connections)

    def status(self, wait_s: float = 0.0) -> PhaseStatus:
        if time.monotonic() - self._in_flight_at >= IN_FLIGHT_EVERY_S:
            self._in_flight_at = time.monotonic()
            self._in_flight = self._all("in_flight")
        if wait_s:
            time.sleep(min(wait_s, 0.05))  # the actors answer at once: the follower asks again soon
        statuses = list(self._all("status", 0.0).values())
        if not statuses:
            return PhaseStatus(phase=self._version, done=True, completed=0,
                               engine_error="every Ray worker is gone: " + "; ".join(self.notes))
        return merge_statuses(statuses)

    def new_records(self) -> list[RequestRecord]:
        merged = []
        for k, records in self._all("new_records").items():
            ended = {(r.stream, r.send_ns) for r in records}  # no longer in flight: never lost as well
            self._in_flight[k] = [r for r in self._in_flight.get(k, []) if (r.stream, r.send_ns) not in ended]
            merged += records
        with self._lock:
            merged, self._held = merged + self._held, []
        return self._write(merged)  # each node's clock orders only its own records: kept as they came

    def set_model(self, model: str) -> None:
        self.target = dataclasses.replace(self.target, model=model)
        self._all("call", "set_model", model)

    def pause(self) -> None:
        self._all("call", "pause")

    def resume(self) -> None:
        self._all("call", "resume")

    @property
    def running(self) -> bool:
        return bool(self._actors)

    @property
    def settings(self) -> LoadSettings:
        return self._settings

    @property
    def settings_version(self) -> int:
        return self._version

    @property
    def workers(self) -> int:
        return self._workers

    def snapshot(self) -> Snapshot:
        snaps = list(self._all("snapshot").values())
        return merge(snaps, self._settings) if snaps else Snapshot(
            taken_ns=time.perf_counter_ns(), running=False, settings=self._settings, streams=(), waiting=0,
            streaming=0, completed=0, errors=0, aggregate_tps=0.0, mean_stream_tps=None, ttft_p50_s=None)

    @property
    def records(self) -> list[RequestRecord]:
        return []  # the bench collects new_records; nothing is kept here
