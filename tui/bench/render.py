"""The bench's rows (one per cell) and how they are printed: table, markdown, CSV, JSON."""

from __future__ import annotations

import argparse
import csv
import io
import json
from datetime import datetime, timezone
from typing import Any

from tui import __version__
from tui.bench.cells import cell_label
from tui.bench.server_side import per_request_fields
from tui.bench.verdict import verdict_lines
from tui.bench.workload import CONCURRENCY, RATE, TRACE, USERS, BenchRun
from tui.load.discover import ServerInfo
from tui.load.prompts import INPUT, OUTPUT, PROMPT_FILE
from tui.load.confidence import FEW_FOR_P99
from tui.load.conventions import conventions
from tui.load.records import RequestRecord
from tui.load.sample import Sample, exact_row
from tui.load.stats import cell_row
from tui.load.synthetic import SYNTHETIC
from tui.untrusted import mask_url, visible

FORMATS = ("table", "wide", "markdown", "csv", "json")  # table: the compact columns; wide: all of them

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
    ("server_ttft_p50_s", "Server TTFT p50 (s)", "bucketed"),
    ("server_ttft_p99_s", "Server TTFT p99 (s)", "bucketed"),
    ("ttft_gap_ms", "Client-server TTFT gap (ms)", "+.0f"),
    ("server_queue_p50_s", "Server queue p50 (s)", "bucketed"),
    ("server_queue_p99_s", "Server queue p99 (s)", "bucketed"),
    ("server_prefill_p50_s", "Server prefill p50 (s)", "bucketed"),
    ("server_prefill_p99_s", "Server prefill p99 (s)", "bucketed"),
    ("server_decode_p50_s", "Server decode p50 (s)", "bucketed"),
    ("server_decode_p99_s", "Server decode p99 (s)", "bucketed"),
    ("prefix_cache_hit_rate", "Prefix cache hits", ".0%"),
    ("preemptions", "Preemptions", "d"),
    ("server_queue_max", "Server queue max", "d"),
    ("truncated", "Truncated", "d"),
    ("cold_starts", "Cold starts", "d"),
    ("gpu_power_w", "GPU W", ".0f"),
    ("fleet_power_w", "Fleet GPU W", ".0f"),
    ("fleet_j_per_token", "Fleet J/token", ".2f"),
    ("replica_queue_max", "Replica queue max", "peaks"),
    ("j_per_token", "J/token", ".2f"),
    ("tps_per_watt", "tok/s/W", ".3f"),
    ("request_rps", "Requests/s", ".2f"),
    ("sent_rps", "Sent/s", ".2f"),
    ("backlog_end", "Backlog at end", "d"),
    ("backlog_growth_rps", "Backlog growth/s", "+.2f"),
    ("held_back", "Held back", "d"),
    ("unsent", "Unsent", "d"),
    ("slo_met_share", "SLO met", ".0%"),
    ("goodput_rps", "Goodput (req/s)", ".2f"),
    ("tokens_source", "Tokens from", "s"),
    ("client_cpu_pct", "Client CPU %", ".0f"),
    ("client_lag_p90_ms", "Client lag p90 (ms)", ".1f"),
    ("send_lag_p99_s", "Send lag p99 (s)", ".3f"),
    ("ttft_from_plan_p99_s", "TTFT p99 from plan (s)", ".3f"),
    ("sessions_rps", "Sessions/s", ".2f"),
    ("cancelled_by_plan", "Cancelled (plan)", "d"),
    ("ok", "Samples (requests ok)", "d"),
    ("errors", "Errors", "d"),
    ("until", "Until", "until"),
    ("verdict", "Verdict", "s"),
]
RATE_COLUMN = ("rate", "Rate (req/s)", "g")  # the first column of open-loop rows
USERS_COLUMN = ("users", "Users", "d")  # the first column of rows of users in conversations
OPEN_LOOP_ONLY = ("sent_rps", "backlog_end", "backlog_growth_rps", "held_back", "unsent", "send_lag_p99_s",
                  "ttft_from_plan_p99_s")
USERS_ONLY = ("sessions_rps",)
SERVER_SIDE = tuple(key for key, _, f in COLUMNS if f == "bucketed") + ("ttft_gap_ms", "prefix_cache_hit_rate",
                                                                       "preemptions")  # where the server says
FLEET_ONLY = ("fleet_power_w", "fleet_j_per_token", "replica_queue_max")  # with --prometheus
# The table's selection, after the article's five columns: enough to size a server, narrow enough for a terminal.
COMPACT = ("sent_rps", "request_rps", "backlog_end", "backlog_growth_rps", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s",
           "itl_p99_s", "aggregate_tps", "sessions_rps", "fleet_j_per_token", "slo_met_share", "goodput_rps", "held_back",
           "unsent", "cancelled_by_plan", "tokens_source", "errors", "until", "verdict")
SHOWN_WHEN_NONZERO = ("held_back", "unsent", "cancelled_by_plan", "until")  # in the compact table
# Columns whose figure has a 95 % interval in the row (`intervals`), shown beside it in wide and markdown.
INTERVAL_OF = {"ttft_p50_s": ("ttft_s", "p50"), "ttft_p99_s": ("ttft_s", "p99"), "tpot_p50_s": ("tpot_s", "p50"),
               "itl_p99_s": ("itl_s", "p99"), "avg_time_s": ("e2e_s", "mean")}

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
    "Open loop (--rate): Rate = the arrival rate set; Sent/s = the rate achieved; Requests/s = finished requests"
    " per second; Backlog at end = requests sent and still without a first token when the last was sent; Backlog"
    " growth/s = how fast that backlog grew while sending (about 0 when the server keeps up, arrivals minus what it"
    " serves when it does not); Held back = arrivals that waited at the client under --max-inflight; Unsent = those"
    " still waiting when the duration ended (never sent).\n"
    "GPU W = mean power of all GPUs during the cell (NVML); J/token and tok/s/W divide it by Aggregate tok/s.\n"
    "Fleet GPU W (--prometheus) = mean power of every GPU Prometheus knows (DCGM or nvitop-exporter, server-side"
    " readings), Fleet J/token = that over Aggregate tok/s; JSON rows add each replica's queue peak.\n"
    "Client CPU % = tokentop's own CPU per second of the cell (100 = one core); Client lag p90 = how late its event"
    " loop woke up: past 90 % or 5 ms the client, not the server, is the bottleneck, and a line under the table says so.\n"
    "Users (--users): each holds a conversation of --turns turns, each turn resending the history after --think-time;"
    " Sessions/s = conversations ended per second; TTFT by turn is under the table. Send lag p99 = how late an open"
    " loop's requests went against their plan (the rate's or the trace's; held back included). Cancelled (plan) ="
    " requests the client closed on purpose (--cancel-share): not errors, in no figure. --warmup's requests are in"
    " no row.\n"
    "Server TTFT / queue / prefill / decode p50 and p99, Prefix cache hits and Preemptions are the server's own"
    " (server-reported): from vLLM's or SGLang's histograms and counters, read from /metrics just before and after"
    " the cell (a percentile is an estimate within the bucket named beside it, and counts every client's requests"
    " meanwhile), or from llama.cpp's timings / ollama's durations per request (exact; llama.cpp's prefill excludes"
    " the wait for a slot, and it reports no queue time). Client-server TTFT gap = the client's TTFT p50 less the"
    " server's: the network and the client; a CHECK line under the table says when the two cannot both be right.\n"
    "How sure: --format wide and markdown show a 95 % interval beside TTFT p50 / p99, TPOT p50, ITL p99 and Average"
    " Time ([low–high]; ? where the samples cannot bound that side); † marks a p99 from fewer than 100 requests."
    " Percentiles' intervals are distribution-free (order statistics), means' Student's t; JSON rows carry every"
    " figure's under `intervals`, with its count. TTFT p99 from plan (open loops) = from when each request was due,"
    " not when it went: what a user would have seen. Verdict = ok, or why a figure should not be trusted (each"
    " reason explained under the table). Until (--until STAT=PCT) = the precision the cell reached.\n"
    "ITL and TPOT: the table's ITL shares each chunk's gap among the tokens it carried (as genai-perf); its TPOT"
    " is (e2e - TTFT) / (tokens - 1) per request (as vllm bench serve's TPOT, AIPerf's and guidellm's ITL). JSON"
    " rows carry every convention under `conventions`, each named by the tools that use it: per chunk (as vllm"
    " bench serve's ITL), per token, per request, and TPOT weighted by token."
)




def rows_of(records: list[RequestRecord], loads: list, words: list[int], slo: dict[str, float] | None = None,
            shape: str = CONCURRENCY, trace_rate: float | None = None,
            samples: dict[str, Sample] | None = None) -> list[dict[str, Any]]:
    """One row per (load, words) cell that has records; a load is a concurrency, a rate, a count of users, or
    the trace (one cell, at its mean rate). Warm-up requests are in no row. A cell whose records are a sample
    (`samples`, by cell label: tui/load/sample.py) gets its counts and rates from its totals."""
    measured = [r for r in records if not r.warmup]

    def exact(row: dict[str, Any], cell: list[RequestRecord]) -> dict[str, Any]:
        sample = (samples or {}).get(cell_label(cell[0]))
        return exact_row(row, sample) if sample is not None else row

    if shape == TRACE:
        cell = [r for r in measured if r.trace_index is not None]
        return [exact(cell_row(None, words[0], cell, slo, rate=trace_rate or 0.0) | {"trace": True}
                      | measured_fields(cell), cell)] if cell else []
    of = {CONCURRENCY: lambda r: r.concurrency, RATE: lambda r: r.rate, USERS: lambda r: r.users}[shape]
    rows = []
    for load in loads:
        for w in words:
            cell = [r for r in measured if of(r) == load and r.words == w]
            if not cell:
                continue
            if shape == RATE:
                row = cell_row(None, w, cell, slo, rate=load)
            elif shape == USERS:
                row = {"users": load, **cell_row(None, w, cell, slo)}
            else:
                row = cell_row(load, w, cell, slo)
            rows.append(exact(row | measured_fields(cell), cell))
    return rows


def measured_fields(cell: list[RequestRecord]) -> dict[str, Any]:
    """What a row adds to its figures: the server's per-request phases, ITL and TPOT under every convention."""
    return per_request_fields(cell) | {"conventions": conventions([r for r in cell if r.ok])}


def make_meta(info: ServerInfo, args: argparse.Namespace, run: BenchRun) -> dict[str, Any]:
    rate, s = run.open_loop, run.settings
    loads, words = list(run.loads), list(run.words)
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
            "mode": s.mode, "concurrency": None if rate else loads, "rate": loads if rate else None,
            "arrival": s.arrival if rate else None, "max_inflight": s.max_inflight if rate else None,
            "duration_s": run.duration_s, "prompts": visible(args.prompts) if args.prompts else None,
            "words": words, "rounds": run.rounds,
            "max_tokens": s.max_tokens, "temperature": s.temperature, "seed": s.seed,
            "num_ctx": s.num_ctx, "timeout_s": args.timeout, "slo_s": run.slo,
            "input_tokens": args.input_tokens, "output_tokens": s.output_tokens,
            "synthetic_words": s.input_words, "shared_prefix": args.shared_prefix,
            "shared_words": s.shared_words,
        },
    }


def _shown(row: dict[str, Any], key: str, fmt: str, sure: bool = False) -> str:
    """A row's cell as text; a figure estimated from a server's buckets names its bucket: "0.41 (0.25–0.5 s)";
    with `sure`, a figure with an interval shows it: "0.512 [0.450–0.601]", a p99 of too few requests marked †."""
    if fmt == "until":
        until = row.get(key)
        if not until:
            return "-"
        reached = "no bound yet" if until["reached_pct"] is None else f"±{until['reached_pct']:.0f}%"
        return f"{until['stat']} {reached}" + ("" if until["met"] else " (not met)")
    if sure and key in INTERVAL_OF and row.get(key) is not None:
        name, stat = INTERVAL_OF[key]
        got = (row.get("intervals") or {}).get(name) or {}
        low, high = got.get(stat) or (None, None)
        few = "†" if stat == "p99" and row.get("ok", 0) < FEW_FOR_P99 else ""
        return f"{_cell(row[key], fmt)}{few} [{_cell(low, fmt) if low is not None else '?'}–" \
               f"{_cell(high, fmt) if high is not None else '?'}]"
    if fmt != "bucketed":
        return _cell(row.get(key), fmt)
    value = row.get(key)
    if value is None:
        return "-"
    _, phase, q, _ = key.split("_")  # server_ttft_p50_s
    bucket = ((row.get("server_phases") or {}).get(phase) or {}).get(f"{q}_in")
    return f"{value:.3f}" + (f" ({bucket})" if bucket else "")


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    if fmt == "peaks":  # {replica: its queue's peak}
        return visible("; ".join(f"{name} {peak:g}" for name, peak in value.items()))
    if fmt == "s":
        return str(value)
    return format(value, fmt)


def columns_for(rows: list[dict[str, Any]], fmt: str) -> list[tuple[str, str, str]]:
    """The columns a format shows: the compact table a selection, the others every column that applies."""
    rate = any("rate" in row for row in rows)
    users = any("users" in row for row in rows)
    first = RATE_COLUMN if rate else USERS_COLUMN if users else None
    columns = [first if first and key == "concurrency" else (key, header, f) for key, header, f in COLUMNS]
    if not rate:
        columns = [c for c in columns if c[0] not in OPEN_LOOP_ONLY]
    if not users:
        columns = [c for c in columns if c[0] not in USERS_ONLY]
    if not any("fleet_power_w" in row for row in rows):
        columns = [c for c in columns if c[0] not in FLEET_ONLY]
    columns = [c for c in columns if c[0] not in SERVER_SIDE or any(row.get(c[0]) is not None for row in rows)]
    if fmt != "table":
        return columns
    by_key = {key: (key, header, f) for key, header, f in columns}
    present = {k for row in rows for k in row}
    compact = [key for key in COMPACT if key in by_key and key in present]
    compact = [key for key in compact if key not in SHOWN_WHEN_NONZERO or any(row.get(key) for row in rows)]
    return columns[:5] + [by_key[key] for key in compact]


def render(rows: list[dict[str, Any]], meta: dict[str, Any], fmt: str, mode: str = OUTPUT,
           answer: dict[str, Any] | None = None) -> str:
    """`answer`: what a search found (the capacity finder's), carried whole by JSON."""
    if fmt == "json":
        return json.dumps({"meta": meta, "rows": rows, **(answer or {})}, indent=2) + "\n"
    columns = columns_for(rows, fmt)
    headers = [h for _, h, _ in columns]
    headers[1] = {INPUT: "Input Word Count", SYNTHETIC: "Input Tokens", PROMPT_FILE: "Prompts in File",
                  TRACE: "Trace Requests"}.get(mode, headers[1])
    body = [[_shown(row, key, f, sure=fmt in ("wide", "markdown")) for key, _, f in columns] for row in rows]
    errors_at = [key for key, _, _ in columns].index("errors")
    for cells, row in zip(body, rows):
        if row.get("error_kinds"):  # "3 (cut, http)": what went wrong, not just how often
            cells[errors_at] += f" ({', '.join(row['error_kinds'])})"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        model = visible(meta["model"])  # a server's text: control characters made visible
        writer.writerow(["model"] + [key for key, _, _ in columns] + ["error_kinds", "client_warning"])
        writer.writerows([[model] + [_cell(row.get(key), f) if f == "peaks" else row.get(key) for key, _, f in columns]
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
        return f"{title}\n\n" + "\n".join(lines) + "\n\n" + notes_under(rows) + LEGEND + "\n"
    split = [two_lines(h) if fmt == "table" else ("", h) for h in headers]
    widths = [max(len(top), len(bottom), *(len(r[i]) for r in body)) for i, (top, bottom) in enumerate(split)]
    lines = ["  ".join(part[k].rjust(wd) for part, wd in zip(split, widths)).rstrip() for k in (0, 1)]
    lines += ["  ".join(c.rjust(wd) for c, wd in zip(r, widths)) for r in body]
    if not lines[0].strip():  # one-line headers
        lines.pop(0)
    if not body:
        lines.append("(no finished requests)")
    return title + "\n" + "\n".join(lines) + "\n" + notes_under(rows) + LEGEND + "\n"


def notes_under(rows: list[dict[str, Any]]) -> str:
    """The lines under a table: TTFT by turn, the client-bound warnings, the server checks, the verdicts."""
    return by_turn(rows) + sampled(rows) + client_bound(rows) + server_checks(rows) + verdict_lines(rows)


def sampled(rows: list[dict[str, Any]]) -> str:
    """A line per cell whose percentiles come from a sample of its requests (tui/load/sample.py)."""
    return "".join(f"SAMPLED {_load_text(row)} x {row['words']}: percentiles, means and their intervals from a "
                   f"uniform sample of {row['sampled']['kept']:,} of its {row['sampled']['of']:,} requests; counts, "
                   f"tokens and rates from all of them\n" for row in rows if row.get("sampled"))


def two_lines(header: str) -> tuple[str, str]:
    """A header broken at the space that leaves its longer line shortest (a narrower column)."""
    words = header.split(" ")
    splits = [(" ".join(words[:i]), " ".join(words[i:])) for i in range(1, len(words))]
    return min(splits, key=lambda pair: max(map(len, pair))) if splits else ("", header)


def _load_text(row: dict[str, Any]) -> str:
    return f"{row['rate']:g} req/s" if "rate" in row else f"{row['users']} users" if "users" in row else (
        f"{row['concurrency']}")


def client_bound(rows: list[dict[str, Any]]) -> str:
    """A warning line per cell where tokentop itself was the bottleneck (empty when none was)."""
    return "".join(f"WARNING {_load_text(row)} x {row['words']}: {row['client_warning']}\n"
                   for row in rows if row.get("client_warning"))


def server_checks(rows: list[dict[str, Any]]) -> str:
    """A line per cell whose client TTFT and server TTFT cannot both be right (tui/bench/server_side.py)."""
    return "".join(f"CHECK {_load_text(row)} x {row['words']}: {row['server_check']}\n"
                   for row in rows if row.get("server_check"))


def by_turn(rows: list[dict[str, Any]]) -> str:
    """Users in conversations: a line per cell of TTFT by turn (does the first token slow as the history grows?)."""
    def turn(n: int, figures: dict[str, Any]) -> str:
        return f"turn {n} {_cell(figures['p50'], '.3f')} / {_cell(figures['p99'], '.3f')} s ({figures['n']})"

    return "".join(f"TTFT p50 / p99 by turn, {row['users']} users: "
                   + " · ".join(turn(n, f) for n, f in row["ttft_by_turn"].items()) + "\n"
                   for row in rows if row.get("ttft_by_turn"))
