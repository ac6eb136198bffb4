"""Strings from outside (a server, a file, a flag, a URL) made safe to show.

Rich and Textual read markup in plain `str`s and pass terminal escapes through, so a model named
`bad[/]` could crash a widget and one holding `ESC ] 0 ;` could retitle the user's terminal. Show such
strings through `visible()` (control characters become visible symbols) inside a `rich.text.Text`
(never markup); mask secrets with `Redactor` before they reach a screen or a file.
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# C0 controls (U+0000–U+001F) as their Unicode "control pictures" (ESC → ␛, BEL → ␇, LF → ␊), DEL as ␡,
# C1 controls (U+0080–U+009F, which some terminals take as escapes: U+009B is a CSI) as \x9b.
_VISIBLE = {c: chr(0x2400 + c) for c in range(0x20)} | {0x7F: "\u2421"} | {c: f"\\x{c:02x}" for c in range(0x80, 0xA0)}


def visible(text: object) -> str:
    """`text` with every control character replaced by a visible stand-in."""
    return str(text).translate(_VISIBLE)


def one_line(text: object, limit: int = 200) -> str:
    """Whitespace runs (newlines too) to one space, control characters visible, at most `limit` chars."""
    flat = " ".join(str(text).split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return visible(flat)


def mask_url(url: str) -> str:
    """The URL with any password in it masked: `http://user:***@host`."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}:{MASK}@{netloc[1]}"))


def header_safe(secret: str) -> bool:
    """True when `secret` can go in an HTTP header as it is: printable ASCII (no newline, no control character)."""
    return secret.isascii() and secret.isprintable()


def url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


class Redactor:
    """Masks the given secrets (an API key, a URL's password) wherever they appear in a text, also as a message
    quotes them (JSON- or repr-escaped, as bytes, made visible)."""

    def __init__(self, *secrets: str | None) -> None:
        # Longest first, so a secret that contains another is masked whole; short ones would mask
        # ordinary words, so three characters is the least that is taken as a secret.
        forms = {form for s in secrets if s and len(s) >= 3 for form in _quoted(s)}
        self._secrets = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str | None) -> str | None:
        if not text:
            return text
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text


def _quoted(secret: str) -> set[str]:
    return {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1],
            repr(secret.encode("utf-8", "surrogateescape"))[2:-1], visible(secret)}


MAX_COUNT = 10**15  # more tokens, bytes or nanoseconds than this is no real reading (a PB; 11 days in ns)


def count(value: Any) -> int | None:
    """A server's count or duration: a whole number from 0 to MAX_COUNT, else None (never trusted blindly)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if math.isfinite(value) and 0 <= value <= MAX_COUNT else None


def bounded(value: float | None, low: float, high: float) -> float | None:
    """A reading from outside within [low, high]; a little past a bound (5 % of the range, a rate's overshoot)
    clamped to it; NaN, ±Inf and anything further out None: no real GPU, host or server reads 1e308 W or a
    cache 4,200 times full, and such a figure must not reach a pane or a file."""
    if value is None or not math.isfinite(value):
        return None
    slack = (high - low) * 0.05
    if not low - slack <= value <= high + slack:
        return None
    return min(high, max(low, value))


def numbers_only(obj: dict[str, Any]) -> dict[str, float]:
    """A server's timings object with only its finite numbers kept."""
    return {str(k): v for k, v in obj.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
