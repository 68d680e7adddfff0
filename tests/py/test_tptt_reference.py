"""TPTT Python reference (tools/titand_ref): modes, equivalences with the HF model, state carry, adapter format.

Independent references: Hugging Face Transformers' own Llama forward (eager attention, with a hand-built
banded mask for the window), the per-token recurrence against the chunked operator, and the concatenated
sequence against the split one. Runs in float64 so a 1e-4 tolerance has a wide margin over rounding.
"""
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
GGUF = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

from titand_ref import adapter as ad  # noqa: E402
from titand_ref.score import token_logprobs  # noqa: E402
from titand_ref.tptt_model import LoraSpec, TPTTConfig, TPTTModel, load_base  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog, then counts 1234 apples in the sun."
TOL = 1e-4


@pytest.fixture(scope="module")
def base():
    if not GGUF.exists():
        pytest.fail(f"bundled model missing: {GGUF} (run scripts/ setup first)")
    torch.set_num_threads(1)  # the CI box is shared; more threads only contend
    model, tok = load_base(GGUF)
    model = model.double()
    model.set_attn_implementation("eager")
    return model, tok


@pytest.fixture(scope="module")
def ids(base):
    return torch.tensor([base[1](TEXT).input_ids])


def random_model(base_model, seed=0, **kw) -> TPTTModel:
    cfg = TPTTConfig(**{"layers": [0, 5, 29], "window": 6, "operator": "gated_delta",
                        "lora": LoraSpec(layers=[0, 5, 11]), **kw})
    torch.manual_seed(seed)
    m = TPTTModel(base_model, cfg).double().eval()
    with torch.no_grad():
        for hp in m.hybrid.values():
            if cfg.gates == "learned":
                for name in ("w_b", "w_a"):
                    getattr(hp, name).normal_(0, 0.05)
                hp.c_b.normal_(0, 1)
                hp.c_a.normal_(2, 1)
            hp.mu_logit.normal_(0, 1)  # mu roughly in (0.2, 0.8)
        for _, _, mod in m.lora_modules():
            mod.lora_B.normal_(0, 0.02)
    return m


def logprobs(logits, ids):
    return torch.log_softmax(logits[0], -1)[:-1].gather(1, ids[0, 1:, None])[:, 0]


def test_recurrent_equals_chunked(base, ids):
    m = random_model(base[0])
    with torch.no_grad():
        rec, st_r = m(ids, mode="recurrent")
        chk, st_c = m(ids, mode="chunked", chunk_size=4)
    assert (logprobs(rec, ids) - logprobs(chk, ids)).abs().max() < TOL
    assert (rec.log_softmax(-1) - chk.log_softmax(-1)).abs().max() < TOL
    for i in (0, 5, 29):
        assert torch.allclose(st_r.layers[i].S, st_c.layers[i].S, atol=1e-5)
    # the memory must matter: mu = 0 changes the output
    m.set_mu(0.0)
    with torch.no_grad():
        plain, _ = m(ids)
    assert (logprobs(plain, ids) - logprobs(chk, ids)).abs().max() > 1e-3


def test_recurrent_equals_chunked_constant_gates(base, ids):
    # (elu + delta is left out on purpose: ||phi(k)|| is unbounded, b ||phi(k)||^2 > 2 makes the delta
    # rule diverge, and then any two evaluation orders disagree)
    m = random_model(base[0], seed=1, operator="delta", feature_map="identity", gates="constant",
                     constants={"b": 0.3, "a": 1.0}, lora=None, window=3)
    short = ids[:, :12]
    with torch.no_grad():
        rec, _ = m(short, mode="recurrent")
        chk, _ = m(short, mode="chunked", chunk_size=5)
    assert (rec.log_softmax(-1) - chk.log_softmax(-1)).abs().max() < TOL


def test_mu_zero_full_window_equals_base(base, ids):
    hf, _ = base
    m = TPTTModel(hf, TPTTConfig(layers=list(range(30)), window=None, operator="gated_delta")).double()
    m.set_mu(0.0)
    with torch.no_grad():
        ours, _ = m(ids)
        ref = hf(ids).logits
    assert (ours.log_softmax(-1) - ref.log_softmax(-1)).abs().max() < TOL


def test_mu_zero_window_equals_banded_hf(base, ids):
    hf, _ = base
    W = 5
    m = TPTTModel(hf, TPTTConfig(layers=list(range(30)), window=W, operator="linear")).double()
    m.set_mu(0.0)
    T = ids.shape[1]
    i = torch.arange(T)
    allowed = (i[:, None] >= i[None, :]) & (i[:, None] - i[None, :] < W)  # keys j in [t-W+1, t]
    mask = torch.zeros(1, 1, T, T, dtype=torch.float64).masked_fill(~allowed, torch.finfo(torch.float64).min)
    with torch.no_grad():
        ours, _ = m(ids)
        ref = hf(ids, attention_mask=mask).logits
        full = hf(ids).logits
    assert (ours.log_softmax(-1) - ref.log_softmax(-1)).abs().max() < TOL
    assert (ours.log_softmax(-1) - full.log_softmax(-1)).abs().max() > 1e-2  # the window really cuts


def test_split_invariance(base, ids):
    m = random_model(base[0], seed=2)
    with torch.no_grad():
        whole, _ = m(ids, chunk_size=4)
        a, st = m(ids[:, :7], chunk_size=4)
        b, st2 = m(ids[:, 7:], st, chunk_size=4)
        # chunked prefix, then decode token by token (recurrent) from the carried state
        c, st3 = m(ids[:, 7:], st, mode="recurrent")
    assert (torch.cat([a, b], 1).log_softmax(-1) - whole.log_softmax(-1)).abs().max() < TOL
    assert (torch.cat([a, c], 1).log_softmax(-1) - whole.log_softmax(-1)).abs().max() < TOL
    assert st.pos == 7 and st2.pos == ids.shape[1]
    assert st2.layers[0].k.shape[2] == 6  # converted layer keeps only W keys
    assert st2.layers[1].k.shape[2] == ids.shape[1]  # plain layer keeps all
    assert st2.layers[0].S.dtype == torch.float64 and st2.layers[0].S.shape == (1, 9, 64, 64)


def test_adapter_round_trip_and_peft(base, ids, tmp_path):
    hf, _ = base
    fp = ad.base_fingerprint(GGUF)
    assert fp.startswith("Smollm2") and len(fp.rsplit("@", 1)[1]) == 16
    m = random_model(hf, seed=3)
    with torch.no_grad():  # the format stores float32: make the float64 reference exactly representable
        for p in m.new_parameters():
            p.copy_(p.float().double())
    ad.save_adapter(m, tmp_path / "a", base_model=fp)
    raw = json.loads((tmp_path / "a" / "tptt_config.json").read_text())
    assert raw["format"] == "titand-tptt" and raw["version"] == 1 and raw["layers"] == [0, 5, 29]
    assert raw["lora"] == {"r": 8, "alpha": 16.0, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]}
    m2 = ad.load_adapter(tmp_path / "a", hf, gguf_path=GGUF).double()
    for (i, t, x), (_, _, y) in zip(m.lora_modules(), m2.lora_modules()):
        assert torch.equal(x.lora_A.float(), y.lora_A.float()) and torch.equal(x.lora_B.float(), y.lora_B.float())
    for i in (0, 5, 29):
        assert torch.allclose(m.hybrid[str(i)].mu(), m2.hybrid[str(i)].mu(), atol=1e-7)
        assert torch.equal(m.hybrid[str(i)].w_b.float(), m2.hybrid[str(i)].w_b.float())
    with torch.no_grad():
        x, _ = m(ids[:, :10])
        y, _ = m2(ids[:, :10])
    # mu goes through a float32 round trip (|d mu| ~ 3e-8) and the random model amplifies it ~1e3 times
    assert (x - y).abs().max() < TOL
    # the same LoRA given as a PEFT folder (adapter_config.json + adapter_model.safetensors)
    from safetensors.torch import load_file, save_file
    peft = tmp_path / "p"
    peft.mkdir()
    tensors = load_file(str(tmp_path / "a" / "adapter.safetensors"))
    lora = {k: v for k, v in tensors.items() if ".lora_" in k}
    save_file({k: v for k, v in tensors.items() if k not in lora}, str(peft / "adapter.safetensors"))
    save_file({f"base_model.model.model.layers.{k.split('.')[1]}.self_attn.{k.split('.')[2]}."
               f"{k.split('.')[3]}.weight": v for k, v in lora.items()}, str(peft / "adapter_model.safetensors"))
    (peft / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}))
    (peft / "tptt_config.json").write_text(json.dumps({**raw, "lora": None}))
    m3 = ad.load_adapter(peft, hf, gguf_path=GGUF).double()
    with torch.no_grad():
        z, _ = m3(ids[:, :10])
    assert (y - z).abs().max() < 1e-9  # same files read two ways
    # score.token_logprobs agrees with the logits
    lp = token_logprobs(m2, ids[0, :10].tolist())
    assert lp[0] is None and abs(lp[3] - float(logprobs(y, ids[:, :10])[2])) < 1e-9


def _edit(src: Path, dst: Path, cfg_change=None, tensor_change=None):
    from safetensors.torch import load_file, save_file
    shutil.copytree(src, dst)
    if cfg_change:
        raw = json.loads((dst / "tptt_config.json").read_text())
        cfg_change(raw)
        (dst / "tptt_config.json").write_text(json.dumps(raw))
    if tensor_change:
        t = load_file(str(dst / "adapter.safetensors"))
        tensor_change(t)
        save_file(t, str(dst / "adapter.safetensors"))
    return dst


def test_mismatched_adapter_errors(base, tmp_path):
    hf, _ = base
    fp = ad.base_fingerprint(GGUF)
    good = tmp_path / "good"
    ad.save_adapter(random_model(hf, seed=4), good, base_model=fp)
    ad.load_adapter(good, hf, gguf_path=GGUF)  # sanity: loads

    def expect(dst, *fragments, **kw):
        with pytest.raises(ad.AdapterError) as e:
            ad.load_adapter(_edit(good, tmp_path / dst, **kw), hf, gguf_path=GGUF)
        for f in fragments:
            assert f in str(e.value), str(e.value)

    expect("fp", "base model", fp, cfg_change=lambda r: r.update(base_model=fp[:-4] + "beef"))
    expect("op", "unknown operator", "'mamba'", cfg_change=lambda r: r.update(operator="mamba"))
    expect("fm", "unknown feature_map", cfg_change=lambda r: r.update(feature_map="relu"))
    expect("fmt", "format", cfg_change=lambda r: r.update(format="tptt"))
    expect("shape", "layers.5.q_proj.lora_A", "shape [8, 500]", "expected [8, 576]",
           tensor_change=lambda t: t.update({"layers.5.q_proj.lora_A": torch.zeros(8, 500)}))
    expect("gate", "layers.29.gate.w_b", "shape", tensor_change=lambda t: t.update(
        {"layers.29.gate.w_b": torch.zeros(9, 575)}))
    expect("miss", "missing tensor", "layers.0.gate.c_a", tensor_change=lambda t: t.pop("layers.0.gate.c_a"))
    expect("pair", "missing tensor", "layers.0.v_proj.lora_B", tensor_change=lambda t: t.pop("layers.0.v_proj.lora_B"))
    expect("unk", "unknown tensor", tensor_change=lambda t: t.update({"layers.0.gate.w_c": torch.zeros(9)}))
    expect("range", "layers", cfg_change=lambda r: r.update(layers=[0, 5, 30]))
    expect("mu", "mu", cfg_change=lambda r: r.update(mu=1.5))
