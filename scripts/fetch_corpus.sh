#!/usr/bin/env bash
# Fetches the text corpora titand tests and trains on, from Debian packages (no model/data hub):
#   .cache/corpus/python-doc/  the CPython documentation sources (*.rst.txt)
#   .cache/corpus/linux-doc/   the Linux kernel documentation (*.rst)
# Package names vary by Debian release, so the newest available python3.X-doc / linux-doc-6.X is used.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=.cache/corpus
DEBS=${TITAND_CACHE:-$HOME/.cache/titand}/debs   # downloads cached outside the checkout
mkdir -p "$OUT" "$DEBS"
pick() {  # newest package whose name matches the regex $1
  apt-cache pkgnames 2>/dev/null | grep -E "$1" | sort -V | tail -n 1
}
fetch() {  # $1 = regex of package name, $2 = target folder, $3 = find pattern
  local dir="$OUT/$2"
  if [ -d "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then return 0; fi
  local pkg; pkg=$(pick "$1")
  if [ -z "$pkg" ]; then apt-get update -qq >/dev/null 2>&1 || true; pkg=$(pick "$1"); fi
  [ -n "$pkg" ] || { echo "fetch_corpus: no package matches $1" >&2; return 1; }
  (cd "$DEBS" && chmod 777 . && ls "${pkg}"_*.deb >/dev/null 2>&1 || apt-get download -qq "$pkg" >/dev/null)
  local tmp; tmp=$(mktemp -d)
  dpkg-deb -x "$DEBS"/"${pkg}"_*.deb "$tmp"
  mkdir -p "$dir"
  find "$tmp" -type f \( -name "$3" -o -name "$3.gz" \) -exec cp --backup=numbered -t "$dir" {} + 2>/dev/null || true
  find "$dir" -name '*.gz' -exec gunzip -f {} + 2>/dev/null || true
  rm -rf "$tmp"
  echo "fetch_corpus: $pkg -> $dir ($(ls "$dir" | wc -l) files)"
}
fetch '^python3\.[0-9]+-doc$' python-doc '*.rst.txt'
fetch '^linux-doc-[0-9]+\.[0-9]+$' linux-doc '*.rst'
