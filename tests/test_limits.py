"""What the OS lets one client hold: the open-files limit raised at start, and a limit it refuses is one line
naming the number and how to raise it, before any load; one client address's ports to one server, said."""

from __future__ import annotations

from helpers import bench
from tui import limits
from tui.load.settings import CONCURRENCY_STOPS, MAX_CONCURRENCY, MAX_USERS, USER_STOPS


def test_one_limit_of_16384_streams_users_and_in_flight_with_slider_stops_up_to_it():
    assert MAX_CONCURRENCY == MAX_USERS == 16_384
    assert CONCURRENCY_STOPS[-1] == USER_STOPS[-1] == 16_384 and 4096 in CONCURRENCY_STOPS


def test_the_soft_limit_is_raised_to_the_hard_one(monkeypatch):
    state = {"soft": 1024, "hard": 20_000}
    monkeypatch.setattr(limits.resource, "getrlimit", lambda kind: (state["soft"], state["hard"]))

    def setrlimit(kind, values):
        state["soft"] = values[0]

    monkeypatch.setattr(limits.resource, "setrlimit", setrlimit)
    assert limits.raise_open_files() == 20_000 and limits.open_files_problem(16_384) is None
    state["hard"] = state["soft"] = 2_000
    problem = limits.open_files_problem(4096)
    assert "4,096 connections" in problem and "2,000" in problem and "ulimit -n 4160" in problem


def test_a_bench_past_the_limit_is_one_line_and_exit_2_before_any_load(monkeypatch, capsys, sim_factory, tmp_path):
    monkeypatch.setattr(limits, "raise_open_files", lambda: 200)
    out = tmp_path / "kept.jsonl"
    out.write_text("an earlier run\n")
    status, stdout, err = bench(capsys, "--url", sim_factory().url, "--concurrency", "500", "--out", str(out))
    assert status == 2 and stdout == "" and err.count("\n") == 1 and "ulimit -n 564" in err
    assert out.read_text() == "an earlier run\n"  # nothing was sent, nothing lost


def test_more_connections_than_ephemeral_ports_is_said(monkeypatch, tmp_path):
    ports = tmp_path / "ip_local_port_range"
    ports.write_text("32768\t60999\n")
    monkeypatch.setattr(limits, "PORT_RANGE", ports)
    assert limits.ephemeral_ports() == 28_232 and limits.ports_note(16_384) is None
    assert "28,232" in limits.ports_note(30_000)
    monkeypatch.setattr(limits, "PORT_RANGE", tmp_path / "absent")
    assert limits.ephemeral_ports() is None and limits.ports_note(30_000) is None
