#include "indexer.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include "linalg.hpp"
#include "random.hpp"

namespace stories {

LayerIndexer::LayerIndexer(const Model& model, int layer, const IndexerShape& shape, IndexerInit init, uint64_t seed)
    : shape_(shape),
      model_dim_(model.config.dim),
      rope_(model.config.seq_len, shape.rope_dim, model.config.head_size()) {
    if (shape.heads < 1 || shape.dim < 1 || shape.rope_dim < 0 || shape.rope_dim > shape.dim || shape.rope_dim % 2 != 0)
        throw std::runtime_error("indexer shape: need heads >= 1, dim >= 1 and an even rope_dim <= dim");
    const int64_t heads = shape.heads, dim = shape.dim;
    parameters_.assign(static_cast<size_t>(bias_offset() + heads), 0.0f);
    // Scales that keep q . k and I near 1 for inputs of unit RMS.
    Random random(seed, static_cast<uint64_t>(layer));
    const double projection_scale = 1.0 / std::sqrt(static_cast<double>(model_dim_));
    const double weight_scale = projection_scale / std::sqrt(static_cast<double>(heads * dim));
    for (int64_t i = 0; i < weight_offset(); ++i) parameters_[i] = static_cast<float>(random.normal() * projection_scale);
    for (int64_t i = weight_offset(); i < bias_offset(); ++i)
        parameters_[i] = static_cast<float>(random.normal() * weight_scale);
    if (init == IndexerInit::teacher) copy_teacher(model, layer);
}

void LayerIndexer::copy_teacher(const Model& model, int layer) {
    const ModelConfig& c = model.config;
    const int64_t head_size = c.head_size(), kv_dim = c.kv_dim(), heads = shape_.heads, dim = shape_.dim;
    if (dim < kv_dim || shape_.rope_dim < kv_dim || heads < c.n_heads)
        throw std::runtime_error("--init teacher needs indexer dim and rope dims >= " + std::to_string(kv_dim) +
                                 " and heads >= " + std::to_string(c.n_heads));
    const LayerWeights& teacher = model.layers[layer];
    float* wq = parameters_.data() + query_offset();
    float* wk = parameters_.data() + key_offset();
    float* ww = parameters_.data() + weight_offset();
    float* bias = parameters_.data() + bias_offset();
    // k = every kv head's key side by side; q head h = the teacher's q head h in the slot of its kv
    // head, zeros elsewhere; so q_h . k = the teacher's logit / scale, rotated alike.
    for (int64_t i = 0; i < model_dim_; ++i) {
        for (int64_t j = 0; j < kv_dim; ++j) wk[i * dim + j] = teacher.key[i * kv_dim + j];
        for (int64_t h = 0; h < c.n_heads; ++h) {
            float* row = wq + i * heads * dim + h * dim;
            for (int64_t j = 0; j < dim; ++j) row[j] = 0.0f;
            const int64_t slot = h / c.heads_per_kv_head() * head_size;
            for (int64_t j = 0; j < head_size; ++j) row[slot + j] = teacher.query[i * c.dim + h * head_size + j];
        }
        for (int64_t h = 0; h < c.n_heads; ++h) ww[i * heads + h] = 0.0f;
    }
    // I = the mean over teacher heads of ReLU(teacher logit).
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_size));
    for (int64_t h = 0; h < c.n_heads; ++h) bias[h] = scale / static_cast<float>(c.n_heads);
}

void LayerIndexer::forward(const float* x, int64_t rows, int64_t seq_len, IndexerActivations& out) const {
    const int64_t heads = shape_.heads, dim = shape_.dim;
    out.q.resize(static_cast<size_t>(rows * heads * dim));
    out.k.resize(static_cast<size_t>(rows * dim));
    out.weights.resize(static_cast<size_t>(rows * heads));
    const float* wq = parameters_.data() + query_offset();
    const float* wk = parameters_.data() + key_offset();
    const float* ww = parameters_.data() + weight_offset();
    const float* bias = parameters_.data() + bias_offset();
    parallel_for(rows, 16, [&](int64_t begin, int64_t end) {
        const int64_t count = end - begin;
        float* q = out.q.data() + begin * heads * dim;
        float* k = out.k.data() + begin * dim;
        float* w = out.weights.data() + begin * heads;
        matrix_times_matrix(x + begin * model_dim_, model_dim_, count, wq, model_dim_, heads * dim, q, heads * dim);
        matrix_times_matrix(x + begin * model_dim_, model_dim_, count, wk, model_dim_, dim, k, dim);
        matrix_times_matrix(x + begin * model_dim_, model_dim_, count, ww, model_dim_, heads, w, heads);
        for (int64_t r = 0; r < count; ++r) {
            const float* angles = rope_.angles((begin + r) % seq_len);
            for (int64_t h = 0; h < heads; ++h) rotate_pairs(q + (r * heads + h) * dim, shape_.rope_dim, angles, false);
            rotate_pairs(k + r * dim, shape_.rope_dim, angles, false);
            for (int64_t h = 0; h < heads; ++h) w[r * heads + h] += bias[h];
        }
    });
}

void LayerIndexer::backward(const float* x, int64_t rows, int64_t seq_len, float* d_q, float* d_k,
                            const float* d_weights, float* gradient) const {
    const int64_t heads = shape_.heads, dim = shape_.dim;
    parallel_for(rows, 64, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
            const float* angles = rope_.angles(r % seq_len);
            for (int64_t h = 0; h < heads; ++h) rotate_pairs(d_q + (r * heads + h) * dim, shape_.rope_dim, angles, true);
            rotate_pairs(d_k + r * dim, shape_.rope_dim, angles, true);
        }
    });
    // d W[i][:] = sum_r x[r][i] * d_out[r][:], one input dim i per task, rows in order.
    float* gq = gradient + query_offset();
    float* gk = gradient + key_offset();
    float* gw = gradient + weight_offset();
    parallel_for(model_dim_, 4, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i)
            for (int64_t r = 0; r < rows; ++r) {
                const float xi = x[r * model_dim_ + i];
                add_scaled(gq + i * heads * dim, d_q + r * heads * dim, xi, heads * dim);
                add_scaled(gk + i * dim, d_k + r * dim, xi, dim);
                add_scaled(gw + i * heads, d_weights + r * heads, xi, heads);
            }
    });
    float* gb = gradient + bias_offset();
    for (int64_t r = 0; r < rows; ++r) add_scaled(gb, d_weights + r * heads, 1.0f, heads);
}

void LayerIndexer::select(const Device& device, const float* x, int64_t rows, bool rotate, const TopkChoice& choice,
                          int32_t* indices) const {
    const int64_t heads = shape_.heads, dim = shape_.dim;
    IndexerActivations activations;
    forward(x, rows, rows, activations);
    std::vector<uint8_t> q_codes(activations.q.size()), k_codes(activations.k.size());
    std::vector<float> q_scales(static_cast<size_t>(rows * heads)), k_scales(static_cast<size_t>(rows));
    quantize_fp8(device, activations.q.data(), rows * heads, dim, dim, rotate, q_codes.data(), q_scales.data());
    quantize_fp8(device, activations.k.data(), rows, dim, dim, rotate, k_codes.data(), k_scales.data());
    // The indexer's weights fold in each q vector's scale (DSA_SPEC section 4).
    for (size_t i = 0; i < q_scales.size(); ++i) activations.weights[i] *= q_scales[i];
    indexer_topk(device, q_codes.data(), activations.weights.data(), k_codes.data(), k_scales.data(), rows, heads, dim,
                 choice, indices);
}

void Adam::step(std::vector<float>& parameters, const std::vector<float>& gradient, float learning_rate) {
    constexpr float beta1 = 0.9f, beta2 = 0.999f, epsilon = 1e-8f;
    ++steps_;
    const float correction1 = 1.0f - std::pow(beta1, static_cast<float>(steps_));
    const float correction2 = 1.0f - std::pow(beta2, static_cast<float>(steps_));
    for (size_t i = 0; i < parameters.size(); ++i) {
        first_[i] = beta1 * first_[i] + (1.0f - beta1) * gradient[i];
        second_[i] = beta2 * second_[i] + (1.0f - beta2) * gradient[i] * gradient[i];
        const float first = first_[i] / correction1, second = second_[i] / correction2;
        parameters[i] -= learning_rate * first / (std::sqrt(second) + epsilon);
    }
}

}  // namespace stories
