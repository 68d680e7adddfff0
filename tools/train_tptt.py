#!/usr/bin/env python3
"""Convert a Llama-family GGUF model to TPTT and train the adapter on CPU (REFERENCE.md section 1).

Stage 1, attention transfer: base frozen; only the new weights (gates, mu) are trained so that each
converted layer's hybrid attention output matches the original full-attention output on the same input,
layer-local. Loss = mean over layers of MSE(hybrid, teacher) / mean(teacher^2) (relative, so every layer
counts the same). Stage 2: LoRA (r, alpha, dropout on q,k,v,o of every layer) + the new weights, next-token
cross-entropy on the hybrid model (chunked operator). Writes the titand adapter format (docs/adapter-format.md).

  PYTHONPATH=tools python tools/train_tptt.py --out runs/a --minutes 60
  PYTHONPATH=tools python tools/train_tptt.py --eval-only --adapter runs/a     # held-out perplexity at 1K
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from titand_ref import data  # noqa: E402
from titand_ref.adapter import base_fingerprint, load_adapter, save_adapter  # noqa: E402
from titand_ref.tptt_model import LayerState, LoraSpec, TPTTConfig, TPTTModel, load_base  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_GGUF = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE = REPO / ".cache" / "titand_ref"


def log(msg: str, fh=None) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    if fh is not None:
        fh.write(line + "\n")
        fh.flush()


def transfer_loss(model: TPTTModel, ids: torch.Tensor, chunk_size: int):
    """Stage-1 loss on a batch [B, T]: (mean relative MSE over converted layers, {layer: rel MSE})."""
    layers = set(model.cfg.layers)
    caught = {}
    with torch.no_grad():  # teacher: the original model, full causal attention everywhere
        model(ids, plain=True, head=False,
              capture=lambda i, x, a: caught.__setitem__(i, (x, a)) if i in layers else None)
    m = model.base.model
    B, T = ids.shape
    pos = torch.arange(T)
    cos, sin = m.rotary_emb(caught[min(layers)][0], pos.unsqueeze(0).expand(B, T))
    per_layer = {}
    for i in sorted(layers):
        x, teacher = caught[i]
        out, _ = model.attention(i, x, cos, sin, pos, LayerState(), mode="chunked", chunk_size=chunk_size)
        per_layer[i] = F.mse_loss(out, teacher) / teacher.pow(2).mean().clamp_min(1e-12)
    loss = torch.stack(list(per_layer.values())).mean()
    return loss, {i: float(v.detach()) for i, v in per_layer.items()}


def lm_loss(model: TPTTModel, ids: torch.Tensor, chunk_size: int) -> torch.Tensor:
    logits, _ = model(ids[:, :-1], chunk_size=chunk_size)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def run_stage(name, model, params, batches, loss_fn, steps, lr, deadline, logf, log_every, warmup=10):
    """AdamW with linear warmup then cosine decay; stops at `steps` or at the wall-clock deadline."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    times, step = [], 0
    model.train()
    while step < steps and time.time() < deadline:
        frac = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / max(1, steps)))
        for g in opt.param_groups:
            g["lr"] = lr * frac
        t0 = time.time()
        loss = loss_fn(next(batches))
        loss = loss[0] if isinstance(loss, tuple) else loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        times.append(time.time() - t0)
        step += 1
        if step % log_every == 0 or step == 1 or step == steps:
            mus = torch.cat([hp.mu().detach() for hp in model.hybrid.values()])
            log(f"{name} step {step}/{steps} loss {loss.item():.5f} s/step {times[-1]:.2f} "
                f"mu mean {mus.mean():.3f} min {mus.min():.3f} max {mus.max():.3f}", logf)
    model.eval()
    steady = times[1:] if len(times) > 1 else times
    return {"steps": step, "sec_per_step": (sum(steady) / len(steady)) if steady else None}


def perplexity(model: TPTTModel, windows, chunk_size: int) -> float:
    nll, n = 0.0, 0
    with torch.no_grad():
        for w in windows:
            logits, _ = model(w[:, :-1], chunk_size=chunk_size)
            nll += F.cross_entropy(logits[0], w[0, 1:], reduction="sum").item()
            n += w.shape[1] - 1
    return math.exp(nll / n)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DEFAULT_GGUF))
    ap.add_argument("--out", help="output adapter folder")
    ap.add_argument("--corpus", nargs="*", default=[str(p) for p in data.DEFAULT_CORPORA],
                    help="corpus directories (*.rst, *.txt) or text files")
    ap.add_argument("--heldout-frac", type=float, default=0.05)
    ap.add_argument("--train-tokens", type=int, default=2_000_000, help="tokens of training text to prepare")
    ap.add_argument("--window", type=lambda s: None if s.lower() == "none" else int(s), default=64)
    ap.add_argument("--operator", default="gated_delta", choices=("linear", "gated", "delta", "gated_delta"))
    ap.add_argument("--feature-map", default="tptt", choices=("tptt", "elu", "identity"))
    ap.add_argument("--gates", default="learned", choices=("learned", "constant"))
    ap.add_argument("--const-b", type=float, default=0.5)
    ap.add_argument("--const-a", type=float, default=0.99)
    ap.add_argument("--layers", default="all", help="'all' or comma-separated layer indices to convert")
    ap.add_argument("--mu-init", type=float, default=0.01,
                    help="o_l has unit RMS, o_s ~0.03-0.7 on SmolLM2: mu must start small")
    ap.add_argument("--stage1-steps", type=int, default=200)
    ap.add_argument("--stage1-seq", type=int, default=256, help="must exceed the window to teach the memory")
    ap.add_argument("--stage1-lr", type=float, default=5e-2)
    ap.add_argument("--stage2-steps", type=int, default=500)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--lora-r", type=int, default=8)
    ap.add_argument("--lora-alpha", type=float, default=16.0)
    ap.add_argument("--lora-dropout", type=float, default=0.05)
    ap.add_argument("--chunk-size", type=int, default=64)
    ap.add_argument("--minutes", type=float, default=60.0, help="wall-clock budget for both stages")
    ap.add_argument("--stage1-share", type=float, default=0.3, help="fraction of the budget for stage 1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--eval-only", action="store_true", help="held-out perplexity: base, untrained, --adapter")
    ap.add_argument("--adapter", help="adapter folder to evaluate with --eval-only")
    ap.add_argument("--eval-ctx", type=int, default=1024)
    ap.add_argument("--eval-windows", type=int, default=8)
    ap.add_argument("--stage1-only", action="store_true", help="skip stage 2 (operator comparisons)")
    return ap.parse_args(argv)


def make_config(args, n_layers: int, lora: bool) -> TPTTConfig:
    layers = list(range(n_layers)) if args.layers == "all" else [int(x) for x in args.layers.split(",")]
    return TPTTConfig(operator=args.operator, feature_map=args.feature_map, window=args.window, gates=args.gates,
                      constants={"b": args.const_b, "a": args.const_a}, layers=layers, mu_init=args.mu_init,
                      lora=LoraSpec(r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout) if lora else None)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    base, tok = load_base(args.model)
    fingerprint = base_fingerprint(args.model)
    train_files, held_files = data.split(data.list_files(args.corpus), args.heldout_frac)
    held = data.token_stream(tok, held_files, args.eval_ctx * args.eval_windows, seed=0, cache_dir=CACHE)
    eval_windows = data.fixed_windows(held, args.eval_ctx, args.eval_windows)

    if args.eval_only:
        n = base.config.num_hidden_layers
        results = {"eval_ctx": args.eval_ctx, "windows": len(eval_windows)}
        results["base"] = perplexity(TPTTModel(base, TPTTConfig(layers=[], window=None)), eval_windows,
                                     args.chunk_size)
        log(f"base ppl {results['base']:.3f}")
        results["untrained"] = perplexity(TPTTModel(base, make_config(args, n, lora=False)), eval_windows,
                                          args.chunk_size)
        log(f"untrained conversion (mu={args.mu_init}) ppl {results['untrained']:.3f}")
        if args.adapter:
            results["adapter"] = perplexity(load_adapter(args.adapter, base, gguf_path=args.model), eval_windows,
                                            args.chunk_size)
            log(f"adapter {args.adapter} ppl {results['adapter']:.3f}")
        print(json.dumps(results))
        return 0

    if not args.out:
        raise SystemExit("--out is required for training")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logf = open(out / "train.log", "a")
    log(f"args {vars(args)}", logf)
    train = data.token_stream(tok, train_files, args.train_tokens, seed=args.seed, cache_dir=CACHE)
    log(f"{len(train_files)} train files ({len(train)} tokens), {len(held_files)} held-out files", logf)
    model = TPTTModel(base, make_config(args, base.config.num_hidden_layers, lora=not args.stage1_only))
    t_start = time.time()
    budget = args.minutes * 60
    report = {"base_model": fingerprint}

    held1 = data.fixed_windows(held, args.stage1_seq, 4)

    def heldout_mse():
        with torch.no_grad():
            return sum(float(transfer_loss(model, w, args.chunk_size)[0]) for w in held1) / len(held1)

    mu0 = model.mu_values()
    model.set_mu(0.0)
    report["window_only_rel_mse"] = heldout_mse()  # mu = 0: what the sliding window alone loses
    model.set_mu(mu0)
    report["init_rel_mse"] = heldout_mse()
    log(f"held-out relative MSE: window only {report['window_only_rel_mse']:.5f}, "
        f"at init (mu={args.mu_init}) {report['init_rel_mse']:.5f}", logf)
    b1 = data.RandomWindows(train, args.stage1_seq, args.batch, args.seed)
    s1_params = model.new_parameters(include_lora=False)
    report["stage1"] = run_stage("stage1", model, s1_params, b1,
                                 lambda ids: transfer_loss(model, ids, args.chunk_size),
                                 args.stage1_steps, args.stage1_lr, t_start + budget * args.stage1_share, logf,
                                 args.log_every)
    report["stage1"]["heldout_rel_mse"] = heldout_mse()
    log(f"stage1 held-out relative MSE {report['stage1']['heldout_rel_mse']:.5f}", logf)

    if not args.stage1_only:
        b2 = data.RandomWindows(train, args.seq + 1, args.batch, args.seed + 1)
        report["stage2"] = run_stage("stage2", model, model.new_parameters(), b2,
                                     lambda ids: lm_loss(model, ids, args.chunk_size),
                                     args.stage2_steps, args.lr, t_start + budget, logf, args.log_every)
    report["minutes"] = (time.time() - t_start) / 60
    save_adapter(model, out, base_model=fingerprint, training={k: v for k, v in report.items() if k != "base_model"})
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    log(f"wrote {out}: {json.dumps(report)}", logf)
    return 0


if __name__ == "__main__":
    sys.exit(main())
