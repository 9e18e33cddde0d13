#!/usr/bin/env bash
# One command for a GPU machine: build libdsa for the local GPU, run every test (GPU tests
# included), compute-sanitizer over the GPU tests, and the GPU benchmarks beside PyTorch;
# logs go under the folder given as $1.
# Usage: bench/run_gpu.sh OUTPUT_DIR [--no-sanitizer]
set -uo pipefail
out=${1:?usage: bench/run_gpu.sh OUTPUT_DIR [--no-sanitizer]}
sanitize=1
[ "${2:-}" = "--no-sanitizer" ] && sanitize=0
mkdir -p "$out"
root=$(cd "$(dirname "$0")/.." && pwd)
build=${DSA_GPU_BUILD_DIR:-$root/build-gpu}
arch=${DSA_CUDA_ARCH:-90a}
status=0

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  nvcc --version | tail -n 2
  git -C "$root" rev-parse --short HEAD 2>/dev/null || true
} > "$out/machine.txt" 2>&1
cat "$out/machine.txt"

cmake -S "$root" -B "$build" -G Ninja -DDSA_WITH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" > "$out/configure.log" 2>&1 &&
  cmake --build "$build" -j "$(nproc)" > "$out/build.log" 2>&1 || { echo "build failed"; tail -n 40 "$out/build.log"; exit 1; }

# Kernel resource report (registers, spills) for the notes.
cuobjdump --dump-resource-usage "$build"/libdsa.so > "$out/resource-usage.txt" 2>&1 || true

(cd "$build" && ctest --output-on-failure -LE bindings) > "$out/ctest.log" 2>&1 || status=1
grep -E "tests passed|tests failed|Skipped|\(Failed\)" "$out/ctest.log"

if [ "$sanitize" = 1 ] && command -v compute-sanitizer > /dev/null; then
  for test in "$build"/tests/gpu_*; do
    [ -x "$test" ] || continue
    for tool in memcheck racecheck; do
      log="$out/sanitizer-$(basename "$test")-$tool.log"
      compute-sanitizer --tool "$tool" --error-exitcode 9 "$test" > "$log" 2>&1
      rc=$?
      echo "compute-sanitizer $tool $(basename "$test"): exit $rc, $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -n 1)"
      [ $rc -eq 0 ] || status=1
    done
  done
fi
# Benchmarks beside their PyTorch baselines, in this same run on this card.
if python3 -c "import torch" 2> /dev/null; then
  python3 "$root/bench/topk_gpu.py" "$build/libdsa.so" --json "$out/topk.json" 2>&1 | tee "$out/topk.txt" || status=1
  python3 "$root/bench/sparse_attention_gpu.py" "$build/libdsa.so" --sm90 --json "$out/sparse_attention.json" 2>&1 | tee "$out/sparse_attention.txt" || status=1
  python3 "$root/bench/indexer_gpu.py" "$build/libdsa.so" --json "$out/indexer.json" 2>&1 | tee "$out/indexer.txt" || status=1
fi
exit $status
