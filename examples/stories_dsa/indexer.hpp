// The lightning indexer each layer gets (DSA_SPEC section 4), the example's own small model:
//     q[t] = Wq x[t]  (heads x dim),  k[t] = Wk x[t]  (dim),  w[t] = Ww x[t] + b  (heads),
// x the layer's normed attention input, RoPE on the first rope_dim dims of every q head and of k
// (the model's own rotary frequencies, repeated every head_size dims), and the score
//     I[t, s] = sum_h w[t, h] * ReLU(q[t, h] . k[s]).
// Training runs it in f32 (libdsa's indexer loss gives dI / dq, dk, dw; backward() takes them
// through RoPE and the projections); inference quantises q and k to FP8 through libdsa.
#pragma once

#include <cstdint>
#include <vector>

#include "model.hpp"
#include "ops.hpp"

namespace stories {

struct IndexerShape {
    int32_t heads = 16;
    int32_t dim = 32;
    int32_t rope_dim = 32;  // even, <= dim
};

// Where training starts.
enum class IndexerInit {
    random,   // small random projections
    teacher,  // the layer's own attention: head h < n_heads scores q_h . k_(h's kv head) exactly
};

// One layer's indexer activations for `rows` rows.
struct IndexerActivations {
    std::vector<float> q;        // [rows, heads, dim]
    std::vector<float> k;        // [rows, dim]
    std::vector<float> weights;  // [rows, heads]
};

class LayerIndexer {
public:
    // Weights drawn from `seed` (stream = layer), then, for IndexerInit::teacher, the teacher's
    // projections copied in (needs dim, rope_dim >= kv_dim and heads >= n_heads: throws otherwise).
    LayerIndexer(const Model& model, int layer, const IndexerShape& shape, IndexerInit init, uint64_t seed);

    const IndexerShape& shape() const { return shape_; }
    int64_t parameter_count() const { return static_cast<int64_t>(parameters_.size()); }
    std::vector<float>& parameters() { return parameters_; }

    // Activations of rows x [rows, model_dim]; row r is at position r % seq_len.
    void forward(const float* x, int64_t rows, int64_t seq_len, IndexerActivations& out) const;

    // Adds to gradient [parameter_count] the gradient of the loss whose derivatives with respect to
    // the activations of forward(x, rows, seq_len) are d_q, d_k, d_weights (overwritten: RoPE is
    // undone on d_q and d_k in place).
    void backward(const float* x, int64_t rows, int64_t seq_len, float* d_q, float* d_k, const float* d_weights,
                  float* gradient) const;

    // FP8 inference over one causal sequence x [rows, model_dim] through libdsa: q and k
    // Hadamard-rotated (when `rotate`), quantised to e4m3 with one ue8m0 scale per head vector
    // and per key, then the fused indexer + top-k. indices: [rows, choice.k].
    void select(const Device& device, const float* x, int64_t rows, bool rotate, const TopkChoice& choice,
                int32_t* indices) const;

private:
    // Offsets of the parts in parameters_: [model_dim][heads * dim], [model_dim][dim],
    // [model_dim][heads], [heads].
    int64_t query_offset() const { return 0; }
    int64_t key_offset() const { return model_dim_ * shape_.heads * shape_.dim; }
    int64_t weight_offset() const { return key_offset() + model_dim_ * shape_.dim; }
    int64_t bias_offset() const { return weight_offset() + model_dim_ * shape_.heads; }
    void copy_teacher(const Model& model, int layer);

    IndexerShape shape_;
    int64_t model_dim_;
    RopeTable rope_;  // width rope_dim, the model's period (head_size)
    std::vector<float> parameters_;
};

// Adam with bias correction, one instance per parameter vector.
class Adam {
public:
    explicit Adam(int64_t size) : first_(static_cast<size_t>(size)), second_(static_cast<size_t>(size)) {}
    void step(std::vector<float>& parameters, const std::vector<float>& gradient, float learning_rate);

private:
    std::vector<float> first_, second_;
    int64_t steps_ = 0;
};

}  // namespace stories
