// Scalar oracle of the indexer distillation loss (tests only), written from DSA_SPEC section 8.1
// and dsa.h: every (row, entry, head) on its own, float64 throughout, two-pass softmaxes.
#include <cmath>
#include <limits>

#include "../ops/indexer_loss.hpp"

namespace dsa::reference {
namespace {

// The row's entries: window tokens (DENSE) or in-window selected tokens in order (SPARSE).
std::vector<int64_t> row_entries(const IndexerLossInputs& in, int64_t t) {
    const int64_t start = in.ks[t], stop = in.ke[t];
    const int64_t begin = start < 0 ? 0 : (start > in.tokens ? in.tokens : start);
    const int64_t end = stop < begin ? begin : (stop > in.tokens ? in.tokens : stop);
    std::vector<int64_t> entries;
    if (in.mode == IndexerLossMode::dense) {
        for (int64_t s = begin; s < end; ++s) entries.push_back(s);
    } else {
        for (int64_t j = 0; j < in.topk; ++j) {
            const int64_t s = in.indices[t * in.topk + j];
            if (s >= begin && s < end) entries.push_back(s);
        }
    }
    return entries;
}

// softmax over `logits`, max subtracted first.
std::vector<double> softmax(const std::vector<double>& logits) {
    double max = -std::numeric_limits<double>::infinity();
    for (double value : logits) max = std::fmax(max, value);
    double sum = 0.0;
    std::vector<double> result(logits.size());
    for (size_t j = 0; j < logits.size(); ++j) sum += result[j] = std::exp(logits[j] - max);
    for (double& value : result) value /= sum;
    return result;
}

double dot(const double* a, const double* b, int64_t n) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
    return sum;
}

// The teacher over the entries; empty when the row is inactive (zero, negative or non-finite mass).
std::vector<double> teacher(const IndexerLossInputs& in, int64_t t, const std::vector<int64_t>& entries) {
    const size_t n = entries.size();
    std::vector<double> p(n, 0.0);
    if (in.has_teacher_probs) {
        double mass = 0.0;
        for (size_t j = 0; j < n; ++j) {
            p[j] = in.teacher_probs[t * in.tokens + entries[j]];
            if (!(p[j] >= 0.0)) return {};
            mass += p[j];
        }
        if (!(mass > 0.0) || !std::isfinite(mass)) return {};
        for (double& value : p) value /= mass;
        return p;
    }
    const int64_t group = in.teacher_heads / in.teacher_kv_heads, d = in.teacher_dim;
    for (int64_t h = 0; h < in.teacher_heads; ++h) {
        std::vector<double> z(n);
        for (size_t j = 0; j < n; ++j)
            z[j] = in.teacher_scale * dot(&in.teacher_q[(t * in.teacher_heads + h) * d],
                                          &in.teacher_k[(entries[j] * in.teacher_kv_heads + h / group) * d], d);
        const std::vector<double> head = softmax(z);
        for (size_t j = 0; j < n; ++j) {
            if (!std::isfinite(head[j])) return {};
            p[j] += head[j] / static_cast<double>(in.teacher_heads);
        }
    }
    return p;
}

}  // namespace

IndexerLossResult indexer_loss(const IndexerLossInputs& in) {
    IndexerLossResult r;
    const int64_t H = in.heads, D = in.dim;
    r.row_loss.assign(static_cast<size_t>(in.rows), 0.0);
    r.d_index_q.assign(static_cast<size_t>(in.rows * H * D), 0.0);
    r.d_index_k.assign(static_cast<size_t>(in.tokens * D), 0.0);
    r.d_weights.assign(static_cast<size_t>(in.rows * H), 0.0);
    r.active.assign(static_cast<size_t>(in.rows), false);
    // g[t][j] before the coeff / N factor, which needs every row's activity first.
    std::vector<std::vector<int64_t>> entries(static_cast<size_t>(in.rows));
    std::vector<std::vector<double>> g(static_cast<size_t>(in.rows));
    int64_t active = 0;
    double total = 0.0;
    for (int64_t t = 0; t < in.rows; ++t) {
        entries[t] = row_entries(in, t);
        if (entries[t].empty()) continue;
        const std::vector<double> p = teacher(in, t, entries[t]);
        if (p.empty()) continue;
        const size_t n = entries[t].size();
        std::vector<double> logits(n, 0.0);
        for (size_t j = 0; j < n; ++j)
            for (int64_t h = 0; h < H; ++h) {
                const double u = dot(&in.index_q[(t * H + h) * D], &in.index_k[entries[t][j] * D], D);
                logits[j] += in.weights[t * H + h] * (u > 0.0 ? u : 0.0);
            }
        const std::vector<double> pi = softmax(logits);
        double kl = 0.0;
        g[t].resize(n);
        for (size_t j = 0; j < n; ++j) {
            if (p[j] > 0.0) kl += p[j] * (std::log(p[j]) - std::log(pi[j]));
            g[t][j] = pi[j] - p[j];
        }
        r.active[t] = true;
        r.row_loss[t] = kl;
        total += kl;
        ++active;
    }
    if (active == 0) return r;
    r.loss = in.coeff * total / static_cast<double>(active);
    const double factor = in.coeff / static_cast<double>(active);
    for (int64_t t = 0; t < in.rows; ++t) {
        if (!r.active[t]) continue;
        for (size_t j = 0; j < entries[t].size(); ++j) {
            const int64_t s = entries[t][j];
            const double grad = factor * g[t][j];
            for (int64_t h = 0; h < H; ++h) {
                const double* q = &in.index_q[(t * H + h) * D];
                const double* k = &in.index_k[s * D];
                const double u = dot(q, k, D);
                r.d_weights[t * H + h] += grad * (u > 0.0 ? u : 0.0);
                if (!(u > 0.0)) continue;
                const double G = grad * in.weights[t * H + h];
                for (int64_t d = 0; d < D; ++d) {
                    r.d_index_q[(t * H + h) * D + d] += G * k[d];
                    r.d_index_k[s * D + d] += G * q[d];
                }
            }
        }
    }
    return r;
}

}  // namespace dsa::reference
