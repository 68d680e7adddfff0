"""Transformers as a peer engine of bench/peer_bench.py, in a worker process of its own (so that its
peak RSS is its own): loads the same GGUF (dequantised to float32, as bench/bench_hf.py), runs the same
measurements in-process and writes their JSON.

  python bench/peer_hf.py --settings JSON --out FILE     (started by peer_bench.py, not by hand)
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer_engines as pe  # noqa: E402


class Transformers:
    """Greedy decoding with a DynamicCache, the sampled id brought to the host every step (as a server).
    Modes: reprefill (every turn runs the whole conversation again), past_kv (the cache of the history is
    kept and only the new turn is run)."""
    ttft_modes = ("reprefill", "past_kv")

    def __init__(self, threads):
        import torch
        from transformers import AutoModelForCausalLM
        torch.set_num_threads(threads)
        self.torch = torch
        self.name = "transformers"
        self.model = AutoModelForCausalLM.from_pretrained(str(pe.MODEL.parent), gguf_file=pe.MODEL.name,
                                                          dtype=torch.float32).eval()

    def _run(self, ids, past):
        with self.torch.inference_mode():
            r = self.model(ids, past_key_values=past, use_cache=True)
        return r.logits[:, -1].argmax(-1), r.past_key_values

    def _decode(self, rows, n, past=None):
        """Greedy n tokens for a batch of equal-length prompts (lists of ids) -> ([Stream], cache)."""
        t0 = time.perf_counter()
        streams = [pe.Stream(t0) for _ in rows]
        tok, past = self._run(self.torch.tensor(rows), past)
        for i in range(n):
            ids = tok.tolist()  # reaches the host: the time a client would see the token
            now = time.perf_counter()
            for s, t in zip(streams, ids):
                s.events.append((now, 1))
                s.ids.append(t)
            if i + 1 < n:
                tok, past = self._run(tok[:, None], past)
        return streams, past

    def generate(self, prompt, n):
        return self._decode([prompt], n)[0][0]

    def conversation(self, mode):
        return _HFConversation(self, mode == "past_kv")

    def generate_many(self, prompts, n):
        return self._decode(prompts, n)[0]

    def peak_rss_kib(self):
        return pe.peak_rss_kib(os.getpid())

    def close(self):
        pass


class _HFConversation:
    def __init__(self, eng, keep_cache):
        self.eng, self.keep, self.tokens, self.past, self.pending = eng, keep_cache, [], None, []

    def feed(self, ids):
        self.tokens += ids
        if self.keep:
            for off in range(0, len(ids), 2048):
                tok, self.past = self.eng._run(self.eng.torch.tensor([ids[off:off + 2048]]), self.past)
            self.pending = tok.tolist()  # sampled, not yet in the cache (as titand's pending token)
            self.tokens += self.pending

    def turn(self, ids, n):
        if self.keep:
            (s,), self.past = self.eng._decode([self.pending + ids], n, self.past)
            self.pending = s.ids[-1:]
        else:
            (s,), _ = self.eng._decode([self.tokens + ids], n)
        self.tokens += ids + s.ids
        return s

    def close(self):
        self.past = None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--settings", required=True, help="JSON of peer_bench's settings")
    ap.add_argument("--out", required=True)
    ap.add_argument("--parts", default="single,returning,aggregate")
    a = ap.parse_args()
    import peer_bench
    settings = argparse.Namespace(**json.loads(a.settings))
    t0 = time.time()
    eng = Transformers(settings.threads)
    res = {"load_s": time.time() - t0}
    import torch
    import transformers
    res["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__}
    res.update(peer_bench.run_suite(eng, settings, a.parts.split(",")))
    res["peak_rss_kib"] = eng.peak_rss_kib()
    Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
