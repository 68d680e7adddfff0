"""Attention sinks (REFERENCE.md s.1; `sinks` in the adapter) in the C++ runtime, against independent references.

- C++ (titan-run score) == the Python reference at lengths around W + N_s; the reference's whole-block,
  per-token and split forms agree, and equal Transformers at mu = 0 (tiny random model);
- mu = 0 with sinks == Transformers decoding token by token with a KV cache that holds exactly the first N_s
  tokens (re-rotated to sit just before the window, StreamingLLM's rule) + the last W-1 tokens;
- split invariance across the gap opening (t = W + N_s) through saved/restored sessions, score and greedy
  generation; the state stops growing at N_s + W - 1 entries per converted layer;
- N_s = 0 (explicit or absent) is the model without sinks, bit for bit; bad `sinks` values are refused.
"""
import json
import shutil

import torch

from conftest import EXACT_WEIGHTS, MODEL, binary, hf_gguf_model, hf_gguf_tokenizer, run_json
from test_tptt_runtime import base, long_text, make_adapter, max_diff, run_err, score  # noqa: F401
from titand_ref import adapter as ad
from titand_ref.score import token_logprobs
from titand_ref.tptt_model import LoraSpec

W, NS = 16, 4  # the gap opens at t = W + NS = 20


def ids_of(n):
    return hf_gguf_tokenizer()(long_text(4000), add_special_tokens=False)["input_ids"][:n]


def hf_sink_window_logprobs(hf, ids, window, sinks):
    """Transformers, one token at a time at its true position; before each step the KV cache holds exactly
    the keys the contract lets the query see: the first `sinks` tokens and the last window-1 tokens. Once
    a gap opens the sink keys (rotated at their own positions) are rotated on by start - sinks, so they sit
    just before the window. Returns log-softmax rows (float64) predicting the token after each position."""
    from transformers import DynamicCache
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    n_layers = hf.config.num_hidden_layers
    keys, vals = [[] for _ in range(n_layers)], [[] for _ in range(n_layers)]
    out = []
    for t, tok in enumerate(ids):
        start = max(0, t - window + 1)
        keep = sorted(set(range(min(sinks, t))) | set(range(start, t)))
        n_moved = sum(1 for j in keep if j < start)  # sinks outside the window (first in `keep`)
        shift = max(0, start - sinks)
        cache = DynamicCache()
        for layer in range(n_layers if keep else 0):
            k = torch.cat([keys[layer][j] for j in keep], 2)
            v = torch.cat([vals[layer][j] for j in keep], 2)
            if shift and n_moved:
                cos, sin = hf.model.rotary_emb(k, torch.full((1, n_moved), shift))
                moved, _ = apply_rotary_pos_emb(k[:, :, :n_moved], k[:, :, :n_moved], cos, sin)
                k = torch.cat([moved, k[:, :, n_moved:]], 2)
            cache.update(k, v, layer)
        with torch.no_grad():
            r = hf(torch.tensor([[tok]]), cache=cache, position_ids=torch.tensor([[t]]),
                   attention_mask=torch.ones(1, len(keep) + 1, dtype=torch.long), use_cache=True)
        for layer in range(n_layers):
            lay = r.cache.layers[layer]
            keys[layer].append(lay.keys[:, :, -1:].clone())
            vals[layer].append(lay.values[:, :, -1:].clone())
        out.append(torch.log_softmax(r.logits[0, -1].double(), -1))
    return out


def test_cpp_equals_python_reference_with_sinks(base, tmp_path):
    d = tmp_path / "sinks"
    m = make_adapter(base[0], d, window=W, sinks=NS, lora=LoraSpec(layers=[0, 3, 17]))
    assert json.loads((d / "tptt_config.json").read_text())["sinks"] == NS
    ids = ids_of(3 * W)
    out = score(tmp_path, ids=ids, extra=["--tptt", d])
    assert max_diff(out["logprobs"], token_logprobs(m, ids, mode="chunked")) < 2e-3
    # the sinks matter: the same weights without them score differently once the gap is open
    nosink = tmp_path / "nosink"
    shutil.copytree(d, nosink)
    cfg = json.loads((nosink / "tptt_config.json").read_text())
    del cfg["sinks"]
    (nosink / "tptt_config.json").write_text(json.dumps(cfg))
    off = score(tmp_path, ids=ids, extra=["--tptt", nosink])
    assert max_diff(out["logprobs"][:W], off["logprobs"][:W]) < 2e-4  # no sink has left the window yet
    assert max_diff(out["logprobs"][W + 1:], off["logprobs"][W + 1:]) > 1e-2


def test_mu_zero_with_sinks_equals_transformers_sink_cache(base, tmp_path):
    d = tmp_path / "all"
    make_adapter(base[0], d, window=W, sinks=NS, layers=list(range(30)))
    ids = ids_of(W + NS + 20)
    ours = score(tmp_path, ids=ids, extra=["--tptt", d, "--mu", "0"])
    hf = hf_gguf_model()
    hf.set_attn_implementation("eager")
    lp = hf_sink_window_logprobs(hf, ids, W, NS)
    ref = [None] + [float(lp[t][ids[t + 1]]) for t in range(len(ids) - 1)]
    assert max_diff(ours["logprobs"], ref) < 2e-3
    # and this reference does tell sinks from no sinks
    lp0 = hf_sink_window_logprobs(hf, ids[:W + NS + 4], W, 0)
    assert max(abs(float(lp0[t][ids[t + 1]]) - ref[t + 1]) for t in range(W + NS, W + NS + 3)) > 1e-2


def test_split_invariance_across_gap_opening_and_fixed_state(base, tmp_path):
    d = tmp_path / "all"
    make_adapter(base[0], d, window=W, sinks=NS, layers=list(range(30)))
    ids = ids_of(64)
    whole = score(tmp_path, ids=ids, extra=["--tptt", d])
    sess = tmp_path / "s.ttss"
    cuts = [0, W + NS - 2, W + NS - 1, W + NS, W + NS + 1, 64]  # around the gap opening
    parts = [score(tmp_path, ids=ids[a:b], extra=["--tptt", d], session=sess) for a, b in zip(cuts, cuts[1:])]
    assert max_diff(whole["logprobs"], [x for p in parts for x in p["logprobs"]]) < 1e-4
    sizes = [p["state_bytes"] for p in parts]
    assert sizes[1] < sizes[2] == sizes[3] == sizes[4]  # full at N_s + W - 1 entries, then constant
    info = run_json([binary("titan-run"), "info", "--model", MODEL, "--tptt", d])
    st = info["session_state"]
    assert info["tptt"]["sinks"] == NS and st["bytes_per_token_after_window"] == 0
    assert st["constant_after_tokens"] == W + NS - 1
    assert st["bytes_at_window_limit"] == sizes[-1] - 4  # score's state_bytes include the pending token id
    # greedy generation continuing a restored session == generating from the whole prompt
    gen = [binary("titan-run"), "generate", "--model", MODEL, *EXACT_WEIGHTS, "--tptt", d, "--max-tokens", "12", "--json"]
    tok = hf_gguf_tokenizer()
    prompt = tok.decode(ids[:W + NS + 10])
    full = run_json(gen + ["--prompt", prompt])
    p_ids = full["prompt_ids"]
    g = tmp_path / "g.ttss"
    score(tmp_path, ids=p_ids[:W + NS - 1], extra=["--tptt", d], session=g)
    rest = tok.decode(p_ids[W + NS - 1:])
    assert tok(rest, add_special_tokens=False)["input_ids"] == p_ids[W + NS - 1:]
    assert run_json(gen + ["--prompt", rest, "--session", g])["tokens"] == full["tokens"]


def test_zero_sinks_unchanged_and_bad_sinks_refused(base, tmp_path):
    d = tmp_path / "plain"
    make_adapter(base[0], d, window=W)
    cfg = json.loads((d / "tptt_config.json").read_text())
    assert "sinks" not in cfg  # writers omit sinks = 0: older readers keep working
    z = tmp_path / "zero"
    shutil.copytree(d, z)
    (z / "tptt_config.json").write_text(json.dumps({**cfg, "sinks": 0}))
    ids = ids_of(2 * W + 8)
    a, b = score(tmp_path, ids=ids, extra=["--tptt", d]), score(tmp_path, ids=ids, extra=["--tptt", z])
    assert a["logprobs"] == b["logprobs"]
    for name, c, needle in (("neg", {**cfg, "sinks": -1}, "sinks"), ("str", {**cfg, "sinks": "4"}, "sinks"),
                            ("nowin", {**cfg, "sinks": 4, "window": None}, "window")):
        bad = tmp_path / f"bad_{name}"
        shutil.copytree(d, bad)
        (bad / "tptt_config.json").write_text(json.dumps(c))
        assert needle in run_err([binary("titan-run"), "info", "--model", MODEL, "--tptt", bad]), name
        try:
            ad.read_adapter(bad)
            raise AssertionError(f"the Python reader accepted {name}")
        except ad.AdapterError as e:
            assert needle in str(e), name


def test_python_reference_with_sinks_on_a_tiny_model():
    """The Python reference alone, on a tiny random Llama: whole block == per token == split through its
    state, and mu = 0 == the Transformers sink cache above (several layers, GQA, gap at t = 11)."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from titand_ref.tptt_model import TPTTConfig, TPTTModel

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    hf = LlamaForCausalLM(cfg).eval()
    hf.set_attn_implementation("eager")
    w, ns, T = 8, 3, 30
    ids = torch.randint(0, 97, (1, T))
    m = TPTTModel(hf, TPTTConfig(layers=[0, 1, 2], window=w, sinks=ns)).eval()
    m.set_mu(0.0)
    with torch.no_grad():
        lp = torch.log_softmax(m(ids)[0][0].double(), -1)
    ref = hf_sink_window_logprobs(hf, ids[0].tolist(), w, ns)
    assert max(float((lp[t] - ref[t]).abs().max()) for t in range(T)) < 1e-5
    m.set_mu(0.3)
    with torch.no_grad():
        whole, _ = m(ids, chunk_size=4)
        per_token, _ = m(ids, mode="recurrent")
        a, st = m(ids[:, :10])
        b, st = m(ids[:, 10:12], st)
        c, _ = m(ids[:, 12:], st)
    assert float((whole - per_token).abs().max()) < 1e-4
    assert float((whole - torch.cat([a, b, c], 1)).abs().max()) < 1e-4
