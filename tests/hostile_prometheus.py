#!/usr/bin/env python3
"""A hostile Prometheus for tests: the HTTP API tokentop reads (/api/v1/query, /api/v1/query_range,
/api/v1/targets) answering about a small fleet (two GPUs of one host, one node_exporter host, one vLLM replica,
one target down), with one fault per server (see FAULTS). Loopback only; it stops by itself after `lifetime`
seconds, and every loop in it is bounded.

In a thread:      with HostilePrometheus("trickle") as prom: prom.url
As a process:     python tests/hostile_prometheus.py --fault trickle    (prints its URL when ready)
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from hostile import gzip_bomb

FAULTS = {
    "normal": "the fleet as it is",
    "inf_history": "the GPUs' history holds +Inf, -Inf and two 1e308 (their mean overflows)",
    "odd_cpu": "node_exporter's cpu labels are '²' (a digit to str.isdigit, not to int) and 'x'",
    "echo_token": "every label, and the down target's lastError, echo the credentials it was sent",
    "gzip_bomb": "every answer is 1 GiB of zeros gzipped (about 1 MB on the wire)",
    "big": "every answer is 50 MB of valid JSON",
    "trickle": "every answer comes a byte every 2 s",
    "many_series": "every instant query answers 100,000 series",
    "absurd": "figures no GPU, host or server reads: 1e308 W, RAM 200 %, a cache 4,200 times full, time -1e300",
}
HOST, NODE, REPLICA = "gpu-a", "node-a:9100", "vllm-a:8000"
TRICKLE_BYTES = 60  # a trickled answer stops after this many bytes (two minutes)


def _vector(series: list[tuple[dict[str, str], str, float]]) -> dict:
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": labels, "value": [at, value]} for labels, value, at in series]}}


class Fleet:
    """The answers, shaped by the fault; `echo` is what the client sent as credentials (for echo_token)."""

    def __init__(self, fault: str, echo: str) -> None:
        self.fault, self.echo, self.now = fault, echo, time.time()

    def label(self, text: str) -> str:
        return f"{text} {self.echo}" if self.fault == "echo_token" and self.echo else text

    def query(self, expr: str) -> dict:
        if self.fault == "many_series":
            return _vector([({"instance": f"i-{i}", "gpu": "0", "cpu": str(i % 64)}, "1", self.now)
                            for i in range(100_000)])
        absurd = self.fault == "absurd"
        at = -1e300 if absurd else self.now
        if expr.startswith("DCGM_FI_DEV_"):
            values = {"DCGM_FI_DEV_GPU_UTIL": "1e308" if absurd else "50", "DCGM_FI_DEV_FB_USED": "1e308" if absurd
                      else "1000", "DCGM_FI_DEV_FB_FREE": "1000", "DCGM_FI_DEV_POWER_USAGE": "-5" if absurd else "300",
                      "DCGM_FI_DEV_GPU_TEMP": "NaN" if absurd else "60", "DCGM_FI_DEV_SM_CLOCK": "+Inf" if absurd
                      else "1400"}
            return _vector([({"gpu": str(g), "modelName": self.label("NVIDIA H100"), "Hostname": self.label(HOST),
                              "instance": "dcgm:9400"}, values.get(expr, "1"), at) for g in (0, 1)])
        if "node_cpu_seconds_total" in expr:
            cpus = ("²", "x", "1") if self.fault == "odd_cpu" else ("0", "1")
            return _vector([({"cpu": cpu, "instance": self.label(NODE)}, "5" if absurd else "0.5", at) for cpu in cpus])
        if "node_memory_MemAvailable_bytes" in expr:
            return _vector([({"instance": self.label(NODE)}, "2.0" if absurd else "0.25", at)])
        gauges = {"vllm:num_requests_running": "3", "vllm:num_requests_waiting": "1e300" if absurd else "1",
                  "vllm:kv_cache_usage_perc": "4200" if absurd else "0.4"}
        name = next((n for n in gauges if n in expr), None)
        if name is None and "vllm:generation_tokens_total" in expr:
            name, gauges = expr, {expr: "-1e308" if absurd else "100"}
        if name is None:
            return _vector([])
        return _vector([({"instance": self.label(REPLICA), "job": "vllm", "model_name": self.label("llama")},
                         gauges[name], at)])

    def query_range(self, expr: str) -> dict:
        if not expr.startswith("DCGM_FI_DEV_GPU_UTIL"):
            return {"status": "success", "data": {"resultType": "matrix", "result": []}}
        values = ["+Inf", "-Inf", "1e308", "1e308", "NaN", "50"] if self.fault == "inf_history" else ["40", "50"]
        start = self.now - 5 * len(values)
        return {"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"gpu": str(g), "Hostname": self.label(HOST)},
             "values": [[start + 5 * i, v] for i, v in enumerate(values)]} for g in (0, 1)]}}

    def targets(self) -> dict:
        return {"status": "success", "data": {"activeTargets": [
            {"labels": {"job": "vllm", "instance": self.label(REPLICA)}, "health": "up", "lastError": ""},
            {"labels": {"job": self.label("gone"), "instance": "10.0.0.9:9400"}, "health": "down",
             "lastError": self.label("server returned HTTP status 401 Unauthorized; sent")}]}}


@functools.cache
def big_answer() -> bytes:
    one = json.dumps({"metric": {"instance": "x" * 200, "gpu": "0"}, "value": [1764028800, "1"]}).encode()
    items = b",".join([one] * (50_000_000 // len(one)))
    return b'{"status":"success","data":{"resultType":"vector","result":[' + items + b"]}}"


class HostilePrometheus:
    def __init__(self, fault: str = "normal", lifetime: float = 120.0, port: int = 0) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r} (choose from: {', '.join(FAULTS)})")
        self.fault, self.lifetime = fault, lifetime
        self.requests = 0
        self.trickling = 0  # trickle: answers being sent now
        self.credentials: list[str] = []  # what each request sent as its Authorization
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # headers and body go in two writes: without this, each answer waits out a delayed ACK (40 ms)
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                owner.requests += 1
                owner._answer(self)

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that hung up mid-answer (as tokentop does past its cap) is no error here

        self.server = Server(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._stop = threading.Event()

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        auth = handler.headers.get("Authorization", "")
        self.credentials.append(auth)
        echo = auth.removeprefix("Bearer ")
        if auth.startswith("Basic "):
            echo = base64.b64decode(auth[6:]).decode("utf-8", "replace")
        parts = urlsplit(handler.path)
        expr = (parse_qs(parts.query).get("query") or [""])[0]
        fleet = Fleet(self.fault, echo)
        headers = {"Content-Type": "application/json"}
        if self.fault == "gzip_bomb":
            body, headers["Content-Encoding"] = gzip_bomb(), "gzip"
        elif self.fault == "big":
            body = big_answer()
        elif parts.path == "/api/v1/query":
            body = json.dumps(fleet.query(expr)).encode()
        elif parts.path == "/api/v1/query_range":
            body = json.dumps(fleet.query_range(expr)).encode()
        elif parts.path == "/api/v1/targets":
            body = json.dumps(fleet.targets()).encode()
        else:
            body, headers["Content-Type"] = b"404 page not found", "text/plain"
        handler.send_response(200 if body[:1] == b"{" or self.fault == "gzip_bomb" else 404)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            handler.send_header(name, value)
        handler.end_headers()
        if self.fault != "trickle":
            with contextlib.suppress(OSError):  # the client went away (past its cap): that is its right
                handler.wfile.write(body)
            return
        self.trickling += 1
        try:
            for byte in body[:TRICKLE_BYTES]:
                if self._stop.wait(2.0):
                    return
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
        except OSError:
            pass
        finally:
            self.trickling -= 1

    def start(self) -> HostilePrometheus:
        threading.Thread(target=self.server.serve_forever, name=f"prometheus-{self.fault}", daemon=True).start()
        timer = threading.Timer(self.lifetime, self.stop)
        timer.daemon = True
        timer.start()
        return self

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self.server.shutdown()
            self.server.server_close()

    def __enter__(self) -> HostilePrometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fault", default="normal", choices=FAULTS)
    p.add_argument("--port", type=int, default=0, help="0: a free port")
    p.add_argument("--lifetime", type=float, default=300.0, help="stop by itself after this many seconds")
    args = p.parse_args(argv)
    server = HostilePrometheus(args.fault, args.lifetime, args.port).start()
    print(server.url, flush=True)
    server._stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
