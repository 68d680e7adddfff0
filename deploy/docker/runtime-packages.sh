#!/usr/bin/env bash
# Prints the Debian packages that own the shared libraries the given binaries link DIRECTLY (DT_NEEDED),
# one per line, sorted; apt pulls in their own dependencies. Libraries no package owns (e.g. LibTorch
# inside a Python site-packages in the GPU image) are skipped: the runtime base image provides them.
set -euo pipefail
for bin in "$@"; do
  ldd "$bin" > /tmp/ldd.$$
  readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | while read -r name; do
    awk -v n="$name" '$1 == n && $3 ~ /^\// { print $3 }' /tmp/ldd.$$
  done
  rm -f /tmp/ldd.$$
done | sort -u | while read -r lib; do
  dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")" 2>/dev/null || true
done | cut -d: -f1 | sort -u
