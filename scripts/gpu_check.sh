#!/usr/bin/env bash
# Builds titand on a GPU host with NO network and runs the GPU checks + benchmarks (issue 8).
#
# Needs: gpu_bundle/ made beforehand by scripts/gpu_prep.sh on a networked Debian 12 machine (.deb files
# of the C++ dependencies, grpcio wheels, tokenizer.json) carried beside this checkout; on the host: a
# Python with a CUDA torch wheel and transformers (TITAND_PYTHON, default python3), cmake, ninja, a CUDA
# toolkit (nvcc). Nothing is installed into /: the .deb files are unpacked with dpkg -x into
# gpu_bundle/prefix.
#
# Writes $OUT/gpu_check.log and $OUT/gpu_check.json (one record per step: rc, seconds) and the pytest /
# benchmark outputs beside them. Every step is bounded with timeout; a failed step is recorded and the
# script goes on to the next where that makes sense.
#
#   OUT=/tmp/out scripts/gpu_check.sh            # on the GPU host
#   TITAND_TEST_DEVICE=cpu scripts/gpu_check.sh  # dry run on a dev machine (system packages, CPU as device)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu_out}
mkdir -p "$OUT"
LOG=$OUT/gpu_check.log
exec > >(tee -a "$LOG") 2>&1
DEVICE=${TITAND_TEST_DEVICE:-cuda}
PY=${TITAND_PYTHON:-$(command -v python3)}
BUNDLE=$ROOT/gpu_bundle
PREFIX=$BUNDLE/prefix
BUILD=${TITAND_GPU_BUILD:-$ROOT/build-gpu}
JOBS=${JOBS:-$(nproc)}
RESULTS=$OUT/steps.jsonl
export ROOT OUT DEVICE PY BUNDLE PREFIX BUILD
: > "$RESULTS"

step() {  # step NAME TIMEOUT_S CMD... : runs, records {name, rc, seconds}
  local name=$1 limit=$2; shift 2
  echo "== $name ($(date -u +%H:%M:%S), limit ${limit}s)"
  local t0; t0=$(date +%s.%N)
  if declare -F "$1" >/dev/null; then  # a function of this script: timeout needs a process
    export -f "$1"
    timeout "$limit" bash -c '"$@"' _ "$@"
  else
    timeout "$limit" "$@"
  fi
  local rc=$?
  local dt; dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
  echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $dt}" >> "$RESULTS"
  echo "== $name: rc=$rc (${dt}s)"
  return $rc
}

echo "gpu_check: $(date -u) device=$DEVICE python=$PY"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "(no nvidia-smi)"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"

# 1. Dependencies from the carried .deb files (skipped in a CPU dry run: the system has them).
if [ "$DEVICE" != cpu ]; then
  unpack() {
    [ -d "$BUNDLE/debs" ] || { echo "gpu_bundle/debs missing: run scripts/gpu_prep.sh on a networked machine"; return 1; }
    mkdir -p "$PREFIX"
    for f in "$BUNDLE"/debs/*.deb; do dpkg -x "$f" "$PREFIX" || return 1; done
  }
  step unpack-debs 300 unpack || exit 1
  export LD_LIBRARY_PATH=$PREFIX/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export PATH=$PREFIX/usr/bin:$PATH
  if ! "$PY" -c "import grpc, grpc_tools" 2>/dev/null && [ -d "$BUNDLE/wheels" ]; then
    step pip-wheels 300 "$PY" -m pip install -q --no-index --find-links "$BUNDLE/wheels" --target "$BUNDLE/py" \
      grpcio grpcio-tools protobuf
    export PYTHONPATH=$BUNDLE/py${PYTHONPATH:+:$PYTHONPATH}
  fi
  CMAKE_EXTRA=(-DCMAKE_PREFIX_PATH="$PREFIX/usr" -DCMAKE_BUILD_RPATH="$PREFIX/usr/lib/x86_64-linux-gnu"
               -DProtobuf_PROTOC_EXECUTABLE="$PREFIX/usr/bin/protoc" -DGRPC_CPP_PLUGIN="$PREFIX/usr/bin/grpc_cpp_plugin"
               -DCMAKE_CUDA_STANDARD=17 -DTORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}")
else
  CMAKE_EXTRA=()
fi

# 2. Build against the host's torch wheel (CUDA there).
step configure 300 cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTITAND_PYTHON="$PY" \
  "${CMAKE_EXTRA[@]}" || exit 1
step build 900 cmake --build "$BUILD" -j"$JOBS" || exit 1

# 3. Models: a SmolLM2-135M-shaped Llama with random weights (the 98 MB GGUF does not travel) + SmolLM2's
#    tokenizer, and the bundled TPTT adapter re-bound to it (same shapes; only base_model changes).
export MODELS=$BUNDLE/models
make_models() {
  mkdir -p "$MODELS"
  "$PY" - "$MODELS/smollm2-shape" <<'EOF' || return 1
import sys, torch, transformers as tf
cfg = tf.LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                     num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=131072,
                     rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True)
torch.manual_seed(0)
tf.LlamaForCausalLM(cfg).save_pretrained(sys.argv[1], safe_serialization=True)
EOF
  if [ -s "$BUNDLE/tokenizer.json" ]; then cp "$BUNDLE/tokenizer.json" "$MODELS/smollm2-shape/"; fi
  local id; id=$("$BUILD/bin/titan-run" info --model "$MODELS/smollm2-shape" --device cpu | "$PY" -c "import json,sys; print(json.load(sys.stdin)['model_id'])") || return 1
  rm -rf "$MODELS/adapter" && cp -r "$ROOT/adapters/smollm2-135m-tptt" "$MODELS/adapter"
  "$PY" - "$MODELS/adapter/tptt_config.json" "$id" <<'EOF'
import json, sys
p, mid = sys.argv[1], sys.argv[2]
c = json.load(open(p)); c["base_model"] = mid; json.dump(c, open(p, "w"), indent=2)
EOF
}
step make-models 600 make_models

# 4. Tests: C++ units labelled gpu, then the Python gpu tests (vs CPU fp32 and Transformers on the GPU).
step ctest-gpu 600 ctest --test-dir "$BUILD" -L gpu --output-on-failure --no-tests=ignore
export TITAND_BUILD_DIR=$BUILD PYTHONPATH=$ROOT/tools:$ROOT/client/python${PYTHONPATH:+:$PYTHONPATH}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TITAND_TEST_DEVICE=$DEVICE
export TITAND_GPU_MODEL=$MODELS/smollm2-shape TITAND_GPU_ADAPTER=$MODELS/adapter
step pytest-gpu 1200 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/py/test_gpu.py --junitxml="$OUT/pytest-gpu.xml"

# 5. Benchmarks (figures for BENCHMARKS.md): the bare runtime, base vs TPTT, and Transformers, same device.
export BENCH_DTYPE=${BENCH_DTYPE:-bfloat16}
[ "$DEVICE" = cpu ] && BENCH_DTYPE=float32
bench() {
  "$BUILD/bin/bench_runtime" --model "$MODELS/smollm2-shape" --device "$DEVICE" --dtype "$BENCH_DTYPE" "$@"
}
step bench-base 600 bench --prefill 512 --decode 128 --batches "${BENCH_BATCHES:-1,32,256}" \
  --contexts "${BENCH_CONTEXTS:-8192,32768}" > "$OUT/bench_base.json"
step bench-tptt 600 bench --tptt "$MODELS/adapter" --prefill 512 --decode 128 --batches "${BENCH_BATCHES:-1,32,256}" \
  --contexts "${BENCH_CONTEXTS:-8192,32768,131072}" > "$OUT/bench_tptt.json"
step bench-hf 600 "$PY" bench/bench_hf.py --model "$MODELS/smollm2-shape" --device "$DEVICE" --dtype "$BENCH_DTYPE" \
  --batches "${BENCH_BATCHES:-1,32,256}" > "$OUT/bench_hf.json"

"$PY" - "$RESULTS" "$OUT/gpu_check.json" <<'EOF'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
json.dump({"steps": steps, "ok": all(s["rc"] == 0 for s in steps)}, open(sys.argv[2], "w"), indent=2)
print(json.dumps({"ok": all(s["rc"] == 0 for s in steps), "failed": [s["step"] for s in steps if s["rc"]]}))
EOF
