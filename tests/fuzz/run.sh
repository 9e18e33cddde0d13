#!/usr/bin/env bash
# Builds the C API fuzzer (clang; ASan + UBSan + libFuzzer coverage; CPU only) and runs it.
#   tests/fuzz/run.sh [SECONDS]   fuzz from the committed corpus (default 60 s); new inputs go to
#                                 $build/corpus, a crash is written to $build/crashes/ and fails the run
#   tests/fuzz/run.sh --merge     add what $build/corpus covers beyond tests/fuzz/corpus to it
#                                 (minimised; commit the new files)
#   tests/fuzz/run.sh --replay F  run one input (e.g. a crash file) and show what it does
# DSA_FUZZ_BUILD_DIR overrides the build folder (default build-fuzz in the repository).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${DSA_FUZZ_BUILD_DIR:-$root/build-fuzz}
corpus=$root/tests/fuzz/corpus
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DDSA_WITH_CUDA=OFF -DDSA_BUILD_EXAMPLES=OFF \
  -DDSA_SANITIZE=address,undefined,fuzzer-no-link -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build "$build" --target api_fuzzer -j "$(nproc)"
fuzzer=$build/tests/fuzz/api_fuzzer
mkdir -p "$build/corpus" "$build/crashes"
case "${1:-}" in
  --merge) exec "$fuzzer" -merge=1 "$corpus" "$build/corpus" ;;
  --replay) exec "$fuzzer" "$2" ;;
esac
seconds=${1:-60}
"$fuzzer" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
  -artifact_prefix="$build/crashes/" "$build/corpus" "$corpus"
