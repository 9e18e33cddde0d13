#!/usr/bin/env bash
# Runs one bindings check for CTest (bindings/CMakeLists.txt sets the environment):
#   DSA_SOURCE_DIR          the repository
#   DSA_LIBRARY             the built libdsa.so (its directory is searched by linkers and loaders)
#   DSA_BINDINGS_BUILD_DIR  writable caches (cargo target, Go build cache and module path), so the
#                           source tree stays clean
# A missing tool is a failure, not a skip: scripts/setup installs them all.
set -euo pipefail
check=${1:?usage: run_test.sh rust|rust_example|rust_bindgen|go|go_example|python|python_example|coverage}
source_dir=${DSA_SOURCE_DIR:?}
library=${DSA_LIBRARY:?}
build_dir=${DSA_BINDINGS_BUILD_DIR:?}
library_dir=$(dirname "$library")

require() {
  for tool in "$@"; do
    command -v "$tool" > /dev/null || { echo "bindings: $tool is missing (run scripts/setup)" >&2; exit 1; }
  done
}

export LD_LIBRARY_PATH="$library_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export DSA_LIB_DIR="$library_dir" CARGO_TARGET_DIR="$build_dir/cargo"
export CGO_CFLAGS="-I$source_dir/capi/include" CGO_LDFLAGS="-L$library_dir"
export GOCACHE="$build_dir/go/cache" GOPATH="$build_dir/go/path" GOPROXY=off GOFLAGS= GOTOOLCHAIN=local
export PYTHONPATH="$source_dir/bindings/python" PYTHONDONTWRITEBYTECODE=1

case "$check" in
  rust)           require cargo; cargo test --offline --manifest-path "$source_dir/bindings/rust/Cargo.toml" ;;
  rust_example)   require cargo; cargo run --offline --quiet --manifest-path "$source_dir/bindings/rust/Cargo.toml" --example quantize ;;
  rust_bindgen)   "$source_dir/bindings/rust/regenerate.sh" --check ;;
  go)             require go; cd "$source_dir/bindings/go" && go test -count=1 ./... ;;
  go_example)     require go; cd "$source_dir/bindings/go" && go run ./examples/quantize ;;
  python)         require python3; python3 -m pytest -q -p no:cacheprovider "$source_dir/bindings/python/tests" ;;
  python_example) require python3; python3 "$source_dir/examples/python/quantize.py" ;;
  coverage)       require python3; python3 "$source_dir/bindings/check_coverage.py" ;;
  *)              echo "run_test.sh: unknown check '$check'" >&2; exit 2 ;;
esac
