"""Service-level objectives: `--slo NAME=VALUE,…`, for each request and for a whole cell.

Two kinds of name:
- a request's figure, `ttft`, `tpot`, `e2e` (seconds): a request meets it when its own figure is within
  it; goodput counts the requests that meet every one. A cell meets it when every request does.
- a cell's statistic, `ttft_p99`, `itl_p50`, `e2e_mean`, … (seconds, at most; suffixes `_mean`, `_p50`,
  `_p90`, `_p99`, `_max`) and `stream_tps_p10`, `stream_tps_min`, … (per-stream decode tokens/s, at
  least; suffixes `_min`, `_p10`, `_p50`, `_mean`). The capacity finder holds a level to these.
A cell with a failed request never meets an SLO.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tui.load.records import RequestRecord

REQUEST_FIGURES = {"ttft": "ttft_s", "tpot": "tpot_s", "e2e": "e2e_s"}  # name → the record's figure (seconds)
CELL_SECONDS = ("ttft", "itl", "tpot", "e2e")
SECONDS_STATS = ("mean", "p50", "p90", "p99", "max")
TPS_STATS = ("min", "p10", "p50", "mean")
CELL_NAMES = tuple(f"{f}_{s}" for f in CELL_SECONDS for s in SECONDS_STATS) + tuple(
    f"stream_tps_{s}" for s in TPS_STATS)


def parse_slo(text: str) -> dict[str, float]:
    """`ttft=2,tpot=0.05` or `ttft_p99=2,stream_tps_p10=10` → {"ttft": 2.0, …}; ValueError in one line."""
    slo: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in REQUEST_FIGURES and name not in CELL_NAMES:
            raise ValueError(f"unknown --slo name {name!r} (choose from: {', '.join(REQUEST_FIGURES)}, or a statistic"
                             " such as ttft_p99, tpot_p50, itl_p99, e2e_max, stream_tps_p10)")
        unit = "tokens/s" if name.startswith("stream_tps") else "seconds"
        try:
            limit = float(value)
        except ValueError:
            raise ValueError(f"--slo {name} takes a number of {unit}, not {value.strip()!r}") from None
        if not (math.isfinite(limit) and limit > 0):
            raise ValueError(f"--slo {name} must be a number of {unit} more than 0, not {value.strip()}")
        slo[name] = limit
    if not slo:
        raise ValueError("--slo takes NAME=VALUE pairs, e.g. ttft=2,tpot=0.05 or ttft_p99=2,stream_tps_p10=10")
    return slo


def slo_text(slo: dict[str, float]) -> str:
    """The SLO as the user writes it: ttft_p99=2, stream_tps_p10=10."""
    return ", ".join(f"{name}={limit:g}" for name, limit in slo.items())


def per_request(slo: dict[str, float] | None) -> dict[str, float]:
    """The names a single request is held to (the goodput's)."""
    return {name: limit for name, limit in (slo or {}).items() if name in REQUEST_FIGURES}


def meets(record: RequestRecord, slo: dict[str, float]) -> bool:
    """A finished request without error whose figures are within every per-request limit (a figure it lacks
    does not fail it)."""
    if not record.ok:
        return False
    for name, limit in per_request(slo).items():
        value = getattr(record, REQUEST_FIGURES[name])
        if value is not None and value > limit:
            return False
    return True


@dataclass(frozen=True)
class Broken:
    """An objective a cell missed: its name, the cell's value and the limit."""

    name: str
    value: float | None
    limit: float

    def __str__(self) -> str:
        if self.name == "errors":
            return f"{self.value:.0f} failed request(s)"
        if self.name == "requests":
            return "no request finished while the level was held"
        unit = " tok/s" if self.name.startswith("stream_tps") else " s"
        relation = "<" if self.name.startswith("stream_tps") else ">"
        shown = "none measured" if self.value is None else f"{self.value:.3g}{unit}"
        return f"{self.name} {shown} {relation} {self.limit:g}{unit}"


def value_of(row: dict[str, Any], name: str) -> float | None:
    """A cell's figure for an SLO name: the worst request's for a per-request name, else the statistic."""
    figures = row.get("percentiles") or {}
    if name in REQUEST_FIGURES:
        return figures.get(REQUEST_FIGURES[name], {}).get("max")
    if name.startswith("stream_tps_"):
        return figures.get("stream_tps", {}).get(name.removeprefix("stream_tps_"))
    figure, _, stat = name.rpartition("_")
    return figures.get(f"{figure}_s", {}).get(stat)


def broken(row: dict[str, Any], slo: dict[str, float]) -> list[Broken]:
    """What a cell (a bench row) missed of `slo`; empty when it met all of it."""
    missed = []
    if row.get("errors"):
        missed.append(Broken("errors", row["errors"], 0))
    for name, limit in slo.items():
        value = value_of(row, name)
        if name.startswith("stream_tps_"):
            if value is None or value < limit:  # no speed measured is no speed met
                missed.append(Broken(name, value, limit))
        elif value is not None and value > limit:
            missed.append(Broken(name, value, limit))
    return missed
