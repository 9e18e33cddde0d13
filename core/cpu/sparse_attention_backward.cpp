// CPU sparse attention backward. One task is one query row with all its heads: it gathers the
// row's valid KV entries in tiles of 64 (f32, row-major and transposed) and per tile rescores
// Z = Q.K^T, forms P = exp(scale Z - L), dP = dOut.V^T and dZ = P (dP - D) as GEMMs, adds dZ.K to
// the row's dq, and writes each entry's dkv contribution scale dZ^T.Q + P^T.dOut to a panel
// buffer. The buffer is reduced into dkv token by token in (row, entry) order
// (TokenReduction), so both modes are deterministic for any thread count and need no atomics.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "../ops/sparse_attention_backward.hpp"
#include "isa.hpp"
#include "training_kernels.hpp"

namespace dsa::cpu {
namespace {

constexpr int64_t kTile = kEntryTile;
constexpr float kInfinity = std::numeric_limits<float>::infinity();

// dz[h, j] = p[h, j] * (dz[h, j] - d[h]) in place (dz holds dP on entry), for j < width.
DSA_CPU_MULTIVERSION void score_gradient(const float* p, const float* d, int64_t heads, int64_t width, float* dz) {
    for (int64_t h = 0; h < heads; ++h)
        for (int64_t j = 0; j < width; ++j) dz[h * kTile + j] = p[h * kTile + j] * (dz[h * kTile + j] - d[h]);
}

// out[j * heads + h] = factor * in[h * kTile + j] for j < count.
void transpose_tile(const float* in, int64_t heads, int64_t count, float factor, float* out) {
    for (int64_t h = 0; h < heads; ++h)
        for (int64_t j = 0; j < count; ++j) out[j * heads + h] = factor * in[h * kTile + j];
}

struct Scratch {
    std::vector<int32_t> entries;
    std::vector<float> q, dout, d, normaliser, dq, rows, keys_t, row_buffer, z, p, dz, dz_t, p_t;
};

class RowBackward {
public:
    explicit RowBackward(const SparseAttentionBackwardProblem& p)
        : p_(p), k_(training_kernels()), qk_width_(round_up(p.d_qk, 8)), v_width_(round_up(p.d_v, 8)) {}

    void allocate(Scratch& s) const {
        const size_t heads = static_cast<size_t>(p_.heads);
        s.q.assign(heads * qk_width_, 0.0f);
        s.dout.assign(heads * v_width_, 0.0f);
        s.d.resize(heads);
        s.normaliser.resize(heads);
        s.dq.resize(heads * qk_width_);
        s.rows.assign(static_cast<size_t>(kTile * qk_width_), 0.0f);
        s.keys_t.resize(static_cast<size_t>(qk_width_ * kTile));
        s.row_buffer.resize(static_cast<size_t>(p_.d_qk));
        s.z.resize(heads * kTile);
        s.p.resize(heads * kTile);
        s.dz.resize(heads * kTile);
        s.dz_t.resize(kTile * heads);
        s.p_t.resize(kTile * heads);
    }

    // Row t: writes dq[t] and, when the row contributes, its entries' dkv contributions and
    // tokens; d_sink[h] receives the row's sink gradient terms. Returns whether it contributes.
    bool run(int64_t t, Scratch& s, float* contributions, int32_t* tokens, float* d_sink) const {
        p_.entries(t, s.entries);
        const int64_t count = static_cast<int64_t>(s.entries.size());
        std::fill(s.dq.begin(), s.dq.end(), 0.0f);
        std::fill(d_sink, d_sink + p_.heads, 0.0f);
        const bool contributes = count > 0 && load_row_inputs(t, s);
        if (contributes) {
            for (int64_t start = 0; start < count; start += kTile)
                run_tile(s, start, std::min(kTile, count - start), contributions + start * qk_width_);
            std::copy(s.entries.begin(), s.entries.end(), tokens);
            if (p_.has_attn_sink)
                for (int64_t h = 0; h < p_.heads; ++h)
                    if (s.normaliser[h] != kInfinity) d_sink[h] = -std::exp(sink(h) - s.normaliser[h]) * s.d[h];
        }
        write_dq(t, s);
        return contributes;
    }

private:
    float sink(int64_t h) const { return p_.attn_sink.as<const float>()[h * p_.attn_sink.strides[0]]; }

    // q, dout, D = dout . out and the normaliser L of every head; false when no head has a
    // finite lse (the row had no valid index in the forward).
    bool load_row_inputs(int64_t t, Scratch& s) const {
        bool any = false;
        std::vector<float>& out = s.row_buffer;
        for (int64_t h = 0; h < p_.heads; ++h) {
            load_row(p_.q, t * p_.q.strides[0] + h * p_.q.strides[1], p_.d_qk, s.q.data() + h * qk_width_);
            float* dout = s.dout.data() + h * v_width_;
            load_row(p_.dout, t * p_.dout.strides[0] + h * p_.dout.strides[1], p_.d_v, dout);
            load_row(p_.out, t * p_.out.strides[0] + h * p_.out.strides[1], p_.d_v, out.data());
            float d = 0.0f;
            for (int64_t c = 0; c < p_.d_v; ++c) d += dout[c] * out[c];
            s.d[h] = d;
            const float lse = p_.lse.as<const float>()[t * p_.lse.strides[0] + h * p_.lse.strides[1]];
            float normaliser = lse;
            if (p_.has_attn_sink && lse != kInfinity) {
                const float high = std::max(lse, sink(h));
                normaliser = high + std::log(std::exp(lse - high) + std::exp(sink(h) - high));
            }
            s.normaliser[h] = normaliser;
            any |= normaliser != kInfinity;
        }
        return any;
    }

    void run_tile(Scratch& s, int64_t start, int64_t count, float* contributions) const {
        const int64_t heads = p_.heads, width = round_up(count, 8);
        gather_entries(p_.kv, 0, s.entries.data() + start, count, p_.d_qk, s.rows.data(), s.keys_t.data());
        k_.gemm(s.q.data(), qk_width_, s.keys_t.data(), kTile, s.z.data(), kTile, heads, width, p_.d_qk, false);
        std::fill(s.p.begin(), s.p.end(), 0.0f);
        for (int64_t h = 0; h < heads; ++h)
            if (s.normaliser[h] != kInfinity)
                k_.exp_add(s.z.data() + h * kTile, count, p_.config.scale, s.normaliser[h], s.p.data() + h * kTile);
        // dP over the value dims (the first d_v rows of the transposed keys), then dZ in place.
        k_.gemm(s.dout.data(), v_width_, s.keys_t.data(), kTile, s.dz.data(), kTile, heads, width, p_.d_v, false);
        score_gradient(s.p.data(), s.d.data(), heads, width, s.dz.data());
        k_.gemm(s.dz.data(), kTile, s.rows.data(), qk_width_, s.dq.data(), qk_width_, heads, qk_width_, count, true);
        transpose_tile(s.dz.data(), heads, count, p_.config.scale, s.dz_t.data());
        transpose_tile(s.p.data(), heads, count, 1.0f, s.p_t.data());
        k_.gemm(s.dz_t.data(), heads, s.q.data(), qk_width_, contributions, qk_width_, count, qk_width_, heads, false);
        k_.gemm(s.p_t.data(), heads, s.dout.data(), v_width_, contributions, qk_width_, count, v_width_, heads, true);
    }

    void write_dq(int64_t t, Scratch& s) const {
        for (int64_t h = 0; h < p_.heads; ++h) {
            float* row = s.dq.data() + h * qk_width_;
            scale_values(row, p_.d_qk, p_.config.scale);
            const int64_t offset = t * p_.dq.strides[0] + h * p_.dq.strides[1];
            if (p_.dq.dtype == DType::bf16) {
                uint16_t* target = p_.dq.as<uint16_t>() + offset;
                for (int64_t c = 0; c < p_.d_qk; ++c) target[c] = float_to_bf16(row[c]);
            } else {
                std::memcpy(p_.dq.as<float>() + offset, row, static_cast<size_t>(p_.d_qk) * sizeof(float));
            }
        }
    }

    const SparseAttentionBackwardProblem& p_;
    const TrainingKernels& k_;
    const int64_t qk_width_, v_width_;
};

}  // namespace

int64_t sparse_attention_backward_workspace_bytes(const Context& context, int64_t rows, int64_t topk, int64_t tokens,
                                                  int64_t d_qk) {
    return TokenReduction::scratch_bytes(TokenReduction::panel_entries(context, rows, topk, d_qk), d_qk, tokens);
}

void sparse_attention_backward(Context& context, const SparseAttentionBackwardProblem& p, void* workspace) {
    const RowBackward backward(p);
    const std::vector<int64_t> counts = entry_counts(context, p);
    // The panel capacity is the workspace query's (rows of up to topk entries).
    TokenReduction reduction(TokenReduction::panel_entries(context, p.rows, p.topk, p.d_qk), p.d_qk, p.tokens,
                             workspace);
    std::vector<uint8_t> contributes(static_cast<size_t>(p.rows), 0);
    std::vector<float> d_sink(static_cast<size_t>(p.rows * p.heads), 0.0f);
    reduction.run(context, counts, contributes, p.dkv, [&](int64_t begin, int64_t end, const TokenReduction::Panel& panel) {
        Scratch scratch;
        backward.allocate(scratch);
        for (int64_t t = begin; t < end; ++t)
            contributes[t] = backward.run(t, scratch, panel.contribution(t), panel.token(t), d_sink.data() + t * p.heads);
    });
    if (!p.has_d_attn_sink) return;
    for (int64_t h = 0; h < p.heads; ++h) {
        float sum = 0.0f;
        for (int64_t t = 0; t < p.rows; ++t) sum += d_sink[t * p.heads + h];
        p.d_attn_sink.as<float>()[h * p.d_attn_sink.strides[0]] = sum;
    }
}

}  // namespace dsa::cpu
