// Sparse MLA attention (DSA_SPEC section 6): prefill over a token-major KV tensor and decode over
// a paged bf16 or FP8 (section 7.2) cache, sharing one problem description and one kernel.
#pragma once

#include "../context.hpp"
#include "mla_cache.hpp"

namespace dsa {

struct SparseAttentionConfig {
    float scale = 0.0f;  // required: 0 is rejected
    int64_t d_v = 512;
};

enum class KvFormat { bf16, fp8_mla };

// Query rows r in [0, rows) are the leading dimensions of q flattened (S_q, or B * s_q); each has
// `heads` heads. KV slots s in [0, num_slots) address entries of `kv`: token-major [S_kv, width]
// or paged [num_pages, page_size, width].
struct SparseAttentionProblem {
    TensorView q;            // bf16 [rows..., heads, d_qk]
    TensorView kv;           // bf16 (width d_qk) or U8 (width 656, KvFormat::fp8_mla)
    TensorView indices;      // i32 [rows..., topk]
    TensorView attn_sink;    // f32 [heads]; valid when has_attn_sink
    TensorView topk_length;  // i32 [rows...]; valid when has_topk_length
    TensorView out;          // bf16 [rows..., heads, d_v]
    TensorView lse;          // f32 [rows..., heads]
    TensorView max_logits;   // f32 [rows..., heads]; valid when has_max_logits
    bool has_attn_sink = false;
    bool has_topk_length = false;
    bool has_max_logits = false;
    KvFormat format = KvFormat::bf16;
    float scale = 0.0f;
    int64_t d_qk = 0;
    int64_t d_v = 0;
    int64_t heads = 0;
    int64_t rows = 0;
    int64_t topk = 0;
    bool paged = false;
    int64_t page_size = 0;  // paged only
    int64_t num_slots = 0;

    // The first byte of a valid slot's entry.
    const uint8_t* entry(int64_t slot) const {
        const int64_t element = paged ? (slot / page_size) * kv.strides[0] + (slot % page_size) * kv.strides[1]
                                      : slot * kv.strides[0];
        return kv.as<const uint8_t>() + element * (format == KvFormat::bf16 ? 2 : 1);
    }
};

// Flat element index -> element offset over every dimension of a tensor (for the per-row
// tensors topk_length [rows...] whose rank differs between the two forms).
inline RowLayout element_layout(const TensorView& tensor) {
    RowLayout layout;
    layout.ndim = tensor.ndim;
    for (int axis = 0; axis < tensor.ndim; ++axis) {
        layout.shape[axis] = tensor.shape[axis];
        layout.strides[axis] = tensor.strides[axis];
    }
    return layout;
}

// Prefill: q [S_q, H_q, d_qk], kv [S_kv, d_qk], max_logits optional.
Status sparse_attention(Context& context, const SparseAttentionConfig& config, const TensorView* q,
                        const TensorView* kv, const TensorView* indices, const TensorView* attn_sink,
                        const TensorView* topk_length, const TensorView* out, const TensorView* lse,
                        const TensorView* max_logits, Stream stream);
// Decode: q [B, s_q, H_q, d_qk], kv_cache paged bf16 or FP8 MLA.
Status sparse_attention_paged(Context& context, const SparseAttentionConfig& config, const TensorView* q,
                              const TensorView* kv_cache, const TensorView* indices, const TensorView* attn_sink,
                              const TensorView* topk_length, const TensorView* out, const TensorView* lse,
                              Stream stream);

// Validation only (every input and output), so the one-call pipeline can check everything
// before it runs anything; run_sparse_attention then runs a described problem.
Status describe_sparse_attention(Context& context, const SparseAttentionConfig& config, const TensorView* q,
                                 const TensorView* kv, const TensorView* indices, const TensorView* attn_sink,
                                 const TensorView* topk_length, const TensorView* out, const TensorView* lse,
                                 const TensorView* max_logits, SparseAttentionProblem* problem);
Status describe_sparse_attention_paged(Context& context, const SparseAttentionConfig& config, const TensorView* q,
                                       const TensorView* kv_cache, const TensorView* indices,
                                       const TensorView* attn_sink, const TensorView* topk_length,
                                       const TensorView* out, const TensorView* lse, SparseAttentionProblem* problem);
Status run_sparse_attention(Context& context, const SparseAttentionProblem& problem, Stream stream);

namespace cpu {
void sparse_attention(Context& context, const SparseAttentionProblem& problem);
}
namespace cuda {
// On the caller's stream, no host synchronisation. A generic mma.sync kernel (sm_80+) for every
// shape up to d_qk 1024; for d_qk 576, d_v 512 with 16-byte aligned q and kv rows, the sm_90a
// wgmma kernel on sm_90 when H_q is a multiple of 64 (and out rows are aligned; unless
// DSA_CUDA_SM90_ATTENTION=0), else the narrow 16-head mma.sync kernel (unless
// DSA_CUDA_NARROW_ATTENTION=0). Rows too few to fill the GPU are split over the index list into
// stream-ordered scratch (cudaMallocAsync) and merged by a second kernel.
Status sparse_attention(Context& context, const SparseAttentionProblem& problem, Stream stream);
}
namespace reference {
// Scalar oracle for tests: f64 dot products and a two-pass softmax per (row, head).
void sparse_attention(const SparseAttentionProblem& problem);
}

}  // namespace dsa
