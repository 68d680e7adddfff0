"""Does chunked prefill stall decoding streams? Inter-token latency of streams that are decoding while
another client's long prompt is prefilled, through the live server, for several --prefill-chunk values.

  python bench/bench_prefill_stall.py [--prompt 4096] [--streams 2] [--chunks 64,256,1024]
                                      [--tptt adapters/smollm2-135m-tptt] [--threads 2] [--out FILE.json]

For each chunk size a titand is started (bundled model, --prefill-chunk C, --max-step-tokens C + 32), `streams`
greedy streams decode `--decode` tokens each; once every stream has produced 8 tokens, one more client sends a
`--prompt`-token prompt (max_tokens 1). Gaps between consecutive streamed tokens (client-side arrival times)
are split into "quiet" (no prefill in flight) and "during" (between the long request's send and its
answer), and reported as p50 / p99 / max in milliseconds with the long prompt's time to first token.
A step holds at most one chunk of the long prompt beside the decodes, so a decoding stream waits at most one
chunk's prefill per token: p99 during ~ the time of one chunk, not of the whole prompt.
"""
import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "client" / "python"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def summary(xs):
    return {"n": len(xs), "p50_ms": round(pct(xs, 50) * 1e3, 2), "p99_ms": round(pct(xs, 99) * 1e3, 2),
            "max_ms": round(max(xs) * 1e3, 2) if xs else float("nan")}


def run_one(a, chunk: int) -> dict:
    from titand_client import Client
    port = free_port()
    args = [str(REPO / "build" / "bin" / "titand"), "--model", "smollm2-135m", "--host", "127.0.0.1",
            "--port", str(port), "--metrics-port", str(free_port()), "--threads", str(a.threads),
            "--prefill-chunk", str(chunk), "--max-step-tokens", str(chunk + 32),
            "--session-write-through=false"]
    if a.tptt:
        args += ["--tptt", a.tptt]
    args += a.titand_args.split()
    env = dict(os.environ, TITAND_MODELS_DIR=str(REPO / "models"))
    log = open(f"/tmp/bench_prefill_stall_{port}.log", "w")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        c = Client(f"127.0.0.1:{port}")
        end = time.time() + 300
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"titand exited with {proc.returncode}; see {log.name}")
            try:
                c.complete(tokens=[100], max_tokens=1, timeout=5)
                break
            except Exception:
                if time.time() > end:
                    raise SystemExit(f"titand not serving after 300 s; see {log.name}")
                time.sleep(0.5)
        rng = random.Random(chunk)
        arrivals = [[] for _ in range(a.streams)]
        window = {}
        ready = threading.Barrier(a.streams + 1)

        def stream(i):
            toks = [rng.randrange(1000, 20000) for _ in range(32)]
            signalled = False
            for msg in c.generate(tokens=toks, max_tokens=a.decode, ignore_eos=True, timeout=600):
                now = time.perf_counter()
                for _ in msg.token_ids:
                    arrivals[i].append(now)
                if not signalled and len(arrivals[i]) >= 8:
                    signalled = True
                    ready.wait()
            if not signalled:
                ready.wait()

        def long_prompt():
            ready.wait()
            prompt = [rng.randrange(1000, 20000) for _ in range(a.prompt)]
            window["start"] = time.perf_counter()
            done = c.complete(tokens=prompt, max_tokens=1, ignore_eos=True, timeout=600)
            window["end"] = time.perf_counter()

        threads = [threading.Thread(target=stream, args=(i,)) for i in range(a.streams)]
        threads.append(threading.Thread(target=long_prompt))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        quiet, during = [], []
        for arr in arrivals:
            for t0, t1 in zip(arr, arr[1:]):
                (during if t1 > window["start"] and t0 < window["end"] else quiet).append(t1 - t0)
        return {"prefill_chunk": chunk, "quiet": summary(quiet), "during_prefill": summary(during),
                "long_prompt_tokens": a.prompt, "long_prompt_seconds": round(window["end"] - window["start"], 3)}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompt", type=int, default=4096)
    ap.add_argument("--streams", type=int, default=2)
    ap.add_argument("--decode", type=int, default=160)
    ap.add_argument("--chunks", default="64,256,1024")
    ap.add_argument("--tptt", default=str(REPO / "adapters" / "smollm2-135m-tptt"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--titand-args", default="", help="extra titand flags, e.g. '--weights int4'")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    res = {"date": time.strftime("%Y-%m-%d"), "load_avg": os.getloadavg(), "tptt": a.tptt, "runs": []}
    for chunk in [int(x) for x in a.chunks.split(",")]:
        r = run_one(a, chunk)
        print(json.dumps(r), flush=True)
        res["runs"].append(r)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
