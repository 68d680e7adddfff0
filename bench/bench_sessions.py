"""Returning-session time to first token vs history length, through the live server.

  python bench/bench_sessions.py --addr 127.0.0.1:PORT [--histories 0,2048,8192] [--turn 16]

For each history length H: create a session, feed H tokens of history (prefill only, max_tokens 1),
then send a 16-token turn and record the server-reported time to first token (median of 3 turns).
"""
import argparse
import json
import random
import statistics

from titand_client import Client


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--histories", default="0,2048,8192")
    ap.add_argument("--turn", type=int, default=16)
    a = ap.parse_args()
    rng = random.Random(0)
    c = Client(a.addr)
    out = []
    for h in [int(x) for x in a.histories.split(",")]:
        s = c.create_session().id
        for off in range(0, h, 2048):
            c.complete(session_id=s, tokens=[rng.randrange(1000, 20000) for _ in range(min(2048, h - off))],
                       max_tokens=1, ignore_eos=True)
        ttft = []
        for _ in range(3):
            r = c.complete(session_id=s, tokens=[rng.randrange(1000, 20000) for _ in range(a.turn)],
                           max_tokens=4, ignore_eos=True)
            ttft.append(r.timing.time_to_first_token_seconds)
        info = c.get_session(s)
        out.append({"history_tokens": h, "ttft_s_median": statistics.median(ttft),
                    "session_state_bytes": info.state_bytes})
        c.delete_session(s)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
