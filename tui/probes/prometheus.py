"""Prometheus's HTTP API, read only: instant queries and the scrape targets (for `--prometheus URL`).

tokentop reads the Prometheus a team already runs; it never ships an agent. Values arrive as strings
and may be NaN or ±Inf; each sample keeps its own timestamp, so a reading's age can be shown (DCGM's
exporter collects every 30 s by default: an old value must never pass for a live one). Credentials
come from the environment or a file (checked once, when read), go only into the Authorization header,
and are masked in every string that comes back: labels, target errors, messages. Answers are read by
tui/http_read.py (capped, one deadline). Every failure is a PrometheusError with one line to show.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import httpx

from tui.files import read_bytes
from tui.http_read import AnswerTooBig, AnswerTooSlow, fetch
from tui.untrusted import Redactor, header_safe, mask_url, one_line, url_password

MAX_SERIES = 2000  # a query answering more is cut here, and says so
MAX_SECRET_FILE = 64 << 10


class PrometheusError(Exception):
    """Prometheus could not answer; the message is one line, safe to show."""


class CredentialsError(PrometheusError):
    """The credentials cannot be read or sent; the message is one line that never holds them."""


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    value: float  # may be NaN or ±Inf, as Prometheus sent it
    at: float  # the sample's own time (Unix seconds); 0 when it had none that is a time


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
    PROMETHEUS_USER with PROMETHEUS_PASSWORD or PROMETHEUS_PASSWORD_FILE. Each is checked here, once: one that
    cannot be sent is a CredentialsError that does not print it."""
    env = os.environ if env is None else env

    def secret(name: str, header: bool) -> str | None:
        source = name
        if env.get(f"{name}_FILE"):
            source = f"{name}_FILE"
            data = read_bytes(env[source], f"cannot read {source}={one_line(env[source], 80)}", MAX_SECRET_FILE,
                              CredentialsError)
            try:
                value = data.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise CredentialsError(f"{source} is not UTF-8 text; check it (it is not printed here)") from None
        else:
            value = env.get(name) or ""
        value = value.strip()  # a file saved with CR/LF
        # A bearer token goes in a header as it is: printable ASCII only. Basic auth is base64 of UTF-8, so a
        # password may be any text, but a control character (a newline) in one is always a mistake.
        if value and not (header_safe(value) if header else value.isprintable()):
            what = "non-ASCII or control characters and cannot be sent in a header" if header else (
                "control characters")
            raise CredentialsError(f"{source} holds {what}; check it (it is not printed here)")
        return value or None

    token = secret("PROMETHEUS_TOKEN", header=True)
    user, password = secret("PROMETHEUS_USER", header=False) or "", secret("PROMETHEUS_PASSWORD", header=False)
    if ":" in user:
        raise CredentialsError("PROMETHEUS_USER holds a ':', which basic auth cannot send")
    return token, (user, password) if user and password else None


class PrometheusClient:
    def __init__(self, url: str, token: str | None = None, basic: tuple[str, str] | None = None,
                 timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.shown_url = mask_url(self.url)
        # Masks the secrets in every string that comes back, labels and target errors too: a Prometheus (or an
        # exporter) that echoes the token must not get it shown, printed or saved.
        self.redact = Redactor(token, basic[1] if basic else None, url_password(self.url))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(timeout=timeout, headers=headers, auth=basic)

    def close(self) -> None:
        self._http.close()

    def query(self, expr: str) -> Answer:
        """An instant query: its vector (a scalar answer comes back as one series without labels)."""
        data = self._get("/api/v1/query", {"query": expr})
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar" and isinstance(result, list):
            return Answer((self._series({}, result),))
        if kind != "vector" or not isinstance(result, list):
            raise PrometheusError(f"{one_line(expr, 60)}: not a vector (resultType {one_line(str(kind), 20)})")
        items = [item for item in result if isinstance(item, dict)]
        series = [self._series(item.get("metric") or {}, item.get("value")) for item in items[:MAX_SERIES]]
        return Answer(tuple(series), max(0, len(items) - MAX_SERIES))

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
            points = [self._series({}, pair) for pair in item["values"]]
            found.append((self._series(item.get("metric") or {}, None).labels, [p.value for p in points]))
        return found

    def targets(self) -> list[ScrapeTarget]:
        data = self._get("/api/v1/targets", {"state": "active"})
        found = []
        for item in data.get("activeTargets") or []:
            if not isinstance(item, dict):
                continue
            labels = item.get("labels") if isinstance(item.get("labels"), dict) else {}
            found.append(ScrapeTarget(job=self._text(labels.get("job")), instance=self._text(labels.get("instance")),
                                      health=self._text(item.get("health")) or "unknown",
                                      last_error=self._text(item.get("lastError"))))
        return found

    def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        try:
            response = fetch(self._http, self.url + path, params=params)
        except (AnswerTooBig, AnswerTooSlow) as exc:
            raise PrometheusError(f"Prometheus at {self.shown_url}{path}: {exc}") from None
        except httpx.HTTPError as exc:
            raise PrometheusError(f"cannot reach Prometheus at {self.shown_url}: {type(exc).__name__}:"
                                  f" {self._text(exc, 120)}") from None
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
            raise PrometheusError(self._text(
                f"Prometheus: {body.get('errorType') or 'error'}: {body.get('error') or 'no reason given'}", 200))
        data = body.get("data")
        if not isinstance(data, dict):
            raise PrometheusError(f"{self.shown_url}{path}: an answer without data")
        return data


    def _series(self, labels: Any, value: Any) -> Series:
        """One sample from `[unix_time, "value"]`; anything else becomes NaN at time 0 (shown as unknown)."""
        shown = {self._text(k, 60): self._text(v, 120) for k, v in labels.items()} if isinstance(labels, dict) else {}
        try:
            at, text = value
            number, at = float(text), float(at)  # "NaN", "+Inf" and "-Inf" are floats too
        except (TypeError, ValueError):
            return Series(shown, math.nan, 0.0)
        return Series(shown, number, at if math.isfinite(at) and at > 0 else 0.0)

    def _text(self, value: Any, limit: int = 200) -> str:
        # masked before it is cut: a cut must not leave the secret's first half behind
        return one_line(self.redact(str(value)), limit) if value is not None else ""
