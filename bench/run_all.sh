#!/usr/bin/env bash
# Runs the benchmarks recorded in BENCHMARKS.md and writes their JSON under bench/results/<date>/.
#   bench/run_all.sh [--quick]
# Needs a quiet machine: every figure is wall-clock time.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/results/$(date -u +%Y-%m-%d)
mkdir -p "$OUT"
ADAPTER=adapters/smollm2-135m-tptt
CTX=${CTX:-512,2048,8192,32768}
export PYTHONPATH=tools
echo "== runtime vs Transformers (base model, batch 1)"
for dt in float32 bfloat16; do
  build/bin/bench_runtime --model smollm2-135m --dtype $dt --threads 2 --contexts "$CTX" >"$OUT/runtime_base_$dt.json"
  .venv/bin/python bench/bench_hf.py --dtype $dt --threads 2 >"$OUT/hf_base_$dt.json"
done
if [ -f $ADAPTER/tptt_config.json ]; then
  echo "== TPTT model: decode at growing contexts, state bytes"
  build/bin/bench_runtime --model smollm2-135m --tptt $ADAPTER --threads 2 --contexts "$CTX" >"$OUT/runtime_tptt_float32.json"
  echo "== held-out perplexity at 1K-token contexts (base, untrained conversion, adapter)"
  .venv/bin/python tools/train_tptt.py --eval-only --adapter $ADAPTER --eval-ctx 1024 --eval-windows 8 \
    --threads 2 2>&1 | tee "$OUT/perplexity.log" | tail -5
fi
echo "== server overhead per token vs the bare runtime; sampler time per call"
.venv/bin/python bench/bench_server_overhead.py --rounds 3 --reps 3 --max-tokens 64 --out "$OUT/server_overhead.json" >/dev/null
build/bin/bench_sampler >"$OUT/sampler.json"
echo "results in $OUT"
