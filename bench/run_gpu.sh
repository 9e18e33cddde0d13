#!/usr/bin/env bash
# One command for a GPU machine: build libdsa and dsa-bench for the local GPU, run every test (GPU
# tests included), compute-sanitizer (memcheck, racecheck, initcheck) over the GPU tests, then the
# deepseek and tp presets on CUDA beside their PyTorch baselines in the same run, and a merged
# table (RESULTS-gpu.md) rendered from the JSON. Everything goes under the folder given as $1.
# Usage: bench/run_gpu.sh OUTPUT_DIR [--no-sanitizer]
# Environment: DSA_GPU_BUILD_DIR (default build-gpu), DSA_CUDA_ARCH (default 90a),
# DSA_BENCH_PRESETS (default "deepseek tp").
set -uo pipefail
out=${1:?usage: bench/run_gpu.sh OUTPUT_DIR [--no-sanitizer]}
sanitize=1
[ "${2:-}" = "--no-sanitizer" ] && sanitize=0
mkdir -p "$out"
out=$(cd "$out" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
build=${DSA_GPU_BUILD_DIR:-$root/build-gpu}
arch=${DSA_CUDA_ARCH:-90a}
presets=${DSA_BENCH_PRESETS:-deepseek tp}
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
    for tool in memcheck racecheck initcheck; do
      log="$out/sanitizer-$(basename "$test")-$tool.log"
      # racecheck takes the "(sanitizer size)" twins of the "(full size)" cases only.
      filter=()
      [ "$tool" = racecheck ] && filter=(-tce='*(full size)*')
      compute-sanitizer --tool "$tool" --error-exitcode 9 "$test" "${filter[@]}" > "$log" 2>&1
      rc=$?
      echo "compute-sanitizer $tool $(basename "$test"): exit $rc, $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -n 1)"
      [ $rc -eq 0 ] || status=1
    done
  done
  # Every op's CUDA path as dsa-bench drives it (buffer sizes, streams), small shapes.
  log="$out/sanitizer-dsa-bench-memcheck.log"
  compute-sanitizer --tool memcheck --error-exitcode 9 "$build/bench/dsa-bench" --device cuda --preset smoke \
    --no-ceilings --repeats 1 --warmup 0 > "$log" 2>&1
  rc=$?
  echo "compute-sanitizer memcheck dsa-bench smoke: exit $rc, $(grep -E 'ERROR SUMMARY' "$log" | tail -n 1)"
  [ $rc -eq 0 ] || status=1
fi

# The benchmarks, then the same shapes through PyTorch on this card in this run.
bench="$build/bench/dsa-bench"
render=()
for preset in $presets; do
  "$bench" --device cuda --preset "$preset" --json "$out/$preset.json" 2>&1 | tee "$out/$preset.txt" || status=1
  render+=(--gpu "$out/$preset.json")
  if python3 -c "import torch" 2> /dev/null; then
    python3 "$root/bench/torch_baselines.py" --bench "$bench" --preset "$preset" --json "$out/torch-$preset.json" 2>&1 |
      tee "$out/torch-$preset.txt" || status=1
    render+=(--torch "$out/torch-$preset.json")
  fi
done
# The committed CPU report's JSON joins the table, so RESULTS-gpu.md can replace bench/RESULTS.md.
[ -f "$root/bench/results/cpu.json" ] && render+=(--cpu "$root/bench/results/cpu.json" --cpu-notes "$root/bench/results/cpu-notes.md")
python3 "$root/bench/render_results.py" "${render[@]}" --commit "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  > "$out/RESULTS-gpu.md" || status=1
echo "merged table: $out/RESULTS-gpu.md"
exit $status
