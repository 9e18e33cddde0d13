// Scalar oracle of the sparse attention backward (tests only), written from DSA_SPEC section 8.2
// and dsa.h: every (row, head, entry) on its own, float64 throughout; and the forward it
// differentiates, for finite differences.
#include <algorithm>
#include <cmath>
#include <limits>

#include "../ops/sparse_attention_backward.hpp"

namespace dsa::reference {
namespace {

std::vector<int64_t> valid_entries(const SparseAttentionBackwardInputs& in, int64_t t) {
    int64_t limit = in.topk;
    if (in.has_topk_length) limit = in.topk_length[t] < 0 ? 0 : std::min<int64_t>(in.topk_length[t], in.topk);
    std::vector<int64_t> entries;
    for (int64_t j = 0; j < limit; ++j) {
        const int64_t s = in.indices[t * in.topk + j];
        if (s >= 0 && s < in.tokens) entries.push_back(s);
    }
    return entries;
}

double score(const SparseAttentionBackwardInputs& in, int64_t t, int64_t h, int64_t s) {
    double dot = 0.0;
    for (int64_t d = 0; d < in.d_qk; ++d) dot += in.q[(t * in.heads + h) * in.d_qk + d] * in.kv[s * in.d_qk + d];
    return in.scale * dot;
}

}  // namespace

SparseAttentionForwardResult sparse_attention_forward(const SparseAttentionBackwardInputs& in) {
    SparseAttentionForwardResult r;
    r.out.assign(static_cast<size_t>(in.rows * in.heads * in.d_v), 0.0);
    r.lse.assign(static_cast<size_t>(in.rows * in.heads), std::numeric_limits<double>::infinity());
    for (int64_t t = 0; t < in.rows; ++t) {
        const std::vector<int64_t> entries = valid_entries(in, t);
        if (entries.empty()) continue;
        for (int64_t h = 0; h < in.heads; ++h) {
            std::vector<double> z;
            double max = -std::numeric_limits<double>::infinity();
            for (int64_t s : entries) {
                z.push_back(score(in, t, h, s));
                max = std::fmax(max, z.back());
            }
            double sum = 0.0;
            for (double value : z) sum += std::exp(value - max);
            const double denominator = sum + (in.has_attn_sink ? std::exp(in.attn_sink[h] - max) : 0.0);
            r.lse[t * in.heads + h] = max + std::log(sum);
            for (size_t j = 0; j < entries.size(); ++j)
                for (int64_t c = 0; c < in.d_v; ++c)
                    r.out[(t * in.heads + h) * in.d_v + c] +=
                        std::exp(z[j] - max) / denominator * in.kv[entries[j] * in.d_qk + c];
        }
    }
    return r;
}

SparseAttentionBackwardResult sparse_attention_backward(const SparseAttentionBackwardInputs& in) {
    SparseAttentionBackwardResult r;
    r.dq.assign(static_cast<size_t>(in.rows * in.heads * in.d_qk), 0.0);
    r.dkv.assign(static_cast<size_t>(in.tokens * in.d_qk), 0.0);
    r.d_attn_sink.assign(static_cast<size_t>(in.heads), 0.0);
    for (int64_t t = 0; t < in.rows; ++t) {
        const std::vector<int64_t> entries = valid_entries(in, t);
        if (entries.empty()) continue;
        for (int64_t h = 0; h < in.heads; ++h) {
            const double lse = in.lse[t * in.heads + h];
            if (lse == std::numeric_limits<double>::infinity()) continue;
            const double normaliser = in.has_attn_sink ? std::log(std::exp(lse) + std::exp(in.attn_sink[h])) : lse;
            const double* dout = &in.dout[(t * in.heads + h) * in.d_v];
            const double* q = &in.q[(t * in.heads + h) * in.d_qk];
            double D = 0.0;
            for (int64_t c = 0; c < in.d_v; ++c) D += dout[c] * in.out[(t * in.heads + h) * in.d_v + c];
            for (int64_t s : entries) {
                const double* kv = &in.kv[s * in.d_qk];
                const double p = std::exp(score(in, t, h, s) - normaliser);
                double dp = 0.0;
                for (int64_t c = 0; c < in.d_v; ++c) dp += dout[c] * kv[c];
                const double dz = p * (dp - D);
                for (int64_t d = 0; d < in.d_qk; ++d) {
                    r.dq[(t * in.heads + h) * in.d_qk + d] += in.scale * dz * kv[d];
                    r.dkv[s * in.d_qk + d] += in.scale * dz * q[d] + (d < in.d_v ? p * dout[d] : 0.0);
                }
            }
            if (in.has_attn_sink) r.d_attn_sink[h] -= std::exp(in.attn_sink[h] - normaliser) * D;
        }
    }
    return r;
}

}  // namespace dsa::reference
