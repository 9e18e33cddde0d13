// The one-call DSA layer step: lightning indexer -> top-k -> sparse attention, for ragged
// prefill and for paged decode, without the [rows, tokens] logits matrix. Everything is
// validated before anything runs, so an error leaves every output untouched.
#pragma once

#include "indexer_topk.hpp"
#include "sparse_attention.hpp"

namespace dsa {

// Scratch bytes of dsa_attention(_paged) for `rows` query rows over `columns` key tokens:
// the selected indices (rows * k int32) followed by the fused indexer + top-k scratch; -1 when
// the count does not fit int64.
int64_t attention_workspace_bytes(const Context& context, int64_t rows, int64_t columns, int64_t k);

struct IndexerInputs {
    const TensorView* q;        // e4m3 [S_q, H_I, D_I] (paged: [B, s_q, H_I, D_I])
    const TensorView* weights;  // f32 [rows, H_I]
    const TensorView* k;        // prefill: e4m3 [S_kv, D_I]
    const TensorView* k_scale;  // prefill: f32 [S_kv]
    const TensorView* ks;       // prefill: i32 [S_q]
    const TensorView* ke;       // prefill: i32 [S_q]
    const TensorView* k_cache;       // paged: u8 [num_pages, 64 * (D_I + 4)]
    const TensorView* block_table;   // paged: i32 [B, max_pages]
    const TensorView* context_lens;  // paged: i32 [B]
};

struct AttentionInputs {
    const TensorView* q;          // bf16 [S_q, H_q, d_qk] (paged: [B, s_q, H_q, d_qk])
    const TensorView* kv;         // prefill: bf16 [S_kv, d_qk]; paged: the MLA cache (64-token pages)
    const TensorView* attn_sink;  // f32 [H_q] or NULL
    const TensorView* out;        // bf16 [..., H_q, d_v]
    const TensorView* lse;        // f32 [..., H_q]
};

// selected (optional): i32 [rows, k] receives the token indices (prefill) or cache slots
// (paged) the attention used.
Status attention(Context& context, const TopkConfig& topk, const SparseAttentionConfig& config,
                 const IndexerInputs& indexer, const AttentionInputs& attention, const TensorView* selected,
                 Workspace workspace, Stream stream);
Status attention_paged(Context& context, const TopkConfig& topk, const SparseAttentionConfig& config,
                       const IndexerInputs& indexer, const AttentionInputs& attention, const TensorView* selected,
                       Workspace workspace, Stream stream);

}  // namespace dsa
