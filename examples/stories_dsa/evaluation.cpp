#include "evaluation.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "bf16.hpp"
#include "linalg.hpp"
#include "ops.hpp"

namespace stories {
namespace {

// out[i] = log softmax(logits)[i] in f64.
void log_softmax(const float* logits, int64_t n, double* out) {
    const double top = *std::max_element(logits, logits + n);
    double total = 0.0;
    for (int64_t i = 0; i < n; ++i) total += std::exp(static_cast<double>(logits[i]) - top);
    const double log_total = std::log(total) + top;
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<double>(logits[i]) - log_total;
}

// Sums over one sparse layer's measured positions.
struct LayerStatistics {
    double mass = 0.0, overlap = 0.0;
    std::vector<double> head_mass;  // [n_heads]
    int64_t positions = 0;
};

// A layer's attention through libdsa's sparse attention over the configuration's selection.
class SparseAttention : public AttentionHook {
public:
    SparseAttention(const Model& model, const Device& device, const std::vector<LayerIndexer>& indexers,
                    const EvaluationOptions& options, const Configuration& configuration, int64_t seq_len)
        : model_(model),
          device_(device),
          indexers_(indexers),
          options_(options),
          configuration_(configuration),
          dense_(model),
          seq_len_(seq_len),
          statistics_(static_cast<size_t>(model.config.n_layers)) {
        const int64_t heads = model.config.n_heads, k = configuration.k;
        for (LayerStatistics& layer : statistics_) layer.head_mass.assign(static_cast<size_t>(heads), 0.0);
        head_probabilities_.resize(static_cast<size_t>(seq_len * heads * seq_len));
        teacher_.resize(static_cast<size_t>(seq_len * seq_len));
        zeros_.assign(static_cast<size_t>(seq_len * seq_len), 0.0f);
        oracle_.resize(static_cast<size_t>(seq_len * k));
        selected_.resize(oracle_.size());
        row_mass_.resize(static_cast<size_t>(seq_len));
        row_overlap_.resize(row_mass_.size());
        row_head_mass_.resize(static_cast<size_t>(seq_len * heads));
    }

    void attend(int layer, const LayerInputs& inputs, float* out) override {
        if (!configuration_.sparse_layers[layer]) {
            dense_.attend(layer, inputs, out);
            return;
        }
        for (int64_t first_row = 0; first_row < inputs.rows; first_row += seq_len_) {
            teacher_probabilities(inputs, first_row);
            topk(device_, teacher_.data(), seq_len_, TopkChoice{configuration_.k, 0, 0}, oracle_.data());
            select(layer, inputs, first_row);
            measure(statistics_[layer]);
            attend_selected(inputs, first_row, out);
        }
    }

    const std::vector<LayerStatistics>& statistics() const { return statistics_; }

private:
    // Rows below this see at most k tokens, so every method selects all of them and the teacher
    // is only needed there for metrics.
    int64_t first_teacher_row() const {
        return std::min<int64_t>(configuration_.first_position, configuration_.k);
    }

    // P_h[t, :] for every head and p[t, :] = their mean, for the rows that need them; 0 elsewhere.
    void teacher_probabilities(const LayerInputs& inputs, int64_t first_row) {
        const ModelConfig& c = model_.config;
        const int64_t heads = c.n_heads, first = first_teacher_row();
        const Columns keys = inputs.sequence_keys(first_row, c.kv_dim());
        std::fill(teacher_.begin(), teacher_.begin() + first * seq_len_, 0.0f);
        parallel_for(seq_len_ - first, 8, [&](int64_t begin, int64_t end) {
            for (int64_t t = first + begin; t < first + end; ++t) {
                const float* query = inputs.query + (first_row + t) * c.dim;
                float* mean = teacher_.data() + t * seq_len_;
                std::fill_n(mean, seq_len_, 0.0f);
                for (int64_t h = 0; h < heads; ++h) {
                    float* probabilities = head_probabilities_.data() + (t * heads + h) * seq_len_;
                    head_probabilities(c, query, keys, t + 1, h, probabilities);
                    add_scaled(mean, probabilities, 1.0f / static_cast<float>(heads), t + 1);
                }
            }
        });
    }

    void select(int layer, const LayerInputs& inputs, int64_t first_row) {
        const int32_t k = configuration_.k;
        switch (configuration_.method) {
            case Method::oracle:
                selected_ = oracle_;
                break;
            case Method::window:
                topk(device_, zeros_.data(), seq_len_, TopkChoice{k, 1, k - 1}, selected_.data());
                break;
            case Method::indexer:
            case Method::hybrid: {
                const TopkChoice choice = configuration_.method == Method::indexer
                                              ? TopkChoice{k, 0, 0}
                                              : TopkChoice{k, options_.hybrid_sink, options_.hybrid_local};
                indexers_[layer].select(device_, inputs.normed + first_row * model_.config.dim, seq_len_,
                                        options_.rotate, choice, selected_.data());
                break;
            }
        }
    }

    // Adds the measured rows' mass recall (mean and per head) and overlap with the oracle.
    void measure(LayerStatistics& statistics) {
        const int64_t heads = model_.config.n_heads, k = configuration_.k, first = configuration_.first_position;
        parallel_for(seq_len_ - first, 8, [&](int64_t begin, int64_t end) {
            std::vector<uint8_t> in_oracle(static_cast<size_t>(seq_len_), 0);
            for (int64_t t = first + begin; t < first + end; ++t) {
                const int32_t* oracle = oracle_.data() + t * k;
                const int32_t* selected = selected_.data() + t * k;
                for (int64_t j = 0; j < k; ++j)
                    if (oracle[j] >= 0) in_oracle[oracle[j]] = 1;
                double mass = 0.0, shared = 0.0;
                double* head_mass = row_head_mass_.data() + t * heads;
                std::fill_n(head_mass, heads, 0.0);
                for (int64_t j = 0; j < k; ++j) {
                    const int32_t s = selected[j];
                    if (s < 0 || s > t) continue;
                    mass += teacher_[t * seq_len_ + s];
                    shared += in_oracle[s];
                    for (int64_t h = 0; h < heads; ++h) head_mass[h] += head_probabilities_[(t * heads + h) * seq_len_ + s];
                }
                for (int64_t j = 0; j < k; ++j)
                    if (oracle[j] >= 0) in_oracle[oracle[j]] = 0;
                row_mass_[t] = mass;
                row_overlap_[t] = shared / static_cast<double>(std::min<int64_t>(k, t + 1));
            }
        });
        for (int64_t t = first; t < seq_len_; ++t) {
            statistics.mass += row_mass_[t];
            statistics.overlap += row_overlap_[t];
            for (int64_t h = 0; h < heads; ++h) statistics.head_mass[h] += row_head_mass_[t * heads + h];
        }
        statistics.positions += seq_len_ - first;
    }

    // Sparse MQA attention per kv head g: entries [v_g ; k_g] (d_qk = 2 head_size, d_v =
    // head_size) and queries [0 ; q_h] for its heads h, so q . entry = q_h . k_g exactly and the
    // output is the weighted sum of v_g.
    void attend_selected(const LayerInputs& inputs, int64_t first_row, float* out) {
        const ModelConfig& c = model_.config;
        const int64_t head_size = c.head_size(), kv_dim = c.kv_dim(), group = c.heads_per_kv_head();
        const int64_t width = 2 * head_size, k = configuration_.k;
        std::vector<uint16_t> q(static_cast<size_t>(seq_len_ * group * width)), kv(static_cast<size_t>(seq_len_ * width));
        std::vector<uint16_t> attended(static_cast<size_t>(seq_len_ * group * head_size));
        for (int64_t g = 0; g < c.n_kv_heads; ++g) {
            for (int64_t t = 0; t < seq_len_; ++t) {
                const int64_t row = first_row + t;
                for (int64_t d = 0; d < head_size; ++d) {
                    kv[t * width + d] = to_bf16(inputs.value[row * kv_dim + g * head_size + d]);
                    kv[t * width + head_size + d] = to_bf16(inputs.key[row * kv_dim + g * head_size + d]);
                }
                for (int64_t i = 0; i < group; ++i) {
                    uint16_t* entry = q.data() + (t * group + i) * width;
                    const float* query = inputs.query + row * c.dim + (g * group + i) * head_size;
                    for (int64_t d = 0; d < head_size; ++d) {
                        entry[d] = 0;
                        entry[head_size + d] = to_bf16(query[d]);
                    }
                }
            }
            sparse_attention(device_, q.data(), kv.data(), selected_.data(), seq_len_, group, width, head_size, k,
                             1.0f / std::sqrt(static_cast<float>(head_size)), attended.data());
            for (int64_t t = 0; t < seq_len_; ++t)
                for (int64_t i = 0; i < group; ++i)
                    for (int64_t d = 0; d < head_size; ++d)
                        out[(first_row + t) * c.dim + (g * group + i) * head_size + d] =
                            from_bf16(attended[(t * group + i) * head_size + d]);
        }
    }

    const Model& model_;
    const Device& device_;
    const std::vector<LayerIndexer>& indexers_;
    const EvaluationOptions& options_;
    const Configuration& configuration_;
    DenseAttention dense_;
    int64_t seq_len_;
    std::vector<LayerStatistics> statistics_;
    std::vector<float> head_probabilities_;  // [T][heads][T]
    std::vector<float> teacher_;             // [T][T]
    std::vector<float> zeros_;               // [T][T]: scores for the window selection
    std::vector<int32_t> oracle_, selected_; // [T][k]
    std::vector<double> row_mass_, row_overlap_, row_head_mass_;
};

}  // namespace

const char* method_name(Method method) {
    switch (method) {
        case Method::oracle: return "oracle";
        case Method::window: return "window";
        case Method::indexer: return "indexer";
        case Method::hybrid: return "hybrid";
    }
    return "?";
}

Evaluator::Evaluator(const Model& model, const Device& device, const std::vector<LayerIndexer>& indexers,
                     std::vector<int32_t> tokens, int64_t seq_len, const EvaluationOptions& options)
    : model_(model), device_(device), indexers_(indexers), tokens_(std::move(tokens)), seq_len_(seq_len), options_(options) {
    DenseAttention dense(model);
    const std::vector<float> logits = forward(model, tokens_, seq_len_, dense);
    const int64_t rows = static_cast<int64_t>(tokens_.size()), vocab = model.config.vocab_size;
    dense_log_probabilities_.resize(static_cast<size_t>(rows * vocab));
    parallel_for(rows, 64, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) log_softmax(&logits[r * vocab], vocab, &dense_log_probabilities_[r * vocab]);
    });
}

double Evaluator::dense_ppl() const {
    const int64_t vocab = model_.config.vocab_size, rows = static_cast<int64_t>(tokens_.size());
    double nll = 0.0;
    int64_t count = 0;
    for (int64_t r = 0; r < rows; ++r) {
        if (r % seq_len_ == seq_len_ - 1) continue;
        nll -= dense_log_probabilities_[r * vocab + tokens_[r + 1]];
        ++count;
    }
    return std::exp(nll / static_cast<double>(count));
}

Metrics Evaluator::run(const Configuration& configuration) const {
    const ModelConfig& c = model_.config;
    SparseAttention attention(model_, device_, indexers_, options_, configuration, seq_len_);
    const std::vector<float> logits = forward(model_, tokens_, seq_len_, attention);

    // Next-token KL and NLL per measured position (t + 1 must exist).
    const int64_t vocab = c.vocab_size, rows = static_cast<int64_t>(tokens_.size());
    std::vector<double> kl(static_cast<size_t>(rows), 0.0), nll(kl.size(), 0.0), dense_nll(kl.size(), 0.0);
    auto measured = [&](int64_t r) {
        const int64_t t = r % seq_len_;
        return t >= configuration.first_position && t + 1 < seq_len_;
    };
    parallel_for(rows, 64, [&](int64_t begin, int64_t end) {
        std::vector<double> sparse(static_cast<size_t>(vocab));
        for (int64_t r = begin; r < end; ++r) {
            if (!measured(r)) continue;
            log_softmax(&logits[r * vocab], vocab, sparse.data());
            const double* dense = &dense_log_probabilities_[r * vocab];
            double divergence = 0.0;
            for (int64_t v = 0; v < vocab; ++v) divergence += std::exp(dense[v]) * (dense[v] - sparse[v]);
            kl[r] = divergence;
            nll[r] = -sparse[tokens_[r + 1]];
            dense_nll[r] = -dense[tokens_[r + 1]];
        }
    });
    Metrics metrics;
    metrics.name = configuration.name;
    metrics.k = configuration.k;
    double kl_sum = 0.0, nll_sum = 0.0, dense_nll_sum = 0.0;
    int64_t count = 0;
    for (int64_t r = 0; r < rows; ++r)
        if (measured(r)) {
            kl_sum += kl[r];
            nll_sum += nll[r];
            dense_nll_sum += dense_nll[r];
            ++count;
        }
    const double positions = static_cast<double>(std::max<int64_t>(count, 1));
    metrics.kl = kl_sum / positions;
    metrics.ppl = std::exp(nll_sum / positions);
    metrics.dense_ppl = std::exp(dense_nll_sum / positions);

    double mass = 0.0, overlap = 0.0;
    int64_t measured_positions = 0;
    metrics.worst_head_mass = std::numeric_limits<double>::infinity();
    metrics.layer_mass_recall.assign(static_cast<size_t>(c.n_layers), 0.0);
    for (int layer = 0; layer < c.n_layers; ++layer) {
        if (!configuration.sparse_layers[layer]) continue;
        const LayerStatistics& statistics = attention.statistics()[layer];
        const double n = static_cast<double>(std::max<int64_t>(statistics.positions, 1));
        metrics.sparse_layers.push_back(layer);
        metrics.layer_mass_recall[layer] = statistics.mass / n;
        mass += statistics.mass;
        overlap += statistics.overlap;
        measured_positions += statistics.positions;
        for (double head : statistics.head_mass) metrics.worst_head_mass = std::min(metrics.worst_head_mass, head / n);
    }
    if (metrics.sparse_layers.empty()) metrics.worst_head_mass = 0.0;
    metrics.positions = metrics.sparse_layers.empty() ? 0 : measured_positions / static_cast<int64_t>(metrics.sparse_layers.size());
    const double all = static_cast<double>(std::max<int64_t>(measured_positions, 1));
    metrics.mass_recall = mass / all;
    metrics.oracle_overlap = overlap / all;
    return metrics;
}

}  // namespace stories
