// CPU sparse MLA attention at the DeepSeek shape: prefill (H_q=128, d 576/512, k=2048, S_q=64)
// over 4K and 16K tokens, and FP8 paged decode (B=8, s_q=1, H_q=16). Counting as in
// ../shared/PERFORMANCE.md: FLOP = 2 * H_q * queries * k * (d_qk + d_v); prefill bytes = the
// gathered bf16 rows (queries * k * d_qk * 2); decode bytes = unique cache entries touched * 656.
#include <cstdio>
#include <random>
#include <set>
#include <vector>

#include "bench/timing.hpp"
#include "core/numeric.hpp"
#include "dsa.h"

namespace {

constexpr float kScale = 0.13523378f;

std::vector<uint16_t> random_bf16(size_t count, uint32_t seed) {
    std::mt19937 engine(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<uint16_t> values(count);
    for (uint16_t& v : values) v = dsa::float_to_bf16(dist(engine));
    return values;
}

dsa_tensor_t view(void* data, std::vector<int64_t> shape, dsa_dtype_t dtype) {
    dsa_tensor_t t;
    dsa_tensor_init_contiguous(&t, data, static_cast<int32_t>(shape.size()), shape.data(), dtype, DSA_DEVICE_CPU, 0);
    return t;
}

// k distinct random tokens of [0, range) per row.
std::vector<int32_t> random_selection(int64_t rows, int64_t k, int64_t range, uint32_t seed) {
    std::mt19937 engine(seed);
    std::vector<int32_t> all(range), indices;
    for (int64_t i = 0; i < range; ++i) all[i] = static_cast<int32_t>(i);
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t j = 0; j < k; ++j) std::swap(all[j], all[j + engine() % (range - j)]);
        indices.insert(indices.end(), all.begin(), all.begin() + k);
    }
    return indices;
}

void check(dsa_status_t status) {
    if (status != DSA_STATUS_SUCCESS) {
        std::fprintf(stderr, "failed: %s\n", dsa_last_error_message());
        std::exit(1);
    }
}

}  // namespace

int main() {
    dsa_context_t* context = nullptr;
    check(dsa_context_create(&context, nullptr));
    int32_t threads = 0;
    dsa_context_num_threads(context, &threads);
    const double peak = dsa_bench::measure_fma_peak_gflops(threads);
    const double copy = dsa_bench::measure_copy_gbps();
    std::printf("%s\nthreads %d, f32 FMA peak %.1f GFLOP/s, copy %.1f GB/s (read + write)\n", dsa_build_info(), threads,
                peak, copy);

    dsa_sparse_attention_params_t params;
    dsa_sparse_attention_params_init(&params);
    params.scale = kScale;
    params.d_v = 512;
    const int64_t heads = 128, d_qk = 576, d_v = 512, topk = 2048, s_q = 64;
    for (int64_t s_kv : {4096, 16384}) {
        std::vector<uint16_t> q = random_bf16(s_q * heads * d_qk, 1), kv = random_bf16(s_kv * d_qk, 2);
        std::vector<int32_t> indices = random_selection(s_q, topk, s_kv, 3);
        std::vector<uint16_t> out(s_q * heads * d_v);
        std::vector<float> lse(s_q * heads);
        dsa_tensor_t qt = view(q.data(), {s_q, heads, d_qk}, DSA_DTYPE_BF16), kt = view(kv.data(), {s_kv, d_qk}, DSA_DTYPE_BF16),
                     it = view(indices.data(), {s_q, topk}, DSA_DTYPE_I32),
                     ot = view(out.data(), {s_q, heads, d_v}, DSA_DTYPE_BF16), lt = view(lse.data(), {s_q, heads}, DSA_DTYPE_F32);
        const double seconds = dsa_bench::median_seconds(
            [&] { check(dsa_sparse_attention(context, &params, &qt, &kt, &it, nullptr, nullptr, &ot, &lt, nullptr, nullptr)); },
            3, 1);
        const double flop = 2.0 * heads * s_q * topk * (d_qk + d_v);
        const double bytes = static_cast<double>(s_q) * topk * d_qk * 2;
        std::printf("prefill S_q=%lld S_kv=%lld H_q=%lld k=%lld d=%lld/%lld: %.1f ms, %.1f GFLOP/s (%.2f of FMA peak), "
                    "gather %.2f GB/s (%.3f of copy)\n",
                    (long long)s_q, (long long)s_kv, (long long)heads, (long long)topk, (long long)d_qk, (long long)d_v,
                    seconds * 1e3, flop / seconds / 1e9, flop / seconds / 1e9 / peak, bytes / seconds / 1e9,
                    bytes / seconds / 1e9 / copy);
    }

    // FP8 paged decode: 8 sequences of 8192 tokens on 64-token pages (identity page table; the
    // selection is random anyway).
    const int64_t batch = 8, decode_heads = 16, page_size = 64, context_tokens = 8192;
    const int64_t num_pages = batch * context_tokens / page_size;
    std::vector<uint8_t> cache(num_pages * page_size * 656);
    {
        std::vector<float> c_kv(num_pages * page_size * 512), k_pe(num_pages * page_size * 64);
        std::mt19937 engine(4);
        std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
        for (float& v : c_kv) v = dist(engine);
        for (float& v : k_pe) v = dist(engine);
        std::vector<int64_t> slots(num_pages * page_size);
        for (size_t i = 0; i < slots.size(); ++i) slots[i] = static_cast<int64_t>(i);
        const int64_t tokens = static_cast<int64_t>(slots.size());
        dsa_tensor_t c = view(c_kv.data(), {tokens, 512}, DSA_DTYPE_F32), k = view(k_pe.data(), {tokens, 64}, DSA_DTYPE_F32),
                     s = view(slots.data(), {tokens}, DSA_DTYPE_I64),
                     cache_t = view(cache.data(), {num_pages, page_size, 656}, DSA_DTYPE_U8);
        const double seconds = dsa_bench::median_seconds(
            [&] { check(dsa_mla_cache_write(context, &c, &k, &s, &cache_t, nullptr)); }, 3, 1);
        std::printf("mla_cache_write T=%lld (f32 in): %.2f ms, %.2f GB/s of cache written\n", (long long)tokens,
                    seconds * 1e3, tokens * 656.0 / seconds / 1e9);
    }
    std::vector<int32_t> indices = random_selection(batch, topk, context_tokens, 5);
    std::set<int64_t> unique;
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t j = 0; j < topk; ++j) indices[b * topk + j] += static_cast<int32_t>(b * context_tokens);
    for (int32_t slot : indices) unique.insert(slot);
    std::vector<uint16_t> q = random_bf16(batch * decode_heads * d_qk, 6), out(batch * decode_heads * d_v);
    std::vector<float> lse(batch * decode_heads);
    dsa_tensor_t qt = view(q.data(), {batch, 1, decode_heads, d_qk}, DSA_DTYPE_BF16),
                 ct = view(cache.data(), {num_pages, page_size, 656}, DSA_DTYPE_U8),
                 it = view(indices.data(), {batch, 1, topk}, DSA_DTYPE_I32),
                 ot = view(out.data(), {batch, 1, decode_heads, d_v}, DSA_DTYPE_BF16),
                 lt = view(lse.data(), {batch, 1, decode_heads}, DSA_DTYPE_F32);
    const double seconds = dsa_bench::median_seconds(
        [&] { check(dsa_sparse_attention_paged(context, &params, &qt, &ct, &it, nullptr, nullptr, &ot, &lt, nullptr)); }, 10,
        2);
    const double flop = 2.0 * decode_heads * batch * topk * (d_qk + d_v);
    const double bytes = static_cast<double>(unique.size()) * 656;
    std::printf("decode FP8 paged B=%lld s_q=1 H_q=%lld k=%lld: %.3f ms, %.1f GFLOP/s (%.2f of FMA peak), "
                "%.2f GB/s of unique cache bytes (%.3f of copy)\n",
                (long long)batch, (long long)decode_heads, (long long)topk, seconds * 1e3, flop / seconds / 1e9,
                flop / seconds / 1e9 / peak, bytes / seconds / 1e9, bytes / seconds / 1e9 / copy);
    dsa_context_destroy(context);
    return 0;
}
