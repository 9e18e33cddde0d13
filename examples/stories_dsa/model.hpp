// The dense teacher: a llama2.c checkpoint (../shared/models/README.md has the format and the
// forward), run on the CPU in f32. Two forms share the per-row maths: a layer-major forward over a
// batch of equal-length sequences, which hands each layer's attention to a hook (dense here,
// sparse in evaluation.cpp), and a token-by-token decoder with a KV cache for generation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace stories {

struct ModelConfig {
    int32_t dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab_size = 0, seq_len = 0;
    int32_t head_size() const { return dim / n_heads; }
    int32_t kv_dim() const { return dim / n_heads * n_kv_heads; }
    int32_t heads_per_kv_head() const { return n_heads / n_kv_heads; }
};

// cos/sin of the rotary angle pos * 10000^(-(i mod period) / period) for the even dims i of
// [0, width), at every position: row `pos` holds width floats, (cos, sin) at (i, i + 1).
class RopeTable {
public:
    RopeTable() = default;
    RopeTable(int64_t positions, int64_t width, int64_t period);
    const float* angles(int64_t position) const { return values_.data() + position * width_; }
    int64_t width() const { return width_; }
    int64_t positions() const { return width_ == 0 ? 0 : static_cast<int64_t>(values_.size()) / width_; }

private:
    int64_t width_ = 0;
    std::vector<float> values_;
};

// Matrices are stored transposed, [in][out], so y = W x is matrix_times_matrix(x, W^T).
struct LayerWeights {
    std::vector<float> rms_attention, query, key, value, output;  // query [dim][dim], key/value [dim][kv_dim]
    std::vector<float> rms_ffn, gate, down, up;                   // gate/up [dim][hidden], down [hidden][dim]
};

struct Model {
    ModelConfig config;
    std::vector<float> embedding;   // [vocab][dim]
    std::vector<float> classifier;  // [dim][vocab]: the embedding transposed (tied) or the untied one
    std::vector<LayerWeights> layers;
    std::vector<float> rms_final;
    RopeTable rope;  // width head_size, period head_size, seq_len positions
};

// Reads a llama2.c legacy checkpoint. Throws std::runtime_error naming the file and the problem
// (missing, unreadable, a header that is not a plausible model, a size that does not match).
Model load_model(const std::string& path);

// Keys or values stored by dimension, so a query's work over many positions runs along memory:
// dim d (of all kv heads side by side) of position j is data[d * stride + j].
struct Columns {
    const float* data = nullptr;
    int64_t stride = 0;
};

// One layer's attention inputs for all rows of a batch (row r is position r % seq_len of
// sequence r / seq_len). RoPE is applied to query and key.
struct LayerInputs {
    int64_t rows = 0, seq_len = 0;
    const float* normed = nullptr;       // [rows][dim]: RMSNorm(x) * rms_attention
    const float* query = nullptr;        // [rows][dim]: n_heads heads of head_size
    const float* key = nullptr;          // [rows][kv_dim]
    const float* value = nullptr;        // [rows][kv_dim]
    const float* key_columns = nullptr;    // [sequences][kv_dim][seq_len]: key, by dimension
    const float* value_columns = nullptr;  // [sequences][kv_dim][seq_len]: value, by dimension

    // The keys and the values of the sequence that row `row` belongs to.
    Columns sequence_keys(int64_t row, int64_t kv_dim) const {
        return {key_columns + row / seq_len * kv_dim * seq_len, seq_len};
    }
    Columns sequence_values(int64_t row, int64_t kv_dim) const {
        return {value_columns + row / seq_len * kv_dim * seq_len, seq_len};
    }
};

// What replaces a layer's causal attention: writes out [rows][dim] (the heads' outputs side by
// side, before the output projection).
class AttentionHook {
public:
    virtual ~AttentionHook() = default;
    virtual void attend(int layer, const LayerInputs& inputs, float* out) = 0;
};

// The model's own causal softmax attention in f32.
class DenseAttention : public AttentionHook {
public:
    explicit DenseAttention(const Model& model) : model_(model) {}
    void attend(int layer, const LayerInputs& inputs, float* out) override;

private:
    const Model& model_;
};

// Runs the model over tokens (sequences of seq_len tokens back to back) and returns the logits
// [rows][vocab]. Every layer's attention goes through `attention`.
std::vector<float> forward(const Model& model, const std::vector<int32_t>& tokens, int64_t seq_len,
                           AttentionHook& attention);

// Head `head`'s attention probabilities of one query row over positions [0, count): the softmax
// of q_head . k_j / sqrt(head_size), k_j the key of the head's kv head.
void head_probabilities(const ModelConfig& config, const float* query, Columns keys, int64_t count,
                        int64_t head, float* probabilities);

// The causal attention of one query row: for each head, its probabilities over positions
// [0, count), then the weighted sum of the values; scratch holds count floats.
void attend_row(const ModelConfig& config, const float* query, Columns keys, Columns values, int64_t count,
                float* scratch, float* out);

// Token ids from BOS (id 1): `steps` greedy (argmax, smaller id on ties) tokens after it.
std::vector<int32_t> greedy_decode(const Model& model, int64_t steps);

// `count` sequences of `length` tokens: BOS then length - 1 tokens sampled at temperature 1.
// Sequence i draws from its own random stream (seed, first_stream + i), so any subset of the
// streams gives the same sequences whatever else is sampled.
std::vector<int32_t> sample_sequences(const Model& model, int64_t count, int64_t length, uint64_t seed,
                                      uint64_t first_stream);

constexpr int32_t kBosToken = 1;

}  // namespace stories
