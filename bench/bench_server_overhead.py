"""Server overhead per token: one streamed Generate through titand vs the bare runtime doing the same work.

  .venv/bin/python bench/bench_server_overhead.py [--threads 2] [--max-tokens 64] [--prompt-tokens 32]
      [--reps 3] [--rounds 2] [--no-adapter] [--weights auto|dtype|...] [--temperature 0 --top-k 0 --top-p 1]
      [--out FILE.json]

Same model (bundled SmolLM2-135M + the bundled TPTT adapter unless --no-adapter), same threads, same
prompt ids, same length (ignore_eos), greedy unless asked otherwise:
  * bare: build/bin/bench_generate (Generate(): prefill, then per token forward + sample + stop checks +
    detokenize, the Decoder the engine runs) timestamps each token in-process;
  * server: build/bin/titand on loopback; the Python client timestamps each streamed message carrying a
    token as it arrives (so gRPC, the scheduler, the engine loop, the reactor and the client's read are
    all inside the figure).
Per token = (t_last - t_first) / (n - 1) for both (the prefill/TTFT is excluded). Each side runs `reps`
generations per round (after one warm-up), `rounds` rounds alternating bare/server; the figure is the
best (lowest) of all. overhead % = server / bare - 1. For greedy runs the two token streams must be
identical (checked: otherwise the sides did not do the same work). The 1-minute load average is
recorded before and after: figures from a busy machine are noise-dominated.

Also reported: CPU time per token (bare: the process CPU clock in bench_generate; server: utime + stime
of titand from /proc between its first and last token), which a loaded machine disturbs far less than
wall time. On a machine busier than its cores, libgomp's default spin-wait (GOMP_SPINCOUNT 300000 while
a process's OpenMP threads fit the cores) makes 2-thread decode several times slower; run such a
measurement with GOMP_SPINCOUNT=1000 in the environment (both sides inherit it; it is recorded).
"""
import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("TITAND_BUILD_DIR", REPO / "build"))
ADAPTER = REPO / "adapters" / "smollm2-135m-tptt"
CLIENT_DIR = REPO / "client" / "python"
# Threading settings both processes inherit (recorded with the figures).
ENV_KEYS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load() -> float:
    return os.getloadavg()[0]


def import_client():
    subprocess.run(["bash", str(CLIENT_DIR / "generate.sh"), sys.executable], check=True,
                   capture_output=True)
    sys.path.insert(0, str(CLIENT_DIR))
    import titand_client
    return titand_client


def run_bare(a, model_args, prompt):
    cmd = [str(BUILD / "bin" / "bench_generate"), *model_args, "--threads", str(a.threads),
           "--tokens", ",".join(map(str, prompt)), "--max-tokens", str(a.max_tokens), "--reps", str(a.reps),
           "--temperature", str(a.temperature), "--top-k", str(a.top_k), "--top-p", str(a.top_p),
           "--seed", "7"]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


class Server:
    def __init__(self, a, model_args, tmp):
        self.port, mport = free_port(), free_port()
        self.log = open(Path(tmp) / "titand.log", "w")
        env = dict(os.environ, TITAND_MODELS_DIR=str(REPO / "models"))
        self.proc = subprocess.Popen(
            [a.titand or str(BUILD / "bin" / "titand"), *model_args, "--host", "127.0.0.1", "--port", str(self.port),
             "--metrics-port", str(mport), "--session-dir", str(Path(tmp) / "sessions"),
             "--threads", str(a.threads), *a.server_args],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.pid = self.proc.pid

    def wait_ready(self, client, timeout=120):
        t_end = time.time() + timeout
        while time.time() < t_end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"titand exited ({self.proc.returncode}); see its log")
            try:
                if client.health(timeout=1.0) == "SERVING":
                    return
            except Exception:
                pass
            time.sleep(0.2)
        raise RuntimeError("titand did not become SERVING")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of `pid` (clock ticks of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_generation(client, a, prompt, pid):
    """One streamed Generate: (ttft_s, per-token s, ids, n, server CPU s per token) from the client's
    arrival times and the server's CPU time between the first and the last token."""
    kwargs = dict(tokens=prompt, max_tokens=a.max_tokens, ignore_eos=True, temperature=a.temperature,
                  seed=7)
    if a.top_k:
        kwargs["top_k"] = a.top_k
    if a.top_p < 1:
        kwargs["top_p"] = a.top_p
    t0 = time.perf_counter()
    at, ids = [], []
    cpu = []
    for msg in client.generate(**kwargs):
        if msg.token_ids:
            at.append(time.perf_counter())
            cpu.append(cpu_seconds(pid))
            ids.extend(msg.token_ids)
    n = len(at)
    return at[0] - t0, (at[-1] - at[0]) / (n - 1), ids, n, (cpu[-1] - cpu[0]) / (n - 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-adapter", action="store_true")
    ap.add_argument("--weights", default="auto", help="--weights for both sides (auto|dtype|f32|bf16|int8|int4)")
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--top-k", type=int, default=0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--server-args", nargs=argparse.REMAINDER, default=[],
                    help="extra titand flags (last on the command line)")
    ap.add_argument("--out", default="")
    ap.add_argument("--titand", default="", help="the server binary (default: build/bin/titand)")
    a = ap.parse_args()
    model_args = ["--model", "smollm2-135m", "--weights", a.weights]
    if not a.no_adapter and (ADAPTER / "tptt_config.json").exists():
        model_args += ["--tptt", str(ADAPTER)]
    rng = random.Random(0)
    prompt = [rng.randrange(1000, 20000) for _ in range(a.prompt_tokens)]
    tc = import_client()
    res = {"date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "cpus": os.cpu_count(),
           "model_args": model_args, "threads": a.threads, "prompt_tokens": a.prompt_tokens,
           "max_tokens": a.max_tokens, "sampling": {"temperature": a.temperature, "top_k": a.top_k,
                                                     "top_p": a.top_p},
           "load_before": load(), "bare_runs_ms": [], "server_runs_ms": [], "bare_cpu_ms": [],
           "server_cpu_ms": [], "env": {k: os.environ[k] for k in ENV_KEYS if k in os.environ}}
    bare_ids = server_ids = None
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(a, model_args, tmp)
        client = tc.Client(f"127.0.0.1:{srv.port}")
        try:
            srv.wait_ready(client)
            server_generation(client, a, prompt, srv.pid)  # warm-up
            for _ in range(a.rounds):
                b = run_bare(a, model_args, prompt)
                res["bare_runs_ms"] += [r["decode_ms_per_token"] for r in b["runs"]]
                res["bare_cpu_ms"] += [r["decode_cpu_ms_per_token"] for r in b["runs"]]
                bare_ids = b["token_ids"]
                for _ in range(a.reps):
                    _, per, ids, n, cpu = server_generation(client, a, prompt, srv.pid)
                    if n != a.max_tokens:
                        raise RuntimeError(f"server streamed {n} token messages, expected {a.max_tokens}")
                    res["server_runs_ms"].append(per * 1000)
                    res["server_cpu_ms"].append(cpu * 1000)
                    server_ids = ids
        finally:
            client.close()
            srv.stop()
    res["load_after"] = load()
    res["bare_ms_per_token"] = min(res["bare_runs_ms"])
    res["server_ms_per_token"] = min(res["server_runs_ms"])
    res["overhead_pct"] = 100.0 * (res["server_ms_per_token"] / res["bare_ms_per_token"] - 1)
    res["bare_cpu_ms_per_token"] = min(res["bare_cpu_ms"])
    res["server_cpu_ms_per_token"] = min(res["server_cpu_ms"])
    res["cpu_overhead_pct"] = 100.0 * (res["server_cpu_ms_per_token"] / res["bare_cpu_ms_per_token"] - 1)
    res["same_tokens"] = bare_ids == server_ids
    print(json.dumps(res, indent=2))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    if a.temperature == 0 and not res["same_tokens"]:
        print("bench_server_overhead: greedy token streams differ between the server and the bare runtime",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
