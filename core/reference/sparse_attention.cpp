// Scalar oracle of sparse MLA attention, from DSA_SPEC sections 6 and 7.2 (tests only): each
// (row, head) on its own, f64 dot products, a two-pass softmax (max first, then the sums).
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "../ops/sparse_attention.hpp"

namespace dsa::reference {
namespace {

// Dimension `d` of the KV entry at `slot`, dequantised for the FP8 MLA format.
double kv_value(const SparseAttentionProblem& p, int64_t slot, int64_t d) {
    const uint8_t* entry = p.entry(slot);
    if (p.format == KvFormat::bf16) {
        uint16_t bits;
        std::memcpy(&bits, entry + 2 * d, 2);
        return bf16_to_float(bits);
    }
    if (d < 512) {
        float scale;
        std::memcpy(&scale, entry + 512 + 4 * (d / 128), 4);
        return static_cast<double>(decode_e4m3(entry[d])) * scale;
    }
    uint16_t bits;
    std::memcpy(&bits, entry + 528 + 2 * (d - 512), 2);
    return bf16_to_float(bits);
}

}  // namespace

void sparse_attention(const SparseAttentionProblem& p) {
    const RowLayout q_rows = leading_rows(p.q), out_rows = leading_rows(p.out), index_rows = leading_rows(p.indices),
                    lse_rows = leading_rows(p.lse), max_rows = leading_rows(p.max_logits),
                    length_layout = element_layout(p.topk_length);
    const double inf = std::numeric_limits<double>::infinity();
    for (int64_t r = 0; r < p.rows; ++r) {
        int64_t count = p.topk;
        if (p.has_topk_length) {
            const int64_t length = p.topk_length.as<const int32_t>()[length_layout.offset(r)];
            count = length < 0 ? 0 : (length > p.topk ? p.topk : length);
        }
        std::vector<int64_t> selected;
        for (int64_t j = 0; j < count; ++j) {
            const int64_t slot = p.indices.as<const int32_t>()[index_rows.offset(r) + j * p.indices.stride(-1)];
            if (slot >= 0 && slot < p.num_slots) selected.push_back(slot);
        }
        for (int64_t h = 0; h < p.heads; ++h) {
            const uint16_t* q = p.q.as<const uint16_t>() + q_rows.offset(r * p.heads + h);
            uint16_t* out = p.out.as<uint16_t>() + out_rows.offset(r * p.heads + h);
            std::vector<double> z(selected.size());
            double max_z = -inf;
            for (size_t j = 0; j < selected.size(); ++j) {
                double dot = 0.0;
                for (int64_t d = 0; d < p.d_qk; ++d) dot += static_cast<double>(bf16_to_float(q[d])) * kv_value(p, selected[j], d);
                z[j] = static_cast<double>(p.scale) * dot;
                max_z = std::fmax(max_z, z[j]);
            }
            std::vector<double> weight(z.size());
            double sum = 0.0;
            for (size_t j = 0; j < z.size(); ++j) sum += weight[j] = std::exp(z[j] - max_z);
            double denominator = sum;
            if (p.has_attn_sink)
                denominator += std::exp(static_cast<double>(p.attn_sink.as<const float>()[h * p.attn_sink.stride(0)]) - max_z);
            for (int64_t c = 0; c < p.d_v; ++c) {
                double acc = 0.0;
                for (size_t j = 0; j < selected.size(); ++j) acc += weight[j] * kv_value(p, selected[j], c);
                out[c] = float_to_bf16(selected.empty() ? 0.0f : static_cast<float>(acc / denominator));
            }
            const int64_t at = h * p.lse.stride(-1);
            p.lse.as<float>()[lse_rows.offset(r) + at] = selected.empty() ? INFINITY : static_cast<float>(max_z + std::log(sum));
            if (p.has_max_logits)
                p.max_logits.as<float>()[max_rows.offset(r) + h * p.max_logits.stride(-1)] = static_cast<float>(max_z);
        }
    }
}

}  // namespace dsa::reference
