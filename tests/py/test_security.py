"""Security of the live titand (issue 11, items 1-4 and 11): bearer-token tenants that cannot see each
other, token-file reload, quotas, request limits that never echo input, flag range errors, TLS and
mutual TLS with a CA made at test time (openssl CLI), HMAC-signed snapshots that refuse planted files,
and a metrics endpoint that slow clients cannot stall."""
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import grpc
import pytest

from conftest_server import BIN, Titand, free_port, import_client, need, wait_for

TOKENS = {t: secrets.token_hex(16) for t in ("alice", "bob", "pager", "dave")}


def write_tokens(path, tenants):
    tmp = path.with_suffix(".tmp")
    tmp.write_text("# tenant token\n" + "".join(f"{t} {TOKENS[t]}\n" for t in tenants))
    os.replace(tmp, path)  # atomic, like a Kubernetes Secret update



def code_of(fn, *args, **kwargs):
    try:
        r = fn(*args, **kwargs)
        if hasattr(r, "__next__"):
            list(r)
    except grpc.RpcError as e:
        return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


@pytest.fixture(scope="module")
def tc():
    return import_client()


@pytest.fixture(scope="module")
def secure_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("titand-auth")
    tokens = tmp / "tokens"
    write_tokens(tokens, ["alice", "bob", "pager"])
    key = tmp / "snapshot.key"
    key.write_text(secrets.token_hex(32) + "\n")
    extra = (f"--auth-token-file={tokens}", "--auth-reload-interval=0.3", f"--snapshot-key-file={key}",
             "--max-sessions-per-tenant=4", "--max-id-length=64", "--max-stop-strings=2",
             "--max-chat-messages=3", "--max-request-bytes=64KiB")
    s = Titand(tmp, *extra).wait_serving()
    s.tokens_path, s.key_path, s.extra = tokens, key, extra
    yield s
    s.terminate()


@pytest.fixture(scope="module")
def clients(tc, secure_server):
    cs = {t: tc.Client(secure_server.address, token=TOKENS[t]) for t in ("alice", "bob", "pager", "dave")}
    yield cs
    for c in cs.values():
        c.close()


def test_unauthenticated_calls_are_refused(tc, secure_server, clients):
    assert "authentication on: 3 tokens, 3 tenants" in secure_server.log_text()
    with tc.Client(secure_server.address) as anon, \
            tc.Client(secure_server.address, token="not-a-valid-token-0000") as wrong:
        for c in (anon, wrong):
            for call in (c.list_sessions, c.model_info, c.create_session, lambda: c.get_session("x"),
                         lambda: c.abort("r"), lambda: c.complete(tokens=[1000], max_tokens=1)):
                code, details = code_of(call)
                assert code == grpc.StatusCode.UNAUTHENTICATED, (code, details)
        assert anon.health() == "SERVING"  # probes need no token
    # A malformed header (no "Bearer ") is refused too.
    stub = clients["alice"].stub.__class__(grpc.insecure_channel(secure_server.address))
    from titand_client import pb
    with pytest.raises(grpc.RpcError) as e:
        stub.ListSessions(pb.ListSessionsRequest(), metadata=[("authorization", TOKENS["alice"])], timeout=10)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    info = clients["alice"].model_info()
    assert info.model_path and "/" not in info.model_path  # base name only: no server path
    # titanctl: --token is sent as the bearer token; without it the server refuses.
    ctl = [str(need(BIN / "titanctl", "build titanctl")), f"--addr={secure_server.address}", "--timeout=30"]
    r = subprocess.run([*ctl, f"--token={TOKENS['alice']}", "info"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "llama" in r.stdout, (r.stdout, r.stderr)
    r = subprocess.run([*ctl, "info"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "error: UNAUTHENTICATED: " in r.stderr, r.stderr


def test_tenants_cannot_see_each_other(clients):
    alice, bob = clients["alice"], clients["bob"]
    alice.create_session("shared-name")
    done = alice.complete(session_id="shared-name", tokens=[1000, 2000], max_tokens=3, ignore_eos=True, timeout=120)
    hist = alice.get_session("shared-name").history_tokens
    assert hist >= 5 and done.finish_reason == "MAX_TOKENS"
    assert "shared-name" not in [s.id for s in bob.list_sessions()]
    # Every call on alice's id answers bob exactly as an id that exists nowhere.
    for sid in ("shared-name", "no-such-session"):
        for call in (lambda: bob.get_session(sid), lambda: bob.fork_session(sid, "stolen"),
                     lambda: bob.delete_session(sid),
                     lambda: bob.complete(session_id=sid, tokens=[1000], max_tokens=1, timeout=60)):
            code, details = code_of(call)
            assert code == grpc.StatusCode.NOT_FOUND, (sid, code, details)
            assert "alice" not in details
    assert [s.id for s in bob.list_sessions()] == []  # the fork did not happen
    # Ids are per tenant: bob's own "shared-name" is a different, empty session.
    assert bob.create_session("shared-name").history_tokens == 0
    assert alice.get_session("shared-name").history_tokens == hist
    # Abort is scoped too: bob cannot cancel alice's request by its id; alice can.
    stream = alice.generate(tokens=[1000, 2000], max_tokens=400, ignore_eos=True, request_id="job-1", timeout=120)
    it = iter(stream)
    next(it)  # running
    assert code_of(bob.abort, "job-1")[0] == grpc.StatusCode.NOT_FOUND
    alice.abort("job-1")
    rest = list(it)
    assert rest[-1].finish_reason == 4  # FINISH_REASON_CANCELLED
    bob.delete_session("shared-name")
    alice.delete_session("shared-name")


def test_pagination_and_session_quota(clients):
    pager = clients["pager"]
    ids = [f"p{i}" for i in range(4)]
    for sid in reversed(ids):
        pager.create_session(sid)
    page1 = pager.list_sessions_page(page_size=3)
    assert [s.id for s in page1.sessions] == ids[:3] and page1.next_page_token
    page2 = pager.list_sessions_page(page_size=3, page_token=page1.next_page_token)
    assert [s.id for s in page2.sessions] == ids[3:] and page2.next_page_token == ""
    assert [s.id for s in pager.list_sessions()] == ids
    assert code_of(pager.list_sessions_page, page_token="../../etc")[0] == grpc.StatusCode.INVALID_ARGUMENT
    # --max-sessions-per-tenant=4: the fifth session (create or fork) is refused; other tenants unaffected.
    code, details = code_of(pager.create_session, "p4")
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "quota" in details, details
    assert code_of(pager.fork_session, "p0", "p5")[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    pager.delete_session("p3")
    pager.create_session("p4")
    assert [s.id for s in pager.list_sessions()] == ["p0", "p1", "p2", "p4"]
    for sid in ("p0", "p1", "p2", "p4"):
        pager.delete_session(sid)


def test_limits_never_echo_input(clients):
    alice = clients["alice"]
    long_id = "A" * 1000
    for call in (lambda: alice.get_session(long_id), lambda: alice.delete_session(long_id),
                 lambda: alice.fork_session(long_id), lambda: alice.create_session(long_id),
                 lambda: alice.abort(long_id),
                 lambda: alice.complete(session_id=long_id, tokens=[1000], max_tokens=1),
                 lambda: alice.complete(request_id=long_id, tokens=[1000], max_tokens=1)):
        code, details = code_of(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
        assert "AAAAAAAA" not in details and len(details) < 200, details
    # A 1 MiB id is beyond --max-request-bytes=64KiB: RESOURCE_EXHAUSTED from the server, short message.
    code, details = code_of(alice.get_session, "B" * (1 << 20))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and len(details) < 200, (code, details[:200])
    assert code_of(alice.abort, "bad\nid")[0] == grpc.StatusCode.INVALID_ARGUMENT
    code, details = code_of(alice.complete, text="hi", stop=["a", "b", "c"], max_tokens=1)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "stopping.stop" in details
    code, details = code_of(alice.complete, chat=[("user", "hi")] * 4, max_tokens=1)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "chat.messages" in details
    code, details = code_of(alice.complete, chat=[("Z" * 500, "hi")], max_tokens=1)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "ZZZZ" not in details
    # Within the limits the same request runs.
    assert alice.complete(text="hi", stop=["a", "b"], max_tokens=1, timeout=60).finish_reason in ("MAX_TOKENS", "STOP_SEQUENCE", "EOS")


def test_token_file_reload(secure_server, clients):
    dave = clients["dave"]
    assert code_of(dave.list_sessions)[0] == grpc.StatusCode.UNAUTHENTICATED
    write_tokens(secure_server.tokens_path, ["alice", "bob", "pager", "dave"])
    assert wait_for(lambda: code_of(dave.list_sessions)[0] == grpc.StatusCode.OK), secure_server.log_text()
    # A broken file is not applied: the old tokens stay in force, the log says so, no secret is logged.
    secure_server.tokens_path.write_text(f"dave {TOKENS['dave']} extra\n")
    assert wait_for(lambda: "NOT reloaded" in secure_server.log_text()), secure_server.log_text()
    assert code_of(dave.list_sessions)[0] == grpc.StatusCode.OK
    assert TOKENS["dave"] not in secure_server.log_text()
    # Removing a tenant's token locks it out without a restart.
    write_tokens(secure_server.tokens_path, ["alice", "bob", "pager"])
    assert wait_for(lambda: code_of(dave.list_sessions)[0] == grpc.StatusCode.UNAUTHENTICATED)
    assert code_of(clients["alice"].list_sessions)[0] == grpc.StatusCode.OK


def test_metrics_serve_beside_slow_clients(secure_server):
    # 16 clients trickling one byte a second used to hold the serial accept loop (a scrape took 31.5 s).
    stop = threading.Event()
    socks = [socket.create_connection(("127.0.0.1", secure_server.metrics_port)) for _ in range(16)]

    def trickle():
        for _ in range(10):
            for s in socks:
                try:
                    s.send(b"G")
                except OSError:
                    pass
            if stop.wait(1.0):
                return
    t = threading.Thread(target=trickle)
    t.start()
    try:
        time.sleep(0.5)
        start = time.time()
        text = secure_server.metrics()
        took = time.time() - start
        assert "titand_" in text and took < 1.5, took
        # Each slow connection is closed by the server at its deadline (2 s), not held forever.
        time.sleep(2.5)
        for s in socks:
            s.settimeout(2.0)
            try:
                assert s.recv(100) == b""
            except ConnectionResetError:
                pass
    finally:
        stop.set()
        t.join()
        for s in socks:
            s.close()


# ---------------------------------------------------------------------------------------------------
# Flag ranges

@pytest.mark.parametrize("flag", ["--metrics-port=70000", "--threads=100000", "--max-id-length=5",
                                  "--max-request-bytes=12parsecs", "--tls-cert=/dev/null", "--dtype=float64",
                                  "--weights=nonsense"])
def test_flags_out_of_range_exit_2(flag, tmp_path):
    # The flag comes last: it overrides the harmless defaults before it (absl: the last one wins).
    r = subprocess.run([str(need(BIN / "titand", "build titand")), "--port=0", "--metrics-port=0", flag],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (flag, r.returncode, r.stderr[-2000:])
    name = flag.split("=")[0].lstrip("-")
    assert "bad flags" in r.stderr and (name in r.stderr or "TLS" in r.stderr), r.stderr[-2000:]


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset (util-linux)")
def test_threads_follow_the_cpus_the_process_may_use():
    # Under a one-CPU affinity mask (what a cpuset or Kubernetes' static CPU manager gives a container) --threads
    # 0 means 1 and 2 is refused: the host's core count does not count (core/runtime/cpu_budget.h; the cgroup
    # quota half is unit-tested on fake cgroup trees in tests/unit/runtime/cpu_budget_test.cc).
    one = ["taskset", "-c", str(sorted(os.sched_getaffinity(0))[0])]
    info = json.loads(subprocess.run(one + [str(BIN / "titan-run"), "info", "--model", "smollm2-135m"],
                                     capture_output=True, text=True, timeout=120, check=True).stdout)
    assert info["threads"] == 1, info
    r = subprocess.run(one + [str(BIN / "titand"), "--port=0", "--metrics-port=0", "--threads=2"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--threads: 2 outside [0, 1]" in r.stderr, r.stderr[-2000:]
    r = subprocess.run(one + [str(BIN / "titan-run"), "info", "--model", "smollm2-135m", "--threads", "2"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--threads: 2 outside [0, 1]" in r.stderr, r.stderr[-2000:]


def test_bad_secret_files_exit_2_without_leaking(tmp_path):
    tok = tmp_path / "tokens"
    tok.write_text(f"alice {TOKENS['alice']} trailing-junk\n")
    short = tmp_path / "short.key"
    short.write_text("0123456789\n")
    for flag in (f"--auth-token-file={tok}", f"--auth-token-file={tmp_path / 'missing'}",
                 f"--snapshot-key-file={short}"):
        r = subprocess.run([str(BIN / "titand"), flag, "--port=0", "--metrics-port=0"], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 2, (flag, r.stderr[-2000:])
        assert TOKENS["alice"] not in r.stderr


# ---------------------------------------------------------------------------------------------------
# TLS and mutual TLS, with CAs made at test time

def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
            "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=d)


def make_cert(d, ca, name, ext):
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
    (d / f"{name}.ext").write_text(ext)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "server-ca")
    make_ca(d, "client-ca")
    make_ca(d, "rogue-ca")
    make_cert(d, "server-ca", "server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    make_cert(d, "client-ca", "client", "extendedKeyUsage=clientAuth\n")
    make_cert(d, "rogue-ca", "rogue", "extendedKeyUsage=clientAuth\n")
    return d


def test_mutual_tls(tc, pki, tmp_path):
    hp = free_port()
    s = Titand(tmp_path, f"--tls-cert={pki / 'server.pem'}", f"--tls-key={pki / 'server.key'}",
               f"--tls-client-ca={pki / 'client-ca.pem'}", f"--health-port={hp}", "--max-state-per-tenant=1")
    s.health_address = f"127.0.0.1:{hp}"
    try:
        s.wait_serving()
        log = s.log_text()
        assert "mutual TLS" in log and "authentication is OFF" in log and "not authenticated" in log
        ca = (pki / "server-ca.pem").read_bytes()
        key, cert = (pki / "client.key").read_bytes(), (pki / "client.pem").read_bytes()
        rkey, rcert = (pki / "rogue.key").read_bytes(), (pki / "rogue.pem").read_bytes()
        refused = [tc.Client(s.address),                                             # plaintext
                   tc.Client(s.address, root_certificates=ca),                       # no client cert
                   tc.Client(s.address, root_certificates=ca, private_key=rkey, certificate_chain=rcert),
                   tc.Client(s.address, root_certificates=(pki / "rogue-ca.pem").read_bytes(),
                             private_key=key, certificate_chain=cert)]              # server not trusted
        for c in refused:
            code, details = code_of(c.model_info, timeout=10)
            assert code == grpc.StatusCode.UNAVAILABLE, (code, details)
            c.close()
        with tc.Client(s.address, root_certificates=ca, private_key=key, certificate_chain=cert) as good:
            assert good.model_info(timeout=30).architecture == "llama"
            # --max-state-per-tenant=1: an empty session holds no state yet, so it is created and runs one
            # turn; from then on the tenant holds state and the quota is used up.
            good.create_session("q1")
            assert good.complete(session_id="q1", tokens=[1000], max_tokens=1, timeout=60).finish_reason
            assert good.get_session("q1").state_bytes > 1
            code, details = code_of(good.complete, session_id="q1", tokens=[1000], max_tokens=1, timeout=60)
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "quota" in details, details
            assert code_of(good.create_session, "q2")[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
        # titanctl over mutual TLS.
        ctl = [str(need(BIN / "titanctl", "build titanctl")), f"--addr={s.address}", "--timeout=30",
               f"--tls-ca={pki / 'server-ca.pem'}", "info"]
        r = subprocess.run(ctl + [f"--tls-cert={pki / 'client.pem'}", f"--tls-key={pki / 'client.key'}"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "llama" in r.stdout, (r.stdout, r.stderr)
        assert subprocess.run(ctl, capture_output=True, text=True, timeout=60).returncode != 0
        # The plaintext health port serves health only.
        with tc.Client(s.health_address) as h:
            assert h.health() == "SERVING"
            assert code_of(h.model_info, timeout=10)[0] == grpc.StatusCode.UNIMPLEMENTED
    finally:
        assert s.terminate() == 0


# ---------------------------------------------------------------------------------------------------
# HMAC-signed snapshots

def resign(data: bytes, version: int) -> bytes:
    """The snapshot re-made by someone without the key: same content, SHA-256 digests (version 1 form),
    version field set to `version`."""
    hlen = struct.unpack_from("<I", data, 12)[0]
    prefix = bytearray(data[:16 + hlen])
    struct.pack_into("<I", prefix, 8, version)
    body = bytes(prefix) + hashlib.sha256(prefix).digest() + data[16 + hlen + 32:-32]
    return body + hashlib.sha256(body).digest()


def test_planted_snapshots_are_refused(tc, secure_server, tmp_path):
    """Runs last: drains the module's server (snapshot key set), plants files beside its genuine
    snapshot, and restarts it on the same folder."""
    alice = tc.Client(secure_server.address, token=TOKENS["alice"])
    alice.create_session("genuine")
    alice.complete(session_id="genuine", tokens=[1000, 2000, 3000], max_tokens=2, ignore_eos=True, timeout=120)
    hist = alice.get_session("genuine").history_tokens
    alice.close()
    assert secure_server.terminate() == 0
    sessions = secure_server.session_dir
    real = (sessions / "alice~genuine.tsession").read_bytes()
    assert struct.unpack_from("<I", real, 8)[0] == 2
    (sessions / "alice~planted-v1.tsession").write_bytes(resign(real, 1))   # a valid unsigned snapshot
    (sessions / "alice~planted-v2.tsession").write_bytes(resign(real, 2))   # claims v2, SHA-256 digests
    tampered = bytearray(real)
    tampered[-100] ^= 1
    (sessions / "alice~tampered.tsession").write_bytes(bytes(tampered))
    write_tokens(secure_server.tokens_path, ["alice"])
    s = Titand(tmp_path, *secure_server.extra, session_dir=sessions).wait_serving()
    try:
        with tc.Client(s.address, token=TOKENS["alice"]) as c:
            assert c.get_session("genuine").history_tokens == hist
            assert c.complete(session_id="genuine", tokens=[4000], max_tokens=1, timeout=120).usage.session_tokens == hist + 2
            for sid in ("planted-v1", "planted-v2", "tampered"):
                for call in (lambda: c.complete(session_id=sid, tokens=[4000], max_tokens=1, timeout=60),
                             lambda: c.fork_session(sid, sid + "-copy")):
                    code, details = code_of(call)
                    assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.DATA_LOSS), (sid, code, details)
                    assert str(sessions) not in details  # no server path in the message
            # The listing flags the broken sessions with the same message, and only them.
            listed = {x.id: x.error for x in c.list_sessions(timeout=30)}
            assert listed["genuine"] == ""
            for sid in ("planted-v1", "planted-v2", "tampered"):
                assert "unreadable snapshot" in listed[sid] and str(sessions) not in listed[sid], (sid, listed[sid])
    finally:
        s.terminate()
