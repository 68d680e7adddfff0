"""Live tests of the shared session tier (issue 13): a real redis-server on a free loopback port (temp
dir, no persistence) and two real titand replicas (A, B) with --shared-store. Every turn's greedy ids are
checked against a stateless generation over the whole history (earlier prompts + replies + this prompt)."""
import functools
import os
import random
import signal
import subprocess
import threading
import time

import grpc
import pytest

from conftest_server import Titand, free_port, import_client, metric_value, wait_for

MAX_NEW = 4      # tokens per turn (greedy, ignore_eos)
LEASE_MS = 1500  # short leases so that expiry is testable


class Redis:
    def __init__(self, tmp):
        self.port, self.dir = free_port(), tmp / "redis"
        self.dir.mkdir(exist_ok=True)
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--save", "", "--appendonly", "no", "--logfile", str(self.dir / "redis.log")])
        end = time.time() + 20
        while time.time() < end:
            if self.cli("PING") == "PONG":
                return
            time.sleep(0.05)
        pytest.fail("redis-server did not start")

    def cli(self, *args) -> str:
        r = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True)
        return r.stdout.strip()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def tc():
    return import_client()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shared")
    redis = Redis(tmp)
    url = f"redis://127.0.0.1:{redis.port}"
    common = ["--shared-store", url, "--shared-lease-ms", str(LEASE_MS), "--shared-retry", "0.3",
              "--shared-store-timeout", "1"]
    a = Titand(tmp / "a", *common, "--replica-id", "A")
    b = Titand(tmp / "b", *common, "--replica-id", "B")
    a.wait_serving(), b.wait_serving()
    yield redis, a, b
    for s in (a, b):
        s.kill()
    redis.kill()


@pytest.fixture(scope="module")
def clients(tc, cluster):
    _, a, b = cluster
    ca, cb = tc.Client(a.address), tc.Client(b.address)
    yield ca, cb
    ca.close(), cb.close()


def prompt(rng, n=4):
    return [rng.randrange(1000, 20000) for _ in range(n)]


def turn(client, sid, p):
    return client.complete(session_id=sid, tokens=p, max_tokens=MAX_NEW, ignore_eos=True, timeout=120)


def reference(client, history):
    return list(client.complete(tokens=history, max_tokens=MAX_NEW, ignore_eos=True, timeout=120).token_ids)


wait_for = functools.partial(wait_for, timeout=20.0)  # Redis restarts take longer

def shared_health(server):
    import grpc as g
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    with g.insecure_channel(server.address) as ch:
        r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="titand.v1.SharedStore"),
                                                 timeout=2)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)


def published(server, name, at_least, **labels):
    """The server's /metrics text once counter `name` reaches `at_least`. The store's counters reach /metrics
    through a 500 ms poller, and with --weights auto a few turns can end within one poll period."""
    text = wait_for(lambda: (lambda t: t if metric_value(t, name, **labels) >= at_least else None)(
        server.metrics()), timeout=10)
    assert text is not None, f"{name}{labels} never reached {at_least}: {metric_value(server.metrics(), name, **labels)}"
    return text


def test_turns_alternate_between_replicas(cluster, clients):
    redis, a, b = cluster
    ca, cb = clients
    rng = random.Random(1)
    sid = ca.create_session().id
    history = []
    for i, c in enumerate([ca, cb, ca, cb]):
        p = prompt(rng)
        got = turn(c, sid, p)
        assert got.shared_state == "DURABLE"
        assert got.usage.session_tokens == len(history) + len(p) + MAX_NEW
        assert list(got.token_ids) == reference(cb, history + p), f"turn {i}"
        history += p + list(got.token_ids)
    assert cb.get_session(sid).history_tokens == len(history)
    # The value in Redis is the snapshot format (magic), with the session TTL and a version per turn.
    assert redis.cli("HGET", f"titand:{{{sid}}}:s", "v") == "5"  # create + 4 turns
    assert 3500 - 5 <= int(redis.cli("TTL", f"titand:{{{sid}}}:s")) <= 3600
    m = published(b, "titand_shared_store_fetches_total", 2)
    assert metric_value(m, "titand_shared_store_up") == 1
    assert metric_value(m, "titand_shared_store_bytes_total", direction="written") > 0
    assert metric_value(m, "titand_shared_store_value_bytes") > 0
    assert shared_health(a) == "SERVING"


def test_same_session_on_both_replicas_at_once(cluster, clients):
    _, a, b = cluster
    ca, cb = clients
    rng = random.Random(2)
    sid = ca.create_session().id
    first = prompt(rng)
    stream = ca.generate(session_id=sid, tokens=first, max_tokens=24, ignore_eos=True, timeout=120)
    ids = list(next(stream).token_ids)  # A's turn is running (it holds the lease)
    with pytest.raises(grpc.RpcError) as e:
        turn(cb, sid, prompt(rng))
    assert e.value.code() == grpc.StatusCode.ABORTED
    assert "running on replica A" in e.value.details()
    last = None
    for msg in stream:
        ids += list(msg.token_ids)
        last = msg
    assert len(ids) == 24 and last.shared_state == tc_enum("DURABLE")
    # The refused turn left nothing behind: B continues from A's turn.
    p = prompt(rng)
    got = turn(cb, sid, p)
    assert list(got.token_ids) == reference(ca, first + ids + p)
    published(b, "titand_shared_store_lease_conflicts_total", 1)


def tc_enum(name):
    from titand_client import inference_pb2 as pb
    return pb.SharedState.Value("SHARED_STATE_" + name)


def test_replica_whose_lease_was_taken_over_cannot_write(cluster, clients):
    """A stalls mid-turn (SIGSTOP) past its lease; B takes the session over and writes; A resumes: its
    stale state is refused (REJECTED) and the session continues from B's state, on A as well."""
    _, a, b = cluster
    ca, cb = clients
    rng = random.Random(3)
    sid = ca.create_session().id
    p0 = prompt(rng)
    r0 = turn(ca, sid, p0)
    history = p0 + list(r0.token_ids)
    stream = ca.generate(session_id=sid, tokens=prompt(rng), max_tokens=24, ignore_eos=True, timeout=120)
    next(stream)
    os.kill(a.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(LEASE_MS / 1000 + 0.8)
        p1 = prompt(rng)
        r1 = turn(cb, sid, p1)  # B's lease: the stored state is the one before A's turn
        assert r1.shared_state == "DURABLE"
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    last = None
    for msg in stream:
        last = msg
    assert last.shared_state == tc_enum("REJECTED")
    history += p1 + list(r1.token_ids)
    p2 = prompt(rng)
    r2 = turn(ca, sid, p2)  # A fetches B's state: its own discarded turn is not in the history
    assert r2.shared_state == "DURABLE"
    assert list(r2.token_ids) == reference(cb, history + p2)
    assert r2.usage.session_tokens == len(history) + len(p2) + MAX_NEW
    published(a, "titand_shared_store_writes_total", 1, result="rejected")


def test_redis_killed_and_restarted_mid_workload(cluster, clients):
    redis, a, b = cluster
    ca, cb = clients
    rng = random.Random(4)
    sid = ca.create_session().id
    history = []
    p = prompt(rng)
    got = turn(ca, sid, p)
    history += p + list(got.token_ids)
    redis.kill()
    # Turns go on with A's local state; the write is pending; health and metrics say so.
    p = prompt(rng)
    got = turn(ca, sid, p)
    assert got.shared_state == "PENDING"
    assert list(got.token_ids) == reference(ca, history + p)
    history += p + list(got.token_ids)
    try:
        assert wait_for(lambda: shared_health(a) == "NOT_SERVING")
        assert a.health() == "SERVING"
        # Gauges are refreshed by the stats poller (every 500 ms): wait for them rather than race it.
        assert wait_for(lambda: metric_value(a.metrics(), "titand_shared_store_up") == 0), a.metrics()
        assert wait_for(lambda: metric_value(a.metrics(), "titand_shared_store_pending_writes") >= 1), a.metrics()
        # B has no copy and cannot reach the store: a clear UNAVAILABLE, no crash.
        with pytest.raises(grpc.RpcError) as e:
            turn(cb, sid, prompt(rng))
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        redis.start()  # empty (no persistence): A's retries write the pending state back
    assert wait_for(lambda: metric_value(a.metrics(), "titand_shared_store_pending_writes") == 0
                    and metric_value(a.metrics(), "titand_shared_store_up") == 1), a.metrics()
    assert wait_for(lambda: shared_health(a) == "SERVING")
    p = prompt(rng)
    got = turn(cb, sid, p)  # B continues from the state A kept through the outage
    assert got.shared_state == "DURABLE"
    assert list(got.token_ids) == reference(cb, history + p)
    assert a.proc.poll() is None and b.proc.poll() is None


def test_kill9_after_acknowledged_turn_loses_nothing(cluster, clients):
    _, a, b = cluster
    ca, cb = clients
    rng = random.Random(5)
    sid = ca.create_session().id
    history = []
    for _ in range(2):
        p = prompt(rng)
        got = turn(ca, sid, p)
        assert got.shared_state == "DURABLE"  # acknowledged: in Redis
        history += p + list(got.token_ids)
    a.proc.kill()  # SIGKILL: no drain, no snapshot
    a.proc.wait()
    p = prompt(rng)
    got = turn(cb, sid, p)
    assert got.shared_state == "DURABLE"
    assert list(got.token_ids) == reference(cb, history + p)
    assert got.usage.session_tokens == len(history) + len(p) + MAX_NEW


def test_bad_shared_store_options_refused_at_start():
    """Refused before anything starts, exit status 2 and a message naming the problem. TLS: this build's
    hiredis has no TLS (Debian 12's 0.14) unless it links libhiredis_ssl; then rediss:// is accepted."""
    from conftest_server import BIN
    ldd = subprocess.run(["ldd", str(BIN / "titand")], capture_output=True, text=True).stdout
    cases = [(["--shared-store", "http://127.0.0.1:6379"], "redis://"),
             (["--shared-store", "redis://127.0.0.1:6379/x"], "database"),
             (["--shared-store", "redis://127.0.0.1:1", "--shared-lease-ms", "5"], "lease")]
    if "hiredis_ssl" not in ldd:
        cases.append((["--shared-store", "rediss://127.0.0.1:6379"], "TLS"))
        cases.append((["--shared-store", "redis://127.0.0.1:6379", "--shared-store-tls"], "TLS"))
    for args, word in cases:
        r = subprocess.run([str(BIN / "titand"), "--port", "0", "--metrics-port", "0", *args],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (args, r.stderr[-500:])
        assert word in r.stderr, (args, r.stderr[-500:])
