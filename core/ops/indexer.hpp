// Lightning indexer (DSA_SPEC section 4) and its paged key cache (section 7.1): the problem
// descriptions shared by every backend, validation, and the backend entry points.
#pragma once

#include "../context.hpp"

namespace dsa {

// Tokens per page of the paged indexer key cache.
inline constexpr int64_t kIndexerPageTokens = 64;

// Where the keys of an indexer problem come from.
enum class IndexerKeys : int32_t {
    contiguous,  // k [columns, dim] + k_scale, a window [ks, ke) per row (ragged prefill)
    paged,       // k_cache pages through block_table, causal up to context_lens (decode)
};

// One validated indexer problem: logits[row, column] for rows = query rows (S_q, or B * n_next
// in the paged form) and columns = key tokens (S_kv, or max_context).
struct IndexerProblem {
    IndexerKeys keys = IndexerKeys::contiguous;
    TensorView q;        // e4m3 codes: [rows, heads, dim] or [batch, next_n, heads, dim]
    TensorView weights;  // f32 [rows, heads]
    TensorView logits;   // f32 [rows, columns]: the materialised op's output (unset in a fused op)
    // IndexerKeys::contiguous
    TensorView k;        // e4m3 codes [columns, dim], unit last stride
    TensorView k_scale;  // f32 [columns]
    TensorView ks;       // i32 [rows]
    TensorView ke;       // i32 [rows]
    // IndexerKeys::paged
    TensorView k_cache;       // u8 [num_pages, 64 * (dim + 4)], unit last stride
    TensorView block_table;   // i32 [batch, max_pages]
    TensorView context_lens;  // i32 [batch]
    int64_t rows = 0;
    int64_t heads = 0;
    int64_t dim = 0;
    int64_t columns = 0;
    int64_t next_n = 1;  // paged: query rows per sequence
    int64_t num_pages = 0;
    int64_t max_pages = 0;

    // Element (= byte) offset in q of row `row`'s contiguous [heads, dim] block.
    DSA_HOST_DEVICE int64_t q_offset(int64_t row) const {
        if (keys == IndexerKeys::contiguous) return row * q.strides[0];
        return (row / next_n) * q.strides[0] + (row % next_n) * q.strides[1];
    }

    DSA_HOST_DEVICE int64_t sequence(int64_t row) const { return row / next_n; }

    // The visible token window [*begin, *end) of a row, with the data-dependent values clamped
    // as dsa.h documents: ks/ke to [0, columns]; context_lens to [0, min(columns, 64 *
    // max_pages)]. An empty window has *begin == *end.
    DSA_HOST_DEVICE void window(int64_t row, int64_t* begin, int64_t* end) const {
        int64_t first = 0, last = 0;
        if (keys == IndexerKeys::contiguous) {
            first = ks.as<const int32_t>()[row * ks.strides[0]];
            last = ke.as<const int32_t>()[row * ke.strides[0]];
            first = first < 0 ? 0 : (first > columns ? columns : first);
            last = last < 0 ? 0 : (last > columns ? columns : last);
        } else {
            // 64 * max_pages may not fit int64 (a stride-0 block table can be that long).
            const int64_t limit = max_pages > columns / kIndexerPageTokens ? columns : max_pages * kIndexerPageTokens;
            int64_t length = context_lens.as<const int32_t>()[sequence(row) * context_lens.strides[0]];
            length = length < 0 ? 0 : (length > limit ? limit : length);
            last = length - next_n + row % next_n + 1;
            last = last < 0 ? 0 : last;
        }
        *begin = first < last ? first : 0;
        *end = first < last ? last : 0;
    }

    // Paged: the page holding 64-token block `block` of the row's sequence, or -1 when the
    // block-table entry is outside [0, num_pages).
    DSA_HOST_DEVICE int64_t page(int64_t row, int64_t block) const {
        const int64_t entry =
            block_table.as<const int32_t>()[sequence(row) * block_table.strides[0] + block * block_table.strides[1]];
        return entry >= 0 && entry < num_pages ? entry : -1;
    }
};

// Quantise-and-scatter of keys into the paged cache.
struct IndexerCacheWriteProblem {
    TensorView k;             // f32 or bf16 [tokens, dim], unit last stride
    TensorView slot_mapping;  // i64 [tokens]
    TensorView k_cache;       // u8 [num_pages, 64 * (dim + 4)], unit last stride
    int64_t tokens = 0;
    int64_t dim = 0;
    int64_t num_pages = 0;
};

// Validate every input (not the output) and fill *problem, so the materialised op and a fused
// indexer + top-k share one set of rules. `max_context` is the paged form's column count.
Status describe_indexer(Context& context, const TensorView* q, const TensorView* weights, const TensorView* k,
                        const TensorView* k_scale, const TensorView* ks, const TensorView* ke,
                        IndexerProblem* problem);
Status describe_indexer_paged(Context& context, const TensorView* q, const TensorView* weights,
                              const TensorView* k_cache, const TensorView* block_table,
                              const TensorView* context_lens, int64_t max_context, IndexerProblem* problem);

// The ABI's ops: validate (messages name the argument), then run on the context's device.
Status indexer_logits(Context& context, const TensorView* q, const TensorView* weights, const TensorView* k,
                      const TensorView* k_scale, const TensorView* ks, const TensorView* ke, const TensorView* logits,
                      Stream stream);
Status indexer_logits_paged(Context& context, const TensorView* q, const TensorView* weights,
                            const TensorView* k_cache, const TensorView* block_table, const TensorView* context_lens,
                            const TensorView* logits, Stream stream);
Status indexer_cache_write(Context& context, const TensorView* k, const TensorView* slot_mapping,
                           const TensorView* k_cache, Stream stream);

namespace cpu {
// Logits of query rows [row_begin, row_end) of a validated problem (either key form) into a
// caller buffer: row r, column c at out[(r - row_begin) * out_row_stride + c] for c in
// [0, problem.columns); nothing else is written. problem.logits is not used, so a fused
// indexer + top-k can score a block of rows at a time without the [rows, columns] matrix.
// Runs on the context's pool (it may be called from inside a pool task). The value of every
// element is independent of the row range, the thread count and the tiling: the same inputs
// give bitwise the same logits whichever way they are cut.
void indexer_logits_rows(Context& context, const IndexerProblem& problem, int64_t row_begin, int64_t row_end,
                         float* out, int64_t out_row_stride);
void indexer_cache_write(Context& context, const IndexerCacheWriteProblem& problem);
}  // namespace cpu

namespace cuda {
// The CUDA counterpart of cpu::indexer_logits_rows, on `stream` (out is device memory). Every
// element of a row's window is written; with outside_windows, so is every other column of
// [0, problem.columns) (-inf, the materialised op's contract), else those may be left as they
// are (the fused op's selection reads windows only). Values do not depend on the row range.
Status indexer_logits_rows(Context& context, const IndexerProblem& problem, int64_t row_begin, int64_t row_end,
                           float* out, int64_t out_row_stride, bool outside_windows, Stream stream);
Status indexer_cache_write(Context& context, const IndexerCacheWriteProblem& problem, Stream stream);
}  // namespace cuda

namespace reference {
// Scalar oracles for tests, from the formulas of DSA_SPEC sections 4 and 7.1 with f64 sums:
// they write problem.logits / problem.k_cache.
void indexer_logits(const IndexerProblem& problem);
void indexer_cache_write(const IndexerCacheWriteProblem& problem);
}  // namespace reference

}  // namespace dsa
