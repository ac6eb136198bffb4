"""Run files (`tokentop bench --save run.json`): one self-describing JSON file a run can be compared by.

It holds what produced the numbers — tokentop's version, the date, the command line, the server (URL with
any password masked, kind, version, slots), the model (as the server describes it), the GPUs and the
host — then every cell with all its figures, the capacity finder's answer if there was one, and every
request's record. `load_run` reads one back, refusing in one line what is not one.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import psutil

from tui import __version__
from tui.bench.watch import load_kind
from tui.files import read_text_file
from tui.http_read import fetch
from tui.load.client import Target
from tui.load.discover import ServerInfo
from tui.load.records import RequestRecord
from tui.untrusted import Redactor, count, one_line, url_password, visible

FORMAT = "tokentop-run"
VERSION = 1
MAX_BYTES = 1 << 30


class RunFileError(ValueError):
    """A file that is not a run file tokentop can read; the message is one line naming it."""


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed, with any URL's password masked (keys come from the environment, never argv)."""
    words = ["tokentop", *(sys.argv[1:] if argv is None else argv)]
    passwords = [url_password(w.split("=", 1)[-1]) for w in words]  # --url URL and --url=URL alike
    return Redactor(*passwords)(shlex.join(words))


def model_facts(target: Target, info: ServerInfo, timeout: float = 5.0) -> dict[str, Any]:
    """What the server says of its model: size, parameters, quantisation, context (best effort)."""
    facts: dict[str, Any] = {"name": info.model}
    try:
        with httpx.Client(timeout=timeout, headers=target.headers()) as client:
            if info.api == "ollama":
                listed = fetch(client, target.url + "/api/tags").json().get("models") or []
                entry = next((m for m in listed if isinstance(m, dict) and info.model in (m.get("name"), m.get("model"))),
                             {})
                facts |= _scalars({"size_bytes": entry.get("size"), **(entry.get("details") or {})},
                                  target.redactor())
            else:
                listed = fetch(client, target.url + "/v1/models").json().get("data") or []
                entry = next((m for m in listed if isinstance(m, dict) and m.get("id") == info.model), {})
                facts |= _scalars({"max_model_len": entry.get("max_model_len"), **(entry.get("meta") or {})},
                                  target.redactor())
    except (httpx.HTTPError, ValueError, AttributeError, TypeError):
        pass  # the run is still worth its file without them
    return facts


def model_context(target: Target, info: ServerInfo, timeout: float = 5.0) -> int | None:
    """The most tokens a request may hold, prompt and answer: llama.cpp's per-slot n_ctx, vLLM's max_model_len."""
    try:
        with httpx.Client(timeout=timeout, headers=target.headers()) as client:
            if info.kind == "llama.cpp":
                settings = fetch(client, target.url + "/props").json().get("default_generation_settings") or {}
                return count(settings.get("n_ctx"))
            if info.api != "ollama":
                listed = fetch(client, target.url + "/v1/models").json().get("data") or []
                entry = next((m for m in listed if isinstance(m, dict) and m.get("id") == info.model), {})
                return count(entry.get("max_model_len"))
    except (httpx.HTTPError, ValueError, AttributeError, TypeError):
        pass
    return None  # ollama's depends on num_ctx: not cut


def _scalars(obj: dict[str, Any], redact: Redactor) -> dict[str, Any]:
    """Only plain values (finite numbers), strings cut to one line with the key masked: a server's words are kept
    as data, never as markup, and never as the secret it echoed."""
    kept: dict[str, Any] = {}
    for key, value in obj.items():
        name = one_line(redact(str(key)), 40)
        if isinstance(value, bool) or (isinstance(value, (int, float)) and math.isfinite(value)):
            kept[name] = value
        elif isinstance(value, str):
            kept[name] = one_line(redact(value), 120)
    return kept


def machine_facts(gpu_reading=None) -> dict[str, Any]:
    gpus = [{"name": g.name, "memory_bytes": g.memory_total, "power_limit_w": g.power_limit}
            for g in (gpu_reading.gpus if gpu_reading is not None else ())]
    return {
        "gpus": gpus,
        "gpu_note": gpu_reading.error if gpu_reading is not None and not gpus else None,
        "host": {"cpu": _cpu_name(), "cores": psutil.cpu_count(logical=True), "memory_bytes": psutil.virtual_memory().total,
                 "system": f"{platform.system()} {platform.release()}", "python": platform.python_version()},
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_document(meta: dict[str, Any], rows: list[dict[str, Any]], records: list[RequestRecord],
                 server: dict[str, Any], model: dict[str, Any], machine: dict[str, Any],
                 answer: dict[str, Any] | None = None, argv: list[str] | None = None) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "tokentop_version": __version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(argv),
        "server": server,
        "model": model,
        **machine,
        "meta": meta,
        "rows": rows,
        "answer": answer,
        "records": [r.to_json() for r in records],
    }


def save_run(path: str, document: dict[str, Any]) -> None:
    """Written whole or not at all: a temporary file beside it, then renamed over it."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _shown_value(value: Any) -> str:
    """A value from the file as its JSON, on one short line (a string in quotes: `"2"`, not `2`)."""
    try:
        return one_line(json.dumps(value, ensure_ascii=False), 40)
    except (TypeError, ValueError, RecursionError):
        return one_line(repr(value), 40)


def _cell_problem(row: Any, figures: Sequence[str]) -> str | None:
    """What is wrong with one row of a run file ("rate is ..."), or None."""
    if not isinstance(row, dict):
        return f"is {_shown_value(row)}, not a cell"
    words = row.get("words")
    if not (_number(words) and words >= 0):
        return f"words is {_shown_value(words)}, not a number of 0 or more"
    load = load_kind(row)
    if not (_number(row.get(load)) and (row[load] > 0 if load == "rate" else row[load] >= 0)):
        return f"{load} is {_shown_value(row.get(load))}, not a number {'over 0' if load == 'rate' else 'of 0 or more'}"
    for figure in figures:
        value = row.get(figure)
        if value is not None and not _number(value):
            return f"{visible(figure)} is {_shown_value(value)}, not a finite number"
    return None


def _answer_problem(answer: Any) -> str | None:
    """What is wrong with the capacity finder's answer in a run file, or None."""
    if answer is None:
        return None
    if not isinstance(answer, dict):
        return f"is {_shown_value(answer)}, not an object"
    for key in ("capacity", "breaks_at"):
        if answer.get(key) is not None and not _number(answer[key]):
            return f"{key} is {_shown_value(answer[key])}, not a finite number"
    broken = answer.get("broken_slo")
    if broken is not None and not isinstance(broken, list):
        return f"broken_slo is {_shown_value(broken)}, not a list"
    return None


def load_run(path: str, figures: Sequence[str] = ()) -> dict[str, Any]:
    """A run file's document, or RunFileError in one line naming the file and the field. Each of `figures` in
    each row must be a finite number or missing (null)."""
    shown = one_line(path, 80)
    text = read_text_file(path, shown, MAX_BYTES, RunFileError)
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise RunFileError(f"{shown}: not JSON ({one_line(str(exc), 60)})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise RunFileError(f"{shown}: not a tokentop run file (write one with tokentop bench --save)")
    if document.get("version") != VERSION or isinstance(document.get("version"), bool):
        raise RunFileError(f"{shown}: run file version {_shown_value(document.get('version'))}; this tokentop reads"
                           f" version {VERSION}")
    rows = document.get("rows")
    if not isinstance(rows, list):
        raise RunFileError(f"{shown}: its rows are {_shown_value(rows)}, not a list of cells")
    for i, row in enumerate(rows):
        if (problem := _cell_problem(row, figures)) is not None:
            raise RunFileError(f"{shown}: rows[{i}]: {problem}")
    if (problem := _answer_problem(document.get("answer"))) is not None:
        raise RunFileError(f"{shown}: answer: {problem}")
    return document
