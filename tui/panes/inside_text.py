"""The server view (the `i` key) as text: llama.cpp's slots, or vLLM's / SGLang's scheduler and latencies, then
where the recent requests' time went.

Pure functions from an `InsideSample` (read in a daemon thread, only while the view is open) and the engine's
`RecentSplit`; every figure says where it comes from.
"""

from __future__ import annotations

from rich.text import Text

from tui.load.snapshot import SPLIT_WINDOW_S
from tui.load.time_split import RecentSplit, where_time_goes
from tui.probes.inside import RECENT_S, InsideSample, PhaseFigures, SlotRow
from tui.untrusted import visible
from tui.widgets.drawing import fmt
from tui.widgets.palette import style

BAR_CELLS = 24
SHOWN_SLOTS = 16  # rows of slots; more are counted by state
PHASE_NAMES = {"ttft": "TTFT", "queue": "queue", "prefill": "prefill", "decode": "decode", "itl": "ITL",
               "e2e": "e2e"}
STATE_STYLES = {"idle": "muted", "prefill": "waiting", "decoding": "streaming"}


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def slot_lines(slots: tuple[SlotRow, ...], left_off: int) -> Text:
    text = Text(f"{'slot':>4}  {'state':<8}  {'prompt':>6}  {'cached':>6}  {'decoded':>7}  {'left':>5}  task\n",
                style="bold")
    for slot in slots[:SHOWN_SLOTS]:
        text.append(f"{slot.id:>4}  ")
        text.append(f"{slot.state:<8}", style=style(STATE_STYLES.get(slot.state, "quiet")))
        if slot.state != "idle":
            text.append(f"  {fmt(slot.prompt, 'd'):>6}  {fmt(slot.cached, 'd'):>6}  {fmt(slot.decoded, 'd'):>7}"
                        f"  {fmt(slot.left, 'd'):>5}  {fmt(slot.task, 'd')}")
        text.append("\n")
    more = slots[SHOWN_SLOTS:]
    if more or left_off:
        counts = {state: sum(1 for s in more if s.state == state) for state in STATE_STYLES}
        text.append(f"  +{len(more) + left_off} more: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
                    + "\n", style=style("muted"))
    return text


def _estimate(figures: PhaseFigures, which: str) -> str:
    est = figures.p50 if which == "p50" else figures.p99
    return "-" if est is None else f"{est.value:.3f} ({est.bucket()})"


def phase_lines(sample: InsideSample) -> Text:
    text = Text(f"server latency, last {sample.window_s:.0f} s", style="bold")
    text.append(" (histograms: estimates within the bucket shown)\n", style=style("muted"))
    text.append(f"{'':8}{'p50 s':>22}  {'p99 s':>22}  {'mean s':>7}  {'n':>5}\n", style=style("quiet"))
    for phase, figures in sample.phases.items():
        text.append(f"{PHASE_NAMES.get(phase, phase):<8}{_estimate(figures, 'p50'):>22}  {_estimate(figures, 'p99'):>22}"
                    f"  {fmt(figures.mean, '.3f'):>7}  {figures.count:>5.0f}\n")
    return text


def scheduler_line(sample: InsideSample) -> Text:
    lines = []
    if sample.cache_total is not None:
        cache_name = "prompt tokens from cache" if sample.kind == "llama.cpp" else "prefix cache hits"
        recent = _share(sample.cache_recent) if sample.cache_recent is not None else "none asked"
        lines.append(f"{cache_name} {recent} in the last {RECENT_S:.0f} s · {_share(sample.cache_total)}"
                     " since the server started")
    if sample.preemptions_total is not None:
        lines.append(f"preemptions {fmt(sample.preemptions_per_s, '.1f')}/s ({sample.preemptions_total:.0f} in all)")
    text = Text("\n".join(lines))
    if sample.waiting_by_reason:
        text.append(("  " if lines else "") + "waiting: " + ", ".join(f"{visible(reason)} {n:.0f}"
                                              for reason, n in sorted(sample.waiting_by_reason.items())))
    if sample.spec_acceptance is not None:
        text.append(f"\nspeculative tokens accepted {sample.spec_acceptance:.0%}")
    if sample.busy_per_decode is not None:
        text.append(f"\nbusy slots per decode {sample.busy_per_decode:.2f} (llama.cpp's running average)",
                    style=style("quiet"))
    return text + Text("\n")


def split_lines(split: RecentSplit | None, sample: InsideSample | None) -> Text:
    means = {p: f.mean for p, f in sample.phases.items() if f.mean is not None} if sample else {}
    bars = where_time_goes(split, means)
    text = Text("where the time goes", style="bold")
    if not bars or split is None:
        return text + Text(f": no finished request with the server's own times in the last {SPLIT_WINDOW_S} s\n",
                           style=style("muted"))
    text.append(f", mean of the last {split.n} requests ({SPLIT_WINDOW_S} s)\n", style=style("muted"))
    total = sum(max(0.0, b.seconds) for b in bars) or 1.0
    width = max(len(b.phase) for b in bars)
    for bar in bars:
        cells = round(BAR_CELLS * max(0.0, bar.seconds) / total)
        text.append(f"{bar.phase:<{width}} ")
        text.append("█" * cells, style=style("accent") if bar.source != "client" else style("waiting"))
        text.append("░" * (BAR_CELLS - cells), style=style("bar-empty"))
        text.append(f" {bar.seconds:.3f} s", style="bold")
        text.append(f" ({bar.source})", style=style("muted"))
        if bar.seconds < 0:  # the client's mean TTFT below the server's: other requests in one of the windows
            text.append(" below the server's: the windows hold other requests", style=style("note"))
        text.append("\n")
    return text


def inside_text(sample: InsideSample | None, split: RecentSplit | None) -> Text:
    text = Text("server inside", style="bold")
    if sample is None:
        return text + Text(" … reading", style=style("muted"))
    text.append(f" · {visible(sample.kind)} (server-reported)\n", style=style("muted"))
    if sample.error:
        text.append(visible(sample.error) + "\n", style=style("error"))
    for note in sample.notes:
        text.append(visible(note) + "\n", style=style("quiet"))
    if sample.slots:
        text.append_text(slot_lines(sample.slots, sample.slots_left_off))
    if any(v is not None for v in (sample.cache_total, sample.preemptions_total, sample.spec_acceptance,
                                    sample.busy_per_decode)) or sample.waiting_by_reason:
        text.append_text(scheduler_line(sample))
    if sample.phases:
        text.append_text(phase_lines(sample))
    text.append_text(split_lines(split, sample))
    return text
