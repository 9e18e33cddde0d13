// Backward pass of sparse MLA attention (DSA_SPEC section 8.2), prefill form: the problem
// description, validation, the workspace size, the CPU backend and the float64 oracle.
#pragma once

#include <cstdint>
#include <vector>

#include "../context.hpp"
#include "indexer_topk.hpp"

namespace dsa {

// Codes equal dsa.h's DSA_SPARSE_ATTENTION_BACKWARD_*.
enum class SparseAttentionBackwardMode : uint32_t { deterministic = 0, fast = 1 };

struct SparseAttentionBackwardConfig {
    float scale = 0.0f;
    int64_t d_v = 512;
    SparseAttentionBackwardMode mode = SparseAttentionBackwardMode::deterministic;
};

struct SparseAttentionBackwardProblem {
    SparseAttentionBackwardConfig config;
    TensorView q;            // bf16 or f32 [rows, heads, d_qk], unit last stride
    TensorView kv;           // bf16 or f32 [tokens, d_qk], unit last stride
    TensorView indices;      // i32 [rows, topk], unit last stride
    TensorView attn_sink;    // f32 [heads]
    TensorView topk_length;  // i32 [rows]
    TensorView out;          // bf16 or f32 [rows, heads, d_v], unit last stride
    TensorView lse;          // f32 [rows, heads]
    TensorView dout;         // bf16 or f32 [rows, heads, d_v], unit last stride
    TensorView dq;           // f32 or bf16 [rows, heads, d_qk], unit last stride
    TensorView dkv;          // f32 [tokens, d_qk], unit last stride
    TensorView d_attn_sink;  // f32 [heads]
    bool has_attn_sink = false, has_topk_length = false, has_d_attn_sink = false;
    int64_t rows = 0, heads = 0, d_qk = 0, d_v = 0, topk = 0, tokens = 0;

    // Row t's valid indices in order (the first topk_length[t], those in [0, tokens)).
    void entries(int64_t row, std::vector<int32_t>& entries) const;
};

// INVALID_ARGUMENT naming params.mode unless it is one of dsa.h's modes (the workspace query
// takes it too).
Status check_sparse_attention_backward_mode(SparseAttentionBackwardMode mode);

// Scratch bytes of dsa_sparse_attention_backward on the context's device into *bytes; -1 when
// the counts (non-negative) make a size int64 cannot hold (the callers name the arguments).
// Returns the CUDA backend's sizing errors (its CUB query, a panel beyond 2^31 - 1 entries).
Status sparse_attention_backward_workspace_bytes(const Context& context, const SparseAttentionBackwardConfig& config,
                                                 int64_t rows, int64_t topk, int64_t tokens, int64_t d_qk,
                                                 int64_t* bytes);

Status sparse_attention_backward(Context& context, const SparseAttentionBackwardConfig& config, const TensorView* q,
                                 const TensorView* kv, const TensorView* indices, const TensorView* attn_sink,
                                 const TensorView* topk_length, const TensorView* out, const TensorView* lse,
                                 const TensorView* dout, const TensorView* dq, const TensorView* dkv,
                                 const TensorView* d_attn_sink, Workspace workspace, Stream stream);

namespace cpu {
int64_t sparse_attention_backward_workspace_bytes(const Context& context, int64_t rows, int64_t topk, int64_t tokens,
                                                  int64_t d_qk);
// workspace: that many bytes (16-byte aligned), or NULL to allocate.
void sparse_attention_backward(Context& context, const SparseAttentionBackwardProblem& problem, void* workspace);
}  // namespace cpu

namespace cuda {
// Scratch bytes of the CUDA backend (dsa.h states the formula), for counts that fit int64.
Status sparse_attention_backward_workspace_bytes(const Context& context, const SparseAttentionBackwardConfig& config,
                                                 int64_t rows, int64_t topk, int64_t tokens, int64_t d_qk,
                                                 int64_t* bytes);
// On the caller's stream, no host synchronisation; workspace: that many bytes or NULL (then
// stream-ordered scratch).
Status sparse_attention_backward(Context& context, const SparseAttentionBackwardProblem& problem, Workspace workspace,
                                 Stream stream);
}  // namespace cuda

namespace reference {

// The problem in float64 with contiguous row-major arrays, for finite differences.
struct SparseAttentionBackwardInputs {
    double scale = 0.0;
    int64_t rows = 0, heads = 0, d_qk = 0, d_v = 0, topk = 0, tokens = 0;
    bool has_attn_sink = false, has_topk_length = false;
    std::vector<double> q, kv, attn_sink, out, lse, dout;
    std::vector<int32_t> indices, topk_length;
};

struct SparseAttentionForwardResult {
    std::vector<double> out, lse;  // lse without the sink; +inf for a row with no valid index
};

struct SparseAttentionBackwardResult {
    std::vector<double> dq, dkv, d_attn_sink;
};

// dsa_sparse_attention's forward of `inputs` (its out and lse are not read), in float64.
SparseAttentionForwardResult sparse_attention_forward(const SparseAttentionBackwardInputs& inputs);
// The formulas of dsa.h one (row, head, entry) at a time, in float64.
SparseAttentionBackwardResult sparse_attention_backward(const SparseAttentionBackwardInputs& inputs);

}  // namespace reference

}  // namespace dsa
