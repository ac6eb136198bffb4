"""Find the server: its URL (flags > environment > default), its API, version and model.

Everything here fails with `DiscoveryError`, whose message is one line a user can act on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from tui.http_read import Reply, fetch
from tui.load.client import Target
from tui.load.wire import APIS, OLLAMA, OPENAI
from tui.probes.server import detect, json_object
from tui.untrusted import header_safe, mask_url, one_line

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
        """The model's name for people: llama.cpp names it by its file path; show the file name.

        Other names keep their slashes (`meta-llama/Llama-3.1-8B` says whose model it is).
        """
        if self.model.startswith(("/", "./", "~")) or self.model.lower().endswith(".gguf"):
            return self.model.rsplit("/", 1)[-1]
        return self.model

    @property
    def shown_url(self) -> str:
        """The URL as people see it: any password in it masked."""
        return mask_url(self.url)

    @property
    def simulated(self) -> bool:
        return SIM_MARK in (self.version or "") or SIM_MARK in self.model


def normalise_url(raw: str, default_port: int = 11434) -> str:
    """Accept what people type and what OLLAMA_HOST holds: "host", "host:port", "http://host:port/".

    Like ollama's client: without a scheme, http and port 11434 are assumed; with one, the
    scheme's own default port applies. The scheme may be in capitals (`HTTP://`).
    """
    url = raw.strip().rstrip("/")
    shown = one_line(mask_url(url), 100)
    if not url:
        raise DiscoveryError("empty server URL")
    if url.lower().startswith(("unix:", "http+unix:")) or url.startswith("/"):
        raise DiscoveryError(f"unix sockets are not supported ({shown}): give the server's http://host:port")
    if "://" not in url:
        host = url.split("/", 1)[0]
        has_port = ":" in host.rsplit("]", 1)[-1]
        url = "http://" + (url if has_port else url.replace(host, f"{host}:{default_port}", 1))
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        raise DiscoveryError(f"unsupported URL scheme {one_line(scheme, 20)!r} in {shown} (use http:// or https://)")
    url = f"{scheme}://{rest}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise DiscoveryError(f"bad server URL {shown}: {exc}") from None
    if not parts.hostname:
        raise DiscoveryError(f"no host in server URL {shown}")
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


def clean_api_key(key: str | None) -> str | None:
    """The key without surrounding whitespace (a key file saved with CR/LF), or None.

    A key that cannot be an HTTP header value is refused in one line that does not print it.
    """
    key = (key or "").strip()
    if not key:
        return None
    if not header_safe(key):
        raise DiscoveryError("the API key (OPENAI_API_KEY) holds non-ASCII or control characters and cannot be"
                             " sent in a header; check it (it is not printed here)")
    return key


def _get(client: httpx.Client, url: str, headers: dict[str, str] | None = None) -> Reply:
    """GET, with every transport failure (a body too big or too slow included) as one DiscoveryError line."""
    try:
        return fetch(client, url, headers=headers)
    except httpx.InvalidURL as exc:
        raise DiscoveryError(f"bad server URL {one_line(mask_url(url))}: {one_line(exc)}") from None
    except httpx.HTTPError as exc:
        raise DiscoveryError(one_line(f"cannot reach the server at {mask_url(url)}: {type(exc).__name__} {exc}",
                                      300)) from None


def _names(listing: dict, field: str, url: str, keys: tuple[str, ...]) -> list[str]:
    """The model names in a listing (`data` of /v1/models, `models` of /api/tags); a bad shape is one line."""
    items = listing.get(field)
    if items is None:
        return []
    if not isinstance(items, list):
        raise DiscoveryError(f"{url} answered with {field!r} that is not a list; is this an LLM server?")
    names = []
    for item in items:
        if not isinstance(item, dict):
            raise DiscoveryError(f"{url} lists a model that is not an object: {one_line(item, 60)}")
        name = next((item[k] for k in keys if item.get(k) is not None), None)
        if name is None:
            continue
        if not isinstance(name, str):
            raise DiscoveryError(f"{url} lists a model whose {keys[0]!r} is not text: {one_line(name, 60)}")
        names.append(name)
    return names


def _list(names: list[str]) -> str:
    return one_line(", ".join(names), 300)


PER_CHUNK_USAGE = ("vllm", "sglang")  # kinds that put usage in every chunk when asked (continuous_usage_stats)


def discover(url: str | None, api: str = "auto", model: str | None = None, api_key: str | None = None,
             timeout: float = 5.0) -> tuple[Target, ServerInfo]:
    if api not in ("auto", *APIS):
        raise DiscoveryError(f"unknown --api {one_line(api, 40)!r} (choose from: auto, {', '.join(APIS)})")
    base = resolve_url(url, api)
    api_key = clean_api_key(os.environ.get("OPENAI_API_KEY") if api_key is None else api_key)
    headers = Target(base, OPENAI, "", api_key).headers()  # the one place the key becomes a header
    shown = mask_url(base)
    with httpx.Client(timeout=timeout) as client:
        if api in ("auto", OLLAMA):
            version_info = json_object(_get(client, base + "/api/version"))
            if version_info is not None and "version" in version_info:
                info = _ollama(client, base, str(version_info["version"]), model)
                return Target(base, OLLAMA, info.model, None), info
            if api == OLLAMA:
                raise DiscoveryError(f"{shown} does not answer /api/version as ollama does (try --api openai)")
        info = _openai(client, base, headers, model)
    # only servers known to take it: a strict OpenAI-compatible one may refuse an unknown stream option
    return Target(base, OPENAI, info.model, api_key, usage_per_chunk=info.kind in PER_CHUNK_USAGE), info


def _ollama(client: httpx.Client, base: str, version: str, model: str | None) -> ServerInfo:
    shown = mask_url(base)
    installed = _names(json_object(_get(client, base + "/api/tags")) or {}, "models", f"{shown}/api/tags",
                       ("name", "model"))
    loaded = _names(json_object(_get(client, base + "/api/ps")) or {}, "models", f"{shown}/api/ps",
                    ("name", "model"))
    if model:
        known = set(installed) | {m.removesuffix(":latest") for m in installed}
        if installed and model not in known:
            raise DiscoveryError(f"unknown model {one_line(model, 80)!r}; installed: {_list(installed)}")
        chosen = model
    elif len(loaded) == 1:
        chosen = loaded[0]
    elif len(installed) == 1:
        chosen = installed[0]
    elif not installed:
        raise DiscoveryError(f"ollama at {shown} has no models installed (ollama pull MODEL)")
    else:
        which = loaded if len(loaded) > 1 else installed
        raise DiscoveryError(f"several models, pick one with --model: {_list(which)}")
    return ServerInfo(base, OLLAMA, "ollama", version, chosen, installed, loaded)


def _openai(client: httpx.Client, base: str, headers: dict[str, str], model: str | None) -> ServerInfo:
    shown = mask_url(base)
    response = _get(client, base + "/v1/models", headers)
    if response.status_code in (401, 403):
        if headers:
            raise DiscoveryError(f"{shown}/v1/models refused the API key (HTTP {response.status_code});"
                                 " check OPENAI_API_KEY")
        raise DiscoveryError(f"{shown}/v1/models says HTTP {response.status_code}: set OPENAI_API_KEY")
    data = json_object(response)
    if data is None:
        raise DiscoveryError(
            f"{shown} answers neither /api/version (ollama) nor /v1/models (OpenAI-compatible)"
            f" (HTTP {response.status_code})")
    served = _names(data, "data", f"{shown}/v1/models", ("id",))
    if model:
        if served and model not in served:
            raise DiscoveryError(f"unknown model {one_line(model, 80)!r}; the server serves: {_list(served)}")
        chosen = model
    elif len(served) == 1:
        chosen = served[0]
    elif not served:
        raise DiscoveryError(f"{shown}/v1/models lists no model; name one with --model")
    else:
        raise DiscoveryError(f"several models, pick one with --model: {_list(served)}")
    client.headers.update(headers)
    kind, version = detect(client, base)  # best effort: llama.cpp, vLLM, SGLang, TGI by what they answer
    return ServerInfo(base, OPENAI, kind, version, chosen, served, [])
