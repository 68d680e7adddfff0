#!/usr/bin/env bash
# Installs what is missing (scripts/setup.sh) and builds everything into build/ (binaries in build/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fetch_corpus.sh
JOBS=${TITAND_JOBS:-$(nproc)}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$JOBS"
echo "build: ok (build/bin: $(ls build/bin | tr '\n' ' '))"
