"""What the server says about itself: its kind and version, its slots, its own queue, its loaded models.

Everything here is server-reported. `ServerProbe.read()` is blocking (the app calls it from a thread
worker once a second) and never raises: a failure becomes `ServerSample.error`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx

from tui.http_read import AnswerTooBig, AnswerTooSlow, Reply, fetch
from tui.probes.metrics import parse_prometheus
from tui.untrusted import bounded, count, mask_url, one_line

MAX_LOADED = 16  # models in memory kept from /api/ps; more are counted, not listed
OLLAMA_PARALLEL_NOTE = "OLLAMA_NUM_PARALLEL sets it: default 1, was 4 up to v0.6.5"


@dataclass(frozen=True)
class QueueMetrics:
    """Prometheus names of a server kind's running / waiting gauges, and its cache use (0–1)."""

    running: str
    waiting: str
    cache: tuple[str, ...] = ()  # first present wins


QUEUES = {
    "llama.cpp": QueueMetrics("llamacpp:requests_processing", "llamacpp:requests_deferred"),
    "vllm": QueueMetrics("vllm:num_requests_running", "vllm:num_requests_waiting",
                         ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")),  # the second: before V1
    "sglang": QueueMetrics("sglang:num_running_reqs", "sglang:num_queue_reqs", ("sglang:token_usage",)),
    "tgi": QueueMetrics("tgi_batch_current_size", "tgi_queue_size"),
}


def kind_from_metrics(values: dict[str, float]) -> str | None:
    for kind, names in QUEUES.items():
        if names.waiting in values:
            return kind
    return None


@dataclass(frozen=True)
class LoadedModel:
    """ollama /api/ps: a model in memory."""

    name: str
    size: int  # bytes
    size_vram: int  # bytes on the GPU; less than size means part runs on the CPU
    context_length: int | None

    @property
    def cpu_fraction(self) -> float:
        return min(1.0, max(0.0, 1 - self.size_vram / self.size)) if self.size else 0.0


@dataclass(frozen=True)
class ServerSample:
    kind: str
    version: str | None
    slots: int | None = None  # llama.cpp /props total_slots
    running: int | None = None  # the server's own count of requests being processed
    waiting: int | None = None  # the server's own queue
    cache_usage: float | None = None  # 0–1 (vLLM KV cache, SGLang token usage)
    metrics_source: str | None = None  # e.g. "llamacpp:requests_deferred"
    loaded: tuple[LoadedModel, ...] = ()  # at most MAX_LOADED
    loaded_left_off: int = 0  # more models in memory than that
    error: str | None = None


def _get(client: httpx.Client, url: str) -> Reply | None:
    try:
        return fetch(client, url)
    except httpx.HTTPError:
        return None


def json_object(response: Reply | None) -> dict | None:
    if response is None or response.status_code != 200:
        return None
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def detect(client: httpx.Client, base: str) -> tuple[str, str | None]:
    """(kind, version) from the endpoints each server kind answers; "openai-compatible" if none."""
    if (info := json_object(_get(client, base + "/api/version"))) and "version" in info:
        return "ollama", str(info["version"])
    if (props := json_object(_get(client, base + "/props"))) and ("build_info" in props or "total_slots" in props):
        return "llama.cpp", props.get("build_info")
    if (info := json_object(_get(client, base + "/get_server_info"))) and "version" in info:
        return "sglang", str(info["version"])
    if (info := json_object(_get(client, base + "/info"))) and "model_id" in info and "version" in info:
        return "tgi", str(info["version"])
    version = json_object(_get(client, base + "/version"))
    metrics = _get(client, base + "/metrics")
    if metrics is not None and metrics.status_code == 200:
        kind = kind_from_metrics(parse_prometheus(metrics.text))
        if kind:
            return kind, str(version["version"]) if version and "version" in version else None
    if version and "version" in version:
        return "vllm", str(version["version"])
    return "openai-compatible", None


def parse_ps(data: dict) -> tuple[tuple[LoadedModel, ...], int]:
    """The models in memory (at most MAX_LOADED, each name cut to one short line) and how many more there are."""
    listed = data.get("models")
    models = [m for m in (listed if isinstance(listed, list) else []) if isinstance(m, dict)]
    return tuple(LoadedModel(name=one_line(str(m.get("name") or m.get("model") or "?"), 80),
                             size=count(m.get("size")) or 0, size_vram=count(m.get("size_vram")) or 0,
                             context_length=count(m.get("context_length")))
                 for m in models[:MAX_LOADED]), max(0, len(models) - MAX_LOADED)


class ServerProbe:
    """Polls one server: /metrics (queue), /api/ps (ollama), /props (llama.cpp slots)."""

    def __init__(self, url: str, kind: str, version: str | None = None, headers: dict[str, str] | None = None,
                 timeout: float = 2.0, transport: httpx.BaseTransport | None = None,
                 redact: Callable[[str | None], str | None] = lambda text: text) -> None:
        self.url, self.kind, self.version = url.rstrip("/"), kind, version
        self._redact = redact  # masks the key and the URL's password in error texts
        self._client = httpx.Client(timeout=timeout, headers=headers or {}, transport=transport)
        self._metrics = True  # until the server says it has none
        self._slots: int | None = None

    def read(self) -> ServerSample:
        try:
            return self._read()
        except Exception as exc:  # a probe never takes the app down
            return ServerSample(self.kind, self.version,
                                error=one_line(self._redact(f"server probe failed: {type(exc).__name__}: {exc}")))

    def _read(self) -> ServerSample:
        fields: dict = {}
        if self.kind == "llama.cpp" and self._slots is None:
            props = json_object(_get(self._client, self.url + "/props"))
            self._slots = count(props.get("total_slots")) if props else None
        if self._metrics:
            try:
                response = fetch(self._client, self.url + "/metrics")
            except (AnswerTooBig, AnswerTooSlow) as exc:
                return ServerSample(self.kind, self.version, slots=self._slots,
                                    error=f"{mask_url(self.url)}/metrics: {exc}")
            except httpx.HTTPError:
                return ServerSample(self.kind, self.version, slots=self._slots,
                                    error=f"no answer from {mask_url(self.url)}/metrics")
            if response.status_code == 200:
                fields.update(self._queue(parse_prometheus(response.text)))
            elif response.status_code in (404, 501):
                self._metrics = False  # ollama, or llama-server without --metrics
        if self.kind == "ollama":
            ps = json_object(_get(self._client, self.url + "/api/ps"))
            fields["loaded"], fields["loaded_left_off"] = parse_ps(ps) if ps else ((), 0)
        return ServerSample(self.kind, self.version, slots=self._slots, **fields)

    def _queue(self, values: dict[str, float]) -> dict:
        names = QUEUES.get(self.kind) or QUEUES.get(kind_from_metrics(values) or "")
        if names is None or names.waiting not in values:
            return {}
        cache = next((values[n] for n in names.cache if n in values), None)
        return {
            "running": count(values.get(names.running, 0)),
            "waiting": count(values[names.waiting]),
            "cache_usage": bounded(cache, 0.0, 1.0),
            "metrics_source": names.waiting,
        }

    def close(self) -> None:
        self._client.close()
