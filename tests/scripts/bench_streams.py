"""Does tokentop's streaming client measure itself? A benchmark script, not a test (pytest skips it).

    python tests/scripts/bench_streams.py                 # 16,64,128,256,512 streams
    python tests/scripts/bench_streams.py --quick         # 16,64 only
    python tests/scripts/bench_streams.py --streams 16,128 --rounds 3 --json results.json

For each N, the same workload (N requests at once per round, 50 tokens at 50 tok/s each, against
tests/scripts/paced_server.py) is run by two clients, each in its own process:
  floor:    a minimal asyncio client in this file (open_connection, hand-made HTTP/1.1, chunked
            decoding and SSE with bytes.find, json.loads per event);
  tokentop: `python -m tui bench --format json --out FILE.jsonl` (its records give send_ns, chunk
            offsets and the response id); tokentop-wN adds `--workers N`.
Figures:
  chunks/s: asked (streams x tokens / (ttft + mean spread + tokens/rate): what the paced server's schedule
            offers a client that adds nothing) / got (the client's content chunks over its first send to its
            last end): less than asked when a side cannot keep up;
  CPU ms/1k chunks: the client process's CPU (user+sys, sampled every 20 ms) from its first send to its
            last end, i.e. without interpreter start-up and discovery, per 1,000 content chunks;
  TTFT error: client's first-token stamp − server's stamp just after that token's write (matched by
            response id), p50/p99 in ms;
  wall ratio: (last end − first send) ÷ (rounds × (ttft + tokens/rate)); a client that adds nothing
            scores (ttft + (tokens−1)/rate) ÷ (ttft + tokens/rate) ≈ 0.98, as the last token is written then;
  round spread: per round, max − min of the server's arrival stamps of that round's N requests;
  send lag: server's arrival stamp − client's send stamp, p99: time the client counts in TTFT that the
            TTFT error above cannot see (client TTFT − server TTFT = TTFT error + send lag);
  server late: the paced server's own lateness vs its schedule (p99 over responses of each one's worst).
Small N gets more rounds (see --min-chunks) so that CPU, read in 10 ms ticks, has enough to count.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import paced_server  # noqa: E402

ROOT = HERE.parents[1]
CLIENT = re.compile(r"floor|tokentop(-w[1-9][0-9]*)?")  # tokentop-w4: tokentop bench --workers 4


def client_order(client: str) -> int:
    """floor first, then tokentop by its worker count."""
    return 0 if client == "floor" else int(client.partition("-w")[2] or "1")


FLOOR_READ_BYTES = 64 * 1024


# --- the floor client (runs in its own process: `bench_streams.py floor-client …`) -------------------

def request_bytes(port: int) -> bytes:
    body = json.dumps({"model": "paced", "messages": [{"role": "user", "content": "Tell a story in 25 words."}],
                       "stream": True, "stream_options": {"include_usage": True}}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def decode_chunks(buf: bytearray, out: bytearray) -> bool:
    """Move whole HTTP chunks from `buf` to `out`; True once the last (size 0) chunk is in."""
    pos = 0
    done = False
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            break
        size = int(buf[pos:eol].split(b";")[0], 16)
        start, stop = eol + 2, eol + 2 + size
        if len(buf) < stop + 2:
            break
        if size == 0:
            done, pos = True, stop + 2  # no trailers: "0\r\n\r\n"
            break
        out += buf[start:stop]
        pos = stop + 2
    del buf[:pos]
    return done


def parse_events(events: bytearray, rec: dict, t: int) -> None:
    """Fold the whole SSE events in `events` into `rec` (one `data:` line per event, as servers send)."""
    pos = 0
    while (end := events.find(b"\n\n", pos)) >= 0:
        line = bytes(events[pos:end])
        pos = end + 2
        if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
            continue
        obj = json.loads(line[5:])
        rec["id"] = rec["id"] or obj.get("id")
        choices = obj.get("choices")
        if choices and choices[0].get("delta", {}).get("content"):
            rec["chunks"] += 1
            if rec["first_ns"] is None:
                rec["first_ns"] = t
    del events[:pos]


async def floor_request(conn: list, port: int, rnd: int, request: bytes) -> dict:
    rec = {"round": rnd, "send_ns": time.perf_counter_ns(), "first_ns": None, "end_ns": None, "id": None,
           "chunks": 0, "error": None}
    if not conn:
        conn[:] = await asyncio.open_connection("127.0.0.1", port)
        # Reads of 64 KiB, not asyncio's 256 KiB: glibc serves a 256 KiB bytes with mmap, then mremap and munmap,
        # three system calls a read that a minimal client need not make (tokentop reads into one buffer).
        conn[1].transport.max_size = FLOOR_READ_BYTES
    reader, writer = conn
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if status != 200 or b"chunked" not in head.lower():
        raise RuntimeError(f"HTTP {status}, not a chunked stream")
    buf, events = bytearray(), bytearray()
    while True:
        data = await reader.read(65536)
        t = time.perf_counter_ns()
        if not data:
            raise RuntimeError("connection closed mid-stream")
        buf += data
        done = decode_chunks(buf, events)
        parse_events(events, rec, t)
        if done:
            rec["end_ns"] = t
            return rec


async def floor_run(port: int, n: int, rounds: int, timeout: float, duration: float = 0.0) -> list[dict]:
    """`rounds` of n at once, or (duration > 0) n streams each sending its next request as its last ends."""
    request = request_bytes(port)
    conns: list[list] = [[] for _ in range(n)]  # one kept-alive connection per stream, opened on first use
    records = []

    async def one(i: int, rnd: int) -> dict:
        try:
            return await asyncio.wait_for(floor_request(conns[i], port, rnd, request), timeout)
        except (OSError, RuntimeError, ValueError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
            if conns[i]:
                conns[i][1].close()
                conns[i] = []
            return {"round": rnd, "send_ns": None, "first_ns": None, "end_ns": time.perf_counter_ns(), "id": None,
                    "chunks": 0, "error": f"{type(exc).__name__}: {exc}"[:200]}

    async def keep_busy(i: int, deadline: float) -> list[dict]:
        mine = []
        while time.monotonic() < deadline:
            mine.append(await one(i, 0))
        return mine

    if duration > 0:
        deadline = time.monotonic() + duration
        for mine in await asyncio.gather(*(keep_busy(i, deadline) for i in range(n))):
            records += mine
    for rnd in range(rounds if duration <= 0 else 0):
        records += await asyncio.gather(*(one(i, rnd) for i in range(n)))
    for conn in conns:
        if conn:
            conn[1].close()
    return records


def floor_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench_streams.py floor-client")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--streams", type=int, required=True)
    p.add_argument("--rounds", type=int, required=True)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--duration", type=float, default=0.0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    records = asyncio.run(floor_run(args.port, args.streams, args.rounds, args.timeout, args.duration))
    with open(args.out, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    return 0


# --- running one client and reading what it recorded -------------------------------------------------

def client_command(client: str, port: int, n: int, rounds: int, out: str, duration: float = 0.0) -> list[str]:
    """`rounds` of n at once; or, with a duration, a closed loop of n streams for that long."""
    if client == "floor":
        return [sys.executable, __file__, "floor-client", "--port", str(port), "--streams", str(n),
                "--rounds", str(rounds), "--duration", str(duration), "--out", out]
    workers = client.partition("-w")[2] or "1"
    load = ["--duration", str(duration)] if duration > 0 else ["--rounds", str(rounds)]
    return [sys.executable, "-m", "tui", "bench", "--url", f"http://127.0.0.1:{port}", "--api", "openai",
            "--model", "paced", "--concurrency", str(n), "--words", "25", *load,
            "--format", "json", "--out", out, "--timeout", "60", "--workers", workers]


def cpu_seconds(proc: psutil.Process) -> float | None:
    """The client's CPU seconds so far, its worker processes included (ended ones are in RUSAGE_CHILDREN)."""
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def run_sampled(cmd: list[str], log_dir: Path, deadline_s: float) -> tuple[list[tuple[int, float]], float, int]:
    """Run `cmd`, sampling its CPU every 20 ms. Returns ([(perf_counter_ns, cpu_s)], total CPU s, rc)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log_dir / "client.stdout", "w") as out, open(log_dir / "client.stderr", "w") as err:
        popen = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err)
        proc = psutil.Process(popen.pid)
        samples = []
        deadline = time.monotonic() + deadline_s
        while popen.poll() is None and time.monotonic() < deadline:
            cpu = cpu_seconds(proc)
            if cpu is not None:
                samples.append((time.perf_counter_ns(), cpu))
            time.sleep(0.02)
        if popen.poll() is None:
            popen.kill()
        rc = popen.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return samples, total, rc


def cpu_at(samples: list[tuple[int, float]], t_ns: int) -> float:
    """The client's CPU seconds at `t_ns`, interpolated between the samples around it."""
    prev = samples[0]
    for cur in samples:
        if cur[0] >= t_ns:
            if cur[0] == prev[0]:
                return cur[1]
            return prev[1] + (cur[1] - prev[1]) * (t_ns - prev[0]) / (cur[0] - prev[0])
        prev = cur
    return samples[-1][1]


def read_records(client: str, path: Path) -> list[dict]:
    """The client's records as {round, send_ns, first_ns, end_ns, id, chunks, error}."""
    if not path.exists():
        return []
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    if client == "floor":
        return lines
    records = []
    for r in lines:
        offsets = r.get("chunk_offsets_ms") or []
        send = r.get("send_ns")
        records.append({
            "round": r.get("round"), "send_ns": send, "id": r.get("response_id"), "chunks": len(offsets),
            "first_ns": send + round(offsets[0] * 1e6) if send and offsets else None,
            "end_ns": send + round(r["e2e_s"] * 1e9) if send and r.get("e2e_s") is not None else None,
            "error": r.get("error_kind"),
        })
    return records


# --- figures --------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def round_spreads_ms(server_lines: list[dict], n: int) -> list[float]:
    """Server arrivals in order, cut into rounds of n: max − min of each round."""
    arrivals = sorted(line["arrival_ns"] for line in server_lines)
    groups = [arrivals[i:i + n] for i in range(0, len(arrivals), n)]
    return [(g[-1] - g[0]) / 1e6 for g in groups]


def figures(client: str, n: int, rounds: int, records: list[dict], server_lines: list[dict],
            samples: list[tuple[int, float]], work_s: float) -> dict:
    sends = [r["send_ns"] for r in records if r["send_ns"]]
    ends = [r["end_ns"] for r in records if r["end_ns"]]
    chunks = sum(r["chunks"] for r in records)
    by_id = {line["id"]: line for line in server_lines}
    ttft_err = [(r["first_ns"] - by_id[r["id"]]["first_write_ns"]) / 1e6
                for r in records if r["first_ns"] and r["id"] in by_id and by_id[r["id"]]["first_write_ns"]]
    # send lag: how long after the client's send stamp the server saw the request (counted in the client's TTFT)
    send_lag = [(by_id[r["id"]]["arrival_ns"] - r["send_ns"]) / 1e6 for r in records if r["send_ns"] and r["id"] in by_id]
    late = [line["max_late_ms"] for line in server_lines]
    result = {"client": client, "streams": n, "rounds": rounds, "requests": len(records),
              "errors": sum(1 for r in records if r["error"]), "chunks": chunks,
              "matched": len(ttft_err), "server_responses": len(server_lines)}
    if sends and ends and samples:
        t0, t1 = min(sends), max(ends)
        cpu = cpu_at(samples, t1) - cpu_at(samples, t0)
        result.update(wall_s=(t1 - t0) / 1e9, cpu_s=cpu, chunks_per_s=chunks / ((t1 - t0) / 1e9),
                      wall_ratio=(t1 - t0) / 1e9 / (rounds * work_s),
                      cpu_ms_per_1k=cpu * 1e6 / chunks if chunks else None)
    result.update(ttft_err_p50_ms=percentile(ttft_err, 50), ttft_err_p99_ms=percentile(ttft_err, 99),
                  ttft_err_max_ms=max(ttft_err, default=None),
                  send_lag_p50_ms=percentile(send_lag, 50), send_lag_p99_ms=percentile(send_lag, 99),
                  round_spread_max_ms=max(round_spreads_ms(server_lines, n), default=None),
                  server_late_p99_ms=percentile(late, 99), server_late_max_ms=max(late, default=None))
    return result


def steady_cpu_ms_per_1k(records: list[dict], samples: list[tuple[int, float]], n: int) -> float | None:
    """A closed loop's CPU per 1,000 chunks once it is steady: from the N-th request's end (the first wave and
    the connections' opening are over) to the last send (then it only drains), as measure_app.py's window for the
    app. A request's chunks are taken evenly spaced from its first to its end (the paced server's are)."""
    ends = sorted(r["end_ns"] for r in records if r["end_ns"])
    sends = [r["send_ns"] for r in records if r["send_ns"]]
    if len(ends) < n or not sends or not samples:
        return None
    t0, t1 = ends[n - 1], max(sends)
    chunks = 0
    for r in records:
        first, end, k = r["first_ns"], r["end_ns"], r["chunks"]
        if not first or not end or not k:
            continue
        if k == 1 or end <= first:
            chunks += k if t0 <= first <= t1 else 0
            continue
        step = (end - first) / (k - 1)
        lo, hi = max(0, math.ceil((t0 - first) / step)), min(k - 1, math.floor((t1 - first) / step))
        chunks += max(0, hi - lo + 1)
    cpu = cpu_at(samples, t1) - cpu_at(samples, t0)
    return cpu * 1e6 / chunks if chunks else None


def measure(client: str, n: int, rounds: int, port: int, server: psutil.Process, server_log: Path,
            work_dir: Path, work_s: float, duration: float = 0.0, tag: str = "") -> dict:
    run_dir = work_dir / f"{client}-{n}{tag}"
    run_dir.mkdir()
    out = run_dir / "records.jsonl"
    start_ns = time.perf_counter_ns()
    server_cpu0 = server_cpu(server)
    samples, total_cpu, rc = run_sampled(client_command(client, port, n, rounds, str(out), duration), run_dir,
                                         deadline_s=60 + 10 * (rounds * work_s + duration) + n / 10)
    end_ns = time.perf_counter_ns()
    server_lines = [line for line in paced_server.read_log(str(server_log)) if start_ns <= line["arrival_ns"] <= end_ns]
    result = figures(client, n, rounds, read_records(client, out), server_lines, samples, work_s)
    if duration > 0:  # a closed loop has no rounds: its wall time is the duration plus the last requests'
        result.update(rounds=None, wall_ratio=None, round_spread_max_ms=None,
                      steady_cpu_ms_per_1k=steady_cpu_ms_per_1k(read_records(client, out), samples, n))
    result.update(rc=rc, cpu_total_s=total_cpu, tui_digest=tree_digest() if client.startswith("tokentop") else None,
                  server_cpu_pct=100 * (server_cpu(server) - server_cpu0) / ((end_ns - start_ns) / 1e9))
    if rc != 0:
        result["stderr_tail"] = (run_dir / "client.stderr").read_text()[-500:]
    return result


def tree_digest() -> str:
    """A digest of tokentop's source: others may be editing it while this runs."""
    h = hashlib.sha1()
    for path in sorted((ROOT / "tui").rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:10]


def server_cpu(server: psutil.Process) -> float:
    """CPU seconds of the paced server and its worker processes."""
    procs = [server] + server.children()
    return sum(cpu_seconds(p) or 0.0 for p in procs)


# --- output ---------------------------------------------------------------------------------------

def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def table(results: list[dict], args: argparse.Namespace) -> str:
    """One row per streams x client; "x floor" is the client's CPU per chunk over the floor's at the same N."""
    head = ["streams", "client", "chunks/s asked / got", "CPU ms/1k chunks", "x floor", "TTFT err p50 / p99 ms", "wall ratio",
            "round spread max ms", "send lag p99 ms", "server late p99 ms", "errors"]
    steady = any(r.get("steady_cpu_ms_per_1k") for r in results)  # a closed loop's: its steady part alone
    if steady:
        head[5:5] = ["steady CPU ms/1k", "steady x floor"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    per_stream = args.tokens / (args.ttft + args.ttft_spread / 2 + args.tokens / args.rate)  # chunks/s, on average
    for r in sorted(results, key=lambda r: (r["streams"], client_order(r["client"]))):
        floor = next((f for f in results if f["streams"] == r["streams"] and f["client"] == "floor"), {})
        fc, cpu = floor.get("cpu_ms_per_1k"), r.get("cpu_ms_per_1k")
        fs, scpu = floor.get("steady_cpu_ms_per_1k"), r.get("steady_cpu_ms_per_1k")
        cells = [
            str(r["streams"]), r["client"], f"{r['streams'] * per_stream:.0f} / {fmt(r.get('chunks_per_s'), '.0f')}",
            fmt(cpu),
            fmt(cpu / fc if fc and cpu else None, ".2f") + "x",
            f"{fmt(r.get('ttft_err_p50_ms'), '.2f')} / {fmt(r.get('ttft_err_p99_ms'), '.2f')}",
            fmt(r.get("wall_ratio"), ".3f"), fmt(r.get("round_spread_max_ms")), fmt(r.get("send_lag_p99_ms")),
            fmt(r.get("server_late_p99_ms"), ".2f"), str(r.get("errors", "-")),
        ]
        if steady:
            cells[5:5] = [fmt(scpu), fmt(scpu / fs if fs and scpu else None, ".2f") + "x"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


# --- main -----------------------------------------------------------------------------------------

def rounds_for(n: int, args: argparse.Namespace) -> int:
    return max(args.rounds, math.ceil(args.min_chunks / (n * args.tokens)))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="tokentop's streaming client vs a minimal asyncio client, "
                                            "against a paced server")
    p.add_argument("--streams", default="16,64,128,256,512", help="comma-separated N (default 16,64,128,256,512)")
    p.add_argument("--quick", action="store_true", help="N = 16,64 only")
    p.add_argument("--rounds", type=int, default=3, help="rounds per run, at least (default 3)")
    p.add_argument("--min-chunks", type=int, default=8000,
                   help="raise the rounds of small N until a run has this many chunks (default 8000)")
    p.add_argument("--clients", default="floor,tokentop", help="which clients to run (default floor,tokentop)")
    p.add_argument("--ttft", type=float, default=0.1, help="server TTFT, seconds (default 0.1)")
    p.add_argument("--tokens", type=int, default=50, help="tokens per response (default 50)")
    p.add_argument("--rate", type=float, default=50.0, help="tokens/s per stream (default 50)")
    p.add_argument("--ttft-spread", type=float, default=0.0,
                   help="the server's first tokens a further 0..S s later, evenly (default 0: all at once)")
    p.add_argument("--duration", type=float, default=0.0,
                   help="instead of rounds: N streams kept busy this many seconds (a closed loop, as "
                        "`tokentop bench --duration`)")
    p.add_argument("--workers", type=int, default=1, help="paced server processes (SO_REUSEPORT, default 1)")
    p.add_argument("--json", metavar="OUT", help="save the raw results here")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, records) and print it")
    args = p.parse_args(argv)
    args.streams = [16, 64] if args.quick else [int(x) for x in args.streams.split(",") if x.strip()]
    args.clients = [c for c in args.clients.split(",") if c]
    if not all(CLIENT.fullmatch(c) for c in args.clients):
        p.error("--clients takes floor, tokentop and tokentop-wN (tokentop bench --workers N)")
    return args


def main(argv: list[str]) -> int:
    if argv[:1] == ["floor-client"]:
        return floor_main(argv[1:])
    args = parse_args(argv)
    work_s = args.ttft + args.tokens / args.rate
    work_dir = Path(tempfile.mkdtemp(prefix="bench_streams-"))
    server_log = work_dir / "server.jsonl"
    proc, port = paced_server.start(str(server_log), ttft=args.ttft, tokens=args.tokens, rate=args.rate,
                                    workers=args.workers, lifetime=1800, ttft_spread=args.ttft_spread)
    results = []
    try:
        server = psutil.Process(proc.pid)
        for n in args.streams:
            for client in args.clients:
                result = measure(client, n, rounds_for(n, args), port, server, server_log, work_dir, work_s,
                                 args.duration)
                results.append(result)
                print(f"{client:>8} N={n:<4} rounds={result['rounds']} chunks={result['chunks']} "
                      f"errors={result['errors']} cpu={fmt(result.get('cpu_ms_per_1k'))} ms/1k "
                      f"wall_ratio={fmt(result.get('wall_ratio'), '.3f')} rc={result['rc']} "
                      f"server_cpu={result['server_cpu_pct']:.0f}%", file=sys.stderr, flush=True)
                if result["rc"] != 0:
                    print(result.get("stderr_tail", ""), file=sys.stderr)
    finally:
        paced_server.stop(proc)
    print(table(results, args))
    load = f"a closed loop for {args.duration:g} s" if args.duration > 0 else f"work = {work_s:g} s per round"
    print(f"\nload: {args.tokens} tokens at {args.rate:g} tok/s, ttft {args.ttft:g} s (+0..{args.ttft_spread:g} s);"
          f" {load};"
          f" paced server workers: {args.workers}; CPU counts from first send to last end "
          f"(start-up excluded; with it: see cpu_total_s in --json)")
    finish(args, results, work_dir, "the bench")
    return 0


def finish(args: argparse.Namespace, results: list[dict], work_dir: Path, what: str) -> None:
    """Say if tui/ changed during the run, save --json, keep or remove the work directory."""
    digests = {r["tui_digest"] for r in results if r.get("tui_digest")}
    if len(digests) > 1:
        print(f"\nWARNING: tokentop's source (tui/) changed during {what}: {', '.join(sorted(digests))}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2) + "\n")
    if args.keep:
        print(f"work directory: {work_dir}")
    else:
        shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
