"""Prometheus text exposition → {metric name: value}.

Samples with labels are summed under their bare name (vLLM labels every gauge with model_name;
one server serves one model here), which is what a queue or slot count wants.
"""

from __future__ import annotations

import math


def parse_prometheus(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, _, rest = line.partition("{")
            rest = rest.rpartition("}")[2]
        else:
            name, _, rest = line.partition(" ")
        parts = rest.split()
        if not parts:
            continue
        try:
            value = float(parts[0])
        except ValueError:
            continue
        if math.isnan(value):
            continue
        values[name] = values.get(name, 0.0) + value
    return values
