// Fused lightning indexer + top-k (DSA_SPEC sections 4 and 5): the indices the materialised
// logits followed by top-k would give, computed a tile of query rows at a time so the
// [rows, columns] logits matrix never exists (causal 128K prefill would need 64 GB of it).
#pragma once

#include "indexer.hpp"
#include "topk.hpp"

namespace dsa {

// Scratch bytes the fused op needs for `rows` query rows over `columns` key tokens on the
// context's device (0 when it needs none); -1 when the count does not fit int64.
int64_t indexer_topk_workspace_bytes(const Context& context, int64_t rows, int64_t columns);

// A caller-provided scratch buffer (data NULL: the op allocates its own).
struct Workspace {
    void* data = nullptr;
    int64_t bytes = 0;
};

// Ragged prefill: each row selects from its window [ks, ke); indices int32 [S_q, k].
Status indexer_topk(Context& context, const TopkConfig& config, const TensorView* q, const TensorView* weights,
                    const TensorView* k, const TensorView* k_scale, const TensorView* ks, const TensorView* ke,
                    const TensorView* indices, Workspace workspace, Stream stream);

// Paged decode over max_pages * 64 columns: each row selects from its visible tokens; token
// indices into `indices` and/or block-table slots (page size config.page_size) into `slots`,
// both int32 [B * n_next, k], at least one given.
Status indexer_topk_paged(Context& context, const TopkConfig& config, const TensorView* q,
                          const TensorView* weights, const TensorView* k_cache, const TensorView* block_table,
                          const TensorView* context_lens, const TensorView* indices, const TensorView* slots,
                          Workspace workspace, Stream stream);

namespace cpu {
// indices_out / slots_out: int32 rows with the given row strides (either may be NULL).
void indexer_topk(Context& context, const IndexerProblem& indexer, const TopkConfig& config, float* tile_buffer,
                  int64_t tile_rows, int32_t* indices_out, int64_t indices_row_stride, int32_t* slots_out,
                  int64_t slots_row_stride);
// Rows of logits per tile for a problem of this many columns (>= 1).
int64_t indexer_topk_tile_rows(const Context& context, int64_t rows, int64_t columns);
}  // namespace cpu

namespace cuda {
// Device scratch of the CUDA fused op: one tile of logit rows and the tile's row windows.
int64_t indexer_topk_workspace_bytes(int64_t rows, int64_t columns);
// indices / slots: device int32 rows with the given row strides (either may be NULL, not both).
// workspace.data NULL: the scratch is allocated and freed on `stream` (cudaMallocAsync).
Status indexer_topk(Context& context, const IndexerProblem& indexer, const TopkConfig& config, Workspace workspace,
                    int32_t* indices, int64_t indices_row_stride, int32_t* slots, int64_t slots_row_stride,
                    Stream stream);
}  // namespace cuda

}  // namespace dsa
