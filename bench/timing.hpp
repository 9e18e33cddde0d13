// Small helpers for the CPU benchmark programs: median wall time of repeated runs, and the two
// machine ceilings measured in the same run (f32 FMA peak, memory copy bandwidth).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <immintrin.h>
#include <thread>
#include <vector>

namespace dsa_bench {

// Median seconds of `repeats` timed calls after `warmup` untimed ones.
inline double median_seconds(const std::function<void()>& run, int repeats = 10, int warmup = 2) {
    for (int i = 0; i < warmup; ++i) run();
    std::vector<double> times;
    for (int i = 0; i < repeats; ++i) {
        const auto start = std::chrono::steady_clock::now();
        run();
        times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}

// Independent FMA chains per thread, so the loop runs at the core's FMA throughput. Compiled for
// AVX2+FMA when the CPU has it (the library's own vector path), else baseline.
__attribute__((target("avx2,fma"))) inline float fma_chains_avx2(int64_t iterations) {
    __m256 acc[10];
    const __m256 a = _mm256_set1_ps(1.0000001f), b = _mm256_set1_ps(1e-7f);
    for (int j = 0; j < 10; ++j) acc[j] = _mm256_set1_ps(static_cast<float>(j));
    for (int64_t i = 0; i < iterations; ++i)
        for (int j = 0; j < 10; ++j) acc[j] = _mm256_fmadd_ps(acc[j], a, b);
    alignas(32) float lanes[8];
    float sum = 0;
    for (int j = 0; j < 10; ++j) {
        _mm256_store_ps(lanes, acc[j]);
        for (float lane : lanes) sum += lane;
    }
    return sum;
}

// f32 FMA peak of `threads` threads in GFLOP/s (2 FLOP per FMA lane).
inline double measure_fma_peak_gflops(int threads) {
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0.0;
    const int64_t iterations = 20'000'000;
    volatile float sink = 0;
    const double seconds = median_seconds(
        [&] {
            std::vector<std::thread> pool;
            for (int t = 0; t < threads; ++t) pool.emplace_back([&] { sink = sink + fma_chains_avx2(iterations); });
            for (auto& thread : pool) thread.join();
        },
        5, 1);
    return 2.0 * 8 * 10 * static_cast<double>(iterations) * threads / seconds / 1e9;
}

// memcpy bandwidth in GB/s counting bytes read plus bytes written.
inline double measure_copy_gbps() {
    const size_t bytes = size_t(256) << 20;
    std::vector<char> from(bytes, 1), to(bytes, 0);
    const double seconds = median_seconds([&] { std::memcpy(to.data(), from.data(), bytes); }, 5, 1);
    return 2.0 * static_cast<double>(bytes) / seconds / 1e9;
}

}  // namespace dsa_bench
