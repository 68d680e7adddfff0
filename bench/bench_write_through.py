"""Cost of --session-write-through on a live titand (issue 11 item 5): the median latency of 10 turns (4
prompt tokens, 16 new) on one session with write-through on and off, and the snapshot size on disk.
Run from the repository root: TITAND_BUILD_DIR=build PYTHONPATH=tools:client/python:tests/py .venv/bin/python bench/bench_write_through.py"""
import sys, time, statistics, tempfile
from pathlib import Path
sys.path.insert(0, "tests/py")
from conftest_server import Titand, import_client
tc = import_client()
out = {}
for wt in ("true", "false"):
    tmp = Path(tempfile.mkdtemp())
    s = Titand(tmp, f"--session-write-through={wt}", session_dir=tmp / "s")
    s.wait_serving()
    c = tc.Client(s.address)
    sid = c.create_session().id
    times = []
    for i in range(12):
        t = time.time()
        c.complete(session_id=sid, tokens=[400 + i, 500, 600, 700], max_tokens=16, ignore_eos=True, timeout=120)
        times.append(time.time() - t)
    size = sum(f.stat().st_size for f in (tmp / "s").glob("*.tsession"))
    out[wt] = (statistics.median(times[2:]), size)
    c.close(); s.kill()
print(out)
