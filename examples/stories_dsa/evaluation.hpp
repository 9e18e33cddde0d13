// Judging the sparse model (DSA_SPEC section 9) on held-out sequences: the model runs with the
// chosen layers' attention replaced by libdsa's bf16 sparse attention over a per-query selection
// (shared by all heads of the layer), and each sparse layer also measures its selection against
// the layer's own dense attention on the same inputs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "device.hpp"
#include "indexer.hpp"
#include "model.hpp"

namespace stories {

enum class Method {
    oracle,   // top-k of the teacher p = mean over heads of the dense probabilities
    window,   // the first token + the last k - 1 tokens
    indexer,  // the trained indexer, FP8, through dsa_indexer_topk
    hybrid,   // the indexer with n_sink + n_local forced tokens
};
const char* method_name(Method method);

struct Configuration {
    std::string name;   // the report's "method"
    Method method = Method::oracle;
    int32_t k = 64;
    std::vector<bool> sparse_layers;  // per layer; dense layers run the f32 dense attention
    int64_t first_position = 0;       // metrics over positions t >= first_position
};

struct Metrics {
    std::string name;
    int32_t k = 0;
    std::vector<int> sparse_layers;
    int64_t positions = 0;         // query positions measured per sparse layer (all sequences)
    double mass_recall = 0.0;      // mean over sparse layers and positions of sum_{s in S} p[t, s]
    double worst_head_mass = 0.0;  // min over (sparse layer, head) of the mean of sum_{s in S} P_h[t, s]
    double oracle_overlap = 0.0;   // mean of |S n S_oracle| / k
    double kl = 0.0;               // mean next-token KL(dense || sparse), nats, positions in [first, T - 2]
    double ppl = 0.0;              // exp(mean next-token NLL) of the sparse model, same positions
    double dense_ppl = 0.0;        // the dense model's, same positions
    std::vector<double> layer_mass_recall;  // per layer (0 for dense layers)
};

struct EvaluationOptions {
    bool rotate = true;       // Hadamard before FP8 quantisation of the indexer's q and k
    int32_t hybrid_sink = 1;  // forced tokens of Method::hybrid
    int32_t hybrid_local = 8;
};

class Evaluator {
public:
    Evaluator(const Model& model, const Device& device, const std::vector<LayerIndexer>& indexers,
              std::vector<int32_t> tokens, int64_t seq_len, const EvaluationOptions& options);

    // The dense f32 model's perplexity over every next-token position.
    double dense_ppl() const;

    Metrics run(const Configuration& configuration) const;

private:
    const Model& model_;
    const Device& device_;
    const std::vector<LayerIndexer>& indexers_;
    std::vector<int32_t> tokens_;
    int64_t seq_len_;
    EvaluationOptions options_;
    std::vector<double> dense_log_probabilities_;  // [rows][vocab]
};

}  // namespace stories
