"""Live-server helpers for tests/py/test_server*.py: start the REAL build/bin/titand on free loopback
ports with the bundled model, wait for gRPC health SERVING, talk to it with the Python client."""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("TITAND_BUILD_DIR", REPO / "build"))
BIN = BUILD / "bin"
MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
CLIENT_DIR = REPO / "client" / "python"


def need(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: {what}")
    return path


def import_client():
    """Generates the stubs from the proto (grpcio-tools) and imports titand_client."""
    r = subprocess.run(["bash", str(CLIENT_DIR / "generate.sh"), sys.executable],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"client/python/generate.sh failed: {r.stderr[-2000:]}")
    if str(CLIENT_DIR) not in sys.path:
        sys.path.insert(0, str(CLIENT_DIR))
    import titand_client
    return titand_client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The product is SmolLM2 + its bundled TPTT adapter: live tests run that whenever the adapter is committed.
ADAPTER = REPO / "adapters" / "smollm2-135m-tptt"
ADAPTER_ARGS = ["--tptt", str(ADAPTER)] if (ADAPTER / "tptt_config.json").exists() else []


class Titand:
    """One titand process. `health_seen` records the health answers observed while starting."""

    def __init__(self, tmp: Path, *extra: str, session_dir: Path = None):
        self.port, self.metrics_port = free_port(), free_port()
        self.session_dir = session_dir or (tmp / "sessions")
        self.session_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = tmp / f"titand-{self.port}.log"
        self.args = [str(need(BIN / "titand", "build titand first (target titand)")),
                     "--model", "smollm2-135m", "--host", "127.0.0.1", "--port", str(self.port),
                     "--metrics-port", str(self.metrics_port), "--session-dir", str(self.session_dir),
                     "--threads", "2", *ADAPTER_ARGS, *extra]
        need(MODEL, "run scripts/setup.sh (bundled model)")
        env = dict(os.environ, TITAND_MODELS_DIR=str(REPO / "models"))
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.address = f"127.0.0.1:{self.port}"
        self.health_address = self.address  # a plaintext --health-port when the gRPC port speaks TLS
        self.health_seen = []

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text()[-4000:]

    def health(self, timeout=1.0) -> str:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        with grpc.insecure_channel(self.health_address) as ch:
            try:
                resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
            except grpc.RpcError as e:
                return f"RPC_{e.code().name}"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    def wait_serving(self, timeout=240.0) -> "Titand":
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                pytest.fail(f"titand exited with {self.proc.returncode}:\n{self.log_text()}")
            h = self.health(timeout=0.5)
            if not self.health_seen or self.health_seen[-1] != h:
                self.health_seen.append(h)
            if h == "SERVING":
                return self
            time.sleep(0.02)
        self.kill()
        pytest.fail(f"titand not SERVING after {timeout}s (seen {self.health_seen}):\n{self.log_text()}")

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode()

    def terminate(self, timeout=120.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def metric_value(text: str, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 if none)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, lab = head.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in lab for k, v in labels.items()):
            total += float(value)
    return total


def wait_for(fn, timeout=10.0, every=0.1):
    """fn() once it is truthy, or its last value after `timeout` seconds (polled every `every`)."""
    end = time.time() + timeout
    while True:
        v = fn()
        if v or time.time() > end:
            return v
        time.sleep(every)
