#!/usr/bin/env bash
# What a lent 16-core GPU box is checked for (README, Performance): its facts, the app's GPU pane with the
# GPU busy, the cost of merging 16 workers' snapshots, chunks/s against --workers, and 10,000 streams.
#
#     OUT=some/folder bash tests/scripts/gpu_box.sh     (from the repo root; about 8 minutes)
#
# Each step has a time limit of its own, and a step that fails leaves the others to run.
set -u
OUT=${OUT:-/tmp/gpu_box}
mkdir -p "$OUT"
py=${PYTHON:-python3}
step() { echo; echo "=== $* ($(date +%T))"; }

step facts
nproc
lscpu | grep -E "^Model name|^CPU\(s\)|^Thread|^Socket"
free -g | head -2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$py -V
echo "open files: $(ulimit -n) soft, $(ulimit -Hn) hard; ephemeral ports: $(cat /proc/sys/net/ipv4/ip_local_port_range)"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"  # root may raise the hard limit too
echo "open files now: $(ulimit -n)"

step "the GPU pane: the app against the simulator while matrix products keep the GPU busy"
$py - <<'EOF' &
import time
import torch
held = torch.empty(40 * 2**30, dtype=torch.uint8, device="cuda")  # 40 GiB, for the memory bar
x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
end = time.time() + 45
while time.time() < end:
    for _ in range(20):
        x @ x
    torch.cuda.synchronize()
    time.sleep(0.02)
EOF
gpu_load=$!
sleep 8
timeout 120 $py tests/scripts/make_screenshots.py --out "$OUT" --name gpu-box --sizes 160x48,80x24 --seconds 12
wait "$gpu_load"

step "merging the workers' snapshots"
timeout 60 $py tests/scripts/merge_cost.py --workers 1,4,16

step "chunks/s against --workers: 1,024 streams asking 512,000 chunks/s of 8 paced-server processes"
timeout 240 $py tests/scripts/bench_streams.py --streams 1024 --rate 500 --tokens 100 --duration 15 --workers 8 \
  --clients floor,tokentop,tokentop-w2,tokentop-w4,tokentop-w8 --json "$OUT/scaling.json"

step "the same at 4,096 streams, up to 12 workers"
timeout 240 $py tests/scripts/bench_streams.py --streams 4096 --rate 500 --tokens 100 --duration 12 --workers 8 \
  --clients tokentop,tokentop-w2,tokentop-w4,tokentop-w8,tokentop-w12 --json "$OUT/scaling4096.json"

step "10,000 streams: 20 tokens at 2 tok/s each, first tokens spread over a second, 4 paced-server processes"
timeout 300 $py tests/scripts/bench_streams.py --streams 10000 --rate 2 --tokens 20 --duration 30 --ttft-spread 1 \
  --workers 4 --clients floor,tokentop,tokentop-w4 --json "$OUT/streams10k.json"
step done
