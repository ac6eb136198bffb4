"""Find the server: its URL (flags > environment > default), its API, version and model.

Everything here fails with `DiscoveryError`, whose message is one line a user can act on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import httpx

from tui.load.client import Target
from tui.load.protocols import APIS, OLLAMA, OPENAI
from tui.probes.server import detect, json_object

DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"
SIM_MARK = "tokentop-sim"


class DiscoveryError(Exception):
    """A problem with the server or the user's choice of it; the message is one line."""


@dataclass
class ServerInfo:
    url: str
    api: str
    kind: str  # "ollama", "llama.cpp", "vllm", "openai-compatible"
    version: str | None
    model: str
    models: list[str] = field(default_factory=list)  # installed / served
    loaded: list[str] = field(default_factory=list)  # ollama /api/ps

    @property
    def model_label(self) -> str:
        """The model's name for people: llama.cpp names it by its file path; show the file name."""
        return self.model.rsplit("/", 1)[-1]

    @property
    def simulated(self) -> bool:
        return SIM_MARK in (self.version or "") or SIM_MARK in self.model


def normalise_url(raw: str, default_port: int = 11434) -> str:
    """Accept what people type and what OLLAMA_HOST holds: "host", "host:port", "http://host:port/".

    Like ollama's client: without a scheme, http and port 11434 are assumed; with one, the
    scheme's own default port applies.
    """
    url = raw.strip().rstrip("/")
    if not url:
        raise DiscoveryError("empty server URL")
    if "://" not in url:
        host = url.split("/", 1)[0]
        has_port = ":" in host.rsplit("]", 1)[-1]
        url = "http://" + (url if has_port else url.replace(host, f"{host}:{default_port}", 1))
    scheme, rest = url.split("://", 1)
    if scheme not in ("http", "https"):
        raise DiscoveryError(f"unsupported URL scheme {scheme!r} in {raw!r} (use http:// or https://)")
    if not rest.split("/", 1)[0]:
        raise DiscoveryError(f"no host in server URL {raw!r}")
    return url


def resolve_url(url: str | None, api: str) -> str:
    """--url, else OPENAI_BASE_URL (for --api openai) or OLLAMA_HOST, else ollama's default."""
    if url:
        return strip_v1(normalise_url(url))
    openai_env = os.environ.get("OPENAI_BASE_URL")
    ollama_env = os.environ.get("OLLAMA_HOST")
    if api == OPENAI and openai_env:
        return strip_v1(normalise_url(openai_env))
    if ollama_env and api != OPENAI:
        return normalise_url(ollama_env)
    if openai_env:
        return strip_v1(normalise_url(openai_env))
    return DEFAULT_OLLAMA_URL


def strip_v1(url: str) -> str:
    # OpenAI base URLs end in /v1; our request paths carry it themselves.
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _get_json(client: httpx.Client, url: str, headers: dict[str, str] | None = None) -> dict | None:
    """GET and parse JSON; None when the server answers but not with a 200 JSON object."""
    try:
        response = client.get(url, headers=headers)
    except httpx.InvalidURL as exc:
        raise DiscoveryError(f"bad server URL {url!r}: {exc}") from None
    except httpx.HTTPError as exc:
        raise DiscoveryError(f"cannot reach the server at {url}: {type(exc).__name__} {exc}".strip()) from None
    return json_object(response)


def discover(url: str | None, api: str = "auto", model: str | None = None, api_key: str | None = None,
             timeout: float = 5.0) -> tuple[Target, ServerInfo]:
    if api not in ("auto", *APIS):
        raise DiscoveryError(f"unknown --api {api!r} (choose from: auto, {', '.join(APIS)})")
    base = resolve_url(url, api)
    if api_key is None:
        api_key = os.environ.get("OPENAI_API_KEY") or None
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(timeout=timeout) as client:
        version_info = None
        if api in ("auto", OLLAMA):
            version_info = _get_json(client, base + "/api/version")
            if version_info is not None and "version" in version_info:
                info = _ollama(client, base, str(version_info["version"]), model)
                return Target(base, OLLAMA, info.model, None), info
            if api == OLLAMA:
                raise DiscoveryError(f"{base} does not answer /api/version as ollama does (try --api openai)")
        info = _openai(client, base, headers, model)
    return Target(base, OPENAI, info.model, api_key), info


def _ollama(client: httpx.Client, base: str, version: str, model: str | None) -> ServerInfo:
    tags = _get_json(client, base + "/api/tags") or {}
    ps = _get_json(client, base + "/api/ps") or {}
    installed = [m.get("name") or m.get("model") for m in tags.get("models") or [] if isinstance(m, dict)]
    loaded = [m.get("name") or m.get("model") for m in ps.get("models") or [] if isinstance(m, dict)]
    installed = [m for m in installed if m]
    loaded = [m for m in loaded if m]
    if model:
        known = set(installed) | {m.removesuffix(":latest") for m in installed}
        if installed and model not in known:
            raise DiscoveryError(f"unknown model {model!r}; installed: {', '.join(installed)}")
        chosen = model
    elif len(loaded) == 1:
        chosen = loaded[0]
    elif len(installed) == 1:
        chosen = installed[0]
    elif not installed:
        raise DiscoveryError(f"ollama at {base} has no models installed (ollama pull MODEL)")
    else:
        which = loaded if len(loaded) > 1 else installed
        raise DiscoveryError(f"several models, pick one with --model: {', '.join(which)}")
    return ServerInfo(base, OLLAMA, "ollama", version, chosen, installed, loaded)


def _openai(client: httpx.Client, base: str, headers: dict[str, str], model: str | None) -> ServerInfo:
    try:
        response = client.get(base + "/v1/models", headers=headers)
    except httpx.InvalidURL as exc:
        raise DiscoveryError(f"bad server URL {base!r}: {exc}") from None
    except httpx.HTTPError as exc:
        raise DiscoveryError(f"cannot reach the server at {base}: {type(exc).__name__} {exc}".strip()) from None
    if response.status_code in (401, 403):
        raise DiscoveryError(f"{base}/v1/models says HTTP {response.status_code}: set OPENAI_API_KEY")
    try:
        data = response.json() if response.status_code == 200 else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise DiscoveryError(
            f"{base} answers neither /api/version (ollama) nor /v1/models (OpenAI-compatible)"
            f" (HTTP {response.status_code})")
    served = [m.get("id") for m in data.get("data") or [] if isinstance(m, dict) and m.get("id")]
    if model:
        if served and model not in served:
            raise DiscoveryError(f"unknown model {model!r}; the server serves: {', '.join(served)}")
        chosen = model
    elif len(served) == 1:
        chosen = served[0]
    elif not served:
        raise DiscoveryError(f"{base}/v1/models lists no model; name one with --model")
    else:
        raise DiscoveryError(f"several models, pick one with --model: {', '.join(served)}")
    kind, version = _openai_kind(client, base, headers)
    return ServerInfo(base, OPENAI, kind, version, chosen, served, [])


def _openai_kind(client: httpx.Client, base: str, headers: dict[str, str]) -> tuple[str, str | None]:
    """Best effort: llama.cpp, vLLM, SGLang, TGI by the endpoints they answer; else generic."""
    client.headers.update(headers)
    return detect(client, base)
