// Scalar oracle for top-k: each window fully sorted by the tie rule (tests only).
#include <algorithm>
#include <cmath>
#include <vector>

#include "../ops/topk.hpp"

namespace dsa::reference {
namespace {

// DSA_SPEC section 5's preference as a strict order: larger score first, equal scores by smaller
// index, NaN after everything (by index).
struct Preferred {
    const float* scores;
    bool operator()(int32_t a, int32_t b) const {
        const bool a_nan = std::isnan(scores[a]), b_nan = std::isnan(scores[b]);
        if (a_nan != b_nan) return b_nan;
        if (!a_nan && scores[a] != scores[b]) return scores[a] > scores[b];
        return a < b;
    }
};

}  // namespace

void topk(const TopkProblem& p) {
    const int64_t k = p.config.k;
    for (int64_t row = 0; row < p.rows; ++row) {
        const TopkWindow window = topk_row_window(p, row);
        const float* scores = p.n > 0 ? p.scores.as<const float>() + row * p.scores.strides[0] : nullptr;
        const int64_t length = window.end - window.begin;
        const int64_t sink = std::min(p.config.n_sink, length), local = std::min(p.config.n_local, length);
        std::vector<int32_t> selected, others;
        for (int64_t j = window.begin; j < window.end; ++j) {
            const bool forced = j < window.begin + sink || j >= window.end - local;
            if (forced)
                selected.push_back(static_cast<int32_t>(j));
            else if (!std::isnan(scores[j]))
                others.push_back(static_cast<int32_t>(j));
        }
        std::sort(others.begin(), others.end(), Preferred{scores});
        const int64_t free_slots = k - static_cast<int64_t>(selected.size());
        for (int64_t i = 0; i < free_slots && i < static_cast<int64_t>(others.size()); ++i)
            selected.push_back(others[i]);
        if (p.config.order == TopkOrder::score)
            std::sort(selected.begin(), selected.end(), Preferred{scores});
        else
            std::sort(selected.begin(), selected.end());
        selected.resize(static_cast<size_t>(k), -1);
        int32_t* out = p.indices.as<int32_t>() + row * p.indices.strides[0];
        std::copy(selected.begin(), selected.end(), out);
        translate_topk_row(p, row, out);
    }
}

}  // namespace dsa::reference
