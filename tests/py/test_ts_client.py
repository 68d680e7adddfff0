"""The TypeScript client (client/ts) end to end against the LIVE titand: compiles it with tsc, runs its
e2e script (streaming, sessions, fork, delete, cancellation three ways, error codes), then checks the
token ids it received against the Python client (an independent implementation over the same proto):
greedy stateless output must match, and each session turn must equal a stateless run over the whole
history."""
import json
import shutil
import subprocess

import pytest

from conftest_server import REPO, Titand, import_client

TS = REPO / "client" / "ts"
MAX_NEW = 6


def node_tool(name):
    exe = shutil.which(name)
    if exe is None:
        pytest.fail(f"{name} not found: run scripts/setup_deploy_tools.sh")
    return exe


@pytest.fixture(scope="module")
def compiled():
    if not (TS / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail("client/ts/node_modules is missing: run scripts/setup_deploy_tools.sh")
    r = subprocess.run([node_tool("npm"), "run", "--silent", "build"], cwd=TS, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, f"tsc failed:\n{r.stdout}\n{r.stderr}"
    return TS / "dist" / "test" / "e2e.js"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Titand(tmp_path_factory.mktemp("titand-ts")).wait_serving()
    yield s
    s.terminate()


class Recorder:
    """A gRPC server that answers every call UNIMPLEMENTED and records (method, x-titand-session values)."""

    def __init__(self):
        import grpc
        from concurrent import futures
        self.calls = []
        rec = self

        class Handler(grpc.GenericRpcHandler):
            def service(self, details):
                vals = [v for k, v in details.invocation_metadata if k == "x-titand-session"]
                rec.calls.append((details.method.rsplit("/", 1)[-1], vals))
                return None

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self.server.add_generic_rpc_handlers((Handler(),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()


def test_ts_client_e2e_matches_python_client(compiled, server):
    recorder = Recorder()
    try:
        r = subprocess.run([node_tool("node"), str(compiled), server.address, f"127.0.0.1:{recorder.port}"],
                           capture_output=True, text=True, timeout=600)
    finally:
        recorder.server.stop(0)
    assert r.returncode == 0, f"e2e.js failed:\n{r.stderr[-4000:]}\n{server.log_text()}"
    # The affinity header on the wire: the session id's root, absent for a stateless call.
    assert recorder.calls == [("CreateSession", ["rootA"]), ("GetSession", ["rootA"]), ("ForkSession", ["rootA"]),
                              ("Generate", []), ("Generate", ["rootB"])], recorder.calls
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["model"] == {"architecture": "llama", "numLayers": 30, "vocabSize": 49152}
    assert out["cancel"]["abortRpcTokens"] < 2000

    tc = import_client()
    with tc.Client(server.address) as py:
        ref = py.complete(tokens=[1000, 2000, 3000, 4000, 5000], max_tokens=MAX_NEW, ignore_eos=True, timeout=120)
        assert out["stateless"] == list(ref.token_ids)
        history = []
        for prompt, reply in out["session"]["turns"]:
            history += prompt
            ref = py.complete(tokens=history, max_tokens=MAX_NEW, ignore_eos=True, timeout=120)
            assert reply == list(ref.token_ids), f"session turn differs from stateless over {len(history)} tokens"
            history += reply
        chat = py.complete(chat=[("user", "Say hello.")], max_tokens=4, timeout=120)
        assert out["chat"]["tokenIds"] == list(chat.token_ids)
        assert out["chat"]["text"] == chat.text
    # The deleted sessions are gone from the server too (checked by an independent client).
    with tc.Client(server.address) as py:
        ids = [s.id for s in py.list_sessions()]
    assert out["session"]["id"] not in ids and not any(i.startswith(out["session"]["id"] + ".") for i in ids)
