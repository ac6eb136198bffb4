"""What is measured beside the requests while each cell runs: the server's queue peak (its /metrics), its own
view of the cell (tui/bench/server_side.py: /metrics scraped before and after), GPU power (NVML), with
--prometheus the fleet's GPU power and each replica's queue peak, and tokentop's own cost (loop lag, CPU: is
the client the bottleneck?)."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from tui.bench.server_side import add_server_fields, histogram_fields
from tui.load.selfcost import MIN_SPAN_S, ClientCost
from tui.load.stats import mean
from tui.probes.fleet import FleetProbe, FleetSample
from tui.probes.gpu import GpuProbe
from tui.probes.histograms import Scrape
from tui.probes.inside import InsideProbe
from tui.probes.server import ServerProbe

SETTLE_S = 0.25  # after a round, before the scrape: a server observes its histograms just after the answer ends
Cell = tuple[float, int]  # (load, words): the load is a concurrency, or a rate in an open loop


def load_kind(row: dict[str, Any]) -> str:
    """What a row's load is: "rate" (an open loop, a trace's at its mean), "users" or "concurrency"."""
    return "rate" if "rate" in row else "users" if "users" in row else "concurrency"


def load_of(row: dict[str, Any]) -> float:
    """A row's load: its rate in an open loop, its users, else its concurrency."""
    return row[load_kind(row)]


LOAD_LABELS = {"rate": "rate (requests/s)", "users": "users in conversations", "concurrency": "concurrent streams"}


@dataclass
class Watch:
    """What the server and the GPUs say while each cell runs: the server's queue peak, GPU power."""

    server: ServerProbe | None = None
    gpu: GpuProbe | None = None
    queue_max: dict[Cell, int] = field(default_factory=dict)
    power: dict[Cell, list[float]] = field(default_factory=dict)
    client: dict[Cell, list[ClientCost]] = field(default_factory=dict)
    unsent: dict[Cell, int] = field(default_factory=dict)  # open loop: held back at the deadline, never sent
    fleet: FleetProbe | None = None
    fleet_power: dict[Cell, list[float]] = field(default_factory=dict)
    replica_queue_max: dict[Cell, dict[str, float]] = field(default_factory=dict)
    fleet_error: str | None = None  # the last reason the fleet could not be read
    inside: InsideProbe | None = None  # the server's own histograms and counters, scraped around each cell
    scraped: dict[Cell, list[Scrape | None]] = field(default_factory=dict)  # [before its first round, after its last]
    until: dict[Cell, dict[str, Any]] = field(default_factory=dict)  # --until: the precision each cell reached
    _cell: Cell | None = None  # the cell running now
    _stopped: threading.Event = field(default_factory=threading.Event)
    _wake: threading.Event = field(default_factory=threading.Event)  # a cell began: read now, not in a second
    _fleet_thread: threading.Thread | None = None

    async def scrape(self, cell: Cell, before: bool) -> None:
        """The server's /metrics just before a cell's first round, and after each round (the last one counts)."""
        if self.inside is None:
            return
        if not before:
            await asyncio.sleep(SETTLE_S)
        try:
            scrape = await asyncio.to_thread(self.inside.scrape)
        except RuntimeError:  # no answer: the cell has no server-side figures
            scrape = None
        pair = self.scraped.setdefault(cell, [None, None])
        pair[0 if before else 1] = scrape

    async def cell(self, cell: Cell) -> None:
        server, gpu = self.server, self.gpu
        self._cell = cell
        self._wake.set()
        if self.fleet is not None and self._fleet_thread is None:
            self._fleet_thread = threading.Thread(target=self._fleet, name="tokentop-fleet", daemon=True)
            self._fleet_thread.start()
        try:
            await self._local(cell, server, gpu)
            await asyncio.Event().wait()  # until the round ends and cancels this: the cell is the fleet's till then
        finally:
            self._cell = None

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    def _fleet(self) -> None:
        """The fleet's GPU power and each replica's queue, one batch of queries at a time, for the whole run. In a
        daemon thread of its own, not one per cell: a slow Prometheus must not stretch a cell (nor its reads pile
        up from cell to cell), and a read still going at the end does not hold the exit. A read is the cell's
        only if that cell ran from its start to its end."""
        while not self._stopped.is_set():
            self._wake.clear()
            cell = self._cell
            sample = self.fleet.read()
            self.fleet_error = sample.error
            if cell is not None and cell == self._cell and not self._stopped.is_set():
                self._fleet_reading(cell, sample)
            self._wake.wait(1.0)

    def _fleet_reading(self, cell: Cell, sample: FleetSample) -> None:
        if sample.power_w is not None:
            self.fleet_power.setdefault(cell, []).append(sample.power_w)
        peaks = self.replica_queue_max.setdefault(cell, {})
        for replica in sample.replicas:
            if replica.waiting is not None:
                name = f"{replica.instance} {replica.model}".strip()
                peaks[name] = max(peaks.get(name, 0.0), replica.waiting)

    async def _local(self, cell: Cell, server: ServerProbe | None, gpu: GpuProbe | None) -> None:
        while server or gpu:
            if server:
                sample = await asyncio.to_thread(server.read)
                if sample.waiting is not None:
                    self.queue_max[cell] = max(self.queue_max.get(cell, 0), sample.waiting)
                elif sample.error is None:
                    server = None  # this server reports no queue
            if gpu:
                reading = await asyncio.to_thread(gpu.read)
                watts = [g.power for g in reading.gpus if g.power is not None]
                if watts:
                    self.power.setdefault(cell, []).append(sum(watts))
                else:
                    gpu = None  # no GPU, or it reports no power
            await asyncio.sleep(0.2)

    def add_to(self, row: dict[str, Any]) -> None:
        cell = (load_of(row), row["words"])
        row["server_queue_max"] = self.queue_max.get(cell)
        if "rate" in row:
            row["unsent"] = self.unsent.get(cell, 0)
        watts = mean(self.power.get(cell, []))
        tps = row.get("aggregate_tps")
        row["gpu_power_w"] = watts
        row["j_per_token"] = watts / tps if watts and tps else None
        row["tps_per_watt"] = tps / watts if watts and tps else None
        costs = [c for c in self.client.get(cell, []) if c.span_s >= MIN_SPAN_S]  # shorter says too little
        cpus = [c.cpu for c in costs if c.cpu is not None]
        lags = [c.lag_p90_ms for c in costs if c.lag_p90_ms is not None]
        if self.fleet is not None:
            fleet_watts = mean(self.fleet_power.get(cell, []))
            row["fleet_power_w"] = fleet_watts
            row["fleet_j_per_token"] = fleet_watts / tps if fleet_watts and tps else None
            row["replica_queue_max"] = self.replica_queue_max.get(cell) or None
        row["client_cpu_pct"] = max(cpus) * 100 if cpus else None
        row["client_lag_p90_ms"] = max(lags) if lags else None
        if cell in self.until:
            row["until"] = self.until[cell]
        before, after = self.scraped.get(cell, [None, None])
        add_server_fields(row, histogram_fields(self.inside.kind, before, after) if self.inside else {},
                          row["client_lag_p90_ms"])
        warnings = [c.warning for c in costs if c.warning]
        row["client_warning"] = warnings[0] if warnings else None
