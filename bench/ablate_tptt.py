#!/usr/bin/env python3
"""TPTT training ablation (issue 12): every variant trained on the same step budget, scored by the C++ runtime.

Each variant is one `tools/train_tptt.py` run (stage 1 attention transfer, stage 2 LoRA + gates) that differs
from the reference recipe in one thing, then `bench/eval_harness.py` on the result (held-out perplexity at
1K through `titan-run score`, the adapter and its softmax branch alone, mu = 0). The budget is counted in
optimizer steps and tokens, not wall-clock, so a shared machine stretches the run without changing its
result; wall-clock seconds per step are reported beside it (distillation pays for a teacher forward).

Variants run --jobs at a time, each with --threads intra-op threads. A finished variant (its eval.json
exists) is not re-run: an interrupted ablation continues where it stopped. Output: <out>/ablation.json and
<out>/ablation.md (the table for BENCHMARKS.md).

  .venv/bin/python bench/ablate_tptt.py --out runs/ablation            # all variants, 2 jobs x 1 thread
  .venv/bin/python bench/ablate_tptt.py --out runs/ablation --only w128,distill
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable

# The reference recipe: the bundled adapter's (adapters/TRAIN_COMMAND.sh) with 4 sinks. Each variant changes one
# thing; "recipe0" is the bundled adapter's recipe itself (no sinks).
REFERENCE = {"--operator": "gated_delta", "--feature-map": "tptt", "--window": "64", "--sinks": "4",
             "--gates": "learned", "--layers": "all", "--mu-init": "0.01", "--lr": "5e-4",
             "--lora-r": "8", "--lora-alpha": "16", "--lora-dropout": "0.05", "--seq": "512"}
ODD_LAYERS = ",".join(str(i) for i in range(1, 30, 2))
VARIANTS = {
    "recipe0": ({"--sinks": "0"}, "bundled recipe: no sinks"),
    "sinks4": ({}, "reference: 4 sinks, window 64"),
    "w128": ({"--window": "128"}, "window 128"),
    "w256": ({"--window": "256"}, "window 256"),
    "delta": ({"--operator": "delta"}, "operator delta (no decay gate)"),
    "half_layers": ({"--layers": ODD_LAYERS}, "15 of 30 layers converted (odd)"),
    "lr1e-3": ({"--lr": "1e-3"}, "stage-2 learning rate 1e-3"),
    "no_stage1": ({"stage1": 0}, "no stage 1 (stage-2 steps only)"),
    "distill": ({"--distill-weight": "0.5"}, "stage 2 loss 0.5 CE + 0.5 KL to the base model"),
    "seq1024": ({"--seq": "1024", "stage2_div": 2}, "stage-2 sequences of 1024 (half the steps, same tokens)"),
    "mu0.3": ({"--mu-init": "0.3"}, "mu starts at 0.3 (the memory weighted in from the start)"),
    "w256_mulr": ({"--window": "256", "--mu-lr": "5e-2"}, "window 256, stage-2 mu logits at lr 5e-2"),
}


def run(cmd: list[str], log: Path) -> None:
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        r = subprocess.run(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[1]} failed (rc {r.returncode}), see {log}")


def variant(name: str, args) -> dict:
    change, what = VARIANTS[name]
    out = Path(args.out) / name
    out.mkdir(parents=True, exist_ok=True)
    ev = out / "eval.json"
    if not ev.exists():
        opts = {**REFERENCE, **{k: v for k, v in change.items() if k.startswith("--")}}
        s1 = change.get("stage1", args.stage1_steps)
        s2 = args.stage2_steps // change.get("stage2_div", 1)
        cmd = [PY, "tools/train_tptt.py", "--model", args.model, "--out", str(out / "adapter"),
               "--stage1-steps", str(s1), "--stage1-seq", str(args.stage1_seq), "--stage2-steps", str(s2),
               "--minutes", "100000", "--seed", str(args.seed), "--threads", str(args.threads),
               "--no-progress", "--ckpt-every", "0", "--log-every", "8"]
        for k, v in opts.items():
            cmd += [k, v]
        if not ((out / "adapter" / "adapter.safetensors").exists() and (out / "adapter" / "report.json").exists()):
            run(cmd, out / "run.log")  # else trained earlier, only the evaluation was missing
        run([PY, "bench/eval_harness.py", "--model", args.model, "--adapter", str(out / "adapter"),
             "--configs", "window,adapter", "--ppl", args.ppl, "--task-docs", "0", "--memory", "",
             "--threads", str(args.threads), "--out", str(ev)], out / "run.log")
    report = json.loads((out / "adapter" / "report.json").read_text())
    evr = json.loads(ev.read_text())["configs"]
    losses = [json.loads(x) for x in (out / "adapter" / "train_log.jsonl").read_text().splitlines()]
    s2 = [r["loss"] for r in losses if r.get("stage") == "stage2"]
    key = next(k for k in evr["adapter"] if k.startswith("ppl@"))
    return {"variant": name, "change": what, "stage1_steps": report["stage1"]["steps"],
            "stage1_heldout_rel_mse": report["stage1"].get("heldout_rel_mse"),
            "window_only_rel_mse": report.get("window_only_rel_mse"),
            "stage2_steps": report.get("stage2", {}).get("steps"),
            "stage2_sec_per_step": report.get("stage2", {}).get("sec_per_step"),
            "stage2_last_loss": (sum(s2[-3:]) / len(s2[-3:])) if s2 else None,
            "minutes": report["minutes"], "measure": key,
            "ppl_adapter": evr["adapter"][key], "ppl_window": evr["window"][key]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default=str(REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--only", help="comma-separated variant names (default: all)")
    ap.add_argument("--stage1-steps", type=int, default=24)
    ap.add_argument("--stage1-seq", type=int, default=320, help="above the largest window ablated")
    ap.add_argument("--stage2-steps", type=int, default=48)
    ap.add_argument("--ppl", default="1024:4")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    names = args.only.split(",") if args.only else list(VARIANTS)
    for n in names:
        if n not in VARIANTS:
            raise SystemExit(f"unknown variant {n!r}; known: {', '.join(VARIANTS)}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    base_ev = Path(args.out) / "base_eval.json"
    t0 = time.time()
    with ThreadPoolExecutor(args.jobs) as pool:
        futs = {n: pool.submit(variant, n, args) for n in names}
        if not base_ev.exists():
            run([PY, "bench/eval_harness.py", "--model", args.model, "--configs", "base", "--ppl", args.ppl,
                 "--task-docs", "0", "--memory", "", "--threads", str(args.threads), "--out", str(base_ev)],
                Path(args.out) / "base.log")
        rows = []
        for n, f in futs.items():
            try:
                rows.append(f.result())
                print(json.dumps(rows[-1]), flush=True)
            except Exception as e:  # one failed variant does not lose the others
                print(f"variant {n} failed: {e}", file=sys.stderr, flush=True)
    base = json.loads(base_ev.read_text())["configs"]["base"]
    res = {"command": " ".join([".venv/bin/python", "bench/ablate_tptt.py", *(argv or sys.argv[1:])]),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "reference": REFERENCE,
           "budget": {"stage1_steps": args.stage1_steps, "stage1_seq": args.stage1_seq,
                      "stage2_steps": args.stage2_steps, "stage2_seq": REFERENCE["--seq"], "batch": 1},
           "base": base, "rows": rows, "wall_minutes": (time.time() - t0) / 60}
    (Path(args.out) / "ablation.json").write_text(json.dumps(res, indent=1) + "\n")
    bkey = next(iter(base))
    lines = [f"| variant | change | ppl (memory on) | vs base | ppl window only (mu = 0) | stage-1 held-out rel. MSE "
             f"| stage-2 s/step |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        mse = "-" if r["stage1_heldout_rel_mse"] is None else f"{r['stage1_heldout_rel_mse']:.3f}"
        sps = "-" if r["stage2_sec_per_step"] is None else f"{r['stage2_sec_per_step']:.1f}"
        lines.append(f"| {r['variant']} | {r['change']} | {r['ppl_adapter']:.2f} | "
                     f"{r['ppl_adapter'] / base[bkey]:.2f}x | {r['ppl_window']:.2f} | {mse} | {sps} |")
    md = f"base {bkey}: {base[bkey]:.2f}\n\n" + "\n".join(lines) + "\n"
    (Path(args.out) / "ablation.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
