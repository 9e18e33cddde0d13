// Indexer distillation loss (DSA_SPEC section 8.1), forward and backward in one op: the problem
// description, validation, the CPU backend and the float64 oracle of the tests.
#pragma once

#include <cstdint>
#include <vector>

#include "../context.hpp"

namespace dsa {

// Codes equal dsa.h's DSA_INDEXER_LOSS_*.
enum class IndexerLossMode : uint32_t { dense = 0, sparse = 1 };

struct IndexerLossConfig {
    IndexerLossMode mode = IndexerLossMode::dense;
    float coeff = 1.0f;
    float teacher_scale = 0.0f;
};

// One validated problem. Every row t has an entry list: DENSE, the tokens of its window
// [ks[t], ke[t]) clamped to [0, tokens]; SPARSE, the entries of indices[t, :] inside that window,
// in order (a token listed twice is two entries). Teacher and student are distributions over
// the entries.
struct IndexerLossProblem {
    IndexerLossConfig config;
    TensorView index_q;        // f32 or bf16 [rows, heads, dim], unit last stride
    TensorView index_k;        // f32 or bf16 [tokens, dim], unit last stride
    TensorView weights;        // f32 or bf16 [rows, heads]
    TensorView ks, ke;         // i32 [rows]
    TensorView indices;        // i32 [rows, topk], unit last stride (SPARSE)
    TensorView teacher_q;      // f32 or bf16 [rows, teacher_heads, teacher_dim], unit last stride
    TensorView teacher_k;      // f32 or bf16 [tokens, (teacher_kv_heads,) teacher_dim], unit last stride
    TensorView teacher_probs;  // f32 [rows, tokens], unit last stride
    TensorView loss;           // f32 [] or [1]
    TensorView row_loss;       // f32 [rows]
    TensorView d_index_q;      // f32 like index_q
    TensorView d_index_k;      // f32 like index_k
    TensorView d_weights;      // f32 [rows, heads], unit last stride
    bool has_teacher_probs = false;  // else teacher_q / teacher_k
    bool has_loss = false, has_row_loss = false;
    bool has_d_index_q = false, has_d_index_k = false, has_d_weights = false;
    int64_t rows = 0;    // T
    int64_t tokens = 0;  // S
    int64_t heads = 0;   // H_I
    int64_t dim = 0;     // D_I
    int64_t topk = 0;    // k (SPARSE)
    int64_t teacher_heads = 0;     // H_q
    int64_t teacher_kv_heads = 0;  // H_kv (1 for a rank-2 teacher_k)
    int64_t teacher_dim = 0;       // d

    bool wants_gradients() const { return has_d_index_q || has_d_index_k || has_d_weights; }

    // Row t's clamped window: [*begin, *end), empty when *begin == *end.
    void window(int64_t row, int64_t* begin, int64_t* end) const;
    // Row t's entries (token indices) into `entries`, replacing its contents.
    void entries(int64_t row, std::vector<int32_t>& entries) const;
};

Status indexer_loss(Context& context, const IndexerLossConfig& config, const TensorView* index_q,
                    const TensorView* index_k, const TensorView* weights, const TensorView* ks, const TensorView* ke,
                    const TensorView* indices, const TensorView* teacher_q, const TensorView* teacher_k,
                    const TensorView* teacher_probs, const TensorView* loss, const TensorView* row_loss,
                    const TensorView* d_index_q, const TensorView* d_index_k, const TensorView* d_weights,
                    Stream stream);

namespace cpu {
void indexer_loss(Context& context, const IndexerLossProblem& problem);
}
namespace cuda {
// On the caller's stream, no host synchronisation; scratch is stream-ordered (cudaMallocAsync).
Status indexer_loss(Context& context, const IndexerLossProblem& problem, Stream stream);
}

namespace reference {

// The problem in float64 with contiguous row-major arrays, so tests can take central finite
// differences of the loss. teacher_k is [tokens, teacher_kv_heads, teacher_dim].
struct IndexerLossInputs {
    IndexerLossMode mode = IndexerLossMode::dense;
    double coeff = 1.0;
    double teacher_scale = 0.0;
    int64_t rows = 0, tokens = 0, heads = 0, dim = 0, topk = 0;
    int64_t teacher_heads = 0, teacher_kv_heads = 1, teacher_dim = 0;
    bool has_teacher_probs = false;
    std::vector<double> index_q, index_k, weights, teacher_q, teacher_k, teacher_probs;
    std::vector<int32_t> ks, ke, indices;
};

struct IndexerLossResult {
    double loss = 0.0;
    std::vector<double> row_loss, d_index_q, d_index_k, d_weights;
    std::vector<bool> active;
};

// The formulas of dsa.h one entry at a time, every sum in float64.
IndexerLossResult indexer_loss(const IndexerLossInputs& inputs);

}  // namespace reference

}  // namespace dsa
