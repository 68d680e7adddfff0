#!/usr/bin/env bash
# Installs what is missing (scripts/setup.sh) and builds everything into build/ (binaries in build/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fetch_corpus.sh
JOBS=${TITAND_JOBS:-$(nproc)}
LAUNCHER=()
if command -v ccache >/dev/null 2>&1; then
  # Object cache shared by checkouts of this repo (paths are made relative to the checkout's root).
  export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
  LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "${LAUNCHER[@]}" >/dev/null
cmake --build build -j"$JOBS"
echo "build: ok (build/bin: $(ls build/bin | tr '\n' ' '))"
