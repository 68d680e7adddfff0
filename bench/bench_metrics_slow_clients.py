"""Time of one /metrics scrape while N clients trickle one byte a second into the metrics port.

  python bench/bench_metrics_slow_clients.py --port 9464 [--slow 16]

Against a running titand (its metrics endpoint). Before issue 11 the endpoint served one connection at
a time with a 2 s read deadline, so 16 slow clients delayed a scrape by ~16 x 2 s.
"""
import argparse
import socket
import threading
import time
import urllib.request


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--slow", type=int, default=16)
    a = ap.parse_args()
    socks = [socket.create_connection((a.host, a.port)) for _ in range(a.slow)]
    stop = threading.Event()

    def trickle():
        while not stop.is_set():
            for s in socks:
                try:
                    s.send(b"G")
                except OSError:
                    pass
            stop.wait(1.0)

    threading.Thread(target=trickle, daemon=True).start()
    time.sleep(0.5)
    t = time.time()
    urllib.request.urlopen(f"http://{a.host}:{a.port}/metrics", timeout=300).read()
    print(f"scrape beside {a.slow} slow clients: {time.time() - t:.2f} s")
    stop.set()
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
