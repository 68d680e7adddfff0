#!/usr/bin/env bash
# Collects what the runtime image needs into OUT (run in the build stage, at the checkout's root):
#   OUT/bin                      titand, titanctl, titan-run
#   OUT/lib/site-packages/       the torch wheel's package (LibTorch libs) and, for a CUDA wheel, the
#                                nvidia-* packages its libraries load (their relative RPATHs stay valid)
#   OUT/models, OUT/adapters     the bundled model and TPTT adapter
#   OUT/runtime-packages.txt     the Debian/Ubuntu packages of the other shared libraries
set -euo pipefail
OUT=$1
SP=$(.venv/bin/python -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
mkdir -p "$OUT/bin" "$OUT/lib/site-packages" "$OUT/models" "$OUT/adapters"
cp build/bin/titand build/bin/titanctl build/bin/titan-run "$OUT/bin/"
# torch minus what a C++ program never loads (headers, Python sources, test binaries).
tar -C "$SP" --exclude='torch/include' --exclude='torch/bin' --exclude='*.py' --exclude='*.pyc' \
    --exclude='torch/testing' -cf - torch $(cd "$SP" && ls -d nvidia 2>/dev/null || true) | tar -C "$OUT/lib/site-packages" -xf -
cp models/*.gguf "$OUT/models/"
if [ -d adapters ]; then cp -r adapters/. "$OUT/adapters/"; fi
bash deploy/docker/runtime-packages.sh "$OUT/bin/titand" "$OUT/bin/titanctl" "$OUT/bin/titan-run" > "$OUT/runtime-packages.txt"
