"""The TPTT trainer (tools/train_tptt.py) and the quality harness (bench/eval_harness.py), issue 12.

- an interrupted run (--stop-after) continued with --resume ends with exactly the weights of an uninterrupted
  run (optimizer, batch sampler, dropout RNG and learning-rate schedule all restored), and both JSON logs
  say what happened;
- the stage-2 distillation loss is (1 - w) CE + w T^2 KL(teacher || student), checked against the KL summed
  by hand in float64; with nothing converted (student == teacher) the KL term is zero;
- the harness's pass-key prompts have the asked length, state the gold key once before the filler, and its
  perplexity through titan-run equals the Python reference's on the same window.
Sizes are tiny (2 converted layers, 24-token sequences): these check the machinery, not the quality.
"""
import json
import math
import sys

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from conftest import BIN, MODEL, REPO

sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO / "bench"))
import train_tptt  # noqa: E402
from titand_ref.tptt_model import LoraSpec, TPTTConfig, TPTTModel, load_base  # noqa: E402

TINY = ["--model", str(MODEL), "--layers", "0,15", "--window", "8", "--sinks", "2", "--stage1-seq", "24",
        "--seq", "24", "--stage1-steps", "2", "--stage2-steps", "4", "--train-tokens", "4000", "--eval-ctx", "32",
        "--eval-windows", "1", "--chunk-size", "8", "--lora-r", "2", "--log-every", "1", "--ckpt-every", "0",
        "--no-progress", "--distill-weight", "0.5", "--minutes", "1000", "--threads", "2", "--seed", "3"]


def events(out):
    return [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert train_tptt.main(TINY + ["--out", str(a)]) == 0
    # Stop after both stage-1 steps and one stage-2 step: nothing is written but the checkpoint.
    assert train_tptt.main(TINY + ["--out", str(b), "--stop-after", "3"]) == 0
    assert (b / "checkpoint.pt").exists() and not (b / "adapter.safetensors").exists()
    ck = torch.load(b / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert (ck["stage"], ck["step"], ck["done"]) == ("stage2", 1, False)
    assert train_tptt.main(TINY + ["--out", str(b), "--resume"]) == 0

    wa, wb = load_file(a / "adapter.safetensors"), load_file(b / "adapter.safetensors")
    assert wa.keys() == wb.keys() and len(wa) > 0
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs after resume"
    ra, rb = json.loads((a / "report.json").read_text()), json.loads((b / "report.json").read_text())
    assert ra["stage1"]["steps"] == rb["stage1"]["steps"] == 2
    assert ra["stage2"]["steps"] == rb["stage2"]["steps"] == 4

    ea, eb = events(a), events(b)
    steps = lambda ev: [(r["stage"], r["step"]) for r in ev if "loss" in r]
    assert steps(ea) == [("stage1", 1), ("stage1", 2), ("stage2", 1), ("stage2", 2), ("stage2", 3), ("stage2", 4)]
    assert steps(eb) == steps(ea)  # each step logged once: the resumed run starts at stage-2 step 2
    assert [r["loss"] for r in eb if "loss" in r] == [r["loss"] for r in ea if "loss" in r]
    assert [r["event"] for r in eb if "event" in r] == ["start", "stopped", "resume", "done"]
    assert all(math.isfinite(r["loss"]) and r["lr"] >= 0 for r in ea if "loss" in r)


def test_mu_learning_rate_is_its_own(tmp_path):
    """--mu-lr gives the mu logits their own stage-2 learning rate: 0 leaves every mu at its initial value
    while the rest trains; a large one moves mu by far more than --lr could in 4 steps (< 1e-4)."""
    runs = {}
    for mu_lr in ("0", "0.5"):
        out = tmp_path / mu_lr
        assert train_tptt.main(TINY + ["--stage1-steps", "0", "--mu-lr", mu_lr, "--out", str(out)]) == 0
        cfg = json.loads((out / "tptt_config.json").read_text())
        runs[mu_lr] = (torch.tensor(cfg["mu"]), load_file(out / "adapter.safetensors"))
    still, moved = runs["0"][0], runs["0.5"][0]
    assert still.numel() > 0 and torch.allclose(still, torch.full_like(still, 0.01), rtol=0, atol=1e-7)
    assert (moved - 0.01).abs().max() > 1e-3
    lora_b = [v for k, v in runs["0"][1].items() if "lora_B" in k]
    assert lora_b and any(v.abs().max() > 0 for v in lora_b)  # the rest did train (LoRA B starts at 0)


def test_init_adapter_continues_from_a_trained_adapter(tmp_path):
    """--init-adapter: the adapter's conversion and weights are the start (stage 1 skipped). Zero further
    steps write the same adapter back bit for bit; two steps at a longer --seq move the LoRA but keep the
    conversion; --window changes only the window; a flag that would change a tensor's shape is refused."""
    a, same, more = tmp_path / "a", tmp_path / "same", tmp_path / "more"
    assert train_tptt.main(TINY + ["--out", str(a)]) == 0
    cont = [x for x in TINY]
    for flag in ("--layers", "--window", "--sinks", "--stage1-seq", "--stage1-steps", "--lora-r"):
        i = cont.index(flag)
        del cont[i:i + 2]
    assert train_tptt.main(cont + ["--init-adapter", str(a), "--stage2-steps", "0", "--out", str(same)]) == 0
    wa, ws = load_file(a / "adapter.safetensors"), load_file(same / "adapter.safetensors")
    assert wa.keys() == ws.keys() and all(torch.equal(wa[k], ws[k]) for k in wa)
    ca, cs = (json.loads((x / "tptt_config.json").read_text()) for x in (a, same))
    assert cs["mu"] == ca["mu"]
    assert (cs["window"], cs["sinks"], cs["layers"]) == (ca["window"], ca["sinks"], ca["layers"])
    rs = json.loads((same / "report.json").read_text())
    assert rs["stage1"] == {"steps": 0, "skipped": "--init-adapter"} and rs["init_adapter"]["folder"] == str(a)

    assert train_tptt.main(cont + ["--init-adapter", str(a), "--seq", "40", "--stage2-steps", "2",
                                   "--window", "12", "--out", str(more)]) == 0
    wm = load_file(more / "adapter.safetensors")
    assert wm.keys() == wa.keys()
    assert any(not torch.equal(wm[k], wa[k]) for k in wm if "lora_B" in k)
    cm = json.loads((more / "tptt_config.json").read_text())
    assert (cm["window"], cm["sinks"], cm["layers"]) == (12, ca["sinks"], ca["layers"])
    assert [r["step"] for r in events(more) if r.get("stage") == "stage2"] == [1, 2]
    assert json.loads((more / "report.json").read_text())["init_adapter"]["changed"] == {"window": 12}

    with pytest.raises(SystemExit, match="was trained with --init-adapter changes"):  # another window on resume
        train_tptt.main(cont + ["--init-adapter", str(a), "--seq", "40", "--stage2-steps", "2", "--window", "10",
                                "--out", str(more), "--resume"])
    for bad in (["--lora-r", "4"], ["--stage1-steps", "3"], ["--out", str(a)]):  # argparse's usage error
        with pytest.raises(SystemExit) as e:
            train_tptt.main(cont + ["--init-adapter", str(a), "--out", str(tmp_path / "x"), *bad])
        assert e.value.code == 2
    with pytest.raises(SystemExit, match="no such adapter folder"):
        train_tptt.main(cont + ["--init-adapter", str(tmp_path / "none"), "--out", str(tmp_path / "y")])
    with pytest.raises(SystemExit, match="sinks must be"):
        train_tptt.main(cont + ["--init-adapter", str(a), "--sinks", "-1", "--out", str(tmp_path / "z")])
    assert not (tmp_path / "y").exists() and not (tmp_path / "z").exists()  # nothing written on a refusal


def test_resume_without_checkpoint_fails_clearly(tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        train_tptt.main(TINY + ["--out", str(tmp_path / "none"), "--resume"])


@pytest.fixture(scope="module")
def base():
    torch.set_num_threads(2)
    model, tok = load_base(MODEL)
    return model.eval(), tok


def test_distillation_loss_is_ce_plus_kl_to_the_base_model(base):
    torch.manual_seed(0)
    ids = torch.randint(0, 49152, (2, 17))
    m = TPTTModel(base[0], TPTTConfig(layers=[1, 7, 20], window=4, sinks=1, operator="gated_delta",
                                      lora=LoraSpec(r=2, alpha=4, dropout=0.0))).eval()
    with torch.no_grad():
        for _, _, mod in m.lora_modules():
            mod.lora_B.normal_(0, 0.02)  # a student that differs from its teacher
        student, _ = m(ids[:, :-1], chunk_size=4)
        teacher, _ = m(ids[:, :-1], plain=True)
        T = 2.0
        ps = F.log_softmax(student.double() / T, -1).reshape(-1, student.shape[-1])
        pt = F.log_softmax(teacher.double() / T, -1).reshape(-1, teacher.shape[-1])
        kl = (pt.exp() * (pt - ps)).sum(-1).mean() * T * T  # per token, mean over the B x T tokens
        ce = F.cross_entropy(student.reshape(-1, student.shape[-1]), ids[:, 1:].reshape(-1))
        assert kl > 1e-3
        for w in (0.0, 0.3, 1.0):
            got = train_tptt.lm_loss(m, ids, 4, distill_weight=w, distill_temp=T)
            assert float(got) == pytest.approx((1 - w) * float(ce) + w * float(kl), rel=1e-4, abs=1e-5)
        same = TPTTModel(base[0], TPTTConfig(layers=[], window=None)).eval()  # nothing converted: student = teacher
        assert abs(float(train_tptt.lm_loss(same, ids, 4, distill_weight=1.0))) < 1e-5


def test_memory_prompts_state_the_key_once_and_have_the_asked_length(base):
    import eval_harness
    tok = base[1]
    filler = list(range(1000, 9000))
    items = eval_harness.memory_items(tok, filler, 300, trials=4, seed=1)
    assert len(items) == 4
    for prefix, conts, texts, gold, control in items:
        assert len(prefix) == 300 and len(conts) == len(texts) == 5 and 0 <= gold < 5
        key = texts[gold].strip()
        head = tok.decode(prefix[:60])
        assert head.count(key) == 2 and all(t.strip() not in head for i, t in enumerate(texts) if i != gold)
        assert tok.decode(prefix[-12:]).endswith("What is the pass key? The pass key is")
        # The control: same length, no key, identical except where the key sentence was.
        assert len(control) == 300 and key not in tok.decode(control)
        diff = [i for i in range(300) if control[i] != prefix[i]]
        assert diff and diff[0] > 10 and diff[-1] < 60


def test_memory_control_measures_what_the_key_adds(base):
    """Scored against the same prompt without the key sentence, the base model (which sees the key) prefers
    the true key by a wide log-likelihood margin in every trial."""
    import eval_harness
    tok = base[1]
    filler = eval_harness.heldout_stream(tok, 4000)
    items = eval_harness.memory_items(tok, filler, 400, trials=3, seed=3)
    run = eval_harness.Runner(BIN / "titan-run", MODEL, 2)
    full = eval_harness.memory_scores(run, [], items)
    assert full["acc_vs_prior"] == 1.0 and full["gain"] > 2.0 and full["gain_se"] < full["gain"] / 2


def test_harness_perplexity_equals_the_python_reference(base):
    import eval_harness
    model, tok = base
    ids = tok("The sliding window handles the recent tokens exactly, while the memory carries the rest; "
              "the key is stated once and asked for much later.").input_ids
    run = eval_harness.Runner(BIN / "titan-run", MODEL, 2)
    got = eval_harness.perplexity(run, [], [ids])
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, :-1]
    want = math.exp(F.cross_entropy(logits, torch.tensor(ids[1:])).item())
    assert got == pytest.approx(want, rel=2e-3)


def test_zero_shot_differences_are_paired_per_document():
    """The harness compares each configuration with base on the same documents: mean difference and the
    paired standard error (statistics.stdev of the differences / sqrt(n)), in the Markdown table."""
    import statistics

    import eval_harness
    a, b = [1, 1, 0, 0, 1, 1], [1, 0, 0, 1, 0, 1]
    d = [x - y for x, y in zip(a, b)]
    mean, se = eval_harness.paired_difference(a, b)
    assert mean == pytest.approx(sum(d) / 6) and se == pytest.approx(statistics.stdev(d) / math.sqrt(6))
    assert eval_harness.paired_difference(a, a) == (0.0, 0.0)
    with pytest.raises(ValueError):
        eval_harness.paired_difference(a, b[:-1])
    res = {"configs": {"base": {"t acc (n=6)": 4 / 6}, "adapter": {"t acc (n=6)": 4 / 6}}, "measures": ["t acc (n=6)"],
           "docs": {"base": {"t": {"acc": b, "acc_norm": b}}, "adapter": {"t": {"acc": a, "acc_norm": b}}}}
    md = eval_harness.markdown(res)
    assert f"| t acc - base, points (n=6) | - | {100 * mean:+.1f} +- {100 * se:.1f} |" in md
    assert "| t acc_norm - base, points (n=6) | - | +0.0 +- 0.0 |" in md
    assert eval_harness.markdown({**res, "window": 512}).startswith("| measure | base | adapter (W 512) |")
