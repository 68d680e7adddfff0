#!/usr/bin/env bash
# The main job: build everything, then hold a streamed multi-turn conversation with the bundled
# SmolLM2 (+ the bundled TPTT adapter when present). Each turn sends only its new text: the
# conversation's history lives in the session's fixed-size state.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
TPTT=()
[ -f adapters/smollm2-135m-tptt/tptt_config.json ] && TPTT=(--tptt adapters/smollm2-135m-tptt)
if [ -x build/bin/titand ] && [ -x build/bin/titanctl ]; then
  exec bash scripts/demo_server.sh "${TPTT[@]}"
fi
SESSION=$(mktemp -d)/session.ttss
printf '%s\n' "Hi! My name is Ada and I like astronomy." \
  "What is my name, and what do I like?" \
  "Suggest one thing I could look at in the night sky tonight." |
  build/bin/titan-run chat --model smollm2-135m "${TPTT[@]}" --session "$SESSION" --max-tokens 64
