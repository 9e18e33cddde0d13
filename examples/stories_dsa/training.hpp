// Indexer distillation with the model frozen (DSA_SPEC section 8.1): the dense forward of the
// training sequences keeps each layer's normed input x and post-RoPE q/k (the teacher); each
// layer's indexer then trains with libdsa's indexer loss (dense warm-up, then optionally the sparse
// stage on its own FP8 selection) and Adam.
#pragma once

#include <cstdint>
#include <vector>

#include "device.hpp"
#include "indexer.hpp"
#include "model.hpp"

namespace stories {

// What the dense forward of the training set leaves for distillation, per layer.
struct TeacherData {
    int64_t sequences = 0, seq_len = 0;
    std::vector<std::vector<float>> normed;  // [layer][rows * dim]
    std::vector<std::vector<float>> query;   // [layer][rows * dim]: n_heads heads, RoPE applied
    std::vector<std::vector<float>> key;     // [layer][rows * kv_dim]: RoPE applied
};

// Runs the dense model over tokens (sequences of seq_len back to back), keeping the teacher data.
TeacherData capture_teacher(const Model& model, const std::vector<int32_t>& tokens, int64_t seq_len);

struct TrainingOptions {
    int64_t dense_steps = 0;        // warm-up steps (all layers each step)
    int64_t sparse_steps = 0;       // sparse-stage steps after the warm-up
    int32_t sparse_k = 64;          // the selection the sparse stage trains on
    int64_t batch_sequences = 1;    // sequences per step
    float learning_rate = 1e-3f;    // peak; linear warm-up over the first 5% of steps, cosine decay to 10%
    bool rotate = true;             // Hadamard before FP8 in the sparse stage's selection
    uint64_t seed = 0;
    bool quiet = false;
};

struct TrainingLog {
    std::vector<float> loss;  // per step: the mean over layers of the batch's indexer loss
};

// Trains every layer's indexer in place.
TrainingLog train_indexers(const Model& model, const Device& device, const TeacherData& data,
                           std::vector<LayerIndexer>& indexers, const TrainingOptions& options);

}  // namespace stories
