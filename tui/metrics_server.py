"""`--metrics-port`: the client's side as a Prometheus target (the `prometheus-client` library's exposition).

Every figure is client-measured: what users of the server get, network and queue included. Each scrape reads
the engine's snapshot then (one for the whole process: a pool's workers are merged in it); when the engine is
gone (a bench lingering after its last cell) the last one read is served. The bench counts its latencies per
cell from the records it collects, under a `cell` label; the app counts them from the engine's running totals.
Labels are few and bounded: `target` (the URL, password masked), `model`, `cell`, `outcome`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from tui.load.client import Target
from tui.load.client_tally import ClientTally
from tui.load.records import RequestRecord
from tui.load.snapshot import Snapshot
from tui.untrusted import one_line

HISTOGRAMS = {  # tally name: (series, help)
    "ttft": ("tokentop_ttft_seconds", "Time to first token as the client saw it (send to first content chunk)."),
    "itl": ("tokentop_itl_seconds", "Inter-token latency as the client saw it (each chunk gap shared by its tokens)."),
    "tpot": ("tokentop_tpot_seconds", "Time per output token after the first, per request ((e2e - TTFT) / (n - 1))."),
    "e2e": ("tokentop_e2e_seconds", "Request latency as the client saw it (send to last byte)."),
}


class MetricsError(Exception):
    """The port cannot be served: one line for the user."""


class ClientMetrics:
    """A Prometheus collector of one tokentop process's client-side figures."""

    def __init__(self) -> None:
        self._read: Callable[[], Snapshot] | None = None
        self._lock = threading.Lock()
        self._last: Snapshot | None = None
        self._cells: dict[str, ClientTally] | None = None  # the bench: tallies by cell, from its records
        self.target = self.model = ""

    def watch(self, read: Callable[[], Snapshot], target: Target) -> None:
        """Read the engine's snapshots with `read` from now on; label the series with the server and the model
        (the URL's password and the API key masked, should either be in them)."""
        redact = target.redactor()
        self._read, self.target, self.model = read, redact(target.shown_url), redact(target.model) or ""

    def observe(self, cell: str, records: Iterable[RequestRecord]) -> None:
        """The bench: these finished requests belong to `cell` (its series only grow while it runs)."""
        with self._lock:
            cells = self._cells if self._cells is not None else {}
            tally = cells.setdefault(cell, ClientTally())
            for record in records:
                tally.observe(record)
            self._cells = cells

    def _snapshot(self) -> Snapshot | None:
        try:
            snap = self._read() if self._read is not None else None
        except Exception:  # noqa: BLE001 - a stopped engine: serve the last reading, never fail the scrape
            snap = None
        with self._lock:
            self._last = snap or self._last
            return self._last

    def describe(self) -> list[Metric]:
        return []  # families are made at each scrape (the registry must not call collect() to learn them)

    def collect(self) -> Iterable[Metric]:
        snap = self._snapshot()
        base = {"target": self.target, "model": self.model}
        with self._lock:
            if self._cells is not None:
                tallies = [(base | {"cell": cell}, tally.copy()) for cell, tally in self._cells.items()]
            else:
                tallies = [(base, snap.tally)] if snap is not None and snap.tally is not None else []
        names = list(base) + (["cell"] if self._cells is not None else [])
        yield from _histograms(names, tallies)
        yield from _counters(names, tallies)
        if snap is not None:
            yield from _gauges(base, snap)


def _histograms(names: list[str], tallies: list[tuple[dict, ClientTally]]) -> Iterable[Metric]:
    for key, (series, text) in HISTOGRAMS.items():
        family = HistogramMetricFamily(series, text, labels=names)
        for labels, tally in tallies:
            h = tally.histograms[key]
            family.add_metric([labels[n] for n in names], h.cumulative(), h.total)
        yield family


def _counters(names: list[str], tallies: list[tuple[dict, ClientTally]]) -> Iterable[Metric]:
    requests = CounterMetricFamily("tokentop_requests", "Finished requests by how they ended (ok, cancelled, or "
                                   "the error's kind).", labels=[*names, "outcome"])
    output = CounterMetricFamily("tokentop_output_tokens", "Output tokens received (the server's count when it "
                                 "gives one, else content chunks).", labels=names)
    prompt = CounterMetricFamily("tokentop_prompt_tokens", "Prompt tokens, as the server reported them.",
                                 labels=names)
    for labels, tally in tallies:
        values = [labels[n] for n in names]
        for outcome, n in sorted(tally.outcomes.items()):
            requests.add_metric([*values, outcome], n)
        output.add_metric(values, tally.output_tokens)
        prompt.add_metric(values, tally.prompt_tokens)
    yield from (requests, output, prompt)


def _gauges(base: dict, snap: Snapshot) -> Iterable[Metric]:
    names, values = list(base), list(base.values())
    cost = snap.client_cost
    for series, text, value in (
        ("tokentop_in_flight", "Requests sent and not yet ended.", snap.waiting + snap.streaming),
        ("tokentop_waiting", "Requests sent with no token yet.", snap.waiting),
        ("tokentop_backlog", "Open loop: arrivals due but held back at the client (the in-flight ceiling).",
         snap.held),
        ("tokentop_client_cpu_share", "The busiest engine process's CPU, as a share of one core (near 1: the "
         "client is the bottleneck).", cost.cpu if cost else None),
        ("tokentop_loop_lag_seconds", "The busiest engine loop's lateness, p90 over 2 s (its stamps are that "
         "late).", cost.lag_p90_ms / 1000 if cost and cost.lag_p90_ms is not None else None),
    ):
        if value is not None:
            family = GaugeMetricFamily(series, text, labels=names)
            family.add_metric(values, value)
            yield family


class MetricsServer:
    """The /metrics endpoint in a daemon thread, for as long as the process runs (or until close)."""

    def __init__(self, host: str, port: int) -> None:
        self.metrics = ClientMetrics()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.metrics)
        try:
            self._httpd, _ = start_http_server(port, addr=host, registry=registry)
        except (OSError, OverflowError, ValueError) as exc:  # in use, not allowed (< 1024), no such address
            reason = getattr(exc, "strerror", None) or str(exc)
            raise MetricsError(f"--metrics-port {port} on {one_line(host, 80)}: {one_line(reason, 120)}") from exc
        self.port = self._httpd.server_port
        self.host = host

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
