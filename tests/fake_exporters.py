"""Small exporters for the Prometheus tests: what DCGM's exporter, node_exporter and a vLLM replica would
serve, for several made-up hosts, as Prometheus text on /metrics (each in a thread, on loopback). The vLLM
page is the one recorded from a real vLLM, with each replica's own figures written in."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Exporter:
    """`with Exporter(text_fn) as e: e.target` — serves text_fn(scrape number) on /metrics (or on any
    path, with another status, for a server that is not what it should be)."""

    def __init__(self, text: Callable[[int], str], status: int = 200, content_type: str = "text/plain; version=0.0.4"
                 ) -> None:
        scrapes = itertools.count()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                body = text(next(scrapes)).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.target = f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Exporter:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def dcgm(hosts: dict[str, int]) -> Callable[[int], str]:
    """DCGM's exporter on each host: `gpus` A100s, host in `Hostname` (one host uses the newer `hostname`)."""
    def text(n: int) -> str:
        lines = []
        for h, (host, gpus) in enumerate(hosts.items()):
            host_label = "hostname" if h == 1 else "Hostname"
            for gpu in range(gpus):
                labels = (f'gpu="{gpu}",UUID="GPU-{h}{gpu}",device="nvidia{gpu}",modelName="NVIDIA A100-SXM4-80GB",'
                          f'{host_label}="{host}"')
                for name, value in (("DCGM_FI_DEV_GPU_UTIL", 90 + gpu), ("DCGM_FI_DEV_FB_USED", 40960),
                                    ("DCGM_FI_DEV_FB_FREE", 40960), ("DCGM_FI_DEV_POWER_USAGE", 300.5 + gpu),
                                    ("DCGM_FI_DEV_GPU_TEMP", 60), ("DCGM_FI_DEV_SM_CLOCK", 1410)):
                    lines.append(f"{name}{{{labels}}} {value}")
        return "\n".join(lines) + "\n"
    return text


def node(cores: int) -> Callable[[int], str]:
    """node_exporter: each core half busy (idle grows 0.5 s per scrape of 1 s), 25 % of RAM used."""
    def text(n: int) -> str:
        lines = []
        for cpu in range(cores):
            lines.append(f'node_cpu_seconds_total{{cpu="{cpu}",mode="idle"}} {1000 + 0.5 * n}')
            lines.append(f'node_cpu_seconds_total{{cpu="{cpu}",mode="user"}} {1000 + 0.5 * n}')
        lines += ["node_memory_MemTotal_bytes 1000000000", "node_memory_MemAvailable_bytes 750000000"]
        return "\n".join(lines) + "\n"
    return text


RECORDED_VLLM = (Path(__file__).parent / "data" / "vllm_metrics.txt").read_text()  # from a real vLLM 0.32.0


def vllm(running: int, waiting: int, model: str = "meta-llama/Llama-3.1-8B") -> Callable[[int], str]:
    """A vLLM replica: the /metrics page recorded from a real vLLM, with this replica's model, queue, KV cache
    (42 %), generated tokens (100 a running request a scrape) and first tokens (one a running request a scrape,
    each 0.09 s after its request: TTFT in the bucket 0.08–0.1 s)."""
    values = {"vllm:num_requests_running": running, "vllm:num_requests_waiting": waiting,
              "vllm:kv_cache_usage_perc": 0.42}
    page = RECORDED_VLLM.replace('model_name="SmolLM2-135M-Instruct"', f'model_name="{model}"')

    def text(n: int) -> str:
        lines = []
        for line in page.splitlines():
            name = line.split("{", 1)[0]
            if name == "vllm:generation_tokens_total":
                line = f"{line.rsplit(' ', 1)[0]} {100 * running * n}"
            elif name == "vllm:time_to_first_token_seconds_bucket":
                le = float(line.split('le="', 1)[1].split('"', 1)[0])
                line = f"{line.rsplit(' ', 1)[0]} {running * n if le >= 0.09 else 0}"
            elif name in ("vllm:time_to_first_token_seconds_count", "vllm:time_to_first_token_seconds_sum"):
                line = f"{line.rsplit(' ', 1)[0]} {running * n * (0.09 if name.endswith('_sum') else 1)}"
            elif name in values:
                line = f"{line.rsplit(' ', 1)[0]} {values[name]}"
            lines.append(line)
        return "\n".join(lines) + "\n"
    return text
