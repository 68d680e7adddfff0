#!/usr/bin/env bash
# Starts titand on loopback with the bundled model (and adapter, when given as --tptt DIR), waits until
# its gRPC health check says SERVING, holds a streamed three-turn conversation in one session with
# titanctl (each turn sends only its new text), prints the metrics summary, then drains the server.
set -euo pipefail
cd "$(dirname "$0")/.."
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port); MPORT=$(free_port)
SESS_DIR=$(mktemp -d)
LOG=$SESS_DIR/titand.log
build/bin/titand --model smollm2-135m "$@" --host 127.0.0.1 --port "$PORT" --metrics-port "$MPORT" \
  --session-dir "$SESS_DIR" >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 240); do
  build/bin/titanctl --addr "127.0.0.1:$PORT" health >/dev/null 2>&1 && break
  kill -0 $PID 2>/dev/null || { cat "$LOG"; exit 1; }
  sleep 0.5
done
echo "titand is SERVING on 127.0.0.1:$PORT (metrics on :$MPORT)"
printf '%s\n' "Hi! My name is Ada and I like astronomy." \
  "What is my name, and what do I like?" \
  "Suggest one thing I could look at in the night sky tonight." |
  build/bin/titanctl --addr "127.0.0.1:$PORT" --max-tokens 64 chat
echo "--- metrics (excerpt)"
curl -s "http://127.0.0.1:$MPORT/metrics" | grep -E '^titand_(requests_total|generation_tokens_total|sessions)' || true
kill -TERM $PID
wait $PID || true
echo "--- server log"
cat "$LOG"
