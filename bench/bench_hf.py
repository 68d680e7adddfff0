"""Transformers on the same machine and model, for comparison with bench_runtime (same measurements).

  python bench/bench_hf.py [--model HF_DIR] [--device cpu|cuda] [--dtype float32|bfloat16] [--threads 2]
                           [--prefill 512] [--decode 64] [--batches 1,32,256]

--batches: aggregate decode tokens/s of B sequences decoded together (eager, DynamicCache, 512-token prompts).
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
    ap.add_argument("--model", default="", help="a Hugging Face folder (default: the bundled GGUF)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", default="")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dt = getattr(torch, a.dtype)
    if a.model:
        m = AutoModelForCausalLM.from_pretrained(a.model, dtype=dt).to(a.device).eval()
    else:
        m = AutoModelForCausalLM.from_pretrained(str(MODEL.parent), gguf_file=MODEL.name, dtype=dt).to(a.device).eval()
    dev = torch.device(a.device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    ids = torch.tensor([[(i * 7919) % 40000 + 100 for i in range(a.prefill)]], device=dev)
    out = {"impl": "transformers", "dtype": a.dtype, "threads": a.threads, "device": a.device,
           "torch": torch.__version__}
    with torch.inference_mode():
        for rep in range(2):
            t0 = time.perf_counter()
            r = m(ids, use_cache=True)
            sync()
            sec = time.perf_counter() - t0
        out["prefill_tokens_per_s"] = a.prefill / sec
        past = r.past_key_values
        nxt = torch.tensor([[42]], device=dev)
        r = m(nxt, past_key_values=past, use_cache=True)
        past = r.past_key_values
        sync()
        t0 = time.perf_counter()
        for i in range(a.decode):
            r = m(torch.tensor([[100 + i]], device=dev), past_key_values=past, use_cache=True)
            past = r.past_key_values
            r.logits[:, -1].argmax(-1).tolist()  # the sampled id reaches the host every step, as in serving
        out["decode_tokens_per_s_after_prefill"] = a.decode / (time.perf_counter() - t0)
        agg = []
        for b in [int(x) for x in a.batches.split(",") if x]:
            r = m(ids.expand(b, -1).contiguous(), use_cache=True)
            past = r.past_key_values
            sync()
            t0 = time.perf_counter()
            steps = 16
            for i in range(steps):
                r = m(torch.full((b, 1), 100 + i, device=dev), past_key_values=past, use_cache=True)
                past = r.past_key_values
                r.logits[:, -1].argmax(-1).tolist()
            sec = (time.perf_counter() - t0) / steps
            agg.append({"batch": b, "context": a.prefill, "step_ms": sec * 1000, "aggregate_tokens_per_s": b / sec})
        out["batched_decode"] = agg
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
