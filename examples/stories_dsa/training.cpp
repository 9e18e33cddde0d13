#include "training.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "progress.hpp"
#include "random.hpp"

namespace stories {
namespace {

// The dense attention, keeping what it was given.
class CapturingAttention : public AttentionHook {
public:
    CapturingAttention(const Model& model, TeacherData& data) : config_(model.config), dense_(model), data_(data) {}
    void attend(int layer, const LayerInputs& inputs, float* out) override {
        data_.normed[layer].assign(inputs.normed, inputs.normed + inputs.rows * config_.dim);
        data_.query[layer].assign(inputs.query, inputs.query + inputs.rows * config_.dim);
        data_.key[layer].assign(inputs.key, inputs.key + inputs.rows * config_.kv_dim());
        dense_.attend(layer, inputs, out);
    }

private:
    const ModelConfig& config_;
    DenseAttention dense_;
    TeacherData& data_;
};

float learning_rate_at(const TrainingOptions& options, int64_t step, int64_t steps) {
    const int64_t warmup = std::max<int64_t>(1, steps / 20);
    if (step < warmup) return options.learning_rate * static_cast<float>(step + 1) / static_cast<float>(warmup);
    const double progress = static_cast<double>(step - warmup) / static_cast<double>(std::max<int64_t>(1, steps - warmup));
    return options.learning_rate * static_cast<float>(0.1 + 0.9 * 0.5 * (1.0 + std::cos(3.141592653589793 * progress)));
}

// Sequence order: a fresh permutation of the training set per epoch.
class BatchOrder {
public:
    BatchOrder(int64_t sequences, uint64_t seed) : order_(static_cast<size_t>(sequences)), seed_(seed) {}
    int64_t sequence(int64_t draw) {
        const int64_t n = static_cast<int64_t>(order_.size());
        const int64_t epoch = draw / n;
        if (epoch != epoch_) {
            epoch_ = epoch;
            std::iota(order_.begin(), order_.end(), int64_t(0));
            Random random(seed_, 0x5eed0000u + static_cast<uint64_t>(epoch));
            for (int64_t i = n - 1; i > 0; --i) std::swap(order_[i], order_[random.below(static_cast<uint64_t>(i + 1))]);
        }
        return order_[draw % n];
    }

private:
    std::vector<int64_t> order_;
    uint64_t seed_;
    int64_t epoch_ = -1;
};

}  // namespace

TeacherData capture_teacher(const Model& model, const std::vector<int32_t>& tokens, int64_t seq_len) {
    TeacherData data;
    data.seq_len = seq_len;
    data.sequences = static_cast<int64_t>(tokens.size()) / seq_len;
    const size_t layers = static_cast<size_t>(model.config.n_layers);
    data.normed.resize(layers);
    data.query.resize(layers);
    data.key.resize(layers);
    CapturingAttention capture(model, data);
    forward(model, tokens, seq_len, capture);
    return data;
}

TrainingLog train_indexers(const Model& model, const Device& device, const TeacherData& data,
                           std::vector<LayerIndexer>& indexers, const TrainingOptions& options) {
    const ModelConfig& c = model.config;
    const int64_t seq_len = data.seq_len, steps = options.dense_steps + options.sparse_steps;
    std::vector<Adam> optimizers;
    for (const LayerIndexer& indexer : indexers) optimizers.emplace_back(indexer.parameter_count());
    BatchOrder order(data.sequences, options.seed);
    TrainingLog log;
    Progress progress("training", steps, options.quiet);
    IndexerActivations activations;
    std::vector<float> d_q, d_k, d_weights, gradient;
    std::vector<int32_t> selected;
    const float teacher_scale = 1.0f / std::sqrt(static_cast<float>(c.head_size()));
    for (int64_t step = 0; step < steps; ++step) {
        const bool sparse = step >= options.dense_steps;
        const float learning_rate = learning_rate_at(options, step, steps);
        double step_loss = 0.0;
        for (int layer = 0; layer < c.n_layers; ++layer) {
            LayerIndexer& indexer = indexers[layer];
            const IndexerShape& shape = indexer.shape();
            gradient.assign(static_cast<size_t>(indexer.parameter_count()), 0.0f);
            for (int64_t b = 0; b < options.batch_sequences; ++b) {
                const int64_t sequence = order.sequence(step * options.batch_sequences + b);
                const int64_t first = sequence * seq_len;
                const float* x = data.normed[layer].data() + first * c.dim;
                indexer.forward(x, seq_len, seq_len, activations);
                if (sparse) {
                    selected.resize(static_cast<size_t>(seq_len * options.sparse_k));
                    indexer.select(device, x, seq_len, options.rotate, TopkChoice{options.sparse_k, 0, 0},
                                   selected.data());
                }
                d_q.resize(activations.q.size());
                d_k.resize(activations.k.size());
                d_weights.resize(activations.weights.size());
                IndexerLossInputs inputs;
                inputs.q = activations.q.data();
                inputs.k = activations.k.data();
                inputs.weights = activations.weights.data();
                inputs.rows = seq_len;
                inputs.heads = shape.heads;
                inputs.dim = shape.dim;
                inputs.indices = sparse ? selected.data() : nullptr;
                inputs.k_selected = options.sparse_k;
                inputs.teacher_q = data.query[layer].data() + first * c.dim;
                inputs.teacher_k = data.key[layer].data() + first * c.kv_dim();
                inputs.teacher_heads = c.n_heads;
                inputs.teacher_kv_heads = c.n_kv_heads;
                inputs.teacher_dim = c.head_size();
                inputs.teacher_scale = teacher_scale;
                inputs.coeff = 1.0f / static_cast<float>(options.batch_sequences);
                step_loss += indexer_loss(device, inputs, d_q.data(), d_k.data(), d_weights.data());
                indexer.backward(x, seq_len, seq_len, d_q.data(), d_k.data(), d_weights.data(), gradient.data());
            }
            optimizers[layer].step(indexer.parameters(), gradient, learning_rate);
        }
        log.loss.push_back(static_cast<float>(step_loss / c.n_layers));
        char status[96];
        std::snprintf(status, sizeof(status), "step %lld/%lld %s loss %.4f", static_cast<long long>(step + 1),
                      static_cast<long long>(steps), sparse ? "sparse" : "dense", log.loss.back());
        progress.update(step + 1, status);
    }
    char status[64];
    std::snprintf(status, sizeof(status), "(final loss %.4f)", log.loss.empty() ? 0.0f : log.loss.back());
    progress.finish(status);
    return log;
}

}  // namespace stories
