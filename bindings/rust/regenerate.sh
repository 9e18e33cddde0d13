#!/usr/bin/env bash
# Regenerates dsa-sys/src/bindings.rs from capi/include/dsa.h with the bindgen command-line tool
# (Debian package `bindgen`; rustfmt formats its output).
#   regenerate.sh           rewrite the committed file
#   regenerate.sh --check   fail if the committed file differs from a fresh generation
# The output depends on the bindgen version: the committed file names it in its first line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
header="$here/../../capi/include/dsa.h"
committed="$here/dsa-sys/src/bindings.rs"

for tool in bindgen rustfmt; do
  command -v "$tool" > /dev/null || { echo "regenerate.sh: $tool is missing (run scripts/setup)" >&2; exit 1; }
done

generate() {
  bindgen "$header" --output "$1" \
    --allowlist-function 'dsa_.*' --allowlist-type 'dsa_.*' --allowlist-var 'DSA_.*' \
    --default-macro-constant-type signed --size_t-is-usize \
    -- -std=c99
}

case "${1:-}" in
  "")
    generate "$committed"
    echo "regenerate.sh: wrote $committed" ;;
  --check)
    fresh=$(mktemp "${TMPDIR:-/tmp}/dsa-bindings.XXXXXX.rs")
    trap 'rm -f "$fresh"' EXIT
    generate "$fresh"
    if ! diff -u "$committed" "$fresh"; then
      echo "regenerate.sh: dsa-sys/src/bindings.rs is stale: run bindings/rust/regenerate.sh and commit it" >&2
      exit 1
    fi
    echo "regenerate.sh: dsa-sys/src/bindings.rs matches capi/include/dsa.h" ;;
  *)
    echo "usage: regenerate.sh [--check]" >&2; exit 2 ;;
esac
