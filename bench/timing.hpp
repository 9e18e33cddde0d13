// CPU timing for dsa-bench: median wall time of repeated runs, and the two machine ceilings
// measured in the same run (f32 FMA peak, memory copy bandwidth). A ceiling is the best rate the
// machine reaches, so it is taken from the fastest sample: on a shared machine the median of a
// ceiling would drop with every concurrent job.
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

// Seconds of `repeats` timed calls after `warmup` untimed ones, sorted (fastest first).
inline std::vector<double> sorted_seconds(const std::function<void()>& run, int repeats, int warmup) {
    for (int i = 0; i < warmup; ++i) run();
    std::vector<double> times;
    for (int i = 0; i < repeats; ++i) {
        const auto start = std::chrono::steady_clock::now();
        run();
        times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    std::sort(times.begin(), times.end());
    return times;
}

// Median seconds of `repeats` timed calls after `warmup` untimed ones.
inline double median_seconds(const std::function<void()>& run, int repeats = 10, int warmup = 2) {
    const std::vector<double> times = sorted_seconds(run, repeats, warmup);
    return times[times.size() / 2];
}

// Independent FMA chains per thread, so the loop runs at the core's FMA throughput: 256-bit
// (AVX2+FMA, the library's vector path) and 512-bit (AVX-512F) forms, as the CPU has them. Not
// instrumented by sanitizers, which would keep the accumulators in memory.
__attribute__((target("avx2,fma"), no_sanitize("address", "undefined"))) inline float fma_chains_avx2(int64_t iterations) {
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

__attribute__((target("avx512f"), no_sanitize("address", "undefined"))) inline float fma_chains_avx512(int64_t iterations) {
    __m512 acc[10];
    const __m512 a = _mm512_set1_ps(1.0000001f), b = _mm512_set1_ps(1e-7f);
    for (int j = 0; j < 10; ++j) acc[j] = _mm512_set1_ps(static_cast<float>(j));
    for (int64_t i = 0; i < iterations; ++i)
        for (int j = 0; j < 10; ++j) acc[j] = _mm512_fmadd_ps(acc[j], a, b);
    alignas(64) float lanes[16];
    float sum = 0;
    for (int j = 0; j < 10; ++j) {
        _mm512_store_ps(lanes, acc[j]);
        for (float lane : lanes) sum += lane;
    }
    return sum;
}

// GFLOP/s of `threads` threads each running `chains(iterations)` (10 chains of `lanes` lanes,
// 2 FLOP per FMA lane), from the fastest of 5 runs.
inline double fma_gflops(float (*chains)(int64_t), int lanes, int threads) {
    const int64_t iterations = 20'000'000 * 8 / lanes;
    volatile float sink = 0;
    const double seconds = sorted_seconds(
        [&] {
            std::vector<std::thread> pool;
            for (int t = 0; t < threads; ++t) pool.emplace_back([&] { sink = sink + chains(iterations); });
            for (auto& thread : pool) thread.join();
        },
        5, 1)[0];
    return 2.0 * lanes * 10 * static_cast<double>(iterations) * threads / seconds / 1e9;
}

// f32 FMA peak of `threads` threads in GFLOP/s: the faster vector width (0 without AVX2+FMA).
inline double measure_fma_peak_gflops(int threads) {
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0.0;
    const double avx2 = fma_gflops(fma_chains_avx2, 8, threads);
    return __builtin_cpu_supports("avx512f") ? std::max(avx2, fma_gflops(fma_chains_avx512, 16, threads)) : avx2;
}

// memcpy bandwidth in GB/s counting bytes read plus bytes written.
inline double measure_copy_gbps() {
    const size_t bytes = size_t(256) << 20;
    std::vector<char> from(bytes, 1), to(bytes, 0);
    const double seconds = sorted_seconds([&] { std::memcpy(to.data(), from.data(), bytes); }, 5, 1)[0];
    return 2.0 * static_cast<double>(bytes) / seconds / 1e9;
}

}  // namespace dsa_bench
