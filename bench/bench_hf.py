"""Transformers on the same machine and model, for comparison with bench_runtime (same measurements).

  python bench/bench_hf.py [--dtype float32|bfloat16] [--threads 2] [--prefill 512] [--decode 64]
"""
import argparse
import json
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--decode", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    m = AutoModelForCausalLM.from_pretrained(str(MODEL.parent), gguf_file=MODEL.name,
                                             dtype=getattr(torch, a.dtype)).eval()
    ids = torch.tensor([[(i * 7919) % 40000 + 100 for i in range(a.prefill)]])
    out = {"impl": "transformers", "dtype": a.dtype, "threads": a.threads}
    with torch.inference_mode():
        for rep in range(2):
            t0 = time.perf_counter()
            r = m(ids, use_cache=True)
            sec = time.perf_counter() - t0
        out["prefill_tokens_per_s"] = a.prefill / sec
        past = r.past_key_values
        nxt = torch.tensor([[42]])
        r = m(nxt, past_key_values=past, use_cache=True)
        past = r.past_key_values
        t0 = time.perf_counter()
        for i in range(a.decode):
            r = m(torch.tensor([[100 + i]]), past_key_values=past, use_cache=True)
            past = r.past_key_values
        out["decode_tokens_per_s_after_prefill"] = a.decode / (time.perf_counter() - t0)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
