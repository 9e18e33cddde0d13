// Top-k selection (DSA_SPEC section 5): the problem description, validation, the per-row CPU
// selection that the fused indexer + top-k op reuses, and the helpers every backend shares
// (preference key, window clamping, block-table translation).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "../context.hpp"

namespace dsa {

// Codes equal dsa.h's DSA_TOPK_ORDER_*.
enum class TopkOrder : uint32_t { unspecified = 0, score = 1, index = 2 };

struct TopkConfig {
    int64_t k = 2048;
    TopkOrder order = TopkOrder::unspecified;
    int64_t n_sink = 0;
    int64_t n_local = 0;
    int64_t page_size = 64;
};

// k >= 1, n_sink and n_local >= 0 with n_sink + n_local <= k, a known order, page_size >= 1.
Status validate_topk_config(const TopkConfig& config);

// scores f32 [R, N]; row_starts / row_ends int32 [R] when present; block_table int32
// [B, max_pages] when present; indices int32 [R, k].
struct TopkProblem {
    TensorView scores;
    TensorView row_starts;
    TensorView row_ends;
    TensorView block_table;
    TensorView indices;
    bool has_row_starts = false;
    bool has_row_ends = false;
    bool has_block_table = false;
    TopkConfig config;
    int64_t rows = 0;          // R
    int64_t n = 0;             // N
    int64_t block_rows = 0;    // B (1 when there is no block table)
    int64_t max_pages = 0;
};

Status topk(Context& context, const TopkConfig& config, const TensorView* scores, const TensorView* row_starts,
            const TensorView* row_ends, const TensorView* block_table, const TensorView* indices, Stream stream);

// The order of preference as an unsigned key: a larger key is a better score. A score of
// magnitude m maps to 2^31 + m or 2^31 - m by its sign, which is monotonic over finite values and
// +-inf (-inf is 0x00800000) and reads -0.0 as +0.0 (equal scores: a tie, decided by index); every
// NaN maps to 0, below -inf. Arithmetic and selects only, so CPU loops over it vectorise.
DSA_HOST_DEVICE uint32_t topk_preference_key(float score) {
    const uint32_t bits = float_bits(score);
    const uint32_t magnitude = bits & 0x7fffffffu;
    const uint32_t negative = static_cast<uint32_t>(static_cast<int32_t>(bits) >> 31);  // all ones or 0
    const uint32_t key = 0x80000000u + ((magnitude ^ negative) - negative);
    return magnitude > 0x7f800000u ? 0u : key;
}

// A row's window [start, end) clamped to [begin, end) within [0, n]; start >= end gives an empty
// window (begin == end).
struct TopkWindow {
    int64_t begin = 0;
    int64_t end = 0;
};
DSA_HOST_DEVICE TopkWindow clamp_topk_window(int64_t start, int64_t end, int64_t n) {
    TopkWindow window;
    window.begin = start < 0 ? 0 : (start > n ? n : start);
    window.end = end < window.begin ? window.begin : (end > n ? n : end);
    return window;
}

// Block-table translation of one selected token: block_table_row[page] is read at
// block_table_row + page * page_stride. -1 stays -1; a page >= max_pages, a negative entry or a
// slot beyond int32 gives -1, so no caller-supplied value leads to an out-of-bounds read.
DSA_HOST_DEVICE int32_t translate_topk_slot(int32_t token, const int32_t* block_table_row, int64_t page_stride,
                                            int64_t max_pages, int64_t page_size) {
    if (token < 0) return -1;
    const int64_t page = token / page_size;
    if (page >= max_pages) return -1;
    const int64_t block = block_table_row[page * page_stride];
    if (block < 0) return -1;
    const int64_t slot = block * page_size + token % page_size;
    return slot > INT32_MAX ? -1 : static_cast<int32_t>(slot);
}

// Row `row`'s clamped window (host code: reads row_starts / row_ends on the CPU).
inline TopkWindow topk_row_window(const TopkProblem& problem, int64_t row) {
    const int64_t start = problem.has_row_starts ? problem.row_starts.as<const int32_t>()[row * problem.row_starts.strides[0]] : 0;
    const int64_t end =
        problem.has_row_ends ? problem.row_ends.as<const int32_t>()[row * problem.row_ends.strides[0]] : problem.n;
    return clamp_topk_window(start, end, problem.n);
}

// Translates row `row`'s k selected tokens in place through its block-table row (host code; a
// no-op without a block table).
inline void translate_topk_row(const TopkProblem& problem, int64_t row, int32_t* tokens) {
    if (!problem.has_block_table) return;
    const TensorView& table = problem.block_table;
    const int64_t table_row = row / (problem.rows / problem.block_rows);
    // A table without pages may have NULL data: no row address then (every slot becomes -1).
    const int32_t* entries = problem.max_pages > 0 ? table.as<const int32_t>() + table_row * table.strides[0] : nullptr;
    for (int64_t i = 0; i < problem.config.k; ++i)
        tokens[i] = translate_topk_slot(tokens[i], entries, table.strides[1], problem.max_pages, problem.config.page_size);
}

namespace cpu {

// Buffers select_topk_row reuses between rows, so a chunk of rows allocates once.
struct TopkScratch {
    std::unique_ptr<uint64_t[]> candidates;  // (key << 32) | token, never zero-filled
    int64_t candidate_capacity = 0;
    std::vector<uint64_t> sort_keys;
};

// Selects one row: row_scores[j] is column j's score, read only for j in [window_begin,
// window_end) (a window already clamped to the row; window_begin >= window_end is empty, and
// window_begin >= 0). Writes exactly config.k column indices to out_indices, in config.order,
// -1 padded at the end, as dsa_topk specifies. config must have passed validate_topk_config;
// config.page_size is not used (translate with translate_topk_slot afterwards).
void select_topk_row(const float* row_scores, int64_t window_begin, int64_t window_end, const TopkConfig& config,
                     int32_t* out_indices, TopkScratch& scratch);

void topk(Context& context, const TopkProblem& problem);

}  // namespace cpu

namespace cuda {
// One block per row: radix select on the preference key, then an index-ordered pass that keeps
// the ties at the threshold by smaller index. DSA_TOPK_ORDER_SCORE sorts in shared memory, up
// to 16384 tokens per row (more is DSA_STATUS_UNSUPPORTED).
Status topk(Context& context, const TopkProblem& problem, Stream stream);
}  // namespace cuda

namespace reference {
// Scalar oracle for tests: a full sort of each window by the tie rule. For
// TopkOrder::unspecified it writes ascending index order.
void topk(const TopkProblem& problem);
}  // namespace reference

}  // namespace dsa
