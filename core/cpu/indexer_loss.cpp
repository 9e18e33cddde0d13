// CPU indexer distillation loss. One task is one query row: it walks the row's entries in
// tiles of 64 twice. Pass 1 scores each tile with the student (u = q.k per head, a GEMM, then
// I = sum_h w_h ReLU(u)) and, for a rebuilt teacher, with every teacher head (z = scale q.k, a GEMM
// per kv head), keeping running log-sum-exps, so the teacher is never stored beyond one tile.
// Pass 2 rescores each tile, forms p and pi, the row's KL and g = pi - p, and the gradients: d_w
// and d_q of the row directly, and each entry's dk contribution c_j = sum_h G[h,j] q[h,:] into a
// panel buffer. After a panel of rows, the buffer is reduced into d_index_k token by token in
// (row, entry) order. coeff / N_active is applied once at the end. Every output element has one
// fixed chain of operations whatever the thread count or the panel size, so results are bitwise
// identical for any thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "../ops/indexer_loss.hpp"
#include "isa.hpp"
#include "training_kernels.hpp"

namespace dsa::cpu {
namespace {

constexpr int64_t kTile = kEntryTile;
constexpr float kMinusInfinity = -std::numeric_limits<float>::infinity();

// logits[j] = sum over heads h, in order, of w[h] * ReLU(u[h * kTile + j]), j < width.
DSA_CPU_MULTIVERSION void student_logits(const float* u, const float* w, int64_t heads, int64_t width, float* logits) {
    std::fill(logits, logits + width, 0.0f);
    for (int64_t h = 0; h < heads; ++h) {
        const float* row = u + h * kTile;
        for (int64_t j = 0; j < width; ++j) logits[j] += w[h] * (row[j] < 0.0f ? 0.0f : row[j]);
    }
}

// For each head: d_w[h] += sum_j g[j] ReLU(u[h, j]); grad[h, j] = g[j] w[h] [u[h, j] > 0]
// (width a multiple of 8). The sum runs in 8 lanes (j mod 8), then the lanes in order.
using StudentGradient = void (*)(const float* u, const float* w, const float* g, int64_t heads, int64_t width,
                                 float* d_w, float* grad);

void student_gradient_portable(const float* u, const float* w, const float* g, int64_t heads, int64_t width,
                               float* d_w, float* grad) {
    for (int64_t h = 0; h < heads; ++h) {
        const float* row = u + h * kTile;
        float lanes[8] = {};
        for (int64_t j = 0; j < width; ++j) {
            lanes[j % 8] += g[j] * (row[j] < 0.0f ? 0.0f : row[j]);
            grad[h * kTile + j] = row[j] > 0.0f ? g[j] * w[h] : 0.0f;
        }
        float sum = 0.0f;
        for (float lane : lanes) sum += lane;
        d_w[h] += sum;
    }
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) void student_gradient_avx2(const float* u, const float* w, const float* g,
                                                               int64_t heads, int64_t width, float* d_w, float* grad) {
    const __m256 zero = _mm256_setzero_ps();
    for (int64_t h = 0; h < heads; ++h) {
        const __m256 weight = _mm256_broadcast_ss(w + h);
        __m256 lanes = zero;
        for (int64_t j = 0; j < width; j += 8) {
            const __m256 value = _mm256_loadu_ps(u + h * kTile + j), factor = _mm256_loadu_ps(g + j);
            lanes = _mm256_fmadd_ps(factor, _mm256_max_ps(zero, value), lanes);  // MAXPS keeps a NaN u
            const __m256 positive = _mm256_cmp_ps(value, zero, _CMP_GT_OQ);
            _mm256_storeu_ps(grad + h * kTile + j, _mm256_and_ps(positive, _mm256_mul_ps(factor, weight)));
        }
        alignas(32) float values[8];
        _mm256_store_ps(values, lanes);
        float sum = 0.0f;
        for (float lane : values) sum += lane;
        d_w[h] += sum;
    }
}
#endif

StudentGradient choose_student_gradient() {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return student_gradient_avx2;
#endif
    return student_gradient_portable;
}

// ---- One row ---------------------------------------------------------------------------------

struct Scratch {
    std::vector<int32_t> entries;
    std::vector<float> q, w, teacher_q, keys_t, key_rows, teacher_keys_t, teacher_key_rows, u, z, grad, grad_t, d_q, d_w;
    std::vector<float> teacher_max, teacher_sum, teacher_lse;
    float logits[kTile], probs[kTile], student[kTile], g[kTile];
    float student_lse = 0.0f;   // of the current row, from the first pass
    double teacher_mass = 0.0;  // teacher_probs over the row's entries
};

// What a row task reports; its d_q and d_w rows are written (unscaled, zero when inactive).
struct RowOutcome {
    double kl = 0.0;
    bool active = false;
};

class RowLoss {
public:
    explicit RowLoss(const IndexerLossProblem& p)
        : p_(p),
          k_(training_kernels()),
          student_gradient_(choose_student_gradient()),
          padded_dim_(round_up(p.dim, 8)),
          group_heads_(p.has_teacher_probs ? 0 : p.teacher_heads / p.teacher_kv_heads) {}

    void allocate(Scratch& s) const {
        s.q.assign(static_cast<size_t>(p_.heads * padded_dim_), 0.0f);
        s.w.resize(static_cast<size_t>(p_.heads));
        s.keys_t.resize(static_cast<size_t>(padded_dim_ * kTile));
        s.key_rows.assign(static_cast<size_t>(kTile * padded_dim_), 0.0f);
        s.u.resize(static_cast<size_t>(p_.heads * kTile));
        s.grad.resize(static_cast<size_t>(p_.heads * kTile));
        s.grad_t.resize(static_cast<size_t>(kTile * p_.heads));
        s.d_q.resize(static_cast<size_t>(p_.heads * padded_dim_));
        s.d_w.resize(static_cast<size_t>(p_.heads));
        if (!p_.has_teacher_probs) {
            s.teacher_q.resize(static_cast<size_t>(p_.teacher_heads * p_.teacher_dim));
            s.teacher_keys_t.resize(static_cast<size_t>(round_up(p_.teacher_dim, 8) * kTile));
            s.teacher_key_rows.assign(static_cast<size_t>(kTile * round_up(p_.teacher_dim, 8)), 0.0f);
            s.z.resize(static_cast<size_t>(group_heads_ * kTile));
            s.teacher_max.resize(static_cast<size_t>(p_.teacher_heads));
            s.teacher_sum.resize(static_cast<size_t>(p_.teacher_heads));
            s.teacher_lse.resize(static_cast<size_t>(p_.teacher_heads));
        }
    }

    // Row t. With d_index_k, entry j's dk contribution goes to contributions[j * padded_dim] and
    // its token to tokens[j].
    RowOutcome run(int64_t t, Scratch& s, float* contributions, int32_t* tokens) const {
        p_.entries(t, s.entries);
        const int64_t count = static_cast<int64_t>(s.entries.size());
        RowOutcome outcome;
        if (count > 0) {
            load_queries(t, s);
            outcome.active = first_pass(t, s);
        }
        std::fill(s.d_q.begin(), s.d_q.end(), 0.0f);
        std::fill(s.d_w.begin(), s.d_w.end(), 0.0f);
        if (outcome.active) {
            outcome.kl = second_pass(t, s, contributions);
            if (p_.has_d_index_k) std::copy(s.entries.begin(), s.entries.end(), tokens);
        }
        write_row_gradients(t, s);
        return outcome;
    }

private:
    void load_queries(int64_t t, Scratch& s) const {
        for (int64_t h = 0; h < p_.heads; ++h)
            load_row(p_.index_q, t * p_.index_q.strides[0] + h * p_.index_q.strides[1], p_.dim,
                     s.q.data() + h * padded_dim_);
        for (int64_t h = 0; h < p_.heads; ++h)
            s.w[h] = load_element(p_.weights, t * p_.weights.strides[0] + h * p_.weights.strides[1]);
        if (p_.has_teacher_probs) return;
        for (int64_t h = 0; h < p_.teacher_heads; ++h)
            load_row(p_.teacher_q, t * p_.teacher_q.strides[0] + h * p_.teacher_q.strides[1], p_.teacher_dim,
                     s.teacher_q.data() + h * p_.teacher_dim);
    }

    // Student u (into s.u) and logits (into s.logits) of the tile's entries.
    void score_student(const int32_t* tokens, int64_t count, Scratch& s) const {
        const int64_t width = round_up(count, 8);
        gather_entries(p_.index_k, 0, tokens, count, p_.dim, s.key_rows.data(), s.keys_t.data());
        k_.gemm(s.q.data(), padded_dim_, s.keys_t.data(), kTile, s.u.data(), kTile, p_.heads, width, p_.dim, false);
        student_logits(s.u.data(), s.w.data(), p_.heads, width, s.logits);
    }

    // Teacher logits of kv head `group` for the tile (into s.z, unscaled q.k).
    void score_teacher(const int32_t* tokens, int64_t count, int64_t group, Scratch& s) const {
        const int64_t head_offset = p_.teacher_k.ndim == 3 ? group * p_.teacher_k.strides[1] : 0;
        gather_entries(p_.teacher_k, head_offset, tokens, count, p_.teacher_dim, s.teacher_key_rows.data(),
                       s.teacher_keys_t.data());
        k_.gemm(s.teacher_q.data() + group * group_heads_ * p_.teacher_dim, p_.teacher_dim, s.teacher_keys_t.data(),
                kTile, s.z.data(), kTile, group_heads_, round_up(count, 8), p_.teacher_dim, false);
    }

    float teacher_prob(int64_t t, int32_t token) const {
        return p_.teacher_probs.as<const float>()[t * p_.teacher_probs.strides[0] + token];
    }

    // Normalisers of both distributions; returns whether the row is active.
    bool first_pass(int64_t t, Scratch& s) const {
        const int64_t count = static_cast<int64_t>(s.entries.size());
        float student_max = kMinusInfinity, student_sum = 0.0f;
        std::fill(s.teacher_max.begin(), s.teacher_max.end(), kMinusInfinity);
        std::fill(s.teacher_sum.begin(), s.teacher_sum.end(), 0.0f);
        double mass = 0.0;
        bool negative = false;
        for (int64_t start = 0; start < count; start += kTile) {
            const int64_t tile = std::min(kTile, count - start);
            const int32_t* tokens = s.entries.data() + start;
            score_student(tokens, tile, s);
            update_log_sum_exp(k_, s.logits, tile, 1.0f, student_max, student_sum);
            if (p_.has_teacher_probs) {
                for (int64_t j = 0; j < tile; ++j) {
                    const float value = teacher_prob(t, tokens[j]);
                    negative |= !(value >= 0.0f);
                    mass += value;
                }
                continue;
            }
            for (int64_t group = 0; group < p_.teacher_kv_heads; ++group) {
                score_teacher(tokens, tile, group, s);
                for (int64_t i = 0; i < group_heads_; ++i) {
                    const int64_t h = group * group_heads_ + i;
                    update_log_sum_exp(k_, s.z.data() + i * kTile, tile, p_.config.teacher_scale, s.teacher_max[h],
                                       s.teacher_sum[h]);
                }
            }
        }
        s.student_lse = student_max + std::log(student_sum);
        if (p_.has_teacher_probs) {
            s.teacher_mass = mass;
            return !negative && mass > 0.0 && std::isfinite(mass);
        }
        bool finite = true;
        for (int64_t h = 0; h < p_.teacher_heads; ++h) {
            s.teacher_lse[h] = s.teacher_max[h] + std::log(s.teacher_sum[h]);
            finite &= std::isfinite(s.teacher_lse[h]);
        }
        return finite;
    }

    // Teacher probabilities of the tile into s.probs (j < round_up(count, 8); padding 0).
    void teacher_probs(int64_t t, const int32_t* tokens, int64_t count, Scratch& s) const {
        std::fill(s.probs, s.probs + kTile, 0.0f);
        if (p_.has_teacher_probs) {
            for (int64_t j = 0; j < count; ++j) s.probs[j] = static_cast<float>(teacher_prob(t, tokens[j]) / s.teacher_mass);
            return;
        }
        for (int64_t group = 0; group < p_.teacher_kv_heads; ++group) {
            score_teacher(tokens, count, group, s);
            for (int64_t i = 0; i < group_heads_; ++i)
                k_.exp_add(s.z.data() + i * kTile, count, p_.config.teacher_scale,
                           s.teacher_lse[group * group_heads_ + i], s.probs);
        }
        scale_values(s.probs, count, 1.0f / static_cast<float>(p_.teacher_heads));
    }

    // KL of the row; d_q, d_w (unscaled) into the scratch and the dk contributions.
    double second_pass(int64_t t, Scratch& s, float* contributions) const {
        const int64_t count = static_cast<int64_t>(s.entries.size());
        const bool gradients = p_.wants_gradients();
        double kl = 0.0;
        for (int64_t start = 0; start < count; start += kTile) {
            const int64_t tile = std::min(kTile, count - start), width = round_up(tile, 8);
            const int32_t* tokens = s.entries.data() + start;
            score_student(tokens, tile, s);
            teacher_probs(t, tokens, tile, s);
            std::fill(s.student, s.student + kTile, 0.0f);
            k_.exp_add(s.logits, tile, 1.0f, s.student_lse, s.student);
            for (int64_t j = 0; j < tile; ++j) {
                const double p = s.probs[j];
                if (p > 0.0) kl += p * (std::log(p) - (static_cast<double>(s.logits[j]) - s.student_lse));
                s.g[j] = s.student[j] - s.probs[j];
            }
            std::fill(s.g + tile, s.g + kTile, 0.0f);
            if (!gradients) continue;
            student_gradient_(s.u.data(), s.w.data(), s.g, p_.heads, width, s.d_w.data(), s.grad.data());
            if (p_.has_d_index_q)
                k_.gemm(s.grad.data(), kTile, s.key_rows.data(), padded_dim_, s.d_q.data(), padded_dim_, p_.heads,
                        padded_dim_, tile, true);
            if (p_.has_d_index_k) {
                for (int64_t h = 0; h < p_.heads; ++h)
                    for (int64_t j = 0; j < tile; ++j) s.grad_t[j * p_.heads + h] = s.grad[h * kTile + j];
                k_.gemm(s.grad_t.data(), p_.heads, s.q.data(), padded_dim_, contributions + start * padded_dim_,
                        padded_dim_, tile, padded_dim_, p_.heads, false);
            }
        }
        return kl;
    }

    void write_row_gradients(int64_t t, const Scratch& s) const {
        if (p_.has_d_index_q)
            for (int64_t h = 0; h < p_.heads; ++h)
                std::memcpy(p_.d_index_q.as<float>() + t * p_.d_index_q.strides[0] + h * p_.d_index_q.strides[1],
                            s.d_q.data() + h * padded_dim_, static_cast<size_t>(p_.dim) * sizeof(float));
        if (p_.has_d_weights)
            std::memcpy(p_.d_weights.as<float>() + t * p_.d_weights.strides[0], s.d_w.data(),
                        static_cast<size_t>(p_.heads) * sizeof(float));
    }

    const IndexerLossProblem& p_;
    const TrainingKernels& k_;
    const StudentGradient student_gradient_;
    const int64_t padded_dim_, group_heads_;
};

}  // namespace

void indexer_loss(Context& context, const IndexerLossProblem& p) {
    if (!p.has_loss && !p.has_row_loss && !p.wants_gradients()) return;
    const RowLoss row_loss(p);
    const std::vector<int64_t> counts = entry_counts(context, p);
    std::vector<double> kl(static_cast<size_t>(p.rows), 0.0);
    std::vector<uint8_t> active(static_cast<size_t>(p.rows), 0);
    // Rows [begin, end); with a panel, their dk contributions go there.
    auto run_rows = [&](int64_t begin, int64_t end, const TokenReduction::Panel* panel) {
        Scratch scratch;
        row_loss.allocate(scratch);
        for (int64_t t = begin; t < end; ++t) {
            const RowOutcome outcome = panel ? row_loss.run(t, scratch, panel->contribution(t), panel->token(t))
                                             : row_loss.run(t, scratch, nullptr, nullptr);
            kl[t] = outcome.kl;
            active[t] = outcome.active;
        }
    };
    if (p.has_d_index_k) {
        const int64_t longest = p.rows > 0 ? *std::max_element(counts.begin(), counts.end()) : 0;
        const int64_t capacity = TokenReduction::panel_entries(context, p.rows, longest, p.dim);
        TokenReduction reduction(capacity, p.dim, p.tokens, nullptr);
        reduction.run(context, counts, active, p.d_index_k,
                      [&](int64_t begin, int64_t end, const TokenReduction::Panel& panel) {
                          run_rows(begin, end, &panel);
                      });
    } else {
        context.pool().parallel_for(p.rows, 1, [&](int64_t begin, int64_t end) { run_rows(begin, end, nullptr); });
    }

    // g carries coeff / N_active: applied once, to every gradient.
    int64_t active_rows = 0;
    double total = 0.0;
    for (int64_t t = 0; t < p.rows; ++t) {
        if (!active[t]) continue;
        ++active_rows;
        total += kl[t];
    }
    const float factor = active_rows > 0 ? p.config.coeff / static_cast<float>(active_rows) : 0.0f;
    context.pool().parallel_for(std::max(p.rows, p.tokens), 64, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
            if (i < p.rows && p.has_d_index_q)
                for (int64_t h = 0; h < p.heads; ++h)
                    scale_values(p.d_index_q.as<float>() + i * p.d_index_q.strides[0] + h * p.d_index_q.strides[1],
                                 p.dim, factor);
            if (i < p.rows && p.has_d_weights)
                scale_values(p.d_weights.as<float>() + i * p.d_weights.strides[0], p.heads, factor);
            if (i < p.tokens && p.has_d_index_k)
                scale_values(p.d_index_k.as<float>() + i * p.d_index_k.strides[0], p.dim, factor);
        }
    });
    if (p.has_row_loss)
        for (int64_t t = 0; t < p.rows; ++t)
            p.row_loss.as<float>()[t * p.row_loss.strides[0]] = active[t] ? static_cast<float>(kl[t]) : 0.0f;
    if (p.has_loss)
        *p.loss.as<float>() =
            active_rows > 0 ? static_cast<float>(p.config.coeff * total / static_cast<double>(active_rows)) : 0.0f;
}

}  // namespace dsa::cpu
