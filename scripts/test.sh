#!/usr/bin/env bash
# Runs every test: GoogleTest units (ctest) and the Python tier (references + live binaries).
# Usage: scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
export TITAND_BUILD_DIR="$PWD/build"
export PYTHONPATH="$PWD/tools:$PWD/client/python${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
echo "== unit tests (ctest)"
ctest --test-dir build --output-on-failure -j2 -LE gpu
echo "== python tests (pytest)"
.venv/bin/python -m pytest -q -p no:cacheprovider tests/py "$@"
