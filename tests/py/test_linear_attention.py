"""C++ linear-attention operators (via bin/linattn_tool) against the Python spec
tools/titand_ref/linear_attention.py, plus the Python chunked form against the Python recurrence."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

from titand_ref.linear_attention import (  # noqa: E402
    FEATURE_MAPS,
    OPERATORS,
    feature_map,
    linear_attention_chunked,
    linear_attention_recurrent,
)

BUILD = Path(os.environ.get("TITAND_BUILD_DIR", REPO / "build"))
TOOL = BUILD / "bin" / "linattn_tool"
LENGTHS = (1, 2, 63, 64, 65, 127, 1000)
CHUNKS = (1, 16, 64)
H, D, DV = 2, 16, 8
STATE_LENGTHS = (2, 65, 127)  # cases that start from a non-zero state


def make_inputs(fm: str, op: str, t: int, seed: int) -> dict:
    """Realistic raw inputs: q, k pre-phi (the tool and the reference both apply phi), beta and
    alpha in (0, 1) from a sigmoid. For elu (unnormalised k) the delta forms need b ||k||^2 < 2 to
    stay contractive, so beta is additionally divided by max(1, ||phi(k_t)||^2) there."""
    g = torch.Generator().manual_seed(seed)
    x = {
        "q": torch.randn(H, t, D, generator=g),
        "k": torch.randn(H, t, D, generator=g),
        "v": torch.randn(H, t, DV, generator=g),
        "beta": torch.sigmoid(torch.randn(H, t, generator=g)),
        "alpha": torch.sigmoid(torch.randn(H, t, generator=g) + 2.0),
    }
    if fm == "elu" and op in ("delta", "gated_delta"):
        knorm2 = feature_map("elu", x["k"].double()).pow(2).sum(-1)
        x["beta"] = (x["beta"].double() / knorm2.clamp_min(1.0)).float()
    if t in STATE_LENGTHS:
        x["state"] = 0.3 * torch.randn(H, D, DV, generator=g)
    return x


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1.0)).item()


def load(path: Path, shape) -> torch.Tensor:
    return torch.from_numpy(np.fromfile(path, dtype="<f4").reshape(shape).copy())


@pytest.fixture(scope="module")
def tool_run(tmp_path_factory):
    if not TOOL.exists():
        pytest.fail(f"{TOOL} not found: build it with `cmake --build <build> --target linattn_tool` "
                    "and set TITAND_BUILD_DIR")
    root = tmp_path_factory.mktemp("linattn")
    out = root / "out"
    out.mkdir()
    cases, inputs = [], {}
    seed = 0
    specs = [(op, fm, t, "float32") for op in OPERATORS for fm in FEATURE_MAPS for t in LENGTHS]
    specs += [(op, "tptt", t, "bfloat16") for op in OPERATORS for t in (65, 1000)]
    for op, fm, t, dtype in specs:
        seed += 1
        name = f"{op}_{fm}_T{t}_{dtype}"
        x = make_inputs(fm, op, t, seed)
        files = {}
        for key, val in x.items():
            fname = f"{name}.{key}.bin"
            val.float().numpy().astype("<f4").tofile(root / fname)
            files[key] = fname
        cases.append({"name": name, "op": op, "feature_map": fm, "dtype": dtype, "H": H, "T": t,
                      "d": D, "dv": DV, "chunk_sizes": list(CHUNKS), "inputs": files})
        inputs[name] = (op, fm, t, dtype, x)
    (root / "manifest.json").write_text(json.dumps({"cases": cases}))
    proc = subprocess.run([str(TOOL), str(root / "manifest.json"), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"linattn_tool failed: {proc.stderr}"
    return out, inputs


def test_tool_matches_reference(tool_run):
    out, inputs = tool_run
    failures = []
    for name, (op, fm, t, dtype, x) in inputs.items():
        phi_q = load(out / f"{name}.phi_q.bin", (H, t, D))
        phi_k = load(out / f"{name}.phi_k.bin", (H, t, D))
        if dtype == "float32":
            ref_q, ref_k = feature_map(fm, x["q"].double()), feature_map(fm, x["k"].double())
            if rel_err(phi_q, ref_q) > 1e-6 or rel_err(phi_k, ref_k) > 1e-6:
                failures.append(f"{name}: feature map")
            rnd = lambda z: z  # noqa: E731
            tol = 1e-4
        else:
            # bf16: the reference runs on the same bf16-rounded inputs; outputs are bf16.
            ref_q, ref_k = phi_q, phi_k
            rnd = lambda z: z.bfloat16().float()  # noqa: E731
            tol = 2e-2
        ref_o, ref_s = linear_attention_recurrent(op, ref_q, ref_k, rnd(x["v"]), rnd(x["beta"]),
                                                  rnd(x["alpha"]), x.get("state"))
        assert torch.isfinite(ref_o).all(), name
        runs = [("rec", "rec")] + [(f"chunk{c}", f"chunk{c}") for c in CHUNKS]
        for label, stem in runs:
            o = load(out / f"{name}.{stem}.o.bin", (H, t, DV))
            s = load(out / f"{name}.{stem}.state.bin", (H, D, DV))
            eo, es = rel_err(o, ref_o), rel_err(s, ref_s)
            # The state is fp32 in C++ even for bf16 inputs.
            if eo > tol or es > (1e-4 if dtype == "float32" else 1e-3):
                failures.append(f"{name} {label}: o err {eo:.2e}, state err {es:.2e}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("op", OPERATORS)
def test_python_chunked_matches_recurrent(op):
    for t in LENGTHS:
        x = make_inputs("tptt", op, t, 500 + t)
        q, k = feature_map("tptt", x["q"]), feature_map("tptt", x["k"])
        ref_o, ref_s = linear_attention_recurrent(op, q, k, x["v"], x["beta"], x["alpha"],
                                                  x.get("state"))
        for c in CHUNKS:
            o, s = linear_attention_chunked(op, q, k, x["v"], x["beta"], x["alpha"],
                                            x.get("state"), c)
            assert rel_err(o, ref_o) < 1e-4, (op, t, c)
            assert rel_err(s, ref_s) < 1e-4, (op, t, c)


def test_python_chunked_gradients():
    torch.manual_seed(0)
    t, c = 7, 3  # two full chunks and a partial one

    def unit(shape):
        return feature_map("tptt", torch.randn(*shape, dtype=torch.float64)).requires_grad_()

    q, k = unit((1, t, 4)), unit((1, t, 4))
    v = torch.randn(1, t, 3, dtype=torch.float64, requires_grad=True)
    b = torch.sigmoid(torch.randn(1, t, dtype=torch.float64)).requires_grad_()
    a = torch.sigmoid(torch.randn(1, t, dtype=torch.float64)).requires_grad_()
    s0 = torch.randn(1, 4, 3, dtype=torch.float64, requires_grad=True)
    for op in OPERATORS:
        fn = lambda *args: linear_attention_chunked(op, *args, c)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (q, k, v, b, a, s0), fast_mode=True), op


def test_feature_maps_formulas():
    x = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    silu = x * torch.sigmoid(x)
    n = silu.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    assert torch.allclose(feature_map("tptt", x), silu / n)
    assert torch.allclose(feature_map("elu", x), torch.where(x > 0, x, x.exp() - 1) + 1)
    assert torch.allclose(feature_map("identity", x), x / x.norm(dim=-1, keepdim=True).clamp_min(1e-6))
    with pytest.raises(ValueError):
        feature_map("relu", x)
