// Pipeline test problems shared by the CPU and GPU tests: a ragged prefill indexer problem and
// a paged decode problem (indexer key cache and MLA FP8 cache over one shuffled block table).
#pragma once

#include <cmath>
#include <cstdlib>

#include "support.hpp"

namespace dsa_test {

inline std::vector<uint8_t> fp8_codes(size_t count, uint32_t seed) {
    std::mt19937 engine(seed);
    std::vector<uint8_t> codes(count);
    for (uint8_t& code : codes) {
        code = static_cast<uint8_t>(engine() & 0xff);
        if ((code & 0x7f) == 0x7f) code ^= 1;  // never NaN
    }
    return codes;
}

// A prefill indexer problem: q [S_q, H, D], k [S_kv, D], windows [ks, ke).
struct IndexerPrefill {
    int64_t s_q, s_kv, heads, dim;
    std::vector<uint8_t> q, k;
    std::vector<float> weights, k_scale;
    std::vector<int32_t> ks, ke;
    dsa_tensor_t q_t, k_t, weights_t, scale_t, ks_t, ke_t;

    IndexerPrefill(int64_t s_q_, int64_t s_kv_, int64_t heads_, int64_t dim_, uint32_t seed)
        : s_q(s_q_), s_kv(s_kv_), heads(heads_), dim(dim_), q(fp8_codes(s_q * heads * dim, seed)),
          k(fp8_codes(s_kv * dim, seed + 1)), weights(random_floats(s_q * heads, seed + 2)),
          k_scale(random_floats(s_kv, seed + 3, 0.01f, 1.0f)), ks(s_q), ke(s_q) {
        std::mt19937 engine(seed + 4);
        for (int64_t t = 0; t < s_q; ++t) {
            // Causal at the end of the key sequence, with some ragged starts and a few empty rows.
            ke[t] = static_cast<int32_t>(s_kv - s_q + t + 1);
            ks[t] = t % 5 == 1 ? static_cast<int32_t>(engine() % (ke[t] + 1)) : 0;
            if (t % 17 == 3) ks[t] = ke[t];
        }
        q_t = view(q.data(), {s_q, heads, dim}, DSA_DTYPE_FP8_E4M3);
        k_t = view(k.data(), {s_kv, dim}, DSA_DTYPE_FP8_E4M3);
        weights_t = view(weights.data(), {s_q, heads}, DSA_DTYPE_F32);
        scale_t = view(k_scale.data(), {s_kv}, DSA_DTYPE_F32);
        ks_t = view(ks.data(), {s_q}, DSA_DTYPE_I32);
        ke_t = view(ke.data(), {s_q}, DSA_DTYPE_I32);
    }

    // indexer_logits followed by topk.
    std::vector<int32_t> unfused(dsa_context_t* context, const dsa_topk_params_t& params) {
        std::vector<float> logits(s_q * s_kv);
        dsa_tensor_t logits_t = view(logits.data(), {s_q, s_kv}, DSA_DTYPE_F32);
        REQUIRE(dsa_indexer_logits(context, nullptr, &q_t, &weights_t, &k_t, &scale_t, &ks_t, &ke_t, &logits_t,
                                   nullptr) == DSA_STATUS_SUCCESS);
        std::vector<int32_t> indices(s_q * params.k, -7);
        dsa_tensor_t indices_t = view(indices.data(), {s_q, params.k}, DSA_DTYPE_I32);
        REQUIRE(dsa_topk(context, &params, &logits_t, &ks_t, &ke_t, nullptr, &indices_t, nullptr) ==
                DSA_STATUS_SUCCESS);
        return indices;
    }
};



// A paged decode problem: B sequences of n_next queries over a shuffled 64-token-page cache,
// written with dsa_indexer_cache_write; the MLA FP8 cache over the same block table.
struct PagedDecode {
    int64_t batch = 3, next_n = 2, heads = 4, dim = 64, max_pages = 5, num_pages = 17;
    int64_t q_heads = 3, d_qk = 576, d_v = 512;
    std::vector<uint8_t> q, k_cache, kv_cache;
    std::vector<float> weights;
    std::vector<int32_t> block_table, context_lens;
    std::vector<uint16_t> attention_q;
    dsa_tensor_t q_t, weights_t, cache_t, table_t, lens_t, attention_q_t, kv_cache_t;

    explicit PagedDecode(uint32_t seed)
        : q(fp8_codes(batch * next_n * heads * dim, seed)), k_cache(num_pages * 64 * (dim + 4), 0xff),
          kv_cache(num_pages * 64 * 656, 0xff), weights(random_floats(batch * next_n * heads, seed + 1)),
          block_table(batch * max_pages, -1), context_lens{200, 37, 320},
          attention_q(to_bf16(random_floats(batch * next_n * q_heads * d_qk, seed + 2))) {
        Context context(2);
        // Shuffled pages: sequence b, block j -> page (b * 5 + j * 7 + 3) % 17, distinct per entry.
        std::vector<int64_t> slots;
        for (int64_t b = 0; b < batch; ++b)
            for (int64_t j = 0; j * 64 < context_lens[b]; ++j) {
                block_table[b * max_pages + j] = static_cast<int32_t>((b * 5 + j * 7 + 3) % num_pages);
                for (int64_t t = j * 64; t < context_lens[b] && t < (j + 1) * 64; ++t)
                    slots.push_back(block_table[b * max_pages + j] * 64 + t % 64);
            }
        const int64_t tokens = static_cast<int64_t>(slots.size());
        std::vector<float> keys = random_floats(tokens * dim, seed + 3);
        dsa_tensor_t keys_t = view(keys.data(), {tokens, dim}, DSA_DTYPE_F32);
        dsa_tensor_t slots_t = view(slots.data(), {tokens}, DSA_DTYPE_I64);
        cache_t = view(k_cache.data(), {num_pages, 64 * (dim + 4)}, DSA_DTYPE_U8);
        REQUIRE(dsa_indexer_cache_write(context, &keys_t, &slots_t, &cache_t, nullptr) == DSA_STATUS_SUCCESS);
        std::vector<float> latent = random_floats(tokens * 512, seed + 4), rope = random_floats(tokens * 64, seed + 5);
        dsa_tensor_t latent_t = view(latent.data(), {tokens, 512}, DSA_DTYPE_F32);
        dsa_tensor_t rope_t = view(rope.data(), {tokens, 64}, DSA_DTYPE_F32);
        kv_cache_t = view(kv_cache.data(), {num_pages, 64, 656}, DSA_DTYPE_U8);
        REQUIRE(dsa_mla_cache_write(context, &latent_t, &rope_t, &slots_t, &kv_cache_t, nullptr) == DSA_STATUS_SUCCESS);
        q_t = view(q.data(), {batch, next_n, heads, dim}, DSA_DTYPE_FP8_E4M3);
        weights_t = view(weights.data(), {batch * next_n, heads}, DSA_DTYPE_F32);
        table_t = view(block_table.data(), {batch, max_pages}, DSA_DTYPE_I32);
        lens_t = view(context_lens.data(), {batch}, DSA_DTYPE_I32);
        attention_q_t = view(attention_q.data(), {batch, next_n, q_heads, d_qk}, DSA_DTYPE_BF16);
    }
    int64_t rows() const { return batch * next_n; }
};

inline dsa_sparse_attention_params_t attention_params(int32_t d_v) {
    dsa_sparse_attention_params_t params;
    dsa_sparse_attention_params_init(&params);
    params.scale = 0.13523378f;
    params.d_v = d_v;
    return params;
}


}  // namespace dsa_test
