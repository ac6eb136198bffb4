"""A real Prometheus for the tests: Debian's package, unpacked (not installed as a service), run on a free
loopback port with its own config (1 s scrapes of the targets a test names) and its own storage.

Where the binary is: $TOKENTOP_PROMETHEUS, else ~/.cache/tokentop/prometheus/usr/bin/prometheus, which
`tests/get_prometheus.sh` fills (the README's test command runs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx

from tui.servers.child import spawn
from tui.servers.llama import free_port

UNPACKED = Path.home() / ".cache" / "tokentop" / "prometheus" / "usr" / "bin" / "prometheus"


def find_prometheus() -> Path | None:
    named = os.environ.get("TOKENTOP_PROMETHEUS")
    if named:
        return Path(named) if Path(named).is_file() else None
    if UNPACKED.is_file():
        return UNPACKED
    found = shutil.which("prometheus")
    return Path(found) if found else None


def require_prometheus() -> Path:
    """The binary, or the test skips (fails under CI, where no real-server test may skip)."""
    import pytest

    from helpers import UNDER_CI

    binary = find_prometheus()
    if binary is None:
        if UNDER_CI:
            pytest.fail("the Prometheus tests cannot be skipped under CI: run tests/get_prometheus.sh")
        pytest.skip("prometheus is missing (bash tests/get_prometheus.sh)")
    return binary


class PrometheusServer:
    """`with PrometheusServer(binary, folder, {"job": ["127.0.0.1:PORT", …]}) as prom: prom.url`."""

    def __init__(self, binary: Path, folder: Path, jobs: dict[str, list[str]]) -> None:
        self.binary, self.folder, self.jobs = binary, folder, jobs
        self.port = free_port("127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> PrometheusServer:
        config = self.folder / "prometheus.yml"
        lines = ["global:", "  scrape_interval: 1s", "  evaluation_interval: 1s", "scrape_configs:"]
        for job, targets in self.jobs.items():
            lines += [f"  - job_name: {job}", "    static_configs:", f"      - targets: [{', '.join(targets)}]"]
        config.write_text("\n".join(lines) + "\n")
        log = open(self.folder / "prometheus.log", "w")
        # spawned with a parent-death signal: a test or demo killed mid-way leaves no Prometheus behind
        self.process = spawn(
            [str(self.binary), f"--config.file={config}", f"--storage.tsdb.path={self.folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.wait_for_samples()
        return self

    def wait_for_samples(self, timeout: float = 60.0) -> None:
        """Until every target has been scraped once (`up` has a series each): about 6 s after start, as
        Prometheus hands targets to its scrapers every 5 s. Polled, never a fixed sleep."""
        wanted = sum(len(t) for t in self.jobs.values())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited ({self.process.returncode}); see {self.folder}/prometheus.log")
            try:
                result = httpx.get(self.url + "/api/v1/query", params={"query": "up"}, timeout=2).json()
                if len(result["data"]["result"]) >= wanted:
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus had not scraped its {wanted} targets after {timeout:g} s")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
