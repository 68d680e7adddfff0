#!/usr/bin/env python3
"""Convert a Llama-family GGUF model to TPTT and train the adapter on CPU (REFERENCE.md section 1).

Stage 1, attention transfer: base frozen; only the new weights (gates, mu) are trained so that each
converted layer's hybrid attention output matches the original full-attention output on the same input,
layer-local. Loss = mean over layers of MSE(hybrid, teacher) / mean(teacher^2) (relative, so every layer
counts the same). Stage 2: LoRA (r, alpha, dropout on q,k,v,o of every layer) + the new weights, next-token
cross-entropy on the hybrid model (chunked operator), optionally mixed with distillation from the base model:
loss = (1 - w) CE + w T^2 KL(softmax(teacher / T) || softmax(student / T)), teacher = the unconverted model
(--distill-weight w, --distill-temp T). Writes the titand adapter format (docs/adapter-format.md).

Runs on CPU or CUDA (--device). Progress: a tqdm bar per stage, <out>/train_log.jsonl (one JSON object per
logged step) and <out>/train.log. Every --ckpt-every steps and at the end of each stage the trainable weights,
the optimizer, the batch sampler and the elapsed time go to <out>/checkpoint.pt (written atomically);
--resume continues from it with the same arguments (the wall-clock budget counts the time already spent).

  PYTHONPATH=tools python tools/train_tptt.py --out runs/a --minutes 60
  PYTHONPATH=tools python tools/train_tptt.py --out runs/a --minutes 60 --resume   # after an interruption
  PYTHONPATH=tools python tools/train_tptt.py --eval-only --adapter runs/a     # held-out perplexity at 1K
  PYTHONPATH=tools python tools/train_tptt.py --init-adapter runs/a --out runs/b --seq 2048 --stage2-steps 100
      # continue training an adapter (stage 2 only; its conversion, gates, mu and LoRA are the start)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from titand_ref import data  # noqa: E402
from titand_ref.adapter import (AdapterError, apply_tensors, base_fingerprint, load_adapter, read_adapter,  # noqa: E402
                                save_adapter, validate_against)
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
    pos = torch.arange(T, device=ids.device)
    cos, sin = m.rotary_emb(caught[min(layers)][0], pos.unsqueeze(0).expand(B, T))
    per_layer = {}
    for i in sorted(layers):
        x, teacher = caught[i]
        out, _ = model.attention(i, x, cos, sin, pos, LayerState(), mode="chunked", chunk_size=chunk_size)
        per_layer[i] = F.mse_loss(out, teacher) / teacher.pow(2).mean().clamp_min(1e-12)
    loss = torch.stack(list(per_layer.values())).mean()
    return loss, {i: float(v.detach()) for i, v in per_layer.items()}


def lm_loss(model: TPTTModel, ids: torch.Tensor, chunk_size: int, distill_weight: float = 0.0,
            distill_temp: float = 1.0) -> torch.Tensor:
    """Next-token CE of the hybrid model; with distill_weight w > 0 mixed with the KL to the base model."""
    logits, _ = model(ids[:, :-1], chunk_size=chunk_size)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
    if distill_weight <= 0:
        return ce
    with torch.no_grad():
        teacher, _ = model(ids[:, :-1], plain=True)  # the unconverted base model, full attention, no LoRA
    T = distill_temp
    kl = F.kl_div(F.log_softmax(logits.reshape(-1, logits.shape[-1]) / T, -1),
                  F.log_softmax(teacher.reshape(-1, teacher.shape[-1]) / T, -1), log_target=True,
                  reduction="batchmean") * T * T
    return (1 - distill_weight) * ce + distill_weight * kl


class Checkpoint:
    """<out>/checkpoint.pt: trainable weights, optimizer, sampler and torch RNGs, stage progress, elapsed seconds."""

    def __init__(self, out: Path, model: TPTTModel):
        self.path, self.model = out / "checkpoint.pt", model

    def trainable(self) -> dict:
        return {k: v.detach().cpu() for k, v in self.model.named_parameters() if not k.startswith("base.")}

    def save(self, state: dict) -> None:
        tmp = self.path.with_suffix(".tmp")
        rng = {"cpu": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}  # LoRA dropout
        torch.save({**state, "weights": self.trainable(), "rng": rng}, tmp)
        os.replace(tmp, self.path)  # the previous checkpoint stays until this one is complete

    def load(self, device) -> dict:
        ck = torch.load(self.path, map_location="cpu", weights_only=False)
        own = dict(self.model.named_parameters())
        with torch.no_grad():
            for k, v in ck["weights"].items():
                own[k].copy_(v.to(device))
        torch.set_rng_state(ck["rng"]["cpu"])
        if ck["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ck["rng"]["cuda"])
        return ck


def run_stage(name, model, params, batches, loss_fn, steps, lr, deadline, logf, jlog, log_every, ckpt,
              ckpt_every, device, resume=None, progress=True, warmup=10, step_budget=None):
    """AdamW with linear warmup then cosine decay; stops at `steps` or at the wall-clock deadline.
    params: tensors, or param groups (dicts with "params" and optionally "base_lr", the group's peak
    learning rate instead of `lr`; the schedule scales every group alike).
    ckpt(stage_state) is called every ckpt_every steps and at the end; resume is a saved stage_state.
    step_budget: a one-element list, the optimizer steps this process may still take (--stop-after); when it
    runs out first, the stage is checkpointed as not done and the result has "interrupted": True."""
    groups = params if params and isinstance(params[0], dict) else [{"params": list(params)}]
    groups = [{**g, "base_lr": g.get("base_lr", lr), "lr": g.get("base_lr", lr)} for g in groups]
    params = [p for g in groups for p in g["params"]]
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=0.0)
    times, step = [], 0
    if resume is not None:
        opt.load_state_dict(resume["optimizer"])
        batches.gen.set_state(resume["sampler"])
        step = resume["step"]
    stage_state = lambda done: {"stage": name, "step": step, "done": done, "optimizer": opt.state_dict(),
                                "sampler": batches.gen.get_state()}
    model.train()
    bar = tqdm(total=steps, initial=step, desc=name, unit="step", dynamic_ncols=True, mininterval=2.0,
               disable=not progress)
    interrupted = False
    while step < steps and time.time() < deadline:
        if step_budget is not None and step_budget[0] <= 0:
            interrupted = True
            break
        frac = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / max(1, steps)))
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * frac
        t0 = time.time()
        loss = loss_fn(next(batches).to(device))
        loss = loss[0] if isinstance(loss, tuple) else loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        times.append(time.time() - t0)
        step += 1
        if step_budget is not None:
            step_budget[0] -= 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % log_every == 0 or step == 1 or step == steps:
            mus = torch.cat([hp.mu().detach() for hp in model.hybrid.values()])
            rec = {"time": time.time(), "stage": name, "step": step, "steps": steps, "loss": loss.item(),
                   "lr": lr * frac, "sec_per_step": times[-1], "mu_mean": float(mus.mean()),
                   "mu_min": float(mus.min()), "mu_max": float(mus.max())}
            jlog(rec)
            log(f"{name} step {step}/{steps} loss {rec['loss']:.5f} s/step {times[-1]:.2f} "
                f"mu mean {rec['mu_mean']:.3f} min {rec['mu_min']:.3f} max {rec['mu_max']:.3f}", logf)
        if ckpt_every and step % ckpt_every == 0 and step < steps:
            ckpt(stage_state(False))
    bar.close()
    ckpt(stage_state(not interrupted))
    model.eval()
    steady = times[1:] if len(times) > 1 else times
    out = {"steps": step, "sec_per_step": (sum(steady) / len(steady)) if steady else None}
    return {**out, "interrupted": True} if interrupted else out


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: this torch build sees no CUDA device")
    return torch.device(name)


def perplexity(model: TPTTModel, windows, chunk_size: int) -> float:
    nll, n = 0.0, 0
    dev = next(model.parameters()).device
    with torch.no_grad():
        for w in windows:
            w = w.to(dev)
            logits, _ = model(w[:, :-1], chunk_size=chunk_size)
            nll += F.cross_entropy(logits[0], w[0, 1:], reduction="sum").item()
            n += w.shape[1] - 1
    return math.exp(nll / n)


def window_arg(s: str):
    if s.lower() == "none":
        return None
    try:
        return int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of tokens or 'none', got {s!r}") from None


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DEFAULT_GGUF))
    ap.add_argument("--out", help="output adapter folder")
    ap.add_argument("--corpus", nargs="*", default=[str(p) for p in data.DEFAULT_CORPORA],
                    help="corpus directories (*.rst, *.txt) or text files")
    ap.add_argument("--heldout-frac", type=float, default=0.05)
    ap.add_argument("--train-tokens", type=int, default=2_000_000, help="tokens of training text to prepare")
    ap.add_argument("--window", type=window_arg, default=64, help="softmax window W in tokens, or 'none'")
    ap.add_argument("--sinks", type=int, default=0, help="attention sinks N_s of the softmax branch")
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
    ap.add_argument("--mu-lr", type=float, default=None,
                    help="stage-2 peak learning rate of the mu logits (default: --lr); with mu_logit near -4.6 "
                         "(mu 0.01) the sigmoid's slope is 0.01 and --lr barely moves mu")
    ap.add_argument("--lora-r", type=int, default=8)
    ap.add_argument("--lora-alpha", type=float, default=16.0)
    ap.add_argument("--lora-dropout", type=float, default=0.05)
    ap.add_argument("--chunk-size", type=int, default=64)
    ap.add_argument("--minutes", type=float, default=60.0, help="wall-clock budget for both stages")
    ap.add_argument("--stage1-share", type=float, default=0.3, help="fraction of the budget for stage 1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--distill-weight", type=float, default=0.0,
                    help="stage 2: weight w of the KL to the base model's logits (0 = plain next-token CE)")
    ap.add_argument("--distill-temp", type=float, default=1.0, help="stage 2 distillation temperature")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    ap.add_argument("--ckpt-every", type=int, default=50, help="steps between checkpoints (0: stage ends only)")
    ap.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    ap.add_argument("--stop-after", type=int, default=0,
                    help="stop after this many optimizer steps in this run (both stages), checkpointed, no adapter "
                         "written: a planned interruption (split a run across sessions; tests --resume)")
    ap.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    ap.add_argument("--eval-only", action="store_true", help="held-out perplexity: base, untrained, --adapter")
    ap.add_argument("--adapter", help="adapter folder to evaluate with --eval-only")
    ap.add_argument("--eval-ctx", type=int, default=1024)
    ap.add_argument("--eval-windows", type=int, default=8)
    ap.add_argument("--stage1-only", action="store_true", help="skip stage 2 (operator comparisons)")
    ap.add_argument("--init-adapter", help="start from this trained adapter folder: its conversion (operator, "
                    "feature map, window, sinks, gates, layers, LoRA r/alpha/targets) and weights; stage 1 is "
                    "skipped and stage 2 continues training (e.g. at a longer --seq)")
    args = ap.parse_args(argv)
    if args.init_adapter:
        given = {a.split("=", 1)[0] for a in (sys.argv[1:] if argv is None else argv) if a.startswith("--")}
        skipped = sorted(given & set(STAGE1_FLAGS))
        if skipped:
            ap.error(f"--init-adapter skips stage 1 (the adapter's gates are trained); drop {', '.join(skipped)}")
        clash = sorted(given & set(CONVERSION_FLAGS))
        if clash:
            ap.error(f"--init-adapter takes the conversion from the adapter; drop {', '.join(clash)} "
                     f"(only --window and --sinks may change it: no weight depends on them)")
        args.reshape = {k: getattr(args, k) for k in ("window", "sinks") if f"--{k}" in given}
        if args.stage1_only or args.eval_only:
            ap.error("--init-adapter continues stage 2; it cannot be combined with --stage1-only or --eval-only")
        if args.out and Path(args.out).resolve() == Path(args.init_adapter).resolve():
            ap.error("--out must differ from --init-adapter (write a new folder, then copy its files over)")
    return args


# Flags that define the conversion; with --init-adapter they come from the adapter and may not be given
# (--window and --sinks may: they shape the softmax branch, no tensor).
CONVERSION_FLAGS = ("--operator", "--feature-map", "--gates", "--const-b", "--const-a", "--layers", "--mu-init",
                    "--lora-r", "--lora-alpha")
STAGE1_FLAGS = ("--stage1-steps", "--stage1-seq", "--stage1-lr", "--stage1-share")
# The arguments a run with --init-adapter does not use (its log shows the adapter's conversion instead).
_UNUSED_WITH_INIT = {f[2:].replace("-", "_") for f in ("--window", "--sinks") + CONVERSION_FLAGS + STAGE1_FLAGS}


def make_config(args, n_layers: int, lora: bool) -> TPTTConfig:
    layers = list(range(n_layers)) if args.layers == "all" else [int(x) for x in args.layers.split(",")]
    return TPTTConfig(operator=args.operator, feature_map=args.feature_map, window=args.window, sinks=args.sinks,
                      gates=args.gates,
                      constants={"b": args.const_b, "a": args.const_a}, layers=layers, mu_init=args.mu_init,
                      lora=LoraSpec(r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout) if lora else None)


def from_adapter(folder, base, fingerprint: str, lora_dropout: float, reshape: dict | None = None):
    """A TPTTModel holding a trained adapter's conversion and weights, ready to train further: LoRA dropout is
    --lora-dropout (an adapter stores none); reshape may set another `window` / `sinks`. Raises SystemExit
    naming the problem (missing folder, another base model, malformed files, an adapter without LoRA, an
    invalid window / sinks)."""
    if not Path(folder).is_dir():
        raise SystemExit(f"--init-adapter {folder}: no such adapter folder")
    try:
        adapter = read_adapter(folder)
        validate_against(adapter, base.config, fingerprint)
    except AdapterError as e:
        raise SystemExit(f"--init-adapter: {e}") from e
    cfg = adapter.config
    if cfg.lora is None:
        raise SystemExit(f"--init-adapter {folder}: the adapter has no LoRA; stage 2 trains LoRA")
    desc = {k: getattr(cfg, k) for k in ("operator", "feature_map", "window", "sinks", "gates")}
    desc.update(layers=len(cfg.layers), lora_r=cfg.lora.r, lora_alpha=cfg.lora.alpha)
    cfg = dataclasses.replace(cfg, lora=dataclasses.replace(cfg.lora, dropout=lora_dropout), **(reshape or {}))
    try:
        cfg.validate(base.config.num_hidden_layers)
    except ValueError as e:
        raise SystemExit(f"--init-adapter {folder}: {e}") from e
    model = TPTTModel(base, cfg)
    apply_tensors(model, adapter)
    return model, {"folder": str(folder), "config": desc, "changed": dict(reshape or {}),
                   "training": adapter.raw_config.get("training")}


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
    init = None
    if args.init_adapter:  # checked before anything is written
        model, init = from_adapter(args.init_adapter, base, fingerprint, args.lora_dropout, args.reshape)
    else:
        model = TPTTModel(base, make_config(args, base.config.num_hidden_layers, lora=not args.stage1_only))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logf = open(out / "train.log", "a")
    jfile = open(out / "train_log.jsonl", "a")

    def jlog(rec: dict) -> None:
        jfile.write(json.dumps(rec) + "\n")
        jfile.flush()

    device = pick_device(args.device)
    shown = vars(args)
    if init is not None:
        shown = {k: v for k, v in shown.items() if k not in _UNUSED_WITH_INIT}
        shown["conversion"] = {**init["config"], **init["changed"]}
    log(f"args {shown} device {device}", logf)
    train = data.token_stream(tok, train_files, args.train_tokens, seed=args.seed, cache_dir=CACHE)
    log(f"{len(train_files)} train files ({len(train)} tokens), {len(held_files)} held-out files", logf)
    model = model.to(device)
    if init is not None:
        log(f"starting from adapter {args.init_adapter}: {init['config']}, changed {init['changed']}", logf)
    ckpt = Checkpoint(out, model)
    resumed = None
    if args.resume:
        if not ckpt.path.exists():
            raise SystemExit(f"--resume: {ckpt.path} does not exist")
        resumed = ckpt.load(device)
        log(f"resumed from {ckpt.path}: {resumed['stage']} step {resumed['step']} "
            f"({'done' if resumed['done'] else 'in progress'}), {resumed['elapsed'] / 60:.1f} min spent", logf)
    t_start = time.time() - (resumed["elapsed"] if resumed else 0.0)
    budget = args.minutes * 60
    report = dict(resumed["report"]) if resumed else {"base_model": fingerprint}
    if resumed:
        was, now = report.get("init_adapter", {}).get("changed"), (init or {}).get("changed")
        if was != now:
            raise SystemExit(f"--resume: {ckpt.path} was trained with --init-adapter changes {was}, "
                             f"this run asks for {now}")
    if args.init_adapter and not resumed:
        report["init_adapter"] = init
    jlog({"time": time.time(), "event": "resume" if resumed else "start", "args": shown, "device": str(device)})

    def save_ckpt(stage_state: dict) -> None:
        ckpt.save({**stage_state, "elapsed": time.time() - t_start, "report": report})

    held1 = [w.to(device) for w in data.fixed_windows(held, args.stage1_seq, 4)]

    def heldout_mse():
        with torch.no_grad():
            return sum(float(transfer_loss(model, w, args.chunk_size)[0]) for w in held1) / len(held1)

    if resumed is None and not args.init_adapter:
        mu0 = model.mu_values()
        model.set_mu(0.0)
        report["window_only_rel_mse"] = heldout_mse()  # mu = 0: what the sliding window alone loses
        model.set_mu(mu0)
        report["init_rel_mse"] = heldout_mse()
        log(f"held-out relative MSE: window only {report['window_only_rel_mse']:.5f}, "
            f"at init (mu={args.mu_init}) {report['init_rel_mse']:.5f}", logf)
    common = dict(logf=logf, jlog=jlog, log_every=args.log_every, ckpt=save_ckpt, ckpt_every=args.ckpt_every,
                  device=device, progress=not args.no_progress,
                  step_budget=[args.stop_after] if args.stop_after > 0 else None)

    def stopped(stage: str, result: dict) -> bool:
        if not result.get("interrupted"):
            return False
        jlog({"time": time.time(), "event": "stopped", "stage": stage, "step": result["steps"]})
        log(f"stopped in {stage} at step {result['steps']} (--stop-after {args.stop_after}); "
            f"continue with the same arguments and --resume", logf)
        return True
    s1_done = resumed is not None and (resumed["stage"] == "stage2" or resumed["done"])
    if args.init_adapter and not s1_done:  # the adapter's gates are trained already: straight to stage 2
        report["stage1"] = {"steps": 0, "skipped": "--init-adapter"}
        s1_done = True
    if s1_done and "stage1" not in report:
        report["stage1"] = {"steps": resumed["step"]}
    if not s1_done:
        b1 = data.RandomWindows(train, args.stage1_seq, args.batch, args.seed)
        report["stage1"] = run_stage("stage1", model, model.new_parameters(include_lora=False), b1,
                                     lambda ids: transfer_loss(model, ids, args.chunk_size),
                                     args.stage1_steps, args.stage1_lr, t_start + budget * args.stage1_share,
                                     resume=resumed, **common)
        if stopped("stage1", report["stage1"]):
            return 0
        report["stage1"]["heldout_rel_mse"] = heldout_mse()
        log(f"stage1 held-out relative MSE {report['stage1']['heldout_rel_mse']:.5f}", logf)
        save_ckpt({"stage": "stage1", "step": report["stage1"]["steps"], "done": True})

    s2_resume = resumed if resumed is not None and resumed["stage"] == "stage2" else None
    if not args.stage1_only and not (s2_resume and s2_resume["done"]):
        b2 = data.RandomWindows(train, args.seq + 1, args.batch, args.seed + 1)
        params2 = model.new_parameters()
        if args.mu_lr is not None:  # the mu logits as a group of their own
            mus = [hp.mu_logit for hp in model.hybrid.values()]
            own = {id(p) for p in mus}
            params2 = [{"params": [p for p in params2 if id(p) not in own]}, {"params": mus, "base_lr": args.mu_lr}]
        report["stage2"] = run_stage("stage2", model, params2, b2,
                                     lambda ids: lm_loss(model, ids, args.chunk_size, args.distill_weight,
                                                         args.distill_temp),
                                     args.stage2_steps, args.lr, t_start + budget, resume=s2_resume, **common)
        if stopped("stage2", report["stage2"]):
            return 0
    report["minutes"] = (time.time() - t_start) / 60
    model.to("cpu")
    save_adapter(model, out, base_model=fingerprint, training={k: v for k, v in report.items() if k != "base_model"})
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    jlog({"time": time.time(), "event": "done", "report": report})
    log(f"wrote {out}: {json.dumps(report)}", logf)
    return 0


if __name__ == "__main__":
    sys.exit(main())
