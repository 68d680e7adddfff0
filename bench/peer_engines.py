"""The three engines of bench/peer_bench.py behind one interface: titand (gRPC), llama.cpp's llama-server
(HTTP /completion) and Transformers (in-process, run inside a worker process of its own).

Every engine takes token ids (the same ids for all), decodes greedily with EOS ignored and reports a
Stream per generation: the send time, the arrival time and count of each batch of tokens, the ids, and
what the server itself reported. An engine offers
  generate(prompt, n)                 one stateless generation (no prompt cache, no session)
  conversation(mode)                  a returning conversation: feed(history) (untimed), turn(ids, n) -> Stream
  generate_many(prompts, n)           concurrent streams (threads for servers, one batch for Transformers)
  ttft_modes                          the conversation modes it has
  peak_rss_kib()                      VmHWM of the serving process
"""
import ctypes
import json
import http.client
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
ADAPTER = REPO / "adapters" / "smollm2-135m-tptt"


class BenchError(RuntimeError):
    """A clear, one-line reason the benchmark cannot go on."""


class Stream:
    """One generation as the client saw it. events: (arrival time, tokens in that message)."""

    def __init__(self, t0):
        self.t0, self.events, self.ids, self.server = t0, [], [], {}

    def add(self, ids, count=None):
        """ids arrived now; count: how many tokens they stand for (default len(ids))."""
        count = len(ids) if count is None else count
        if count:
            self.events.append((time.perf_counter(), count))
        self.ids.extend(int(i) for i in ids)

    @property
    def n_tokens(self):
        return sum(k for _, k in self.events)

    @property
    def ttft(self):
        return self.events[0][0] - self.t0 if self.events else float("nan")

    def decode_tps(self):
        """Tokens after the first / time from the first token to the last (the decode phase only)."""
        n = sum(k for _, k in self.events[1:])
        span = self.events[-1][0] - self.events[0][0] if len(self.events) > 1 else 0.0
        return n / span if span > 0 else float("nan")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_kib(pid):
    """VmHWM (peak resident set) of a live process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        m = re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.M)
    return int(m.group(1)) if m else None


def _die_with_parent():
    """preexec_fn: the child gets SIGTERM when the benchmark dies, even by SIGKILL (Linux prctl)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ServerProcess:
    """A child server with its log in a file; stop() kills it (SIGTERM, then SIGKILL)."""

    def __init__(self, name, argv, log_dir, env=None):
        self.name, self.argv = name, argv
        self.log_path = Path(log_dir) / f"{name}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=_die_with_parent)

    def log_tail(self, n=1500):
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-n:]

    def wait_ready(self, probe, timeout):
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode} while starting "
                                 f"({' '.join(self.argv)}):\n{self.log_tail()}")
            if probe():
                return
            time.sleep(0.1)
        self.stop()
        raise BenchError(f"{self.name} not ready after {timeout} s:\n{self.log_tail()}")

    def peak_rss_kib(self):
        return peak_rss_kib(self.proc.pid) if self.proc.poll() is None else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _threads_each(fn, items):
    """fn(item) for every item on its own thread, all started together; results in order."""
    out, errs = [None] * len(items), []
    barrier = threading.Barrier(len(items))

    def run(i, x):
        try:
            barrier.wait()
            out[i] = fn(x)
        except Exception as e:  # noqa: BLE001 - re-raised below with the stream's index
            errs.append((i, e))

    ts = [threading.Thread(target=run, args=(i, x)) for i, x in enumerate(items)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errs:
        raise BenchError(f"stream {errs[0][0]} failed: {errs[0][1]}")
    return out


# ------------------------------------------------------------------------------------------- titand
def titand_has_flag(binary, flag):
    r = subprocess.run([binary, "--helpfull"], capture_output=True, text=True, timeout=30)
    return re.search(rf"^\s+--{flag} \(", r.stdout + r.stderr, re.M) is not None


class Titand:
    ttft_modes = ("session",)

    def __init__(self, name, binary, extra_args, threads, log_dir, timeout):
        sys.path.insert(0, str(REPO / "client" / "python"))
        try:
            from titand_client import Client
        except ImportError as e:
            raise BenchError(f"titand_client not importable ({e}): run client/python/generate.sh") from e
        if not Path(binary).exists():
            raise BenchError(f"{binary} is missing: build titand first (bash scripts/build.sh)")
        self.name, self.timeout = name, timeout
        port = free_port()
        argv = [str(binary), "--model", str(MODEL), "--host", "127.0.0.1", "--port", str(port),
                "--metrics-port", "0", "--threads", str(threads), *extra_args]
        self.server = ServerProcess(name, argv, log_dir, env=dict(os.environ, TITAND_MODELS_DIR=str(MODEL.parent)))
        self.client = Client(f"127.0.0.1:{port}")
        self.server.wait_ready(self._serving, timeout)

    def _serving(self):
        try:
            return self.client.health(timeout=1.0) == "SERVING"
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def _stream(self, prompt, n, session_id=""):
        s = Stream(time.perf_counter())
        last = None
        for msg in self.client.generate(timeout=self.timeout, tokens=prompt, max_tokens=n, ignore_eos=True,
                                        temperature=0.0, session_id=session_id):
            s.add(msg.token_ids)
            last = msg
        if last is None or len(s.ids) != n:
            raise BenchError(f"{self.name}: expected {n} tokens, got {len(s.ids)}")
        s.server = {"ttft_s": last.timing.time_to_first_token_seconds, "total_s": last.timing.total_seconds,
                    "queue_s": last.timing.queue_seconds, "prompt_tokens": last.usage.prompt_tokens,
                    "session_tokens": last.usage.session_tokens}
        return s

    def generate(self, prompt, n):
        return self._stream(prompt, n)

    def conversation(self, mode):
        return _TitandSession(self)

    def generate_many(self, prompts, n):
        sessions = [self.client.create_session().id for _ in prompts]
        try:
            return _threads_each(lambda a: self._stream(a[0], n, a[1]), list(zip(prompts, sessions)))
        finally:
            for sid in sessions:
                self.client.delete_session(sid)

    def peak_rss_kib(self):
        return self.server.peak_rss_kib()

    def close(self):
        self.client.close()
        self.server.stop()


class _TitandSession:
    """A titand session: each turn sends only its new tokens; the history stays in the server."""

    def __init__(self, eng):
        self.eng, self.sid = eng, eng.client.create_session().id

    def feed(self, ids):
        for off in range(0, len(ids), 2048):  # 2,048 tokens a request: well inside --max-request-bytes
            self.eng._stream(ids[off:off + 2048], 1, self.sid)

    def turn(self, ids, n):
        s = self.eng._stream(ids, n, self.sid)
        s.server["state_bytes"] = self.eng.client.get_session(self.sid).state_bytes
        return s

    def close(self):
        self.eng.client.delete_session(self.sid)


# ---------------------------------------------------------------------------------------- llama.cpp
class Llama:
    """llama-server on loopback. cache mode: every turn resends the whole conversation to slot 0 with
    cache_prompt true (only the unseen suffix is evaluated); nocache: the same prompt with cache_prompt
    false (the whole conversation is prefilled again)."""
    ttft_modes = ("cache", "nocache")

    def __init__(self, name, binary, slots, ctx, threads, log_dir, timeout, extra_args=()):
        if not Path(binary).exists():
            raise BenchError(f"llama-server not found at {binary}")
        self.name, self.timeout, self.port = name, timeout, free_port()
        argv = [str(binary), "-m", str(MODEL), "--host", "127.0.0.1", "--port", str(self.port),
                "-t", str(threads), "-tb", str(threads), "-np", str(slots), "-c", str(ctx), "-cb",
                "--no-webui", *extra_args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}
        self.server = ServerProcess(name, argv, log_dir, env=env)
        self.server.wait_ready(self._healthy, timeout)

    def _healthy(self):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            c.request("GET", "/health")
            return c.getresponse().status == 200
        except OSError:
            return False

    def _stream(self, prompt, n, cache, slot=-1):
        body = {"prompt": list(prompt), "n_predict": n, "temperature": 0.0, "top_k": 1, "ignore_eos": True,
                "cache_prompt": cache, "id_slot": slot, "stream": True, "return_tokens": True}
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        s = Stream(time.perf_counter())
        c.request("POST", "/completion", body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            raise BenchError(f"{self.name}: HTTP {r.status}: {r.read()[:500]!r}")
        final, seen = {}, 0
        for line in r:  # server-sent events: "data: {json}"
            if not line.startswith(b"data: "):
                continue
            msg = json.loads(line[6:])
            # A token whose text ends inside a UTF-8 character is not streamed on its own (nor its id):
            # tokens_predicted counts every token generated so far.
            done = msg.get("tokens_predicted", seen)
            s.add(msg.get("tokens") or [], max(0, done - seen))
            seen = max(seen, done)
            if msg.get("stop"):
                final = msg
                break
        c.close()
        if s.n_tokens != n:
            raise BenchError(f"{self.name}: expected {n} tokens, got {s.n_tokens} (final message: {final})")
        t = final.get("timings", {})
        s.server = {k: t.get(k) for k in ("cache_n", "prompt_n", "prompt_ms", "predicted_n", "predicted_ms")}
        if t.get("prompt_ms"):
            s.server["ttft_s"] = t["prompt_ms"] / 1000
        return s

    def generate(self, prompt, n):
        return self._stream(prompt, n, cache=False)

    def conversation(self, mode):
        return _LlamaConversation(self, mode == "cache")

    def generate_many(self, prompts, n):
        return _threads_each(lambda p: self._stream(p, n, cache=False), prompts)

    def peak_rss_kib(self):
        return self.server.peak_rss_kib()

    def close(self):
        self.server.stop()


class _LlamaConversation:
    """The conversation is the history and the turns' prompts: a streamed reply may lack the ids of tokens
    that end inside a UTF-8 character, so replies are left out (each turn still evaluates only its own
    tokens on a cache hit: the slot's cache holds the previous prompt and its reply, which is dropped)."""

    def __init__(self, eng, cache):
        self.eng, self.cache, self.tokens = eng, cache, []

    def feed(self, ids):
        self.tokens += ids
        if self.cache:  # fill slot 0 with the history
            self.eng._stream(self.tokens, 1, True, 0)

    def turn(self, ids, n):
        self.tokens += ids
        return self.eng._stream(self.tokens, n, self.cache, 0)

    def close(self):
        pass


def llama_version(binary):
    try:
        r = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
        return (r.stdout + r.stderr).strip().splitlines()[0:2]
    except (OSError, subprocess.SubprocessError) as e:
        return [f"unknown ({e})"]


def split_args(s):
    return shlex.split(s) if s else []
