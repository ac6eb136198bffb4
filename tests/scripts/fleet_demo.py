"""A made-up fleet behind a real Prometheus, to look at `tokentop --prometheus` by hand:

    python tests/scripts/fleet_demo.py      # prints the Prometheus URL and a SIMULATED server's, runs until Ctrl-C
    tokentop --url SIM_URL --prometheus PROMETHEUS_URL --concurrency 8 --autostart --metrics-port 9464

Two GPU hosts (DCGM's exporter format: 2 and 1 A100s), node_exporter (4 cores), two vLLM replicas, a
router that re-exports their names, a target that is down, and `tokentop sim` (4 slots), whose queue
the load fills live; and tokentop's own --metrics-port 9464, so the sim's line shows the client's TTFT
beside it; scraped every second (tests/get_prometheus.sh fetches Prometheus).
"""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' fake exporters and Prometheus
from fake_exporters import Exporter, dcgm, node, vllm  # noqa: E402
from prometheus_server import PrometheusServer, find_prometheus  # noqa: E402
from tui.servers.simproc import SimProcess  # noqa: E402


def main() -> int:
    signal.signal(signal.SIGTERM, lambda signum, frame: signal.raise_signal(signal.SIGINT))  # stop as Ctrl-C does
    binary = find_prometheus()
    if binary is None:
        print("prometheus is missing: bash tests/get_prometheus.sh")
        return 2
    with tempfile.TemporaryDirectory() as folder, Exporter(dcgm({"gpu-a": 2, "gpu-b": 1})) as gpus, \
            Exporter(node(4)) as host, Exporter(vllm(8, 3)) as busy, Exporter(vllm(2, 0)) as calm, \
            Exporter(vllm(10, 3)) as router, SimProcess(parallel=4) as sim:
        jobs = {"dcgm": [gpus.target], "node": [host.target], "vllm": [busy.target, calm.target],
                "vllm-router": [router.target], "gone": ["127.0.0.1:9"], "sim": [sim.url.removeprefix("http://")],
                "tokentop": ["127.0.0.1:9464"]}
        with PrometheusServer(binary, Path(folder), jobs) as server:
            print(server.url, sim.url, flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                return 0


if __name__ == "__main__":
    raise SystemExit(main())
