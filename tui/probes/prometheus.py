"""Prometheus's HTTP API, read only: instant queries and the scrape targets (for `--prometheus URL`).

tokentop reads the Prometheus a team already runs; it never ships an agent. Values arrive as strings
and may be NaN or ±Inf; each sample keeps its own timestamp, so a reading's age can be shown (DCGM's
exporter collects every 30 s by default: an old value must never pass for a live one). Credentials
come from the environment or a file, go only into the Authorization header, and are masked in every
message. Every failure is a PrometheusError with one line to show.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tui.untrusted import Redactor, mask_url, one_line, url_password

MAX_SERIES = 2000  # a query answering more is cut here, and says so


class PrometheusError(Exception):
    """Prometheus could not answer; the message is one line, safe to show."""


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    value: float  # may be NaN or ±Inf, as Prometheus sent it
    at: float  # the sample's own time (Unix seconds)


@dataclass(frozen=True)
class Answer:
    series: tuple[Series, ...]
    truncated: int = 0  # series left off past MAX_SERIES


@dataclass(frozen=True)
class ScrapeTarget:
    job: str
    instance: str
    health: str  # "up", "down" or "unknown"
    last_error: str


def credentials_from_env(env: dict[str, str] | None = None) -> tuple[str | None, tuple[str, str] | None]:
    """(bearer token, (user, password)) from PROMETHEUS_TOKEN or PROMETHEUS_TOKEN_FILE, and
    PROMETHEUS_USER with PROMETHEUS_PASSWORD or PROMETHEUS_PASSWORD_FILE."""
    env = os.environ if env is None else env

    def secret(name: str) -> str | None:
        if env.get(f"{name}_FILE"):
            try:
                return Path(env[f"{name}_FILE"]).read_text(encoding="utf-8").strip() or None
            except OSError as exc:
                raise PrometheusError(f"cannot read {name}_FILE: {exc.strerror or exc}") from None
        return (env.get(name) or "").strip() or None

    token = secret("PROMETHEUS_TOKEN")
    user, password = (env.get("PROMETHEUS_USER") or "").strip(), secret("PROMETHEUS_PASSWORD")
    return token, (user, password) if user and password else None


class PrometheusClient:
    def __init__(self, url: str, token: str | None = None, basic: tuple[str, str] | None = None,
                 timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.shown_url = mask_url(self.url)
        self._redact = Redactor(token, basic[1] if basic else None, url_password(self.url))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(timeout=timeout, headers=headers, auth=basic)

    def close(self) -> None:
        self._http.close()

    def query(self, expr: str) -> Answer:
        """An instant query: its vector (a scalar answer comes back as one series without labels)."""
        data = self._get("/api/v1/query", {"query": expr})
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar" and isinstance(result, list):
            return Answer((_series({}, result),))
        if kind != "vector" or not isinstance(result, list):
            raise PrometheusError(f"{one_line(expr, 60)}: not a vector (resultType {one_line(str(kind), 20)})")
        series = [_series(item.get("metric") or {}, item.get("value")) for item in result if isinstance(item, dict)]
        return Answer(tuple(series[:MAX_SERIES]), max(0, len(series) - MAX_SERIES))

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[tuple[dict[str, str], list[float]]]:
        """A range query: each series' labels and its values, step by step (NaN where it had none)."""
        data = self._get("/api/v1/query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                                 "step": f"{step:g}"})
        if data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
            raise PrometheusError(f"{one_line(expr, 60)}: not a matrix")
        found = []
        for item in data["result"][:MAX_SERIES]:
            if not isinstance(item, dict) or not isinstance(item.get("values"), list):
                continue
            points = [_series({}, pair) for pair in item["values"]]
            found.append((_series(item.get("metric") or {}, None).labels, [p.value for p in points]))
        return found

    def targets(self) -> list[ScrapeTarget]:
        data = self._get("/api/v1/targets", {"state": "active"})
        found = []
        for item in data.get("activeTargets") or []:
            if not isinstance(item, dict):
                continue
            labels = item.get("labels") if isinstance(item.get("labels"), dict) else {}
            found.append(ScrapeTarget(job=_text(labels.get("job")), instance=_text(labels.get("instance")),
                                      health=_text(item.get("health")) or "unknown",
                                      last_error=_text(item.get("lastError"))))
        return found

    def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        try:
            response = self._http.get(self.url + path, params=params)
        except httpx.HTTPError as exc:
            raise PrometheusError(self._redact(f"cannot reach Prometheus at {self.shown_url}: "
                                               f"{type(exc).__name__}: {one_line(str(exc), 120)}")) from None
        if response.status_code in (401, 403):
            raise PrometheusError(f"Prometheus at {self.shown_url} refused the credentials (HTTP {response.status_code});"
                                  " see PROMETHEUS_TOKEN / PROMETHEUS_USER")
        try:
            body = response.json()
        except ValueError:
            raise PrometheusError(f"{self.shown_url}{path} answered HTTP {response.status_code}, not Prometheus's"
                                  " JSON (is --prometheus the Prometheus server?)") from None
        if not isinstance(body, dict):
            raise PrometheusError(f"{self.shown_url}{path}: an answer of the wrong shape")
        if body.get("status") != "success":
            raise PrometheusError(self._redact(one_line(
                f"Prometheus: {body.get('errorType') or 'error'}: {body.get('error') or 'no reason given'}", 200)))
        data = body.get("data")
        if not isinstance(data, dict):
            raise PrometheusError(f"{self.shown_url}{path}: an answer without data")
        return data


def _series(labels: Any, value: Any) -> Series:
    """One sample from `[unix_time, "value"]`; anything else becomes NaN at time 0 (shown as unknown)."""
    shown = {one_line(str(k), 60): one_line(str(v), 120) for k, v in labels.items()} if isinstance(labels, dict) else {}
    try:
        at, text = value
        number = float(text)  # "NaN", "+Inf" and "-Inf" are floats too
        return Series(shown, number, float(at))
    except (TypeError, ValueError):
        return Series(shown, math.nan, 0.0)


def _text(value: Any) -> str:
    return one_line(str(value), 200) if value is not None else ""
