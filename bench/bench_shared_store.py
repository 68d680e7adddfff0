"""Shared session tier (issue 13): write-through overhead and cross-replica resume, live processes.

  .venv/bin/python bench/bench_shared_store.py [--history 150] [--turns 40] [--no-adapter]

Starts a redis-server (loopback, no persistence) and titand replicas from build/bin (tests/py/conftest_server.py):
  overhead  the same session workload (history of --history tokens, then --turns turns of a 4-token
            prompt with max_tokens 1, greedy) on a replica WITHOUT --shared-store and on one WITH it;
            client-observed turn latency p50/p99 (the write-through runs after the engine finished the
            turn and before the final message, so the client sees all of it).
  resume    turns alternating between two replicas A and B (every turn fetches the state the other
            replica wrote) vs consecutive turns on one replica; resume time = the difference of medians.
The session state size is reported (bytes of the stored value), and the servers' own mean times of
serialising a state, of a write round trip and of a fetch round trip (titand_shared_store_seconds_total).
Prints one JSON object.
"""
import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "py"))
import conftest_server as cs  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def start_redis(tmp):
    port = cs.free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp),
                             "--save", "", "--appendonly", "no", "--logfile", str(tmp / "redis.log")])
    for _ in range(200):
        r = subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True, text=True)
        if r.stdout.strip() == "PONG":
            return proc, port
        time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def grow(c, sid, history, rng):
    for off in range(0, history, 256):
        c.complete(session_id=sid, tokens=[rng.randrange(1000, 20000) for _ in range(min(256, history - off))],
                   max_tokens=1, ignore_eos=True, timeout=600)


def timed_turn(c, sid, rng):
    t0 = time.perf_counter()
    r = c.complete(session_id=sid, tokens=[rng.randrange(1000, 20000) for _ in range(4)], max_tokens=1,
                   ignore_eos=True, timeout=600)
    return time.perf_counter() - t0, r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--history", type=int, default=150)
    ap.add_argument("--turns", type=int, default=40)
    ap.add_argument("--no-adapter", action="store_true", help="plain model (full KV: the state grows with history)")
    a = ap.parse_args()
    if a.no_adapter:
        cs.ADAPTER_ARGS.clear()
    tc = cs.import_client()
    tmp = Path(tempfile.mkdtemp(prefix="bench-shared-"))
    out = {"history_tokens": a.history, "turns": a.turns, "adapter": bool(cs.ADAPTER_ARGS)}
    rng = random.Random(0)

    # Baseline: no shared store.
    base = cs.Titand(tmp / "base").wait_serving()
    try:
        with tc.Client(base.address) as c:
            sid = c.create_session().id
            grow(c, sid, a.history, rng)
            lat = [timed_turn(c, sid, rng)[0] for _ in range(a.turns)]
            out["state_bytes"] = c.get_session(sid).state_bytes
        out["no_shared_store"] = {"p50_ms": 1e3 * pct(lat, 50), "p99_ms": 1e3 * pct(lat, 99)}
    finally:
        base.terminate()

    rproc, rport = start_redis(tmp)
    common = ["--shared-store", f"redis://127.0.0.1:{rport}"]
    ra = cs.Titand(tmp / "a", *common, "--replica-id", "A").wait_serving()
    rb = cs.Titand(tmp / "b", *common, "--replica-id", "B").wait_serving()
    try:
        with tc.Client(ra.address) as ca, tc.Client(rb.address) as cb:
            sid = ca.create_session().id
            grow(ca, sid, a.history, rng)
            lat = []
            for _ in range(a.turns):
                dt, r = timed_turn(ca, sid, rng)
                assert r.shared_state == "DURABLE", r.shared_state
                lat.append(dt)
            out["shared_store"] = {"p50_ms": 1e3 * pct(lat, 50), "p99_ms": 1e3 * pct(lat, 99)}
            out["write_through_overhead_ms"] = {
                "p50": out["shared_store"]["p50_ms"] - out["no_shared_store"]["p50_ms"],
                "p99": out["shared_store"]["p99_ms"] - out["no_shared_store"]["p99_ms"]}
            vb = subprocess.run(["redis-cli", "-p", str(rport), "HSTRLEN", f"titand:{{{sid}}}:s", "d"],
                                capture_output=True, text=True).stdout.strip()
            out["stored_value_bytes"] = int(vb)
            local, cross = [], []
            n = max(6, a.turns // 4)
            for i in range(n):  # A, A (local), then B (cross: fetches A's state), B (local), A (cross) ...
                first, second = (ca, cb) if i % 2 == 0 else (cb, ca)
                local.append(timed_turn(first, sid, rng)[0])
                cross.append(timed_turn(second, sid, rng)[0])
            def mean(server, op, count_name, **labels):
                m = server.metrics()
                n = cs.metric_value(m, count_name, **labels)
                return 1e3 * cs.metric_value(m, "titand_shared_store_seconds_total", op=op) / max(n, 1)
            time.sleep(1.2)  # gauges/counters are refreshed every 500 ms
            out["server_side_mean_ms"] = {
                "serialize": mean(ra, "serialize", "titand_shared_store_writes_total", result="ok"),
                "write_round_trip": mean(ra, "write", "titand_shared_store_writes_total", result="ok"),
                "fetch_round_trip": mean(rb, "fetch", "titand_shared_store_fetches_total")}
            out["resume"] = {"local_turn_p50_ms": 1e3 * statistics.median(local),
                             "cross_replica_turn_p50_ms": 1e3 * statistics.median(cross),
                             "cross_replica_turn_p99_ms": 1e3 * pct(cross, 99),
                             "resume_ms_p50": 1e3 * (statistics.median(cross) - statistics.median(local))}
    finally:
        ra.terminate()
        rb.terminate()
        rproc.kill()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
