#!/usr/bin/env bash
# Generates the Python protobuf/gRPC modules of titand.v1 into titand_client/ (git-ignored).
# Usage: client/python/generate.sh [python]   (default: <repo>/.venv/bin/python, needs grpcio-tools)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
py="${1:-$repo/.venv/bin/python}"
out="$here/titand_client"
"$py" -m grpc_tools.protoc -I "$repo/proto/titand/v1" \
  --python_out="$out" --grpc_python_out="$out" "$repo/proto/titand/v1/inference.proto"
# The generated stub imports its messages as a top-level module; make it package-relative.
sed -i 's/^import inference_pb2 as /from . import inference_pb2 as /' "$out/inference_pb2_grpc.py"
echo "generated $out/inference_pb2.py $out/inference_pb2_grpc.py"
