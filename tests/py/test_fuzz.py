"""Issue 11 item 10: builds the libFuzzer targets (fuzz/, clang, ASan + UBSan) into build-fuzz/ and runs
each for a few seconds from the committed seed corpus (fuzz/corpus/<target>, copied: the run's new
inputs never touch the checkout). Any crash, sanitizer report, leak, timeout or escaping exception fails.
Longer runs: docs/fuzzing.md. Skipped (with the reason) only when clang is not installed."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("TITAND_FUZZ_BUILD_DIR", REPO / "build-fuzz"))
SECONDS = int(os.environ.get("TITAND_FUZZ_SECONDS", "4"))
TARGETS = ["fuzz_gguf", "fuzz_safetensors", "fuzz_adapter_config", "fuzz_snapshot", "fuzz_tokenizer",
           "fuzz_sampling_params"]


@pytest.fixture(scope="module")
def built():
    if not shutil.which("clang++"):
        pytest.skip("clang++ not installed (scripts/setup.sh installs clang + libclang-rt-dev)")
    cfg = ["cmake", "-S", str(REPO / "fuzz"), "-B", str(BUILD), "-G", "Ninja", "-DCMAKE_CXX_COMPILER=clang++"]
    if shutil.which("ccache"):
        cfg.append("-DCMAKE_CXX_COMPILER_LAUNCHER=ccache")
    env = dict(os.environ, CCACHE_BASEDIR=str(REPO), CCACHE_NOHASHDIR="1")
    for cmd in (cfg, ["ninja", "-C", str(BUILD), f"-j{os.environ.get('TITAND_JOBS', '2')}", *TARGETS]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
        assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return BUILD


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target_short_run(built, target, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(REPO / "fuzz" / "corpus" / target, corpus)
    n_seeds = len(list(corpus.iterdir()))
    assert n_seeds > 0
    r = subprocess.run([str(built / target), f"-max_total_time={SECONDS}", "-timeout=20", "-rss_limit_mb=4096",
                        "-max_len=4096", f"-artifact_prefix={tmp_path}/", str(corpus)],
                       capture_output=True, text=True, timeout=SECONDS + 240, cwd=tmp_path)
    tail = r.stderr[-4000:]
    assert r.returncode == 0, f"{target} found a problem (artifact in {tmp_path}):\n{tail}"
    assert "Done " in tail, tail  # libFuzzer's summary: it really ran
    runs = int(tail.rsplit("Done ", 1)[1].split()[0])
    assert runs > n_seeds, tail
