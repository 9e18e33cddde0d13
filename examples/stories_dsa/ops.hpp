// The libdsa calls the demo makes, on one sequence at a time (causal windows from position 0:
// query row t sees tokens [0, t + 1)). Host arrays in and out; the Device stages them. Every
// function throws LibraryError when libdsa refuses.
#pragma once

#include <cstdint>

#include "device.hpp"

namespace stories {

// How many tokens a query keeps, and which are forced (DSA_SPEC section 5, hybrid selection).
struct TopkChoice {
    int32_t k = 0;
    int32_t n_sink = 0;   // the first n_sink tokens of the window
    int32_t n_local = 0;  // the last n_local tokens of the window (the query itself included)
};

// x f32 [rows, width] -> e4m3 codes [rows, width] and one power-of-two (ue8m0) scale per group of
// `group` consecutive values: scales [rows, width / group]. With `rotate`, each row is first
// rotated by H_width / sqrt(width) (width a power of two), fused into the same library call.
void quantize_fp8(const Device& device, const float* x, int64_t rows, int64_t width, int64_t group, bool rotate,
                  uint8_t* codes, float* scales);

// The fused FP8 lightning indexer + top-k over a causal sequence: q codes [rows, heads, dim],
// weights [rows, heads] (q's scale folded in), k codes [rows, dim] with k_scale [rows];
// indices [rows, choice.k] (-1 padding where a row sees fewer tokens).
void indexer_topk(const Device& device, const uint8_t* q, const float* weights, const uint8_t* k,
                  const float* k_scale, int64_t rows, int64_t heads, int64_t dim, const TopkChoice& choice,
                  int32_t* indices);

// Top-k of scores [rows, rows] over causal windows, into indices [rows, choice.k].
void topk(const Device& device, const float* scores, int64_t rows, const TopkChoice& choice, int32_t* indices);

// bf16 sparse MQA attention: q [rows, heads, d_qk], kv [rows, d_qk] (the value is the first d_v
// dims), indices [rows, k]; out bf16 [rows, heads, d_v].
void sparse_attention(const Device& device, const uint16_t* q, const uint16_t* kv, const int32_t* indices,
                      int64_t rows, int64_t heads, int64_t d_qk, int64_t d_v, int64_t k, float scale, uint16_t* out);

// The indexer distillation loss over one causal sequence (DSA_SPEC section 8.1) with the teacher
// given as its post-RoPE q [rows, teacher_heads, teacher_dim] and k [rows, teacher_kv_heads,
// teacher_dim]. Dense warm-up when indices is NULL, else the sparse stage over indices [rows, k].
// Returns the loss; writes the gradients d_q [rows, heads, dim], d_k [rows, dim], d_weights
// [rows, heads] of coeff * loss.
struct IndexerLossInputs {
    const float* q = nullptr;        // [rows, heads, dim]
    const float* k = nullptr;        // [rows, dim]
    const float* weights = nullptr;  // [rows, heads]
    int64_t rows = 0, heads = 0, dim = 0;
    const int32_t* indices = nullptr;  // [rows, k] or NULL (dense)
    int64_t k_selected = 0;
    const float* teacher_q = nullptr;
    const float* teacher_k = nullptr;
    int64_t teacher_heads = 0, teacher_kv_heads = 0, teacher_dim = 0;
    float teacher_scale = 0.0f;
    float coeff = 1.0f;
};
float indexer_loss(const Device& device, const IndexerLossInputs& inputs, float* d_q, float* d_k, float* d_weights);

}  // namespace stories
