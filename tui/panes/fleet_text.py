"""The fleet as the panes draw it (`--prometheus`): GPUs grouped by host, a row per host, a row per replica.

Pure functions from a `FleetSample` (read by the app in a thread of its own) to text; every name and label
came from Prometheus and is shown as plain text. A reading older than STALE_S says its age in the
alarm colour: DCGM's exporter collects every 30 s by default, and an old value must not pass for live.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby

from rich.text import Text

from tui.probes.fleet import MAX_AGE_S, FleetSample
from tui.untrusted import visible
from tui.widgets.drawing import append_bar, core_bars, fmt, load_block, load_style, size, sparkline
from tui.widgets.palette import style

STALE_S = 45.0
FRESH_S = 5.0  # younger readings say no age at all


def _calm(sample: FleetSample) -> Text | None:
    """Prometheus's own trouble, in one line, instead of the fleet."""
    if sample.error:
        return Text(visible(sample.error), style=style("error"))
    return None


def _age(text: Text, age_s: float) -> None:
    if age_s >= STALE_S:
        text.append(f"  {_span(age_s)} old", style=style("alarm"))
    elif age_s >= FRESH_S:
        text.append(f"  {age_s:.0f} s ago", style=style("muted"))


def _span(seconds: float) -> str:
    if seconds >= MAX_AGE_S:  # the probe's ceiling: no time, or one too old to tell
        return "over a week"
    for unit, span in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * span:
            return f"{seconds / span:.0f} {unit}"
    return f"{seconds:.0f} s"


def gpu_text(sample: FleetSample, width: int, compact: bool = False,
             history: dict[tuple[str, str], Sequence[float | None]] | None = None) -> Text:
    """`history`: each GPU's utilisation so far; each host's line draws its GPUs' mean as a sparkline."""
    if (calm := _calm(sample)) is not None:
        return calm
    text = Text()
    for host, gpus in groupby(sample.gpus, key=lambda g: g.host):
        gpus = list(gpus)
        watts = [g.power for g in gpus if g.power is not None]
        if text:
            text.append("\n")
        text.append(visible(host), style="bold")
        text.append(f"  {len(gpus)} GPU{'s' if len(gpus) != 1 else ''}")
        if watts:
            text.append(f" · {sum(watts):.0f} W", style=style("accent"))
        spark = min(40, width - len(host) - 30)
        if history and spark >= 5 and not compact:
            series = [history.get((g.host, g.index), ()) for g in gpus]
            text.append("  util " + sparkline(mean_by_time(series, spark), spark, top=100), style=style("accent"))
        for gpu in gpus:
            frac = gpu.mem_used / gpu.mem_total if gpu.mem_used is not None and gpu.mem_total else None
            text.append(f"\n {visible(gpu.index):>2} ")
            if not compact:
                text.append(visible(gpu.name.removeprefix("NVIDIA "))[:22], style=style("title"))
            text.append("  util ")
            text.append(f"{fmt(gpu.util, '.0f', 'N/A'):>3}%", style=load_style(gpu.util))
            text.append("  mem ")
            if not compact and width >= 90:
                append_bar(text, frac, 10)
                text.append(" ")
            text.append(f"{size(gpu.mem_used)}/{size(gpu.mem_total)} GiB  {fmt(gpu.power, '.0f', 'N/A')} W")
            if not compact:
                text.append(f"  {fmt(gpu.temp, '.0f', 'N/A')}°C  SM {fmt(gpu.sm_clock, '.0f', 'N/A')} MHz")
            _age(text, gpu.age_s)
    if not sample.gpus:
        text.append("no GPUs in Prometheus", style=style("quiet"))
    _notes(text, sample, "GPU")
    return text


def mean_by_time(series: Sequence[Sequence[float | None]], last: int) -> list[float | None]:
    """The mean of several histories at each of the `last` steps, aligned at their ends."""
    means = []
    for back in range(last, 0, -1):
        known = [s[-back] for s in series if len(s) >= back and s[-back] is not None]
        means.append(sum(known) / len(known) if known else None)
    return means


def host_text(sample: FleetSample, width: int, compact: bool = False, chosen: str | None = None) -> Text:
    """A row per host; the `chosen` one (the h key) also gets a bar per core, as `top` then `1` shows it."""
    if (calm := _calm(sample)) is not None:
        return calm
    text = Text()
    name_width = min(24, max((len(h.host) for h in sample.hosts), default=4))
    for host in sample.hosts:
        if text:
            text.append("\n")
        text.append(f"{visible(host.host)[:name_width]:<{name_width}} ", style="bold")
        cpu = None if host.cpu is None else host.cpu * 100
        text.append(f"CPU {fmt(cpu, '3.0f', 'N/A')}% ", style=load_style(cpu))
        room = width - name_width - 24
        if host.cores and room > 4 and not compact:
            for share in host.cores[:room]:  # a block per core, its height the load
                text.append(load_block(share * 100), style=load_style(share * 100))
            text.append(" ")
        ram = None if host.ram_used is None else host.ram_used * 100
        text.append(f"RAM {fmt(ram, '3.0f', 'N/A')}%", style=load_style(ram))
        if host.host == chosen:
            core_bars(text, [share * 100 for share in host.cores], width)
    if not sample.hosts:
        text.append("no hosts in Prometheus", style=style("quiet"))
    _notes(text, sample, "host")
    return text


def replica_text(sample: FleetSample, compact: bool = False) -> Text:
    """The load pane's server view for the fleet: every replica's queue, by instance and model."""
    text = Text("fleet says ", style="bold")
    if (calm := _calm(sample)) is not None:
        return text + calm
    if not sample.replicas:
        text.append("no LLM server replicas in Prometheus", style=style("quiet"))
    for i, replica in enumerate(sample.replicas):
        if i:
            text.append("  ·  " if compact else "\n           ")
        text.append(visible(replica.instance), style=style("title"))
        if replica.model and not compact:
            text.append(f" {visible(replica.model)}", style=style("quiet"))
        text.append(f" running {fmt(replica.running, '.0f', '?')}", style=style("streaming"))
        text.append(f" · waiting {fmt(replica.waiting, '.0f', '?')}",
                    style=style("waiting") if replica.waiting else "")
        if replica.cache is not None:
            text.append(f" · KV {replica.cache:.0%}")
        if replica.tokens_per_s is not None:
            text.append(f" · {replica.tokens_per_s:.0f} tok/s (server)")
        client = next((c for c in sample.clients if c.instance == replica.instance), None)
        if replica.ttft_p99_s is not None or client is not None:
            text.append(" · TTFT p50/p99")
        if replica.ttft_p99_s is not None:
            text.append(f" {_pair(replica.ttft_p50_s, replica.ttft_p99_s)} server")
        if client is not None:
            many = f" ({client.sources} tokentops)" if client.sources > 1 else ""
            text.append(f"{',' if replica.ttft_p99_s is not None else ''} {_pair(client.ttft_p50_s, client.ttft_p99_s)}"
                        f" client{many}", style=style("title"))
    known = {r.instance for r in sample.replicas}
    for client in sample.clients:
        if client.instance in known:
            continue
        text.append("  ·  " if compact else "\n           ")
        text.append(f"tokentop → {visible(client.target)}", style=style("title"))
        text.append(f" TTFT p50/p99 {_pair(client.ttft_p50_s, client.ttft_p99_s)} (client)")
        text.append(f" · in flight {fmt(client.in_flight, '.0f', '?')}")
    for target in sample.down:
        why = "" if compact else f": {visible(target.last_error)}"
        text.append(("  ·  " if compact else "\n           ") + f"{visible(target.job)} {visible(target.instance)} down{why}",
                    style=style("error"))
    return text


def _pair(p50: float | None, p99: float | None) -> str:
    """`0.12/0.50 s`; `-` for a quantile with no requests over the last minute."""
    return f"{fmt(p50, '.2f', '-')}/{fmt(p99, '.2f', '-')} s"


def _notes(text: Text, sample: FleetSample, about: str) -> None:
    """The notes about this pane's exporters; the GPU pane also says which queries were cut short."""
    for note in sample.notes:
        if about in note or (about == "GPU" and "left off" in note):
            text.append("\n" + visible(note), style=style("quiet"))
