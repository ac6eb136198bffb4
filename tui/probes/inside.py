"""The server seen from inside: llama.cpp's slots, a prefix cache's hits, preemptions, waiting by reason,
speculative acceptance, and the server's own TTFT / ITL / queue / prefill / decode / e2e from its histograms.

Everything here is server-reported. `InsideProbe.read()` is blocking (the app calls it from a daemon thread
once a second, only while the server view is open) and never raises: a failure becomes `InsideSample.error`,
an endpoint the server refuses one calm line in `notes`, and it is not asked again.
Rates are over the last RECENT_S seconds; phase percentiles over the last WINDOW_S, from the histograms'
increases (estimates within a bucket: see tui/probes/histograms.py).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from tui.http_read import AnswerTooBig, AnswerTooSlow, fetch
from tui.probes.histograms import (
    Estimate,
    Increase,
    Scrape,
    counter_increase,
    increase,
    parse_scrape,
)
from tui.untrusted import count, mask_url, one_line

RECENT_S = 10.0  # rates: cache hits, preemptions, acceptance
WINDOW_S = 60.0  # the server's own latency percentiles
MAX_SLOTS = 256  # slot rows kept from /slots
PHASES = ("ttft", "queue", "prefill", "decode", "itl", "e2e")


@dataclass(frozen=True)
class InsideNames:
    """Where a server kind says each thing (Prometheus names); None: it does not say it."""

    phases: dict[str, str]  # phase → histogram
    cache_hits: str | None = None  # tokens served from the prefix cache
    cache_queries: str | None = None  # tokens looked up; with `queries_add_hits`, those computed (misses)
    queries_add_hits: bool = False
    preemptions: str | None = None
    spec_accepted: str | None = None
    spec_drafted: str | None = None
    spec_gauge: str | None = None  # a gauge of acceptance (0–1) when the counters are not there
    waiting_by_reason: str | None = None
    busy_per_decode: str | None = None


NAMES = {
    "vllm": InsideNames(
        phases={"ttft": "vllm:time_to_first_token_seconds", "queue": "vllm:request_queue_time_seconds",
                "prefill": "vllm:request_prefill_time_seconds", "decode": "vllm:request_decode_time_seconds",
                "itl": "vllm:inter_token_latency_seconds", "e2e": "vllm:e2e_request_latency_seconds"},
        cache_hits="vllm:prefix_cache_hits_total", cache_queries="vllm:prefix_cache_queries_total",
        preemptions="vllm:num_preemptions_total", spec_accepted="vllm:spec_decode_num_accepted_tokens_total",
        spec_drafted="vllm:spec_decode_num_draft_tokens_total", waiting_by_reason="vllm:num_requests_waiting_by_reason"),
    "sglang": InsideNames(
        phases={"ttft": "sglang:time_to_first_token_seconds", "queue": "sglang:queue_time_seconds",
                "itl": "sglang:inter_token_latency_seconds", "e2e": "sglang:e2e_request_latency_seconds"},
        cache_hits="sglang:cached_tokens_total", cache_queries="sglang:prompt_tokens_total",
        preemptions="sglang:num_retracted_requests_total", spec_gauge="sglang:spec_accept_rate"),
    "llama.cpp": InsideNames(
        phases={}, cache_hits="llamacpp:prompt_tokens_cached_total", cache_queries="llamacpp:prompt_tokens_total",
        queries_add_hits=True, spec_accepted="llamacpp:spec_decode_num_accepted_tokens_total",
        spec_drafted="llamacpp:spec_decode_num_draft_tokens_total", busy_per_decode="llamacpp:n_busy_slots_per_decode"),
}


@dataclass(frozen=True)
class SlotRow:
    """One llama.cpp slot as /slots says: idle, prefill (no token yet) or decoding."""

    id: int
    state: str
    task: int | None = None
    prompt: int | None = None  # prompt tokens (the slot's context less what it decoded)
    cached: int | None = None  # of those, reused from the cache
    decoded: int | None = None
    left: int | None = None  # tokens it may still decode (None: no limit)


@dataclass(frozen=True)
class PhaseFigures:
    """One phase over the window, from the server's histogram: estimates within a bucket."""

    count: float
    mean: float | None
    p50: Estimate | None
    p99: Estimate | None


@dataclass(frozen=True)
class InsideSample:
    kind: str
    slots: tuple[SlotRow, ...] = ()
    slots_left_off: int = 0
    cache_recent: float | None = None  # hits ÷ queries over the last RECENT_S (0–1)
    cache_total: float | None = None  # the same since the server started
    preemptions_per_s: float | None = None
    preemptions_total: float | None = None
    spec_acceptance: float | None = None  # accepted ÷ drafted tokens, recent (or the server's gauge)
    waiting_by_reason: dict[str, float] = field(default_factory=dict)
    busy_per_decode: float | None = None  # llama.cpp: slots busy per decode call (its own average)
    phases: dict[str, PhaseFigures] = field(default_factory=dict)
    window_s: float = 0.0  # how much time the phases cover (less than WINDOW_S just after opening)
    notes: tuple[str, ...] = ()  # an endpoint refused, once: a calm line each
    error: str | None = None


def slot_rows(data: object) -> tuple[tuple[SlotRow, ...], int]:
    """llama.cpp /slots → rows (at most MAX_SLOTS) and how many more there were."""
    listed = [s for s in data if isinstance(s, dict)] if isinstance(data, list) else []
    rows = []
    for s in listed[:MAX_SLOTS]:
        nxt = s.get("next_token")
        nxt = nxt[0] if isinstance(nxt, list) and nxt and isinstance(nxt[0], dict) else {}
        decoded = count(nxt.get("n_decoded"))
        if not s.get("is_processing"):
            rows.append(SlotRow(count(s.get("id")) or 0, "idle"))
            continue
        context = count(s.get("n_prompt_tokens"))
        remain = nxt.get("n_remain")
        rows.append(SlotRow(
            id=count(s.get("id")) or 0, state="decoding" if decoded else "prefill", task=count(s.get("id_task")),
            prompt=None if context is None else max(0, context - (decoded or 0)), cached=count(s.get("n_prompt_tokens_cache")),
            decoded=decoded, left=count(remain) if isinstance(remain, (int, float)) and remain >= 0 else None))
    return tuple(rows), max(0, len(listed) - MAX_SLOTS)


def share(hits: float | None, queries: float | None, add_hits: bool) -> float | None:
    if hits is None or queries is None:
        return None
    total = queries + hits if add_hits else queries
    return min(1.0, max(0.0, hits / total)) if total > 0 else None


def phase_figures(inc: Increase | None) -> PhaseFigures | None:
    if inc is None or inc.count <= 0:
        return None
    return PhaseFigures(inc.count, inc.mean, inc.quantile(0.5), inc.quantile(0.99))


def phases_between(names: InsideNames, after: Scrape, before: Scrape | None) -> dict[str, PhaseFigures]:
    """Each phase the server has a histogram of, over the increase from `before` to `after`."""
    out = {}
    for phase, metric in names.phases.items():
        if (figures := phase_figures(increase(metric, after, before))) is not None:
            out[phase] = figures
    return out


def cache_share_between(names: InsideNames, after: Scrape, before: Scrape | None) -> float | None:
    if names.cache_hits is None or names.cache_queries is None:
        return None
    return share(counter_increase(names.cache_hits, after, before),
                 counter_increase(names.cache_queries, after, before), names.queries_add_hits)


class InsideProbe:
    """Polls one server's /metrics (and llama.cpp's /slots), keeping WINDOW_S of scrapes for the rates."""

    def __init__(self, url: str, kind: str, headers: dict[str, str] | None = None, timeout: float = 2.0,
                 transport: httpx.BaseTransport | None = None,
                 redact: Callable[[str | None], str | None] = lambda text: text,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url, self.kind = url.rstrip("/"), kind
        self.names = NAMES.get(kind, InsideNames(phases={}))
        self._redact, self._clock = redact, clock
        self._client = httpx.Client(timeout=timeout, headers=headers or {}, transport=transport)
        self._scrapes: deque[tuple[float, Scrape]] = deque()
        self._notes: dict[str, str] = {}  # endpoint → why it is not asked again
        self._keep = {self.names.waiting_by_reason: "reason"} if self.names.waiting_by_reason else {}

    def read(self) -> InsideSample:
        try:
            return self._read()
        except Exception as exc:  # a probe never takes the app down
            return InsideSample(self.kind, notes=tuple(self._notes.values()),
                                error=one_line(self._redact(f"server view failed: {type(exc).__name__}: {exc}")))

    def scrape(self) -> Scrape | None:
        """/metrics once (None when the server has none or did not answer)."""
        reply = self._get("/metrics", "no /metrics" + (" (start llama-server with --metrics)"
                                                        if self.kind == "llama.cpp" else ""))
        return parse_scrape(reply.text, self._keep) if reply is not None else None

    def _get(self, path: str, refused: str):
        if path in self._notes:
            return None
        try:
            reply = fetch(self._client, self.url + path)
        except (AnswerTooBig, AnswerTooSlow) as exc:
            raise RuntimeError(f"{mask_url(self.url)}{path}: {exc}") from None
        except httpx.HTTPError as exc:
            raise RuntimeError(f"no answer from {mask_url(self.url)}{path} ({type(exc).__name__})") from None
        if reply.status_code == 200:
            return reply
        if reply.status_code in (401, 403, 404, 405, 501):
            self._notes[path] = f"{refused}: {path} answered {reply.status_code}"
            return None
        raise RuntimeError(f"{mask_url(self.url)}{path} answered {reply.status_code}")

    def _read(self) -> InsideSample:
        fields: dict = {}
        if self.kind == "llama.cpp":
            reply = self._get("/slots", "the server lists no slots (started with --no-slots?)")
            if reply is not None:
                try:
                    fields["slots"], fields["slots_left_off"] = slot_rows(reply.json())
                except ValueError:
                    fields["notes_extra"] = "/slots answered something that is not JSON"
        now = self._clock()
        scrape = self.scrape()
        if scrape is not None:
            self._scrapes.append((now, scrape))
            while len(self._scrapes) > 2 and now - self._scrapes[1][0] >= WINDOW_S:
                self._scrapes.popleft()
            fields.update(self._figures(now, scrape))
        notes = tuple(self._notes.values()) + ((fields.pop("notes_extra"),) if "notes_extra" in fields else ())
        return InsideSample(self.kind, notes=notes, **fields)

    def _ago(self, now: float, seconds: float) -> tuple[float, Scrape] | None:
        """The newest scrape at least `seconds` old, else the oldest kept (None when there is only this one)."""
        older = [item for item in list(self._scrapes)[:-1]]
        if not older:
            return None
        at_least = [item for item in older if now - item[0] >= seconds]
        return at_least[-1] if at_least else older[0]

    def _figures(self, now: float, scrape: Scrape) -> dict:
        n = self.names
        recent, window = self._ago(now, RECENT_S), self._ago(now, WINDOW_S)
        out: dict = {"cache_total": cache_share_between(n, scrape, None),
                     "preemptions_total": scrape.values.get(n.preemptions) if n.preemptions else None}
        if n.busy_per_decode:
            out["busy_per_decode"] = scrape.values.get(n.busy_per_decode)
        if n.waiting_by_reason:
            out["waiting_by_reason"] = dict(scrape.labelled.get(n.waiting_by_reason, {}))
        if n.spec_gauge and n.spec_gauge in scrape.values:
            out["spec_acceptance"] = scrape.values[n.spec_gauge]
        if recent is not None:
            then, old = recent
            out["cache_recent"] = cache_share_between(n, scrape, old)
            if n.preemptions and (grew := counter_increase(n.preemptions, scrape, old)) is not None:
                out["preemptions_per_s"] = grew / max(1e-3, now - then)
            if n.spec_accepted and n.spec_drafted:
                out["spec_acceptance"] = share(counter_increase(n.spec_accepted, scrape, old),
                                               counter_increase(n.spec_drafted, scrape, old), False)
        if window is not None:
            out["phases"] = phases_between(n, scrape, window[1])
            out["window_s"] = now - window[0]
        return out

    def close(self) -> None:
        self._client.close()
