"""Live tests of titand: the real binary, the bundled model, the Python client (and titanctl, promtool,
a real Prometheus). One shared server for most tests; separate servers for queue-full and restart."""
import json
import os
import random
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import grpc
import pytest

from conftest_server import BIN, REPO, Titand, free_port, import_client, metric_value, need, wait_for

MAX_NEW = 6  # tokens per turn (greedy, ignore_eos): every turn generates exactly this many


@pytest.fixture(scope="module")
def tc():
    return import_client()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Titand(tmp_path_factory.mktemp("titand")).wait_serving()
    yield s
    s.terminate()


@pytest.fixture(scope="module")
def client(tc, server):
    c = tc.Client(server.address)
    yield c
    c.close()


def prompt(rng, n=5):
    return [rng.randrange(1000, 20000) for _ in range(n)]



def test_health_not_serving_until_warm(server, client):
    # The server listens before the model is loaded: health said NOT_SERVING first, then SERVING.
    assert "NOT_SERVING" in server.health_seen, server.health_seen
    assert server.health_seen[-1] == "SERVING"
    assert server.health_seen.index("NOT_SERVING") < server.health_seen.index("SERVING")
    assert client.health() == "SERVING"
    info = client.model_info()
    assert info.architecture == "llama" and info.num_layers == 30 and info.vocab_size == 49152
    # --weights auto (the default): the Q4_1 layers as int4, the Q8_0 head as int8, ~127 MB
    assert info.weights == "int4, LM head int8" and 100e6 < info.weight_bytes < 150e6, info


def test_sessions_equal_stateless_over_history(client):
    """Two sessions x three turns, run concurrently: each turn's greedy ids == a fresh stateless run
    over the whole history (earlier prompts + replies + this prompt)."""
    results, errors = {}, []

    def converse(k):
        try:
            rng = random.Random(100 + k)
            sid = client.create_session().id
            history, turns = [], []
            for _ in range(3):
                p = prompt(rng)
                c = client.complete(session_id=sid, tokens=p, max_tokens=MAX_NEW, ignore_eos=True, timeout=120)
                assert c.finish_reason == "MAX_TOKENS" and len(c.token_ids) == MAX_NEW
                assert c.usage.prompt_tokens == len(p)
                turns.append((list(history), p, list(c.token_ids)))
                history += p + list(c.token_ids)
                assert c.usage.session_tokens == len(history)
            results[k] = (sid, turns, history)
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=converse, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for sid, turns, history in results.values():
        assert client.get_session(sid).history_tokens == len(history)
        for before, p, got in turns:
            ref = client.complete(tokens=before + p, max_tokens=MAX_NEW, ignore_eos=True, timeout=120)
            assert list(ref.token_ids) == got
            assert ref.usage.session_tokens == 0
    listed = {s.id for s in client.list_sessions()}
    assert {sid for sid, _, _ in results.values()} <= listed


def test_fork_and_delete(client):
    rng = random.Random(7)
    sid = client.create_session().id
    client.complete(session_id=sid, tokens=prompt(rng), max_tokens=MAX_NEW, ignore_eos=True, timeout=60)
    fork = client.fork_session(sid, new_session_id=sid + "-fork")
    assert fork.id == sid + "-fork"
    assert fork.history_tokens == client.get_session(sid).history_tokens
    p = prompt(rng)
    a = client.complete(session_id=sid, tokens=p, max_tokens=MAX_NEW, ignore_eos=True, timeout=60)
    b = client.complete(session_id=fork.id, tokens=p, max_tokens=MAX_NEW, ignore_eos=True, timeout=60)
    assert list(a.token_ids) == list(b.token_ids)  # same history, same greedy continuation
    client.delete_session(fork.id)
    with pytest.raises(grpc.RpcError) as e:
        client.get_session(fork.id)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_cancel_mid_stream_frees_request(server, client):
    before = metric_value(server.metrics(), "titand_requests_total", finish_reason="cancelled")
    stream = client.generate(tokens=[1000, 2000, 3000], max_tokens=400, ignore_eos=True, timeout=120)
    got = 0
    for msg in stream:
        got += len(msg.token_ids)
        if got >= 2:
            break
    stream.cancel()
    # The engine lets go: counted as cancelled, nothing left running, and the server keeps serving.
    assert wait_for(lambda: metric_value(server.metrics(), "titand_requests_total",
                                         finish_reason="cancelled") >= before + 1), server.metrics()
    assert wait_for(lambda: metric_value(server.metrics(), "titand_requests_running") == 0)
    c = client.complete(tokens=[1000, 2000], max_tokens=3, ignore_eos=True, timeout=60)
    assert len(c.token_ids) == 3


def test_deadline_exceeded(server, client):
    t0 = time.time()
    with pytest.raises(grpc.RpcError) as e:
        for _ in client.generate(tokens=[1000, 2000], max_tokens=2000, ignore_eos=True, timeout=0.5):
            pass
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.time() - t0 < 10
    assert wait_for(lambda: metric_value(server.metrics(), "titand_requests_running") == 0)


@pytest.mark.parametrize("kwargs, word", [
    (dict(), "input"),
    (dict(text=""), "input.text"),
    (dict(text="hi", top_p=1.5), "top_p"),
    (dict(text="hi", temperature=-1.0), "temperature"),
    (dict(text="hi", max_tokens=0), "max_tokens"),
    (dict(chat=[("robot", "hi")]), "role"),
    (dict(tokens=[10 ** 7]), "token"),
])
def test_invalid_arguments(client, kwargs, word):
    with pytest.raises(grpc.RpcError) as e:
        list(client.generate(timeout=30, **kwargs))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert word in e.value.details(), e.value.details()


def test_unknown_session_not_found(client):
    with pytest.raises(grpc.RpcError) as e:
        list(client.generate(session_id="no-such-session", text="hi", max_tokens=2, timeout=30))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    for call in (client.get_session, client.delete_session, client.fork_session):
        with pytest.raises(grpc.RpcError) as e:
            call("no-such-session")
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        client.abort("no-such-request")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    client.create_session("taken-id")
    with pytest.raises(grpc.RpcError) as e:
        client.create_session("taken-id")
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_abort_by_request_id(client):
    stream = client.generate(tokens=[1000, 2000], max_tokens=400, ignore_eos=True, request_id="abort-me",
                             timeout=120)
    msgs = iter(stream)
    first = next(msgs)
    assert len(first.token_ids) >= 1
    client.abort("abort-me")
    last = None
    for last in msgs:
        pass
    assert last is not None
    # The stream ends normally with finish reason CANCELLED, well before 400 tokens.
    from titand_client import pb
    assert last.finish_reason == pb.FINISH_REASON_CANCELLED
    assert last.usage.completion_tokens < 400


def test_reflection_lists_service(server):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
    with grpc.insecure_channel(server.address) as ch:
        db = ProtoReflectionDescriptorDatabase(ch)
        services = set(db.get_services())
        assert "titand.v1.Inference" in services, services
        fd = db.FindFileContainingSymbol("titand.v1.Inference")
        methods = {m.name for svc in fd.service for m in svc.method}
        assert {"Generate", "CreateSession", "Abort", "GetModelInfo"} <= methods, methods


@pytest.mark.parametrize("flag,value", [("--temperature", "-5"), ("--top-p", "-0.5"), ("--top-k", "-2"),
                                        ("--seed", "-7")])
def test_titanctl_refuses_negative_sampling_flags(flag, value):
    """-1 means "unset" (the server's default); any other negative value is refused before connecting."""
    ctl = need(BIN / "titanctl", "build titanctl first (target titanctl)")
    r = subprocess.run([ctl, "--addr", "127.0.0.1:1", flag, value, "generate", "hi"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2 and flag in r.stderr and "must be >= 0" in r.stderr, r.stderr
    r = subprocess.run([ctl, "--addr", "127.0.0.1:1", "--timeout", "2", flag, "-1", "generate", "hi"],
                       capture_output=True, text=True, timeout=30)
    assert "must be >= 0" not in r.stderr and "failed to connect" in r.stderr.lower() + r.stdout.lower(), r.stderr


def test_titanctl_health_info_bench(server):
    ctl = need(BIN / "titanctl", "build titanctl first (target titanctl)")
    r = subprocess.run([ctl, "--addr", server.address, "health"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "SERVING", r.stderr
    r = subprocess.run([ctl, "--addr", server.address, "info"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and 'architecture: "llama"' in r.stdout, r.stdout + r.stderr
    r = subprocess.run([ctl, "--addr", server.address, "bench", "--sessions", "3", "--turns", "2",
                        "--prompt-tokens", "16", "--max-tokens", "8", "--max-seconds", "60"],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["requests_ok"] == 6 and not j["errors"], j
    assert j["generated_tokens"] == 48
    assert 0 < j["ttft_seconds"]["p50"] <= j["ttft_seconds"]["p99"]
    assert j["inter_token_seconds"]["count"] == 6 * 7
    print("bench:", json.dumps(j))
    r = subprocess.run([ctl, "--addr", "10.1.2.3:50051", "bench"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "loopback" in r.stderr


def test_titanctl_sessions_create_and_list_every_page(tc, tmp_path):
    """`sessions create [ID]` makes a session (a chosen id or the server's); `sessions list` follows the
    pages: 1,005 sessions are more than one page of the server's largest (1,000)."""
    ctl = need(BIN / "titanctl", "build titanctl first (target titanctl)")
    s = Titand(tmp_path, "--session-write-through=false", "--max-sessions-per-tenant=2000").wait_serving()
    try:
        r = subprocess.run([ctl, "--addr", s.address, "sessions", "create", "chosen-id"], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0 and json.loads(r.stdout)["id"] == "chosen-id", r.stdout + r.stderr
        r = subprocess.run([ctl, "--addr", s.address, "sessions", "create"], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0 and len(json.loads(r.stdout)["id"]) == 32, r.stdout + r.stderr
        r = subprocess.run([ctl, "--addr", s.address, "sessions", "create", "chosen-id"], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode != 0 and "error: ALREADY_EXISTS: " in r.stderr and "taken" in r.stderr, r.stderr
        with tc.Client(s.address) as c:
            for i in range(1003):
                c.create_session(f"s{i:04d}")
        r = subprocess.run([ctl, "--addr", s.address, "sessions", "list"], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        ids = [x["id"] for x in json.loads(r.stdout)]
        assert len(ids) == 1005 and len(set(ids)) == 1005 and "chosen-id" in ids and "s1002" in ids
        assert all(x["error"] == "" for x in json.loads(r.stdout))
        # `chat TEXT`: the text is the first message (then stdin, empty here).
        r = subprocess.run([ctl, "--addr", s.address, "--max-tokens", "3", "chat", "--session", "chosen-id",
                            "Hello", "there"], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert r.returncode == 0 and r.stdout.strip(), r.stdout + r.stderr
        with tc.Client(s.address) as c:
            assert c.get_session("chosen-id").history_tokens > 0
        # `chat` left before its first message creates no session (it used to leave an empty one).
        r = subprocess.run([ctl, "--addr", s.address, "chat"], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr
        r = subprocess.run([ctl, "--addr", s.address, "sessions", "list"], capture_output=True, text=True,
                           timeout=60)
        assert len(json.loads(r.stdout)) == 1005, r.stdout[-500:]
        # nor does a chat whose first turn is refused (the session made for it is removed again)
        r = subprocess.run([ctl, "--addr", s.address, "--top-p", "2", "chat", "Hi"], capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode != 0 and "INVALID_ARGUMENT" in r.stderr, r.stderr
        r = subprocess.run([ctl, "--addr", s.address, "sessions", "list"], capture_output=True, text=True,
                           timeout=60)
        assert len(json.loads(r.stdout)) == 1005, r.stdout[-500:]
        # a new session is made at the first message and named on stderr
        r = subprocess.run([ctl, "--addr", s.address, "--max-tokens", "2", "chat", "Hi"], capture_output=True,
                           text=True, timeout=120, stdin=subprocess.DEVNULL)
        made = [x.split()[1] for x in r.stderr.splitlines() if x.startswith("session ")]
        assert r.returncode == 0 and len(made) == 1, r.stderr
        with tc.Client(s.address) as c:
            assert c.get_session(made[0]).history_tokens > 0
    finally:
        s.terminate()


def test_a_second_server_on_a_busy_port_exits_with_an_error(server, tmp_path):
    # gRPC's default SO_REUSEPORT would let it start and share the port (found by a fresh-user check).
    port = server.address.rsplit(":", 1)[1]
    args = [str(BIN / "titand"), "--model", "smollm2-135m", "--host", "127.0.0.1", "--port", port,
            "--metrics-port", "0", "--session-dir", str(tmp_path / "s")]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, TITAND_MODELS_DIR=str(REPO / "models")))
    assert r.returncode != 0 and f"cannot listen on 127.0.0.1:{port}" in r.stdout + r.stderr, r.stdout + r.stderr


def test_titand_help_lists_its_flags():
    r = subprocess.run([need(BIN / "titand", "build titand first"), "--help"], capture_output=True, text=True,
                       timeout=30)
    for flag in ("--session_write_threads", "--session_write_through", "--max_running", "--weights"):
        assert flag in r.stdout + r.stderr, r.stdout + r.stderr


def test_metrics_pass_promtool(server, client):
    client.complete(tokens=[1000, 2000], max_tokens=3, ignore_eos=True, timeout=60)
    text = server.metrics()
    promtool = shutil.which("promtool")
    assert promtool, "promtool not installed (Debian package prometheus)"
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("titand_time_to_first_token_seconds_bucket", "titand_inter_token_latency_seconds_bucket",
                 "titand_request_latency_seconds_count", "titand_queue_time_seconds_sum",
                 "titand_prompt_tokens_total", "titand_generation_tokens_total", "titand_requests_total",
                 "titand_requests_running", "titand_requests_waiting", "titand_batch_size",
                 'titand_sessions{tier="device"}', 'titand_session_state_bytes{tier="host"}'):
        assert name in text, name
    assert metric_value(text, "titand_generation_tokens_total") >= 3
    assert metric_value(text, "titand_requests_total", finish_reason="max_tokens", code="OK") >= 1
    assert metric_value(text, "titand_sessions", tier="device") + metric_value(
        text, "titand_sessions", tier="host") + metric_value(text, "titand_sessions", tier="disk") >= 1


def test_real_prometheus_scrapes(server, tmp_path):
    prom = shutil.which("prometheus")
    assert prom, "prometheus not installed (Debian package prometheus)"
    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n"
                   f"  - job_name: titand\n    static_configs:\n      - targets: ['127.0.0.1:{server.metrics_port}']\n")
    p = subprocess.Popen([prom, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'data'}",
                          f"--web.listen-address=127.0.0.1:{port}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def query(q):
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return json.loads(r.read())["data"]["result"]
        except OSError:
            return []

    try:
        up = wait_for(lambda: [x for x in query('up{job="titand"}') if x["value"][1] == "1"], timeout=40, every=0.5)
        assert up, "prometheus never scraped titand successfully"
        tok = wait_for(lambda: query("titand_generation_tokens_total"), timeout=20, every=0.5)
        assert tok and float(tok[0]["value"][1]) > 0, tok
    finally:
        p.terminate()
        p.wait(timeout=30)


def test_queue_full_resource_exhausted(tc, tmp_path):
    s = Titand(tmp_path, "--max-queue", "1", "--max-running", "1").wait_serving()
    try:
        codes, lock = [], threading.Lock()

        def one():
            c = tc.Client(s.address)
            try:
                c.complete(tokens=[1000, 2000], max_tokens=12, ignore_eos=True, timeout=120)
                code = "OK"
            except grpc.RpcError as e:
                code = e.code().name
                if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    assert e.details()
            finally:
                c.close()
            with lock:
                codes.append(code)

        threads = [threading.Thread(target=one) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert "RESOURCE_EXHAUSTED" in codes and "OK" in codes, codes
        assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes
        assert metric_value(s.metrics(), "titand_requests_total", finish_reason="rejected",
                            code="RESOURCE_EXHAUSTED") == codes.count("RESOURCE_EXHAUSTED")
        assert s.health() == "SERVING"
    finally:
        s.terminate()


def test_drain_then_restart_keeps_sessions(tc, tmp_path):
    """SIGTERM: health NOT_SERVING while a running stream finishes; sessions survive a restart and the
    next turn continues the history exactly."""
    sdir = tmp_path / "sessions"
    a = Titand(tmp_path, session_dir=sdir).wait_serving()
    rng = random.Random(11)
    ca = tc.Client(a.address)
    sid = ca.create_session().id
    p1 = prompt(rng)
    t1 = ca.complete(session_id=sid, tokens=p1, max_tokens=MAX_NEW, ignore_eos=True, timeout=60)
    history = p1 + list(t1.token_ids)
    stream = iter(ca.generate(tokens=[1000, 2000], max_tokens=30, ignore_eos=True, timeout=120))
    got = len(next(stream).token_ids)
    a.proc.send_signal(15)
    seen = wait_for(lambda: (h := a.health(timeout=0.5)) != "SERVING" and h, timeout=20, every=0.02)
    assert seen == "NOT_SERVING", f"health during drain: {seen}\n{a.log_text()}"
    last = None
    for last in stream:
        got += len(last.token_ids)
    from titand_client import pb
    assert last.finish_reason == pb.FINISH_REASON_MAX_TOKENS and got == 30  # drained, not cut off
    assert a.proc.wait(timeout=120) == 0, a.log_text()
    ca.close()
    a.kill()

    b = Titand(tmp_path, session_dir=sdir).wait_serving()
    try:
        cb = tc.Client(b.address)
        assert cb.get_session(sid).history_tokens == len(history)
        p2 = prompt(rng)
        t2 = cb.complete(session_id=sid, tokens=p2, max_tokens=MAX_NEW, ignore_eos=True, timeout=60)
        ref = cb.complete(tokens=history + p2, max_tokens=MAX_NEW, ignore_eos=True, timeout=60)
        assert list(t2.token_ids) == list(ref.token_ids)
        assert t2.usage.session_tokens == len(history) + len(p2) + MAX_NEW
        cb.close()
    finally:
        b.terminate()
