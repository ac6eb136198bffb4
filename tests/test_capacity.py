"""The capacity finder, run files, compare and charts: the search alone, then against the simulated server."""

from __future__ import annotations

import json

import pytest

from helpers import bench

from tui.load.capacity import CONCURRENCY, RATE, CapacitySearch
from tui.cli import main
from tui.load.slo import Broken, broken, parse_slo

LATE = [Broken("ttft_p99", 3.0, 2.0)]


def search_against(capacity: float, kind: str = CONCURRENCY) -> CapacitySearch:
    """The search against a server that meets the SLO up to `capacity` and breaks it above."""
    search = CapacitySearch(kind)
    while (level := search.next_level()) is not None:
        search.record(level, [] if level <= capacity else LATE)
        assert len(search.results) < 40, "the search must end"
    return search


@pytest.mark.parametrize("capacity", [0, 1, 3, 4, 5, 37, 1000])
def test_the_search_finds_the_last_level_that_meets_the_slo(capacity):
    search = search_against(capacity)
    assert search.capacity == capacity and search.breaks_at == capacity + 1
    assert search.broken_slo == LATE
    tried = list(search.results)  # in the order tried
    assert tried[:3] == [1, 2, 4][:len(tried[:3])]  # it steps up 1, 2, 4 … before it bisects
    assert len(tried) <= 2 * (capacity + 1).bit_length() + 1


def test_the_search_stops_at_its_ceiling_and_says_so():
    search = search_against(100_000)
    assert search.capacity == 16_384 and search.breaks_at is None
    assert "nothing up to 16384 streams broke it" in search.summary({"ttft_p99": 2})


def test_a_server_that_breaks_at_once_has_capacity_zero_said_plainly():
    search = search_against(0)
    assert search.to_json()["capacity"] == 0 and search.to_json()["breaks_at"] == 1
    assert search.summary({"ttft_p99": 2}).startswith("Capacity: 0 — even 1 stream breaks the SLO")


@pytest.mark.parametrize("capacity", [0.3, 1.0, 2.5, 12.0])
def test_a_rate_search_ends_within_15_percent(capacity):
    search = search_against(capacity, RATE)
    assert search.capacity <= capacity < search.breaks_at <= search.capacity * 1.15 or (
        search.capacity == 0 and search.breaks_at <= 0.1)


def test_cell_slos_are_statistics_and_speeds_are_minimums():
    slo = parse_slo("ttft_p99=2,stream_tps_p10=10,e2e=30")
    row = {"errors": 0, "percentiles": {"ttft_s": {"p99": 2.5}, "e2e_s": {"max": 12.0},
                                        "stream_tps": {"p10": 8.0}}}
    assert [b.name for b in broken(row, slo)] == ["ttft_p99", "stream_tps_p10"]
    assert str(broken(row, slo)[1]) == "stream_tps_p10 8 tok/s < 10 tok/s"
    good = {"errors": 0, "percentiles": {"ttft_s": {"p99": 1.0}, "e2e_s": {"max": 12.0}, "stream_tps": {"p10": 20}}}
    assert broken(good, slo) == []
    assert [b.name for b in broken({**good, "errors": 2}, slo)] == ["errors"]  # a failed request never meets it


def test_find_capacity_on_four_slots_finds_four(sim_factory, capsys, tmp_path):
    # 4 slots, 2 s a request (0.2 s real): a fifth stream waits a whole request for its first token
    sim = sim_factory(parallel=4, service_s=2.0, speed=10)
    status, out, err = bench(capsys, "--url", sim.url, "--find-capacity", "--slo", "ttft_p99=0.1", "--duration", "1",
                             "--words", "25", "--format", "json", "--save", str(tmp_path / "run.json"))
    assert status == 0, err
    report = json.loads(out)
    assert report["capacity"] == 4 and report["breaks_at"] == 5
    assert report["broken_slo"][0].startswith("ttft_p99 ")
    assert [level["level"] for level in report["levels"]] == [1, 2, 4, 5, 6, 8]
    assert [row["concurrency"] for row in report["rows"]] == [1, 2, 4, 5, 6, 8]
    assert "4 streams: meets the SLO" in err and "5 streams: ttft_p99" in err
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["answer"]["capacity"] == 4 and len(saved["records"]) == sum(r["requests"] for r in saved["rows"])


def test_find_capacity_says_the_answer_and_draws_the_knee(sim_factory, capsys, tmp_path):
    sim = sim_factory(parallel=2, service_s=2.0, speed=10)
    plot = tmp_path / "knee.txt"
    status, out, _ = bench(capsys, "--url", sim.url, "--find-capacity", "--slo", "ttft_p99=0.1", "--duration", "1",
                           "--words", "25", "--plot", str(plot))
    assert status == 0
    assert "Capacity: 2 streams within the SLO (ttft_p99=0.1).\nBreaks at 3 streams: ttft_p99" in out
    chart = plot.read_text()
    assert "ttft_p99 by level" in chart and "●" in chart and "✗" in chart and "\x1b" not in chart


def test_a_slo_broken_at_one_stream_is_capacity_zero_and_exit_0(sim_factory, capsys):
    sim = sim_factory(parallel=2, service_s=2.0, speed=10)
    status, out, _ = bench(capsys, "--url", sim.url, "--find-capacity", "--slo", "e2e_p50=0.01", "--duration", "0.5",
                           "--words", "25")
    assert status == 0 and "Capacity: 0 — even 1 stream breaks the SLO (e2e_p50=0.01): e2e_p50 " in out


def test_find_capacity_of_a_rate(sim_factory, capsys):
    sim = sim_factory(parallel=2, service_s=2.0, speed=10)  # 10 requests/s in real time at most
    status, out, err = bench(capsys, "--url", sim.url, "--find-capacity", "rate", "--slo", "ttft_p99=0.3",
                             "--duration", "2", "--words", "25", "--format", "json")
    assert status == 0, err
    report = json.loads(out)
    assert report["kind"] == "rate" and 2 <= report["capacity"] <= 10 < report["breaks_at"] * 1.5
    assert all("rate" in row for row in report["rows"])


@pytest.mark.parametrize("argv, message", [
    (["--find-capacity"], "--find-capacity needs --slo"),
    (["--find-capacity", "--slo", "ttft_p99=1", "--concurrency", "4"], "--find-capacity chooses the levels itself"),
    (["--find-capacity", "--slo", "ttft_p99=1", "--words", "25,50"], "--find-capacity takes one --words value"),
    (["--find-capacity", "--slo", "speed=1"], "unknown --slo name 'speed'"),
    (["--find-capacity", "--slo", "ttft_p99=soon"], "--slo ttft_p99 takes a number of seconds"),
])
def test_bad_capacity_flags_are_one_line_and_exit_2(capsys, argv, message):
    status, out, err = bench(capsys, "--url", "http://127.0.0.1:9", *argv)
    assert status == 2 and out == "" and err.count("\n") == 1 and message in err


# --- run files and compare ---------------------------------------------------------------------------
def saved_run(sim, path, capsys, *argv) -> None:
    status, _, err = bench(capsys, "--url", sim.url, "--concurrency", "1,4", "--words", "25", "--save", str(path),
                           *argv)
    assert status == 0, err


def test_compare_shows_what_differs_then_the_shared_cells_with_changes(sim_factory, capsys, tmp_path):
    one, four = sim_factory(parallel=1, speed=20), sim_factory(parallel=4, speed=20)
    saved_run(one, tmp_path / "a.json", capsys, "--rounds", "5")
    saved_run(four, tmp_path / "b.json", capsys, "--rounds", "5")
    status = main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--format", "markdown",
                   "--plot", str(tmp_path / "c.html")])
    out = capsys.readouterr().out
    assert status == 0
    assert out.index("What differs") < out.index("Cells in every run")
    assert "| server.url |" in out
    p50 = [line for line in out.splitlines() if line.startswith("| 4 streams × 25 | TTFT p50")]
    assert len(p50) == 1 and "better" in p50[0]  # 4 slots: none of the 4 waits, unlike on 1; the intervals part
    # 20 requests cannot bound a p99 from above: however far apart, the two p99s are within noise of each other
    p99 = [line for line in out.splitlines() if line.startswith("| 4 streams × 25 | TTFT p99")]
    assert len(p99) == 1 and "within noise" in p99[0]
    assert "'within noise' where the figures' 95 % intervals overlap" in out
    assert "\x1b" not in out  # markdown is plain
    assert (tmp_path / "c.html").read_text().startswith("<!DOCTYPE html>")


def test_a_run_file_keeps_the_machine_and_masks_the_password(sim_factory, capsys, tmp_path):
    from tui.bench.runfile import command_line

    sim = sim_factory(speed=50)
    saved_run(sim, tmp_path / "a.json", capsys)
    run = json.loads((tmp_path / "a.json").read_text())
    assert run["format"] == "tokentop-run" and run["version"] == 1 and run["tokentop_version"]
    assert run["server"]["kind"] == "ollama" and run["server"]["simulated"] is True
    assert run["model"]["name"] == "tokentop-sim:70b-simulated" and run["model"]["quantization_level"]
    assert run["host"]["cores"] >= 1 and "gpus" in run and run["meta"]["options"]["concurrency"] == [1, 4]
    assert len(run["records"]) == 5 and {r["concurrency"] for r in run["records"]} == {1, 4}
    line = command_line(["bench", "--url", "http://me:hunter22@gpu:8000", "--url=http://me:hunter22@gpu:8000"])
    assert "hunter22" not in line and line.count("me:***@gpu") == 2


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("{not json", "not JSON"),
    ('{"rows": []}', "not a tokentop run file"),
    ('{"format": "tokentop-run", "version": 99, "rows": []}', "run file version 99"),
    ('{"format": "tokentop-run", "version": 1, "rows": [{"words": "x"}]}', 'rows[0]: words is "x"'),
])
def test_bad_run_files_are_one_line_and_exit_2(capsys, tmp_path, content, message):
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    good = tmp_path / "good.json"
    good.write_text('{"format": "tokentop-run", "version": 1, "rows": []}')
    status = main(["compare", str(good), str(bad)])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and message in err and "bad.json" in err


def test_charts_leave_plotext_clean_for_the_next_one():
    """plotext keeps one global figure: a bench chart (two panels) must not leak into the app's chart."""
    import plotext as plt

    from tui.bench.charts import compare_chart, load_chart
    from tui.load.history import LoadPoint
    from tui.widgets.chart import plot_tps

    rows = [{"concurrency": c, "words": 25, "decode_tps_mean": 60 / c, "aggregate_tps": 60.0, "ttft_p50_s": 0.1 * c,
             "ttft_p99_s": 0.2 * c} for c in (1, 2, 4, 8)]
    load_chart(rows, 100)
    chart = plt.uncolorize(compare_chart([("run A", rows), ("run B", rows)], 100))
    assert chart.count("└┬") == 2  # two panels, not three
    points = [LoadPoint(t, 10.0, 5.0, 1, 1, 0) for t in range(-5, 1)]
    assert "┤" in plot_tps(points, 60, 12, 60)  # on a linear axis from -60: no log scale left behind
