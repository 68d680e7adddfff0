#!/usr/bin/env bash
# The exact command that produced adapters/smollm2-135m-tptt (2-core CPU, 55-minute budget).
# Flags added later keep their old behaviour at their defaults (--sinks 0, --distill-weight 0, --device cpu);
# on a GPU add --device cuda, after an interruption re-run with --resume.
cd "$(dirname "$0")/.."
PYTHONPATH=tools .venv/bin/python tools/train_tptt.py \
  --model models/SmolLM2-135M-Instruct.Q4_1.gguf --out adapters/smollm2-135m-tptt \
  --operator gated_delta --feature-map tptt --window 64 --gates learned --layers all \
  --mu-init 0.01 --seq 512 --batch 1 --lr 5e-4 --lora-r 8 --lora-alpha 16 --lora-dropout 0.05 \
  --minutes 55 --stage1-share 0.3 --seed 0 --threads 2
