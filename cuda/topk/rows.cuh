// What the CUDA top-k kernels share: the launch's description of the rows, and each row's window,
// forced (sink / local) tokens and the number of slots left for the competition.
#pragma once

#include "../../core/ops/topk.hpp"

namespace dsa::cuda {

struct TopkRows {
    const float* scores;
    int64_t score_row_stride;
    int64_t n;
    const int32_t* row_starts;  // NULL: 0
    int64_t row_starts_stride;
    const int32_t* row_ends;    // NULL: n
    int64_t row_ends_stride;
    const int32_t* block_table;  // NULL: no translation
    int64_t table_row_stride;
    int64_t table_page_stride;
    int64_t max_pages;
    int64_t rows_per_table_row;
    int32_t* indices;
    int64_t index_row_stride;
    int64_t k;
    int64_t n_sink;
    int64_t n_local;
    int64_t page_size;
    TopkOrder order;
};

// The tokens of the window that are kept whatever their score: [begin, sink_end) and
// [local_begin, end).
struct ForcedTokens {
    int64_t sink_end;
    int64_t local_begin;
    __device__ bool contains(int64_t token) const { return token < sink_end || token >= local_begin; }
    __device__ int64_t count(const TopkWindow& window) const {
        return (sink_end - window.begin) + (window.end - (local_begin > sink_end ? local_begin : sink_end));
    }
};

struct TopkRow {
    TopkWindow window;
    ForcedTokens forced;
    int64_t need;  // slots left for the best non-forced tokens: k - forced, >= 0 (n_sink + n_local <= k)
};

__device__ inline TopkRow describe_topk_row(const TopkRows& p, int64_t row) {
    const int64_t start = p.row_starts ? p.row_starts[row * p.row_starts_stride] : 0;
    const int64_t end = p.row_ends ? p.row_ends[row * p.row_ends_stride] : p.n;
    TopkRow described;
    described.window = clamp_topk_window(start, end, p.n);
    const int64_t length = described.window.end - described.window.begin;
    described.forced.sink_end = described.window.begin + (p.n_sink < length ? p.n_sink : length);
    described.forced.local_begin = described.window.end - (p.n_local < length ? p.n_local : length);
    described.need = p.k - described.forced.count(described.window);
    return described;
}

__device__ inline uint32_t topk_key_at(const float* row, int64_t token) {
    return topk_preference_key(__ldg(row + token));
}

// The output value of a selected token: itself, or its slot through the row's block-table row.
__device__ inline int32_t topk_output(const TopkRows& p, int64_t row, int64_t token) {
    if (p.block_table == nullptr) return static_cast<int32_t>(token);
    const int32_t* table_row = p.block_table + (row / p.rows_per_table_row) * p.table_row_stride;
    return translate_topk_slot(static_cast<int32_t>(token), table_row, p.table_page_stride, p.max_pages, p.page_size);
}

}  // namespace dsa::cuda
