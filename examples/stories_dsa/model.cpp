#include "model.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "linalg.hpp"
#include "random.hpp"

namespace stories {
namespace {

static_assert(std::endian::native == std::endian::little, "the checkpoint is little endian");

// Reads consecutive f32 arrays out of the checkpoint's payload.
class Reader {
public:
    Reader(const std::vector<char>& bytes, size_t offset) : bytes_(bytes), offset_(offset) {}
    std::vector<float> take(int64_t count) {
        std::vector<float> values(static_cast<size_t>(count));
        std::memcpy(values.data(), bytes_.data() + offset_, values.size() * sizeof(float));
        offset_ += values.size() * sizeof(float);
        return values;
    }
    // A [out][in] matrix (y = W x), returned transposed as [in][out].
    std::vector<float> take_transposed(int64_t out, int64_t in) {
        const std::vector<float> rows = take(out * in);
        std::vector<float> transposed(rows.size());
        for (int64_t o = 0; o < out; ++o)
            for (int64_t i = 0; i < in; ++i) transposed[i * out + o] = rows[o * in + i];
        return transposed;
    }
    void skip(int64_t floats) { offset_ += static_cast<size_t>(floats) * sizeof(float); }

private:
    const std::vector<char>& bytes_;
    size_t offset_;
};

void require_config(bool ok, const std::string& path, const std::string& what) {
    if (!ok) throw std::runtime_error(path + ": not a llama2.c checkpoint this program can run (" + what + ")");
}

// `count` rows of a layer: the attention inputs from the residual x; row r is at positions[r].
void attention_inputs_rows(const Model& model, const LayerWeights& layer, const float* x, int64_t count,
                           const int64_t* positions, float* normed, float* query, float* key, float* value) {
    const ModelConfig& c = model.config;
    const int64_t head_size = c.head_size(), dim = c.dim, kv_dim = c.kv_dim();
    for (int64_t r = 0; r < count; ++r) rms_norm(x + r * dim, layer.rms_attention.data(), dim, normed + r * dim);
    matrix_times_matrix(normed, dim, count, layer.query.data(), dim, dim, query, dim);
    matrix_times_matrix(normed, dim, count, layer.key.data(), dim, kv_dim, key, kv_dim);
    matrix_times_matrix(normed, dim, count, layer.value.data(), dim, kv_dim, value, kv_dim);
    for (int64_t r = 0; r < count; ++r) {
        const float* angles = model.rope.angles(positions[r]);
        for (int64_t h = 0; h < c.n_heads; ++h) rotate_pairs(query + r * dim + h * head_size, head_size, angles, false);
        for (int64_t h = 0; h < c.n_kv_heads; ++h) rotate_pairs(key + r * kv_dim + h * head_size, head_size, angles, false);
    }
}

// `count` rows of a layer after attention: x += Wo attended; x += W2 (silu(W1 xb) * W3 xb).
// scratch: count * (dim + 2 * hidden_dim) floats.
void finish_layer_rows(const Model& model, const LayerWeights& layer, const float* attended, float* x, int64_t count,
                       float* scratch) {
    const ModelConfig& c = model.config;
    const int64_t dim = c.dim, hidden = c.hidden_dim;
    float* projected = scratch;
    float* gate = projected + count * dim;
    float* up = gate + count * hidden;
    matrix_times_matrix(attended, dim, count, layer.output.data(), dim, dim, projected, dim);
    for (int64_t i = 0; i < count * dim; ++i) x[i] += projected[i];
    for (int64_t r = 0; r < count; ++r) rms_norm(x + r * dim, layer.rms_ffn.data(), dim, projected + r * dim);
    matrix_times_matrix(projected, dim, count, layer.gate.data(), dim, hidden, gate, hidden);
    matrix_times_matrix(projected, dim, count, layer.up.data(), dim, hidden, up, hidden);
    for (int64_t i = 0; i < count * hidden; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
    matrix_times_matrix(gate, hidden, count, layer.down.data(), hidden, dim, projected, dim);
    for (int64_t i = 0; i < count * dim; ++i) x[i] += projected[i];
}

// logits [count][vocab] of `count` residual rows; scratch: count * dim floats.
void logits_rows(const Model& model, const float* x, int64_t count, float* scratch, float* logits) {
    const ModelConfig& c = model.config;
    for (int64_t r = 0; r < count; ++r) rms_norm(x + r * c.dim, model.rms_final.data(), c.dim, scratch + r * c.dim);
    matrix_times_matrix(scratch, c.dim, count, model.classifier.data(), c.dim, c.vocab_size, logits, c.vocab_size);
}

// Token by token with a KV cache, several sequences in lockstep: the form generation needs.
class Decoder {
public:
    Decoder(const Model& model, int64_t sequences, int64_t max_length)
        : model_(model),
          sequences_(sequences),
          max_length_(max_length),
          keys_(static_cast<size_t>(model.config.n_layers * sequences * max_length * model.config.kv_dim())),
          values_(keys_.size()),
          key_(static_cast<size_t>(sequences * model.config.kv_dim())),
          value_(key_.size()),
          x_(static_cast<size_t>(sequences * model.config.dim)),
          normed_(x_.size()),
          query_(x_.size()),
          attended_(x_.size()),
          scores_(static_cast<size_t>(max_length)),
          scratch_(static_cast<size_t>(sequences * (model.config.dim + 2 * model.config.hidden_dim))),
          positions_(static_cast<size_t>(sequences), 0) {}

    // Feeds tokens[s] to sequence s at the next position; logits [sequences][vocab] get the
    // predictions for the position after it.
    void step(const int32_t* tokens, std::vector<float>& logits) {
        const ModelConfig& c = model_.config;
        const int64_t kv_dim = c.kv_dim(), dim = c.dim, position = positions_[0];
        for (int64_t s = 0; s < sequences_; ++s)
            std::copy_n(model_.embedding.begin() + int64_t(tokens[s]) * dim, dim, x_.begin() + s * dim);
        for (int l = 0; l < c.n_layers; ++l) {
            const LayerWeights& layer = model_.layers[l];
            attention_inputs_rows(model_, layer, x_.data(), sequences_, positions_.data(), normed_.data(), query_.data(),
                                  key_.data(), value_.data());
            for (int64_t s = 0; s < sequences_; ++s) {
                const int64_t cache = (int64_t(l) * sequences_ + s) * max_length_ * kv_dim;
                for (int64_t d = 0; d < kv_dim; ++d) {  // both caches [kv_dim][max_length]
                    keys_[cache + d * max_length_ + position] = key_[s * kv_dim + d];
                    values_[cache + d * max_length_ + position] = value_[s * kv_dim + d];
                }
                attend_row(c, query_.data() + s * dim, Columns{keys_.data() + cache, max_length_},
                           Columns{values_.data() + cache, max_length_}, position + 1, scores_.data(),
                           attended_.data() + s * dim);
            }
            finish_layer_rows(model_, layer, attended_.data(), x_.data(), sequences_, scratch_.data());
        }
        logits.resize(static_cast<size_t>(sequences_ * c.vocab_size));
        logits_rows(model_, x_.data(), sequences_, scratch_.data(), logits.data());
        for (int64_t& p : positions_) ++p;
    }

private:
    const Model& model_;
    int64_t sequences_, max_length_;
    std::vector<float> keys_, values_, key_, value_, x_, normed_, query_, attended_, scores_, scratch_;
    std::vector<int64_t> positions_;
};

// The first largest logit of logits [vocab].
int32_t argmax(const float* logits, int64_t vocab) {
    return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
}

// A token drawn from softmax(logits [vocab]) (temperature 1).
int32_t sample(const float* logits, int64_t vocab, Random& random) {
    const float top = *std::max_element(logits, logits + vocab);
    std::vector<double> weights(static_cast<size_t>(vocab));
    double total = 0.0;
    for (int64_t i = 0; i < vocab; ++i) total += weights[i] = std::exp(static_cast<double>(logits[i] - top));
    double target = random.uniform() * total;
    for (int64_t i = 0; i < vocab; ++i) {
        target -= weights[i];
        if (target < 0.0) return static_cast<int32_t>(i);
    }
    return static_cast<int32_t>(vocab - 1);
}

}  // namespace

RopeTable::RopeTable(int64_t positions, int64_t width, int64_t period)
    : width_(width), values_(static_cast<size_t>(positions * width)) {
    for (int64_t p = 0; p < positions; ++p)
        for (int64_t i = 0; i + 1 < width; i += 2) {
            const double frequency = std::pow(10000.0, -static_cast<double>(i % period) / static_cast<double>(period));
            const double angle = static_cast<double>(p) * frequency;
            values_[p * width + i] = static_cast<float>(std::cos(angle));
            values_[p * width + i + 1] = static_cast<float>(std::sin(angle));
        }
}

Model load_model(const std::string& path) {
    std::ifstream file(path, std::ios::binary);
    if (!file) throw std::runtime_error(path + ": cannot open the model file");
    const std::vector<char> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    if (file.bad()) throw std::runtime_error(path + ": cannot read the model file");
    int32_t header[7];
    require_config(bytes.size() >= sizeof(header), path, "shorter than its 28-byte header");
    std::memcpy(header, bytes.data(), sizeof(header));

    Model model;
    ModelConfig& c = model.config;
    c = {header[0], header[1], header[2], header[3], header[4], header[5], header[6]};
    const bool tied = c.vocab_size > 0;
    c.vocab_size = tied ? c.vocab_size : -c.vocab_size;
    require_config(c.dim > 0 && c.dim <= 16384 && c.hidden_dim > 0 && c.hidden_dim <= 65536, path, "dim, hidden_dim");
    require_config(c.n_layers > 0 && c.n_layers <= 1024, path, "n_layers");
    require_config(c.n_heads > 0 && c.dim % c.n_heads == 0 && c.head_size() % 2 == 0, path,
                   "n_heads must divide dim into heads of even size");
    require_config(c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads == 0, path, "n_kv_heads must divide n_heads");
    require_config(c.vocab_size > 1 && c.vocab_size <= (1 << 20) && c.seq_len > 0 && c.seq_len <= (1 << 20), path,
                   "vocab_size, seq_len");

    const int64_t dim = c.dim, hidden = c.hidden_dim, kv_dim = c.kv_dim(), layers = c.n_layers;
    const int64_t vocab = c.vocab_size, rope_floats = int64_t(c.seq_len) * c.head_size() / 2;
    const int64_t per_layer = 2 * dim + dim * dim * 2 + 2 * kv_dim * dim + 3 * hidden * dim;
    const int64_t floats = vocab * dim + layers * per_layer + dim + 2 * rope_floats + (tied ? 0 : vocab * dim);
    const uint64_t expected = sizeof(header) + static_cast<uint64_t>(floats) * sizeof(float);
    if (bytes.size() != expected)
        throw std::runtime_error(path + ": " + std::to_string(bytes.size()) + " bytes, but its header (dim " +
                                 std::to_string(c.dim) + ", " + std::to_string(c.n_layers) + " layers, vocabulary " +
                                 std::to_string(c.vocab_size) + ") describes " + std::to_string(expected));

    Reader reader(bytes, sizeof(header));
    model.embedding = reader.take(vocab * dim);
    model.layers.resize(static_cast<size_t>(layers));
    // The file stores each kind of array for all layers, then the next kind.
    for (LayerWeights& layer : model.layers) layer.rms_attention = reader.take(dim);
    for (LayerWeights& layer : model.layers) layer.query = reader.take_transposed(dim, dim);
    for (LayerWeights& layer : model.layers) layer.key = reader.take_transposed(kv_dim, dim);
    for (LayerWeights& layer : model.layers) layer.value = reader.take_transposed(kv_dim, dim);
    for (LayerWeights& layer : model.layers) layer.output = reader.take_transposed(dim, dim);
    for (LayerWeights& layer : model.layers) layer.rms_ffn = reader.take(dim);
    for (LayerWeights& layer : model.layers) layer.gate = reader.take_transposed(hidden, dim);
    for (LayerWeights& layer : model.layers) layer.down = reader.take_transposed(dim, hidden);
    for (LayerWeights& layer : model.layers) layer.up = reader.take_transposed(hidden, dim);
    model.rms_final = reader.take(dim);
    reader.skip(2 * rope_floats);  // legacy RoPE tables: recomputed below
    model.classifier = tied ? std::vector<float>(model.embedding) : reader.take(vocab * dim);
    std::vector<float> transposed(model.classifier.size());
    for (int64_t v = 0; v < vocab; ++v)
        for (int64_t i = 0; i < dim; ++i) transposed[i * vocab + v] = model.classifier[v * dim + i];
    model.classifier = std::move(transposed);
    model.rope = RopeTable(c.seq_len, c.head_size(), c.head_size());
    return model;
}

void head_probabilities(const ModelConfig& config, const float* query, Columns keys, int64_t count,
                        int64_t head, float* probabilities) {
    const int64_t head_size = config.head_size();
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_size));
    const float* q = query + head * head_size;
    const float* columns = keys.data + head / config.heads_per_kv_head() * head_size * keys.stride;
    // Dot products along positions: every probability sums its dims in order d = 0, 1, ...
    for (int64_t j = 0; j < count; ++j) probabilities[j] = q[0] * columns[j];
    for (int64_t d = 1; d < head_size; ++d) add_scaled(probabilities, columns + d * keys.stride, q[d], count);
    for (int64_t j = 0; j < count; ++j) probabilities[j] *= scale;
    const float top = max_of(probabilities, count);
    for (int64_t j = 0; j < count; ++j) probabilities[j] -= top;
    exp_in_place(probabilities, count);
    const float inverse = 1.0f / sum_of(probabilities, count);
    for (int64_t j = 0; j < count; ++j) probabilities[j] *= inverse;
}

void attend_row(const ModelConfig& config, const float* query, Columns keys, Columns values, int64_t count,
                float* scratch, float* out) {
    const int64_t head_size = config.head_size();
    for (int64_t h = 0; h < config.n_heads; ++h) {
        head_probabilities(config, query, keys, count, h, scratch);
        const float* columns = values.data + h / config.heads_per_kv_head() * head_size * values.stride;
        for (int64_t d = 0; d < head_size; ++d) out[h * head_size + d] = dot(scratch, columns + d * values.stride, count);
    }
}

void DenseAttention::attend(int, const LayerInputs& inputs, float* out) {
    const ModelConfig& c = model_.config;
    const int64_t kv_dim = c.kv_dim();
    parallel_for(inputs.rows, 32, [&](int64_t begin, int64_t end) {
        std::vector<float> scores(static_cast<size_t>(inputs.seq_len));
        for (int64_t row = begin; row < end; ++row) {
            const int64_t first = row - row % inputs.seq_len;
            attend_row(c, inputs.query + row * c.dim, inputs.sequence_keys(row, kv_dim),
                       inputs.sequence_values(row, kv_dim), row - first + 1, scores.data(), out + row * c.dim);
        }
    });
}

std::vector<float> forward(const Model& model, const std::vector<int32_t>& tokens, int64_t seq_len,
                           AttentionHook& attention) {
    const ModelConfig& c = model.config;
    const int64_t rows = static_cast<int64_t>(tokens.size()), dim = c.dim, kv_dim = c.kv_dim();
    std::vector<float> x(static_cast<size_t>(rows * dim)), normed(x.size()), query(x.size()), attended(x.size());
    std::vector<float> key(static_cast<size_t>(rows * kv_dim)), value(key.size());
    std::vector<float> key_columns(key.size()), value_columns(key.size());
    std::vector<int64_t> positions(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) {
        std::copy_n(model.embedding.begin() + tokens[r] * dim, dim, x.begin() + r * dim);
        positions[r] = r % seq_len;
    }
    const int64_t grain = 32;
    for (int l = 0; l < c.n_layers; ++l) {
        const LayerWeights& layer = model.layers[l];
        parallel_for(rows, grain, [&](int64_t begin, int64_t end) {
            attention_inputs_rows(model, layer, &x[begin * dim], end - begin, &positions[begin], &normed[begin * dim],
                                  &query[begin * dim], &key[begin * kv_dim], &value[begin * kv_dim]);
        });
        parallel_for(rows / seq_len, 1, [&](int64_t begin, int64_t end) {
            for (int64_t sequence = begin; sequence < end; ++sequence)
                for (int64_t t = 0; t < seq_len; ++t)
                    for (int64_t d = 0; d < kv_dim; ++d) {
                        const int64_t column = (sequence * kv_dim + d) * seq_len + t, row = (sequence * seq_len + t) * kv_dim + d;
                        key_columns[column] = key[row];
                        value_columns[column] = value[row];
                    }
        });
        const LayerInputs inputs{rows,       seq_len,      normed.data(),      query.data(),
                                 key.data(), value.data(), key_columns.data(), value_columns.data()};
        attention.attend(l, inputs, attended.data());
        parallel_for(rows, grain, [&](int64_t begin, int64_t end) {
            std::vector<float> scratch(static_cast<size_t>((end - begin) * (dim + 2 * c.hidden_dim)));
            finish_layer_rows(model, layer, &attended[begin * dim], &x[begin * dim], end - begin, scratch.data());
        });
    }
    std::vector<float> logits(static_cast<size_t>(rows * c.vocab_size));
    parallel_for(rows, grain, [&](int64_t begin, int64_t end) {
        std::vector<float> scratch(static_cast<size_t>((end - begin) * dim));
        logits_rows(model, &x[begin * dim], end - begin, scratch.data(), &logits[begin * c.vocab_size]);
    });
    return logits;
}

std::vector<int32_t> greedy_decode(const Model& model, int64_t steps) {
    Decoder decoder(model, 1, steps + 1);
    std::vector<float> logits;
    std::vector<int32_t> tokens{kBosToken};
    for (int64_t i = 0; i < steps; ++i) {
        decoder.step(&tokens.back(), logits);
        tokens.push_back(argmax(logits.data(), model.config.vocab_size));
    }
    return tokens;
}

std::vector<int32_t> sample_sequences(const Model& model, int64_t count, int64_t length, uint64_t seed,
                                      uint64_t first_stream) {
    const int64_t vocab = model.config.vocab_size;
    std::vector<int32_t> tokens(static_cast<size_t>(count * length));
    // Blocks of sequences decode in lockstep; each sequence draws from its own stream, and every
    // row's arithmetic is independent of the block, so the blocking never changes a token.
    parallel_for(count, 8, [&](int64_t begin, int64_t end) {
        const int64_t block = end - begin;
        std::vector<Random> random;
        for (int64_t s = begin; s < end; ++s) random.emplace_back(seed, first_stream + static_cast<uint64_t>(s));
        Decoder decoder(model, block, length);
        std::vector<int32_t> current(static_cast<size_t>(block), kBosToken);
        std::vector<float> logits;
        for (int64_t s = 0; s < block; ++s) tokens[(begin + s) * length] = kBosToken;
        for (int64_t t = 1; t < length; ++t) {
            decoder.step(current.data(), logits);
            for (int64_t s = 0; s < block; ++s) {
                current[s] = sample(logits.data() + s * vocab, vocab, random[s]);
                tokens[(begin + s) * length + t] = current[s];
            }
        }
    });
    return tokens;
}

}  // namespace stories
