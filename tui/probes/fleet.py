"""The fleet as a team's Prometheus already sees it: every GPU of every host (DCGM's exporter or
nvitop-exporter), every host's CPU and RAM (node_exporter), every LLM server replica's queue (their
own /metrics), and the scrape targets that are down.

`FleetProbe.read()` sends one batch of instant queries and never raises: what cannot be read becomes a
note (which exporter seems absent) or `FleetSample.error`, whatever broke. Every reading keeps its age, because
DCGM's exporter collects every 30 s by default and a stale value must not pass for a live one. Every figure is
checked here, before any pane draws it: NaN, ±Inf and what no GPU, host or server can read (1e308 W, a cache
4,200 times full) become None (unknown); a little past a bound (a rate's overshoot) is clamped to it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tui.probes.prometheus import PrometheusClient, PrometheusError, ScrapeTarget, Series, credentials_from_env
from tui.probes.server import QUEUES
from tui.untrusted import bounded, one_line

MIB = 2**20
# (field, DCGM exporter name, nvitop-exporter name, the least and the most a GPU can read)
GPU_FIELDS = (
    ("util", "DCGM_FI_DEV_GPU_UTIL", "gpu_utilization_Percentage", 0, 100),
    ("mem_used", "DCGM_FI_DEV_FB_USED", "gpu_memory_used_MiB", 0, 2**24),  # MiB: 16 TiB
    ("mem_free", "DCGM_FI_DEV_FB_FREE", "gpu_memory_free_MiB", 0, 2**24),
    ("power", "DCGM_FI_DEV_POWER_USAGE", "gpu_power_usage_W", 0, 10_000),
    ("temp", "DCGM_FI_DEV_GPU_TEMP", "gpu_temperature_C", -50, 200),
    ("sm_clock", "DCGM_FI_DEV_SM_CLOCK", "gpu_clock_sm_MHz", 0, 10_000),
)
BOUNDS = {field: (low, high) for field, _, _, low, high in GPU_FIELDS}
MAX_COUNT = 1e9  # requests running or waiting, tokens a second: more is no real replica
MAX_AGE_S = 7 * 86400.0  # older (or with no time that is one) is shown as "over a week"
# irate, not rate: rate() divides by the whole window, so a series younger than it reads low (at 1 s scrapes
# a half-busy core reads 98 % busy for its first seconds); irate is the last interval's, as top shows it.
CPU_BUSY = '1 - sum without (mode) (irate(node_cpu_seconds_total{mode=~"idle|iowait|steal"}[1m]))'
RAM_USED = "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes"
# generated tokens per second, server-reported, by server kind (TGI exports no such counter or gauge)
TOKENS_PER_S = {
    "vllm": "irate(vllm:generation_tokens_total[1m])",
    "sglang": "sglang:gen_throughput",
    "llama.cpp": "irate(llamacpp:tokens_predicted_total[1m])",
}


@dataclass(frozen=True)
class FleetGpu:
    host: str
    index: str
    name: str
    util: float | None  # %
    mem_used: float | None  # bytes
    mem_total: float | None  # bytes
    power: float | None  # W
    temp: float | None  # °C
    sm_clock: float | None  # MHz
    age_s: float  # the oldest of its readings
    source: str  # "dcgm" or "nvitop"


@dataclass(frozen=True)
class FleetHost:
    host: str
    cores: tuple[float, ...]  # busy share of each core, 0–1
    ram_used: float | None  # share, 0–1

    @property
    def cpu(self) -> float | None:
        return sum(self.cores) / len(self.cores) if self.cores else None


# The server's TTFT histogram by kind (llama.cpp exports none), read over the last minute per replica.
SERVER_TTFT = {"vllm": "vllm:time_to_first_token_seconds_bucket", "sglang": "sglang:time_to_first_token_seconds_bucket"}
SERVER_QUANTILE = "histogram_quantile({q}, sum by (instance, model_name, le) (rate({name}[1m])))"
# tokentop's own series (--metrics-port), every tokentop that loads one target summed: one view of many boxes.
CLIENT_QUANTILE = "histogram_quantile({q}, sum by (target, le) (rate(tokentop_ttft_seconds_bucket[1m])))"
CLIENT_IN_FLIGHT = "sum by (target) (tokentop_in_flight)"
CLIENT_SOURCES = "count by (target) (tokentop_in_flight)"
MAX_LATENCY_S = 86_400.0


@dataclass(frozen=True)
class ClientSide:
    """What tokentop processes loading one server saw over the last minute (client-measured)."""
    target: str  # the server's URL, as each tokentop labels it
    ttft_p50_s: float | None
    ttft_p99_s: float | None
    in_flight: float | None
    sources: int  # tokentop processes that report it

    @property
    def instance(self) -> str:
        """host:port of the target, as Prometheus names a server it scrapes at that address."""
        rest = self.target.split("://", 1)[-1]
        return rest.split("/", 1)[0].rsplit("@", 1)[-1]


@dataclass(frozen=True)
class Replica:
    instance: str
    job: str
    kind: str
    model: str
    running: float | None
    waiting: float | None
    cache: float | None  # KV cache use, 0–1
    tokens_per_s: float | None = None  # generated, as the server counts them
    ttft_p50_s: float | None = None  # the server's own TTFT over the last minute (vLLM, SGLang)
    ttft_p99_s: float | None = None


@dataclass(frozen=True)
class FleetSample:
    gpus: tuple[FleetGpu, ...] = ()
    hosts: tuple[FleetHost, ...] = ()
    replicas: tuple[Replica, ...] = ()
    clients: tuple[ClientSide, ...] = ()  # tokentop's own series, when Prometheus scrapes them
    down: tuple[ScrapeTarget, ...] = ()
    notes: tuple[str, ...] = ()  # what seems absent or was cut
    error: str | None = None  # Prometheus itself could not be read

    @property
    def power_w(self) -> float | None:
        watts = [g.power for g in self.gpus if g.power is not None]
        return sum(watts) if watts else None


def host_of(labels: dict[str, str]) -> str:
    """DCGM's `Hostname` (being renamed `hostname` upstream), nvitop's `hostname`, else the scrape `instance`."""
    return labels.get("Hostname") or labels.get("hostname") or labels.get("instance") or "?"


class FleetProbe:
    def __init__(self, client: PrometheusClient) -> None:
        self.client = client
        self._gpu_source = "dcgm"  # the GPU exporter that answered last; DCGM's first until one has

    @classmethod
    def for_url(cls, url: str) -> FleetProbe:
        """The probe of the Prometheus at `url`, with the credentials the environment gives; unreadable ones
        raise PrometheusError (one line)."""
        token, basic = credentials_from_env()
        return cls(PrometheusClient(url, token, basic))

    def history(self, seconds: float = 600.0, step: float = 5.0) -> dict[tuple[str, str], list[float | None]]:
        """Each GPU's utilisation (%) over the last `seconds`, from Prometheus's own memory: the chart starts
        full instead of empty; None where it had none. Empty when it cannot be read (the live readings say why)."""
        end = time.time()
        for column in (1, 2):  # DCGM's names, else nvitop-exporter's
            try:
                found = self.client.query_range(GPU_FIELDS[0][column], end - seconds, end, step)
            except Exception:  # noqa: BLE001 - whatever broke, the live readings say it
                return {}
            if found:
                return {_gpu_key(labels): [bounded(v, *BOUNDS["util"]) for v in values] for labels, values in found}
        return {}

    def read(self) -> FleetSample:
        try:
            return self._read()
        except PrometheusError as exc:
            return FleetSample(error=str(exc))
        except Exception as exc:  # what Prometheus sent broke a reading: said in the pane, never a crash
            return FleetSample(error=one_line(self.client.redact(f"fleet reading failed: {type(exc).__name__}: {exc}")))

    def _read(self) -> FleetSample:
        now, notes = time.time(), []
        gpus = self._gpus(now, notes)
        hosts = self._hosts(notes)
        replicas = self._replicas(notes)
        clients = self._clients(notes)
        down = tuple(t for t in self.client.targets() if t.health == "down")
        return FleetSample(tuple(gpus), tuple(hosts), tuple(replicas), tuple(clients), down, tuple(notes))

    def _clients(self, notes: list[str]) -> list[ClientSide]:
        def by_target(expr: str, high: float) -> dict[str, float | None]:
            return {s.labels.get("target", "?"): bounded(s.value, 0.0, high) for s in self._query(expr, notes)}

        sources = by_target(CLIENT_SOURCES, MAX_COUNT)
        if not sources:
            return []
        p50 = by_target(CLIENT_QUANTILE.format(q=0.5), MAX_LATENCY_S)
        p99 = by_target(CLIENT_QUANTILE.format(q=0.99), MAX_LATENCY_S)
        in_flight = by_target(CLIENT_IN_FLIGHT, MAX_COUNT)
        return [ClientSide(target, p50.get(target), p99.get(target), in_flight.get(target), int(n or 0))
                for target, n in sorted(sources.items())]

    def _query(self, expr: str, notes: list[str]) -> tuple[Series, ...]:
        answer = self.client.query(expr)
        if answer.truncated:
            notes.append(f"{answer.truncated} more series of {expr.split('{')[0][:40]} left off")
        return answer.series

    def _gpus(self, now: float, notes: list[str]) -> list[FleetGpu]:
        sources = sorted((("dcgm", 1), ("nvitop", 2)), key=lambda source: source[0] != self._gpu_source)
        for source, column in sources:  # the exporter that answered last time first: its queries only
            readings: dict[tuple[str, str], dict[str, Series]] = {}
            names: dict[tuple[str, str], str] = {}
            for field in GPU_FIELDS:
                for series in self._query(field[column], notes):
                    labels = series.labels
                    key = _gpu_key(labels)
                    readings.setdefault(key, {})[field[0]] = series
                    names[key] = labels.get("modelName") or labels.get("devicename") or names.get(key, "GPU")
            if readings:
                self._gpu_source = source
                return [_gpu(key, names[key], fields, now, source) for key, fields in sorted(readings.items())]
        notes.append("no GPU metrics: neither DCGM's exporter (DCGM_FI_DEV_*) nor nvitop-exporter (gpu_*) is scraped")
        return []

    def _hosts(self, notes: list[str]) -> list[FleetHost]:
        cores: dict[str, list[tuple[int, str, float]]] = {}
        for series in self._query(CPU_BUSY, notes):
            busy = bounded(series.value, 0.0, 1.0)
            if busy is not None:
                cpu = series.labels.get("cpu", "0")
                cores.setdefault(host_of(series.labels), []).append((_core_number(cpu), cpu, busy))
        ram = {host_of(s.labels): bounded(s.value, 0.0, 1.0) for s in self._query(RAM_USED, notes)}
        if not cores and not ram:
            notes.append("no host metrics: node_exporter (node_cpu_seconds_total) is not scraped")
        return [FleetHost(host, tuple(v for *_, v in sorted(cores.get(host, []))), ram.get(host))
                for host in sorted(set(cores) | set(ram))]

    def _replicas(self, notes: list[str]) -> list[Replica]:
        replicas = []
        for kind, names in QUEUES.items():
            running = {_key(s): s for s in self._query(names.running, notes)}
            waiting = {_key(s): s for s in self._query(names.waiting, notes)}
            cache: dict[tuple[str, str], Series] = {}
            for name in names.cache:  # the current name, then an older one
                cache = {_key(s): s for s in self._query(name, notes)}
                if cache:
                    break
            speed = {_key(s): s for s in self._query(TOKENS_PER_S[kind], notes)} if kind in TOKENS_PER_S else {}
            ttft = {q: {_key(s): s for s in self._query(SERVER_QUANTILE.format(q=q, name=SERVER_TTFT[kind]), notes)}
                    for q in (0.5, 0.99)} if kind in SERVER_TTFT else {0.5: {}, 0.99: {}}
            for key in sorted(set(running) | set(waiting)):
                labels = (running.get(key) or waiting[key]).labels
                if labels.get("job", "").lower().find("router") >= 0:
                    continue  # a router re-exporting its replicas' names is not a replica
                replicas.append(Replica(instance=key[0], job=labels.get("job", ""), kind=kind, model=key[1],
                                        running=_value(running.get(key), MAX_COUNT),
                                        waiting=_value(waiting.get(key), MAX_COUNT),
                                        cache=_value(cache.get(key), 1.0),
                                        tokens_per_s=_value(speed.get(key), MAX_COUNT),
                                        ttft_p50_s=_value(ttft[0.5].get(key), MAX_LATENCY_S),
                                        ttft_p99_s=_value(ttft[0.99].get(key), MAX_LATENCY_S)))
        if not replicas:
            notes.append("no LLM server metrics (vLLM, SGLang, TGI, llama.cpp) are scraped")
        return replicas


def _key(series: Series) -> tuple[str, str]:
    return series.labels.get("instance", "?"), series.labels.get("model_name", "")


def _value(series: Series | None, high: float) -> float | None:
    return bounded(series.value, 0.0, high) if series is not None else None


def _core_number(label: str) -> int:
    """node_exporter's `cpu` label as a number to sort by; a label that is none (`"²"` is a digit to
    str.isdigit, and int() refuses it) sorts last."""
    return int(label) if label.isascii() and label.isdigit() and len(label) < 10 else 1 << 31


def _gpu_key(labels: dict[str, str]) -> tuple[str, str]:
    """(host, GPU index): the same for a live reading and its history, so the two join."""
    return host_of(labels), labels.get("gpu") or labels.get("index") or "?"


def _gpu(key: tuple[str, str], name: str, fields: dict[str, Series], now: float, source: str) -> FleetGpu:
    def value(field: str, scale: float = 1.0) -> float | None:
        series = fields.get(field)
        number = bounded(series.value, *BOUNDS[field]) if series is not None else None
        return number * scale if number is not None else None

    used, free = value("mem_used", MIB), value("mem_free", MIB)
    stamps = [s.at for s in fields.values() if 0 < s.at <= now + 60]  # a time in the future is a clock's skew
    age = now - min(stamps) if stamps else MAX_AGE_S
    return FleetGpu(host=key[0], index=key[1], name=name, util=value("util"), mem_used=used,
                    mem_total=used + free if used is not None and free is not None else None, power=value("power"),
                    temp=value("temp"), sm_clock=value("sm_clock"), age_s=min(MAX_AGE_S, max(0.0, age)), source=source)
