"""Score a text with the TPTT reference model: per-token log-probabilities as JSON.

  python -m titand_ref.score --model GGUF [--tptt DIR] --text-file F [--mu-zero] [--window W|none]
                             [--mode recurrent|chunked] [--chunk-size C] [--output OUT.json]

Output: {"ids": [n token ids], "logprobs": [null, log p(ids[1] | ids[:1]), ..., log p(ids[n-1] | ids[:n-1])],
"mode", "window", "base_model"}. Tokens come from the GGUF's own tokenizer (no BOS unless it adds one).
Without --tptt the plain base model is scored.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from titand_ref.adapter import base_fingerprint, load_adapter
from titand_ref.tptt_model import TPTTConfig, TPTTModel, load_base


def token_logprobs(model: TPTTModel, ids: list[int], mode: str = "chunked", chunk_size: int = 64) -> list:
    """[n] ids -> [n] log-probs (first is None): log softmax(logits[t-1])[ids[t]]."""
    if not ids:
        return []
    x = torch.tensor([ids], dtype=torch.long)
    with torch.no_grad():
        logits, _ = model(x, mode=mode, chunk_size=chunk_size)
    lp = torch.log_softmax(logits[0].double(), dim=-1)
    picked = lp[:-1].gather(1, x[0, 1:, None])[:, 0]
    return [None] + [float(v) for v in picked.tolist()]


def parse_window(text: str):
    return None if text.lower() in ("none", "null", "full") else int(text)


def build_model(gguf: str, tptt_dir: str | None, cache: bool = True):
    base, tok = load_base(gguf, cache=cache)
    if tptt_dir:
        model = load_adapter(tptt_dir, base, gguf_path=gguf)
    else:
        model = TPTTModel(base, TPTTConfig(layers=[], window=None))
    return model.eval(), tok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="base model GGUF")
    ap.add_argument("--tptt", help="adapter folder (tptt_config.json + adapter.safetensors)")
    ap.add_argument("--text-file", required=True)
    ap.add_argument("--mu-zero", action="store_true", help="set mu = 0 in every converted layer")
    ap.add_argument("--window", type=parse_window, default="config", help="override the window (int or none)")
    ap.add_argument("--mode", choices=("recurrent", "chunked"), default="chunked")
    ap.add_argument("--chunk-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-cache", action="store_true", help="always dequantise the GGUF (no .cache copy)")
    ap.add_argument("--output", help="write the JSON here instead of stdout")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tok = build_model(args.model, args.tptt, cache=not args.no_cache)
    if args.mu_zero:
        model.set_mu(0.0)
    if args.window != "config":
        model.cfg.window = args.window
    with open(args.text_file, encoding="utf-8") as f:
        text = f.read()
    ids = tok(text).input_ids
    result = {"ids": ids, "logprobs": token_logprobs(model, ids, args.mode, args.chunk_size),
              "mode": args.mode, "window": model.cfg.window, "base_model": base_fingerprint(args.model)}
    out = json.dumps(result)
    if args.output:
        with open(args.output, "w") as f:
            f.write(out + "\n")
    else:
        sys.stdout.write(out + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
