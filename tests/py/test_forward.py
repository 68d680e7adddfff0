"""The runtime's forward pass against Hugging Face Transformers (the independent reference).

- the bundled SmolLM2 GGUF: per-token log-probabilities (fp32, 2e-3) and greedy generation;
- tiny random qwen2 / qwen3 / mistral (sliding window) / llama models saved by Transformers as safetensors.
"""
import json
import subprocess

import pytest
import torch

from conftest import EXACT_WEIGHTS, REPO, binary, hf_gguf_model, hf_gguf_tokenizer, run_json



def corpus_text(n_chars: int, start: int = 0) -> str:
    """A slice of the CPython docs (prose + code), fetched by scripts/fetch_corpus.sh."""
    d = REPO / ".cache" / "corpus" / "python-doc"
    files = sorted(d.glob("*.rst.txt"))
    if not files:
        pytest.fail("corpus missing: run scripts/fetch_corpus.sh")
    text = "".join(f.read_text(encoding="utf-8", errors="replace") for f in files[start:start + 3])
    return text[:n_chars]


def hf_logprobs(model, ids):
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    lp = torch.log_softmax(logits, -1)
    return [float("nan")] + [float(lp[i, ids[i + 1]]) for i in range(len(ids) - 1)]


def score(model_arg, tmp_path, text=None, ids=None, extra=()):
    args = [binary("titan-run"), "score", "--model", model_arg, *EXACT_WEIGHTS, *extra]
    if ids is not None:
        args += ["--ids", ",".join(map(str, ids))]
    else:
        f = tmp_path / "input.txt"
        f.write_text(text, encoding="utf-8")
        args += ["--text-file", f]
    return run_json(args, timeout=600)


def assert_close_logprobs(ours, ref, tol):
    assert len(ours) == len(ref)
    assert ours[0] is None and ref[0] != ref[0]  # nothing precedes the first token
    diff = max(abs(a - b) for a, b in zip(ours[1:], ref[1:]))
    assert diff <= tol, f"max |logprob diff| {diff:.2e} > {tol}"
    return diff


@pytest.mark.parametrize("kind,n_chars,start", [
    ("docs-short", 400, 0), ("docs-code", 2500, 40), ("docs-long", 4200, 200)])
def test_smollm2_logprobs_match_transformers(model_path, tmp_path, kind, n_chars, start):
    text = corpus_text(n_chars, start)
    out = score(model_path, tmp_path, text=text)
    ids = hf_gguf_tokenizer()(text, add_special_tokens=False)["input_ids"]
    assert out["ids"] == ids
    assert len(ids) <= 1100
    ref = hf_logprobs(hf_gguf_model(), ids)
    assert_close_logprobs(out["logprobs"], ref, 2e-3)


def test_smollm2_chat_text_logprobs(model_path, tmp_path):
    tok = hf_gguf_tokenizer()
    text = tok.apply_chat_template([{"role": "user", "content": "What is 17 * 23? Explain briefly."}],
                                   tokenize=False, add_generation_prompt=True) + "17 * 23 = 391."
    # The rendered template's markers are control tokens only when asked for (text is literal by default).
    out = score(model_path, tmp_path, text=text, extra=["--parse-special"])
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert out["ids"] == ids
    assert_close_logprobs(out["logprobs"], hf_logprobs(hf_gguf_model(), ids), 2e-3)


def test_smollm2_bf16_close_to_fp32_reference(model_path, tmp_path):
    text = corpus_text(1500, 10)
    out = score(model_path, tmp_path, text=text, extra=["--dtype", "bfloat16"])
    ref = hf_logprobs(hf_gguf_model(), out["ids"])
    diffs = [abs(a - b) for a, b in zip(out["logprobs"][1:], ref[1:])]
    # bf16 keeps 8 bits of mantissa: per-token log-probs move by a few hundredths on average.
    assert sum(diffs) / len(diffs) < 0.08, sum(diffs) / len(diffs)


def test_smollm2_greedy_generation_matches_transformers(model_path):
    prompt = "The three most important ideas in the history of computing are"
    out = run_json([binary("titan-run"), "generate", "--model", model_path, *EXACT_WEIGHTS, "--prompt", prompt,
                    "--max-tokens", "32", "--json"], timeout=600)
    ids = out["prompt_ids"]
    assert ids == hf_gguf_tokenizer()(prompt, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        ref = hf_gguf_model().generate(torch.tensor([ids]), max_new_tokens=32, do_sample=False)[0][len(ids):]
    assert out["tokens"] == ref.tolist()
    assert len(out["tokens"]) == 32


# ---- tiny random models of the other architectures, saved by Transformers as safetensors ----

def _tiny(arch):
    import transformers as tf
    common = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  rms_norm_eps=1e-6, tie_word_embeddings=False)
    if arch == "qwen2":
        cfg = tf.Qwen2Config(**common, rope_theta=10000.0)
        cls = tf.Qwen2ForCausalLM
    elif arch == "qwen3":
        cfg = tf.Qwen3Config(**common, head_dim=32, rope_theta=1000000.0)
        cls = tf.Qwen3ForCausalLM
    elif arch == "mistral":
        cfg = tf.MistralConfig(**common, sliding_window=7, rope_theta=10000.0)
        cls = tf.MistralForCausalLM
    else:
        cfg = tf.LlamaConfig(**{**common, "tie_word_embeddings": True}, attention_bias=True)
        cls = tf.LlamaForCausalLM
    torch.manual_seed(0)
    cfg._attn_implementation = "eager"
    m = cls(cfg).eval()
    # Random init is tiny: scale weights up so that attention patterns and the sliding window matter.
    with torch.no_grad():
        for n, p in m.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
            elif "bias" in n:
                p.normal_(0, 0.2)
    return m


@pytest.mark.parametrize("arch", ["qwen2", "qwen3", "mistral", "llama"])
def test_tiny_safetensors_models_match_transformers(arch, tmp_path):
    m = _tiny(arch)
    m.save_pretrained(tmp_path / arch, safe_serialization=True)
    cfg = json.loads((tmp_path / arch / "config.json").read_text())
    assert cfg["model_type"] == arch
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 300, (40,), generator=g).tolist()
    out = score(tmp_path / arch, tmp_path, ids=ids)
    ref = hf_logprobs(m, ids)
    assert_close_logprobs(out["logprobs"], ref, 2e-4)


def test_mistral_window_changes_outputs(tmp_path):
    """The sliding window is really applied: past the window, outputs differ from a full-range model."""
    m = _tiny("mistral")
    m.save_pretrained(tmp_path / "m", safe_serialization=True)
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["sliding_window"] = None
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "full" / "model.safetensors").write_bytes((tmp_path / "m" / "model.safetensors").read_bytes())
    ids = list(range(3, 33))
    win = score(tmp_path / "m", tmp_path, ids=ids)["logprobs"]
    full = score(tmp_path / "full", tmp_path, ids=ids)["logprobs"]
    assert max(abs(a - b) for a, b in zip(win[1:7], full[1:7])) < 1e-5  # inside the window: identical
    assert max(abs(a - b) for a, b in zip(win[8:], full[8:])) > 1e-2    # beyond it: different


def test_bad_model_files_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOTAGGUF" + b"\0" * 64)
    r = subprocess.run([binary("titan-run"), "info", "--model", bad], capture_output=True, text=True)
    assert r.returncode == 1
    assert "bad.gguf" in r.stderr and r.stderr.count("\n") == 1
    r = subprocess.run([binary("titan-run"), "info", "--model", tmp_path / "nope.gguf"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "not found" in r.stderr
