// Random inputs of the forward path shared by several cases (the indexer alone, fused with
// top-k, and inside the one-call layer; sparse attention alone and inside the layer), uploaded to
// the benchmarked device, with what their checks need: the oracle's logits of sampled rows and
// how far a correct result may be from them.
#pragma once

#include "bench/bench.hpp"

namespace dsa_bench {

inline constexpr int64_t kPageTokens = 64;  // tokens per page of both paged caches
inline constexpr float kSoftmaxScale = 0.13523378f;  // DeepSeek-V3.2's, see dsa.h

// Query rows of an indexer case checked against the oracle, and the oracle's logits of them
// ([rows.size(), columns], -inf outside the windows).
struct IndexerSample {
    std::vector<int64_t> rows;
    std::vector<float> logits;
};

// Ragged-prefill indexer inputs: e4m3 q [S_q, H_I, D_I], f32 weights [S_q, H_I], e4m3 k
// [S_kv, D_I], f32 k_scale [S_kv], windows [ks, ke). causal: query t is token S_kv - S_q + t of
// the sequence (ks = 0, ke = S_kv - S_q + t + 1); otherwise every row sees all S_kv tokens.
struct IndexerPrefill {
    int64_t row_count = 0, column_count = 0, heads = 0, dim = 0;
    std::vector<uint8_t> q, k;
    std::vector<float> weights, k_scale;
    std::vector<int32_t> ks, ke;
    Buffer q_buffer, weight_buffer, k_buffer, scale_buffer, ks_buffer, ke_buffer;
    dsa_tensor_t q_tensor, weight_tensor, k_tensor, scale_tensor, ks_tensor, ke_tensor;

    // Reads S_q, S_kv, H_I, D_I and causal.
    IndexerPrefill(Bench& bench, Random& random, const Shape& shape);
    int64_t rows() const { return row_count; }
    int64_t columns() const { return column_count; }
    double visible_pairs() const;
    double flop() const { return 2.0 * heads * dim * visible_pairs(); }
    double input_bytes() const;
    void window(int64_t row, int64_t* begin, int64_t* end) const;
    // The oracle's logits of rows `sample`: [sample.size(), columns].
    std::vector<float> oracle_logits(Bench& bench, const std::vector<int64_t>& sample) const;
    IndexerSample oracle_sample(Bench& bench) const;
    // How far the device's logit of (row, column) may be from the oracle's (0 outside the window).
    std::vector<double> tolerance(const Bench& bench, int64_t row) const;
};

// Paged-decode indexer inputs: B sequences of `context` cached tokens each (the n_next newest
// are the queries), pages of 64 tokens shuffled over the cache through the block table.
// e4m3 q [B, n_next, H_I, D_I], f32 weights [B * n_next, H_I], k_cache u8 [pages, 64 * (D_I + 4)].
struct IndexerPaged {
    int64_t batch = 0, next_n = 0, context = 0, heads = 0, dim = 0, max_pages = 0, num_pages = 0;
    std::vector<uint8_t> q, cache;
    std::vector<float> weights;
    std::vector<int32_t> block_table, context_lens;
    Buffer q_buffer, weight_buffer, cache_buffer, table_buffer, length_buffer;
    dsa_tensor_t q_tensor, weight_tensor, cache_tensor, table_tensor, length_tensor;

    // Reads B, n_next (or `next_n_key`), context, H_I and D_I.
    IndexerPaged(Bench& bench, Random& random, const Shape& shape, const char* next_n_key = "n_next");
    int64_t rows() const { return batch * next_n; }
    // The flat query rows (b * n_next + j) of sequences `sequences`.
    std::vector<int64_t> rows_of(const std::vector<int64_t>& sequences) const;
    int64_t columns() const { return max_pages * kPageTokens; }
    double visible_pairs() const;
    double flop() const { return 2.0 * heads * dim * visible_pairs(); }
    double cache_bytes_read() const { return static_cast<double>(batch) * context * (dim + 4); }
    void window(int64_t row, int64_t* begin, int64_t* end) const;
    // The oracle's logits of the rows of sequences `sequences`: [sequences.size() * n_next, columns].
    std::vector<float> oracle_logits(Bench& bench, const std::vector<int64_t>& sequences) const;
    // Sampled sequences, all their rows.
    IndexerSample oracle_sample(Bench& bench) const;
    std::vector<double> tolerance(const Bench& bench, int64_t row) const;
    // The cache slot of token `token` of the sequence of row `row` (-1 stays -1).
    int32_t slot(int64_t row, int32_t token) const;
};

// Checks the sampled rows of a top-k selection (indices [sample.rows.size(), k] in `selected`, in
// the order of the sample) against the indexer's oracle logits of those rows.
template <typename Indexer>
std::string check_indexer_selection(Bench& bench, const Indexer& indexer, const IndexerSample& sample,
                                    const std::vector<int32_t>& selected, int64_t k);

// Sparse attention over bf16 [S_kv, d_qk] (prefill) or a paged cache of 64-token pages, bf16
// [pages, 64, d_qk] or FP8 MLA u8 [pages, 64, 656].
struct AttentionData {
    bool paged = false;
    bool fp8 = false;
    int64_t heads = 0, d_qk = 0, d_v = 0, slots = 0;
    dsa_sparse_attention_params_t params;
    std::vector<uint16_t> q;
    std::vector<uint8_t> kv;  // the KV tensor's bytes
    Buffer q_buffer, kv_buffer, out_buffer, lse_buffer;
    dsa_tensor_t q_tensor, kv_tensor, out_tensor, lse_tensor;

    // `query_shape`: the leading dimensions of q (S_q, or B and s_q); the KV tensor has `slots`
    // entries (paged: slots / 64 pages).
    AttentionData(Bench& bench, Random& random, std::vector<int64_t> query_shape, int64_t heads, int64_t d_qk,
                  int64_t d_v, int64_t slots, bool paged, bool fp8);
    int64_t rows() const;
    int64_t entry_bytes() const { return fp8 ? 656 : d_qk * 2; }
    double query_bytes() const { return static_cast<double>(rows()) * heads * (d_qk + d_v) * 2; }
    // Compares out and lse of query rows `sample` with the oracle given those rows' indices
    // (`indices`: [sample.size(), k], flat rows of q).
    std::string check_rows(Bench& bench, const std::vector<int64_t>& sample, const std::vector<int32_t>& indices,
                           int64_t k) const;
};

// k distinct random tokens of [0, range) per row, -1 padded when range < k.
std::vector<int32_t> random_selection(Random& random, int64_t k, int64_t range);
// `rows` such rows, one after the other ([rows, k]).
std::vector<int32_t> random_selections(Random& random, int64_t rows, int64_t k, int64_t range);

// A block table int32 [batch, max_pages]: every page of the cache once, shuffled.
std::vector<int32_t> random_block_table(Random& random, int64_t batch, int64_t max_pages);

// The prefill sparse attention case's inputs (S_q, S_kv, H_q, k, d_qk, d_v): bf16 q and kv, and k
// random tokens of the whole [0, S_kv) per query row.
struct PrefillAttention {
    AttentionData data;
    std::vector<int32_t> indices;
    Buffer index_buffer;
    dsa_tensor_t index_tensor;
    PrefillAttention(Bench& bench, Random& random, const Shape& shape);
};

// Distinct entries among valid indices (>= 0) below `slots`.
int64_t unique_slots(const std::vector<int32_t>& indices, int64_t slots);

// 2 * H_q * queries * k * (d_qk + d_v): PERFORMANCE.md's count (invalid slots count).
inline double attention_flop(int64_t heads, int64_t rows, int64_t k, int64_t d_qk, int64_t d_v) {
    return 2.0 * heads * static_cast<double>(rows) * k * (d_qk + d_v);
}

}  // namespace dsa_bench
