"""titand's GGUF / safetensors readers (through bin/gguf_dump) against gguf-py, transformers and the
safetensors package.

Run: TITAND_BUILD_DIR=<build> /work/main/.venv/bin/python -m pytest tests/py/test_weights.py
"""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import gguf
from gguf import GGMLQuantizationType as QT
from gguf import GGUFValueType as VT

REPO = Path(__file__).parents[2]
BUILD = Path(os.environ.get("TITAND_BUILD_DIR", REPO / "build"))
DUMP = BUILD / "bin" / "gguf_dump"
MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def dump_bin():
    if not DUMP.is_file():
        pytest.fail(f"{DUMP} is missing: build the gguf_dump target (TITAND_BUILD_DIR={BUILD})")
    return str(DUMP)


def run_dump(*args):
    r = subprocess.run([dump_bin(), *map(str, args)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"gguf_dump {args} failed: {r.stderr}"
    return r.stdout


def assert_close(got, want, what):
    """max |got - want| <= 1e-6 * max(1, |want|) elementwise, shapes equal."""
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    want = want.astype(np.float32)
    tol = 1e-6 * np.maximum(1.0, np.abs(want))
    bad = np.abs(got - want) > tol
    assert not bad.any(), f"{what}: {bad.sum()} of {want.size} values differ, e.g. {got[bad][:4]} vs {want[bad][:4]}"


@pytest.fixture(scope="module")
def smollm2_reader():
    """gguf-py's view of the bundled model (parsing its vocabulary takes seconds: do it once)."""
    return gguf.GGUFReader(str(MODEL))


def compare_gguf(path, outdir, reader, expect_types=None):
    """Dumps `path` with gguf_dump, compares every tensor with gguf-py, deleting each .bin once checked."""
    outdir.mkdir(exist_ok=True)
    run_dump(path, outdir)
    index = json.loads((outdir / "index.json").read_text())
    by_name = {t["name"]: t for t in index["tensors"]}
    assert len(by_name) == len(reader.tensors)
    seen = set()
    for rt in reader.tensors:
        entry = by_name[rt.name]
        assert entry["type"] == rt.tensor_type.name, rt.name
        assert entry["ggml_shape"] == [int(d) for d in rt.shape], rt.name
        ref = gguf.quants.dequantize(rt.data, rt.tensor_type)
        ref = ref.reshape([int(d) for d in reversed(rt.shape)])
        binf = outdir / entry["file"]
        got = np.fromfile(binf, dtype="<f4").reshape(entry["shape"])
        binf.unlink()
        assert_close(got, ref, rt.name)
        seen.add(rt.tensor_type.name)
    if expect_types is not None:
        assert seen == expect_types
    return index


def test_smollm2_every_tensor_matches_gguf_py(tmp_path, smollm2_reader):
    index = compare_gguf(str(MODEL), tmp_path / "smollm2", smollm2_reader)
    assert index["version"] == 3
    assert len(index["tensors"]) == 272  # 30 layers x 9 + token_embd + output_norm


def hf_reverse_permute(w, n_head):
    """transformers' LlamaTensorProcessor._reverse_permute_weights (GGUF q/k rows -> HF order):
    rows of each head, viewed as [dim/2, 2], are transposed to [2, dim/2]. (Importing transformers
    itself costs ~10 s, so its one-line formula is restated here.)"""
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


def test_unpermute_qk_matches_transformers(tmp_path, smollm2_reader):
    """UnpermuteQK on layer 0's q/k (9 q heads, 3 kv heads) equals transformers' GGUF loader."""
    out = tmp_path / "qk"
    out.mkdir()
    run_dump(MODEL, out, "--filter", "blk.0.attn_", "--unpermute-qk")
    index = json.loads((out / "index.json").read_text())
    ref_t = {t.name: t for t in smollm2_reader.tensors}
    heads = {"attn_q.weight": 9, "attn_k.weight": 3}
    names = {t["name"] for t in index["tensors"]}
    assert {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"} <= names
    for entry in index["tensors"]:
        rt = ref_t[entry["name"]]
        w = gguf.quants.dequantize(rt.data, rt.tensor_type).reshape(entry["shape"])
        n_head = next((h for suffix, h in heads.items() if entry["name"].endswith(suffix)), None)
        hf = w if n_head is None else hf_reverse_permute(w, n_head)
        got = np.fromfile(out / entry["file"], dtype="<f4").reshape(entry["shape"])
        assert_close(got, hf, entry["name"])
        if entry["name"].endswith(("attn_q.weight", "attn_k.weight")):
            assert not np.array_equal(got, w), "permutation should move rows"


# Byte offsets of the f16 scale fields inside one block, per quantised type.
F16_FIELDS = {QT.Q4_0: [0], QT.Q4_1: [0, 2], QT.Q5_0: [0], QT.Q5_1: [0, 2], QT.Q8_0: [0],
              QT.IQ4_NL: [0], QT.Q4_K: [0, 2], QT.Q5_K: [0, 2], QT.Q6_K: [208]}


def finite_f16_bits(rng, n):
    """Random fp16 bit patterns (subnormals included), never inf/NaN."""
    h = rng.integers(0, 1 << 16, size=n, dtype=np.uint16)
    exp_all_ones = (h & 0x7C00) == 0x7C00
    h[exp_all_ones] &= np.uint16(0xBFFF)  # clear the exponent's top bit
    return h


def random_tensor(rng, qtype, rows, cols):
    """Random but valid raw data for `qtype`: uint8 [rows, bytes] with finite f16 scales."""
    block, bbytes = gguf.GGML_QUANT_SIZES[qtype]
    nblk = rows * cols // block
    raw = rng.integers(0, 256, size=(nblk, bbytes), dtype=np.uint8)
    for off in F16_FIELDS[qtype]:
        raw[:, off:off + 2] = finite_f16_bits(rng, nblk).view(np.uint8).reshape(nblk, 2)
    return raw.reshape(rows, cols // block * bbytes)


def test_synthetic_every_type_matches_gguf_py(tmp_path):
    rng = np.random.default_rng(1234)
    path = tmp_path / "all_types.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor("f32", rng.standard_normal((2, 3, 64)).astype(np.float32))
    w.add_tensor("f16", finite_f16_bits(rng, 4 * 96).view(np.float16).reshape(4, 96))
    bf = (rng.standard_normal(5 * 64).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    w.add_tensor("bf16", bf.view(np.uint8).reshape(5, 128), raw_dtype=QT.BF16)
    for qtype in F16_FIELDS:
        block = gguf.GGML_QUANT_SIZES[qtype][0]
        w.add_tensor(qtype.name.lower(), random_tensor(rng, qtype, 3, 2 * block), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    expect = {"F32", "F16", "BF16"} | {q.name for q in F16_FIELDS}
    compare_gguf(str(path), tmp_path / "all_types", gguf.GGUFReader(str(path)), expect_types=expect)


SCALARS = [  # (kind, sample values for an array, one scalar)
    (VT.UINT8, [0, 255], 200), (VT.INT8, [-128, 127], -5), (VT.UINT16, [0, 65535], 65000),
    (VT.INT16, [-32768, 32767], -300), (VT.UINT32, [0, 2**32 - 1], 4000000000),
    (VT.INT32, [-2**31, 2**31 - 1], -7), (VT.FLOAT32, [0.1, -1.5e30], 3.25),
    (VT.BOOL, [True, False], True), (VT.STRING, ["", "h\u00e9llo \u4e16"], "tok\u00e9n"),
    (VT.UINT64, [0, 2**64 - 1], 2**63 + 5), (VT.INT64, [-2**63, 2**63 - 1], -2**40),
    (VT.FLOAT64, [1e-300, -2.5e300], 0.1),
]


def expected_scalar(kind, v):
    return float(np.float32(v)) if kind == VT.FLOAT32 else v


def test_metadata_all_value_types_round_trip(tmp_path):
    path = tmp_path / "meta.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_custom_alignment(64)
    for kind, arr, scalar in SCALARS:
        w.add_key_value(f"s.{kind.name}", scalar, kind)
        w.add_key_value(f"a.{kind.name}", arr, VT.ARRAY, sub_type=kind)
    w.add_key_value("nested", [[1, 2], [3]], VT.ARRAY)  # inner arrays: INT32 (gguf-py's default)
    w.add_key_value("nested_str", [["a"], ["b", "c"]], VT.ARRAY)
    w.add_tensor("t", np.arange(64, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    meta = json.loads(run_dump("--meta", path))
    assert meta["general.architecture"] == {"type": "STRING", "value": "llama"}
    assert meta["general.alignment"] == {"type": "UINT32", "value": 64}
    for kind, arr, scalar in SCALARS:
        assert meta[f"s.{kind.name}"] == {"type": kind.name, "value": expected_scalar(kind, scalar)}
        assert meta[f"a.{kind.name}"] == {"type": "ARRAY", "elem_type": kind.name,
                                          "value": [expected_scalar(kind, v) for v in arr]}
    inner = lambda t, vs: {"type": "ARRAY", "elem_type": t, "value": vs}
    assert meta["nested"] == {"type": "ARRAY", "elem_type": "ARRAY",
                              "value": [inner("INT32", [1, 2]), inner("INT32", [3])]}
    assert meta["nested_str"]["value"] == [inner("STRING", ["a"]), inner("STRING", ["b", "c"])]
    # Independent check: the same keys and types as gguf-py's reader sees.
    reader = gguf.GGUFReader(str(path))
    keys = [k for k in reader.fields if not k.startswith("GGUF.")]
    assert list(meta) == keys
    for k in keys:
        assert meta[k]["type"] == reader.fields[k].types[0].name, k
    # The tensor after a 64-byte-aligned data section still reads.
    out = tmp_path / "meta_t"
    out.mkdir()
    idx = json.loads(run_dump(path, out) or (out / "index.json").read_text())
    assert idx["alignment"] == 64
    assert np.array_equal(np.fromfile(out / "t0.bin", dtype="<f4"), np.arange(64, dtype=np.float32))


def test_smollm2_metadata_matches_gguf_py(smollm2_reader):
    meta = json.loads(run_dump("--meta", MODEL))
    for k, f in smollm2_reader.fields.items():
        if k.startswith("GGUF."):
            continue
        want = f.contents()
        got = meta[k]["value"]
        if f.types[0] == VT.FLOAT32:
            want = float(np.float32(want))
        assert got == want, k
    assert meta["llama.attention.head_count"]["value"] == 9
    assert len(meta["tokenizer.ggml.tokens"]["value"]) == 49152


def test_safetensors_from_python_package(tmp_path):
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    tensors = {
        "f32": torch.randn(3, 5, generator=g),
        "f16": (torch.randn(7, 2, generator=g) * 100).half(),
        "bf16": (torch.randn(4, 4, 2, generator=g) * 1e-3).bfloat16(),
        "scalar": torch.tensor(2.5),
        "f16_special": torch.tensor([6e-8, -65504.0, 1e-5, 0.0], dtype=torch.float16),
    }
    path = tmp_path / "x.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt", "note": "h\u00e9"})
    out = tmp_path / "st"
    out.mkdir()
    run_dump("--safetensors", path, out)
    index = json.loads((out / "index.json").read_text())
    assert index["metadata"] == {"format": "pt", "note": "h\u00e9"}
    assert {t["name"] for t in index["tensors"]} == set(tensors)
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
    for entry in index["tensors"]:
        ref = tensors[entry["name"]]
        assert entry["type"] == names[ref.dtype]
        assert entry["shape"] == list(ref.shape)
        got = np.fromfile(out / entry["file"], dtype="<f4").reshape(entry["shape"])
        assert np.array_equal(got, ref.float().numpy()), entry["name"]  # conversions are exact


def test_malformed_file_reports_path(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(MODEL.read_bytes()[:5000])
    r = subprocess.run([dump_bin(), str(bad), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode != 0
    assert "DATA_LOSS" in r.stderr and str(bad) in r.stderr
