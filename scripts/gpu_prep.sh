#!/usr/bin/env bash
# Companion of scripts/gpu_check.sh, run on a NETWORKED Debian 12 machine (a dev machine): prepares
# gpu_bundle/ (git-ignored; carried to the GPU host with the working tree, ~50 MB):
#   gpu_bundle/debs/      the Debian 12 .deb files of titand's C++ dependencies (apt-get download; never
#                         installed here or there: gpu_check.sh unpacks them with dpkg -x into a prefix)
#   gpu_bundle/wheels/    grpcio + protobuf wheels for the GPU host's Python (the live test's client)
#   gpu_bundle/tokenizer.json   SmolLM2's tokenizer (from the bundled GGUF), for the SmolLM2-shaped model
# Usage: scripts/gpu_prep.sh [PYTHON_VERSION of the GPU host, default 3.12]
set -euo pipefail
cd "$(dirname "$0")/.."
PYV=${1:-3.12}
OUT=gpu_bundle
mkdir -p "$OUT/debs" "$OUT/wheels"

# C++ build dependencies (headers, CMake packages, protoc + grpc_cpp_plugin) and their runtime libraries.
DEBS="libabsl-dev libabsl20220623 libicu-dev libicu72 nlohmann-json3-dev libgrpc++-dev libgrpc++1.51 libgrpc29
  libgrpc-dev protobuf-compiler-grpc libprotobuf-dev libprotobuf32 libprotoc32 protobuf-compiler prometheus-cpp-dev
  libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 libgtest-dev libgmock-dev libc-ares2 libc-ares-dev libre2-9
  libre2-dev libssl-dev zlib1g-dev libupb-dev"
if [ -z "$(ls "$OUT"/debs/*.deb 2>/dev/null)" ]; then
  apt-get update -qq >/dev/null 2>&1 || true
  (cd "$OUT/debs" && chmod 777 . && apt-get download -qq $DEBS)
fi

# The live test's Python client needs grpcio + protobuf + grpcio-tools (stubs) for the host's Python.
if [ -z "$(ls "$OUT"/wheels/*.whl 2>/dev/null)" ]; then
  .venv/bin/pip download -q --only-binary=:all: --python-version "$PYV" --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 -d "$OUT/wheels" \
    grpcio grpcio-tools protobuf
fi

# SmolLM2's tokenizer as tokenizer.json (transformers reads it from the GGUF; nothing from a hub).
if [ ! -s "$OUT/tokenizer.json" ]; then
  HF_HUB_OFFLINE=1 .venv/bin/python - "$OUT" <<'EOF'
import sys
from pathlib import Path
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained("models", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
tok.backend_tokenizer.save(str(Path(sys.argv[1]) / "tokenizer.json"))
EOF
fi
du -sh "$OUT"
echo "gpu_prep: ok -> $OUT (carry it: run(carry=[\"$OUT\"]) or copy it beside the checkout)"
