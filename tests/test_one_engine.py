"""One engine, two drivers: a bench cell and the app's engine, given the same settings, send the same requests."""

from __future__ import annotations

import argparse
import asyncio
import json

import pytest

from hostile import HostileServer
from tui.bench.options import add_arguments, validate
from tui.cli import main
from tui.load.discover import discover
from tui.load.phase import run_phase
from tui.load.process import EngineProcess

FLAGS = ["--concurrency", "3", "--rounds", "2", "--max-tokens", "8", "--seed", "7", "--temperature", "0.5"]


def chat_bodies(server: HostileServer) -> list[dict]:
    """What each chat request asked for, in a fixed order."""
    bodies = [r.json() for r in server.seen if r.method == "POST" and "chat" in r.path]
    return sorted(bodies, key=lambda body: json.dumps(body, sort_keys=True))


@pytest.fixture
def prompt_file(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"question {i}: why is the sky blue?"}) + "\n" for i in range(5)))
    return path


@pytest.mark.slow  # the app's engine runs in a process of its own
def test_a_bench_cell_and_the_apps_engine_send_the_same_requests(prompt_file, capsys):
    flags = [*FLAGS, "--prompts", str(prompt_file)]
    with_bench = HostileServer("normal").start()
    try:
        assert main(["bench", "--url", with_bench.url, "--workers", "1", *flags]) == 0
        sent_by_bench = chat_bodies(with_bench)
    finally:
        with_bench.stop()
    capsys.readouterr()

    with_app = HostileServer("normal").start()
    try:
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        run = validate(parser.parse_args(["--url", with_app.url, *flags]))
        target, _ = discover(with_app.url)
        engine = EngineProcess(target, run.settings, prompts=run.prompts)  # as the app makes it
        engine.start()
        try:
            for rnd in range(run.rounds):  # the cell, as the bench runs it: one phase a round
                asyncio.run(run_phase(engine, run.cell(run.loads[0], run.words[0], rnd)))
        finally:
            engine.stop()
        sent_by_app = chat_bodies(with_app)
    finally:
        with_app.stop()

    assert len(sent_by_bench) == 6  # 3 streams × 2 rounds
    assert sent_by_app == sent_by_bench
    prompts = {body["messages"][0]["content"] for body in sent_by_bench}  # --seed shuffles the file each round
    assert len(prompts) >= 3 and all(body["max_tokens"] == 8 and body["temperature"] == 0.5 for body in sent_by_bench)
