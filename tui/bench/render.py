"""The bench's rows (one per cell) and how they are printed: table, markdown, CSV, JSON."""

from __future__ import annotations

import argparse
import csv
import io
import json
from datetime import datetime, timezone
from typing import Any

from tui import __version__
from tui.load.discover import ServerInfo
from tui.load.prompts import INPUT, OUTPUT
from tui.load.records import RequestRecord
from tui.load.stats import cell_row
from tui.load.synthetic import SYNTHETIC
from tui.untrusted import mask_url, visible

FORMATS = ("table", "markdown", "csv", "json")

# (row key, header, how to print it). The first five are the seed article's columns.
COLUMNS: list[tuple[str, str, str]] = [
    ("concurrency", "Number of Requests", "d"),
    ("words", "Output Word Count", "d"),
    ("avg_tokens", "Average Tokens", ".2f"),
    ("avg_time_s", "Average Time (s)", ".2f"),
    ("avg_speed_tps", "Average Speed (tokens/s)", ".1f"),
    ("ttft_p50_s", "TTFT p50 (s)", ".3f"),
    ("ttft_max_s", "TTFT max (s)", ".3f"),
    ("ttft_p99_s", "TTFT p99 (s)", ".3f"),
    ("tpot_p50_s", "TPOT p50 (s)", ".4f"),
    ("itl_p99_s", "ITL p99 (s)", ".4f"),
    ("decode_tps_mean", "Decode tok/s (mean)", ".1f"),
    ("aggregate_tps", "Aggregate tok/s", ".1f"),
    ("server_decode_tps_mean", "Server decode tok/s", ".1f"),
    ("server_prefill_tps_mean", "Server prefill tok/s", ".1f"),
    ("queue_wait_mean_s", "Queue wait est. (s)", ".2f"),
    ("server_queue_max", "Server queue max", "d"),
    ("truncated", "Truncated", "d"),
    ("cold_starts", "Cold starts", "d"),
    ("gpu_power_w", "GPU W", ".0f"),
    ("j_per_token", "J/token", ".2f"),
    ("tps_per_watt", "tok/s/W", ".3f"),
    ("request_rps", "Requests/s", ".2f"),
    ("slo_met_share", "SLO met", ".0%"),
    ("goodput_rps", "Goodput (req/s)", ".2f"),
    ("tokens_source", "Tokens from", "s"),
    ("client_cpu_pct", "Client CPU %", ".0f"),
    ("client_lag_p90_ms", "Client lag p90 (ms)", ".1f"),
    ("errors", "Errors", "d"),
]
ERRORS_AT = [key for key, _, _ in COLUMNS].index("errors")

LEGEND = (
    "Tokens from: 'server' = server-reported counts (ollama eval_count / OpenAI usage), "
    "'client' = content chunks counted by tokentop.\n"
    "Average Time, Average Speed (= Average Tokens / Average Time, the article's figure), TTFT, "
    "Decode (= (tokens-1)/(last-first token)) and Aggregate (all tokens / wall time) are timed by "
    "tokentop's clock, with the token counts 'Tokens from' names; Server decode/prefill tok/s are "
    "server-reported (ollama's prefill counts cached prompt tokens too, so it runs high when a prompt repeats).\n"
    "Queue wait est. = ollama's total - load - prompt_eval - eval durations (server-reported, ollama only); "
    "Server queue max = the most requests the server's /metrics said were waiting during the cell; "
    "Truncated = stopped at max tokens / context (done_reason length); Cold starts = waited for a model load.\n"
    "TTFT p99, TPOT p50 (= (e2e - TTFT)/(tokens - 1)) and ITL p99 (gaps between chunks, shared by the tokens a "
    "chunk carried) are timed by tokentop's clock over the successful requests; Requests/s = finished requests per "
    "second of wall time; SLO met = the share of all requests within every --slo limit (an error never meets it), "
    "Goodput = those requests per second.\n"
    "GPU W = mean power of all GPUs during the cell (NVML); J/token and tok/s/W divide it by Aggregate tok/s.\n"
    "Client CPU % = tokentop's own CPU per second of the cell (100 = one core); Client lag p90 = how late its event"
    " loop woke up: past 90 % or 5 ms the client, not the server, is the bottleneck, and a line under the table says so."
)




def rows_of(records: list[RequestRecord], concurrency: list[int], words: list[int],
            slo: dict[str, float] | None = None) -> list[dict[str, Any]]:
    rows = []
    for n in concurrency:
        for w in words:
            cell = [r for r in records if r.concurrency == n and r.words == w]
            if cell:
                rows.append(cell_row(n, w, cell, slo))
    return rows


def make_meta(info: ServerInfo, args: argparse.Namespace, concurrency: list[int], words: list[int]) -> dict[str, Any]:
    return {
        "url": info.shown_url,
        "api": info.api,
        "server_kind": info.kind,
        "server_version": info.version,
        "simulated": info.simulated,
        "sim_speed": args.sim_speed if args.sim else None,
        "model": info.model,
        "model_label": info.model_label,
        "tokentop_version": __version__,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "options": {
            "mode": args.mode, "concurrency": concurrency, "words": words, "rounds": args.rounds,
            "max_tokens": args.max_tokens, "temperature": args.temperature, "seed": args.seed,
            "num_ctx": args.num_ctx, "timeout_s": args.timeout, "slo_s": args.slo_limits,
            "input_tokens": args.input_tokens, "output_tokens": args.output_tokens,
            "synthetic_words": getattr(args, "synthetic_words", None),
        },
    }


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    if fmt == "s":
        return str(value)
    return format(value, fmt)


def render(rows: list[dict[str, Any]], meta: dict[str, Any], fmt: str, mode: str = OUTPUT) -> str:
    if fmt == "json":
        return json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n"
    headers = [h for _, h, _ in COLUMNS]
    if mode == INPUT:
        headers[1] = "Input Word Count"
    elif mode == SYNTHETIC:
        headers[1] = "Input Tokens"
    body = [[_cell(row.get(key), f) for key, _, f in COLUMNS] for row in rows]
    for cells, row in zip(body, rows):
        if row.get("error_kinds"):  # "3 (cut, http)": what went wrong, not just how often
            cells[ERRORS_AT] += f" ({', '.join(row['error_kinds'])})"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        model = visible(meta["model"])  # a server's text: control characters made visible
        writer.writerow(["model"] + [key for key, _, _ in COLUMNS] + ["error_kinds", "client_warning"])
        writer.writerows([[model] + [row.get(key) for key, _, _ in COLUMNS]
                          + [";".join(row.get("error_kinds") or []), row.get("client_warning") or ""]
                          for row in rows])
        return buf.getvalue()
    title = visible(f"{meta['model_label']} on {meta['server_kind']} {meta['server_version'] or ''}".rstrip()
                    + (" (SIMULATED)" if meta["simulated"] else "") + f" at {mask_url(meta['url'])}")
    speed = meta.get("sim_speed")
    if speed and speed != 1:
        title += (f"\nThe simulated server runs {speed:g}x faster than the times it reports: server-reported"
                  f" columns are in its simulated time, client-measured ones in real time ({speed:g}x theirs).")
    if fmt == "markdown":
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return f"{title}\n\n" + "\n".join(lines) + "\n\n" + client_bound(rows) + LEGEND + "\n"
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(wd) for h, wd in zip(headers, widths))]
    lines += ["  ".join(c.rjust(wd) for c, wd in zip(r, widths)) for r in body]
    if not body:
        lines.append("(no finished requests)")
    return title + "\n" + "\n".join(lines) + "\n" + client_bound(rows) + LEGEND + "\n"


def client_bound(rows: list[dict[str, Any]]) -> str:
    """A warning line per cell where tokentop itself was the bottleneck (empty when none was)."""
    return "".join(f"WARNING {row['concurrency']} x {row['words']}: {row['client_warning']}\n"
                   for row in rows if row.get("client_warning"))
