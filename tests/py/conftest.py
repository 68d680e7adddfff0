"""Shared fixtures for the Python test tier: repo paths, built binaries, the bundled model, HF references."""
import functools
import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("TITAND_BUILD_DIR", REPO / "build"))
BIN = BUILD / "bin"
MODEL = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
# The file's weights exactly, as float: what comparisons with an independent reference (Transformers, the
# Python reference) and the split/restore invariances need. The front ends default to --weights auto, whose
# int4/int8 kernels are tested on their own (test_quantized_weights.py, tests/unit/model/).
EXACT_WEIGHTS = ("--weights", "dtype")


def binary(name: str) -> Path:
    p = BIN / name
    if not p.exists():
        pytest.fail(f"{p} is missing: build the project first (scripts/build.sh)")
    return p


def run_json(args, **kw):
    """Runs a binary that prints one JSON document; fails the test with its stderr on error."""
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} exited {r.returncode}: {r.stderr.strip()[-2000:]}")
    return json.loads(r.stdout)


@pytest.fixture(scope="session")
def model_path() -> Path:
    if not MODEL.exists():
        pytest.fail(f"bundled model {MODEL} is missing: run scripts/setup.sh")
    return MODEL


@functools.lru_cache(maxsize=None)
def hf_gguf_model(dtype: str = "float32"):
    """Transformers' own model from the bundled GGUF (dequantised): the independent reference."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(2)
    m = AutoModelForCausalLM.from_pretrained(
        str(MODEL.parent), gguf_file=MODEL.name, dtype=getattr(torch, dtype))
    m.eval()
    return m


@functools.lru_cache(maxsize=None)
def hf_gguf_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(MODEL.parent), gguf_file=MODEL.name)


@pytest.fixture(scope="session")
def hf_smollm_chat():
    """Transformers' tokenizer (with its chat template) of the bundled GGUF, with SmolLM2's published
    pre-tokenizer (see test_tokenizer.py). Session-scoped: loading it from the GGUF takes ~25 s here."""
    from tokenizers import pre_tokenizers
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(MODEL.parent), gguf_file=MODEL.name)
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    return tok


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (skipped without one); run by scripts/gpu_check.sh")
