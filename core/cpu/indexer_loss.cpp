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

namespace dsa::cpu {
namespace {

constexpr int64_t kTile = 64;                    // entries scored per step
constexpr int64_t kPanelBytes = int64_t{32} << 20;  // budget of the dk contributions of one panel
constexpr int64_t kReduceTokens = 64;            // tokens per task of the dk reduction
constexpr float kMinusInfinity = -std::numeric_limits<float>::infinity();

int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

// ---- Kernels ---------------------------------------------------------------------------------

struct Kernels {
    // c[i * ldc + j] (= or +=) sum_l a[i * lda + l] * b[l * ldb + j] for i < m, j < n (n a
    // multiple of 8), l < depth, accumulated over l in order.
    void (*gemm)(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t m,
                 int64_t n, int64_t depth, bool accumulate);
    // sum_j exp(scale * x[j] - shift) for j < count; x readable up to round_up(count, 8).
    float (*exp_sum)(const float* x, int64_t count, float scale, float shift);
    // out[j] += exp(scale * x[j] - shift) for j < count; x and out up to round_up(count, 8).
    void (*exp_add)(const float* x, int64_t count, float scale, float shift, float* out);
};

void gemm_portable(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t m,
                   int64_t n, int64_t depth, bool accumulate) {
    for (int64_t i = 0; i < m; ++i) {
        float* row = c + i * ldc;
        if (!accumulate) std::fill(row, row + n, 0.0f);
        for (int64_t l = 0; l < depth; ++l) {
            const float factor = a[i * lda + l];
            const float* source = b + l * ldb;
            for (int64_t j = 0; j < n; ++j) row[j] += factor * source[j];
        }
    }
}

float exp_sum_portable(const float* x, int64_t count, float scale, float shift) {
    float sum = 0.0f;
    for (int64_t j = 0; j < count; ++j) sum += std::exp(scale * x[j] - shift);
    return sum;
}

void exp_add_portable(const float* x, int64_t count, float scale, float shift, float* out) {
    for (int64_t j = 0; j < count; ++j) out[j] += std::exp(scale * x[j] - shift);
}

#if defined(__x86_64__)
#define DSA_AVX2_FMA __attribute__((target("avx2,fma")))

// exp(x) = 2^n exp(r) with n = round(x / ln 2) and |r| <= ln(2) / 2 (ln 2 split in two so r is
// exact), exp(r) by its Taylor series to degree 6 (relative error ~1e-7). x < -87 gives 0 (the
// true value is below 2^-125), NaN stays NaN.
DSA_AVX2_FMA inline __m256 exp_avx2(__m256 x) {
    const __m256 clamped = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-87.0f), x));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(clamped, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), clamped);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860682030941723e-6f), r);
    __m256 series = _mm256_set1_ps(1.0f / 720.0f);
    series = _mm256_fmadd_ps(series, r, _mm256_set1_ps(1.0f / 120.0f));
    series = _mm256_fmadd_ps(series, r, _mm256_set1_ps(1.0f / 24.0f));
    series = _mm256_fmadd_ps(series, r, _mm256_set1_ps(1.0f / 6.0f));
    series = _mm256_fmadd_ps(series, r, _mm256_set1_ps(0.5f));
    series = _mm256_fmadd_ps(series, r, _mm256_set1_ps(1.0f));
    series = _mm256_fmadd_ps(series, r, _mm256_set1_ps(1.0f));
    const __m256i power = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 result = _mm256_mul_ps(series, _mm256_castsi256_ps(power));
    result = _mm256_blendv_ps(result, _mm256_setzero_ps(), _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_LT_OQ));
    return _mm256_blendv_ps(result, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

// Lanes j with j < count of the 8 starting at `first`.
DSA_AVX2_FMA inline __m256 lane_mask(int64_t first, int64_t count) {
    const __m256i lanes = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(first)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), lanes));
}

DSA_AVX2_FMA float exp_sum_avx2(const float* x, int64_t count, float scale, float shift) {
    __m256 sum = _mm256_setzero_ps();
    for (int64_t j = 0; j < count; j += 8) {
        const __m256 e = exp_avx2(_mm256_fmsub_ps(_mm256_set1_ps(scale), _mm256_loadu_ps(x + j), _mm256_set1_ps(shift)));
        sum = _mm256_add_ps(sum, _mm256_and_ps(e, lane_mask(j, count)));
    }
    __m128 half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
    half = _mm_add_ps(half, _mm_movehl_ps(half, half));
    return _mm_cvtss_f32(_mm_add_ss(half, _mm_movehdup_ps(half)));
}

DSA_AVX2_FMA void exp_add_avx2(const float* x, int64_t count, float scale, float shift, float* out) {
    for (int64_t j = 0; j < count; j += 8) {
        const __m256 e = exp_avx2(_mm256_fmsub_ps(_mm256_set1_ps(scale), _mm256_loadu_ps(x + j), _mm256_set1_ps(shift)));
        _mm256_storeu_ps(out + j, _mm256_add_ps(_mm256_loadu_ps(out + j), _mm256_and_ps(e, lane_mask(j, count))));
    }
}

// A register block of the GEMM: Rows rows of c x 8 * Vectors columns, over the whole depth.
template <int Rows, int Vectors>
DSA_AVX2_FMA void gemm_block(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                             int64_t depth, bool accumulate) {
    __m256 acc[Rows][Vectors];
#pragma GCC unroll 4
    for (int i = 0; i < Rows; ++i)
#pragma GCC unroll 3
        for (int v = 0; v < Vectors; ++v) acc[i][v] = _mm256_setzero_ps();
    for (int64_t l = 0; l < depth; ++l) {
        __m256 source[Vectors];
#pragma GCC unroll 3
        for (int v = 0; v < Vectors; ++v) source[v] = _mm256_loadu_ps(b + l * ldb + 8 * v);
#pragma GCC unroll 4
        for (int i = 0; i < Rows; ++i) {
            const __m256 factor = _mm256_broadcast_ss(a + i * lda + l);
#pragma GCC unroll 3
            for (int v = 0; v < Vectors; ++v) acc[i][v] = _mm256_fmadd_ps(factor, source[v], acc[i][v]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < Rows; ++i)
#pragma GCC unroll 3
        for (int v = 0; v < Vectors; ++v) {
            float* target = c + i * ldc + 8 * v;
            _mm256_storeu_ps(target, accumulate ? _mm256_add_ps(_mm256_loadu_ps(target), acc[i][v]) : acc[i][v]);
        }
}

using GemmBlock = void (*)(const float*, int64_t, const float*, int64_t, float*, int64_t, int64_t, bool);
constexpr int kBlockRows = 4, kBlockVectors = 3;  // 12 accumulators + 3 sources + 1 broadcast = 16 registers
constexpr GemmBlock kGemmBlocks[kBlockRows][kBlockVectors] = {
    {gemm_block<1, 1>, gemm_block<1, 2>, gemm_block<1, 3>},
    {gemm_block<2, 1>, gemm_block<2, 2>, gemm_block<2, 3>},
    {gemm_block<3, 1>, gemm_block<3, 2>, gemm_block<3, 3>},
    {gemm_block<4, 1>, gemm_block<4, 2>, gemm_block<4, 3>},
};

DSA_AVX2_FMA void gemm_avx2(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                            int64_t m, int64_t n, int64_t depth, bool accumulate) {
    // Column slabs outer: a slab of b stays in cache while every row block uses it.
    for (int64_t j = 0; j < n; j += 8 * kBlockVectors) {
        const int64_t vectors = std::min<int64_t>(kBlockVectors, (n - j) / 8);
        for (int64_t i = 0; i < m; i += kBlockRows) {
            const int64_t rows = std::min<int64_t>(kBlockRows, m - i);
            kGemmBlocks[rows - 1][vectors - 1](a + i * lda, lda, b + j, ldb, c + i * ldc + j, ldc, depth, accumulate);
        }
    }
}
#endif  // __x86_64__

const Kernels& kernels() {
    static const Kernels chosen = [] {
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            return Kernels{gemm_avx2, exp_sum_avx2, exp_add_avx2};
#endif
        return Kernels{gemm_portable, exp_sum_portable, exp_add_portable};
    }();
    return chosen;
}

// ---- Loading rows as f32 -----------------------------------------------------------------

// `count` elements of a f32 or bf16 tensor starting at element `offset`, as f32.
DSA_CPU_MULTIVERSION void load_row(const TensorView& tensor, int64_t offset, int64_t count, float* out) {
    if (tensor.dtype == DType::bf16) {
        const uint16_t* source = tensor.as<const uint16_t>() + offset;
        for (int64_t i = 0; i < count; ++i) out[i] = bf16_to_float(source[i]);
    } else {
        std::memcpy(out, tensor.as<const float>() + offset, static_cast<size_t>(count) * sizeof(float));
    }
}

float load_element(const TensorView& tensor, int64_t offset) {
    return tensor.dtype == DType::bf16 ? bf16_to_float(tensor.as<const uint16_t>()[offset])
                                       : tensor.as<const float>()[offset];
}

// Keys of `count` entries, transposed: out[d * kTile + j] = key(tokens[j])[d] for d < dim, with
// columns count .. round_up(count, 8) zero. `head_offset` selects a kv head inside a token.
void gather_transposed(const TensorView& keys, int64_t head_offset, const int32_t* tokens, int64_t count,
                       int64_t dim, float* row_buffer, float* out) {
    for (int64_t j = 0; j < count; ++j) {
        load_row(keys, tokens[j] * keys.strides[0] + head_offset, dim, row_buffer);
        for (int64_t d = 0; d < dim; ++d) out[d * kTile + j] = row_buffer[d];
    }
    for (int64_t d = 0; d < dim; ++d) std::fill(out + d * kTile + count, out + d * kTile + round_up(count, 8), 0.0f);
}

// ---- Small vector steps (auto-vectorised) ------------------------------------------------

// logits[j] = sum over heads h, in order, of w[h] * ReLU(u[h * kTile + j]), j < width.
DSA_CPU_MULTIVERSION void student_logits(const float* u, const float* w, int64_t heads, int64_t width, float* logits) {
    std::fill(logits, logits + width, 0.0f);
    for (int64_t h = 0; h < heads; ++h) {
        const float* row = u + h * kTile;
        for (int64_t j = 0; j < width; ++j) logits[j] += w[h] * (row[j] < 0.0f ? 0.0f : row[j]);
    }
}

// For each head: d_w[h] += sum_j g[j] ReLU(u[h, j]); grad[h, j] = g[j] w[h] [u[h, j] > 0].
DSA_CPU_MULTIVERSION void student_gradient(const float* u, const float* w, const float* g, int64_t heads,
                                           int64_t width, float* d_w, float* grad) {
    for (int64_t h = 0; h < heads; ++h) {
        const float* row = u + h * kTile;
        float* out = grad + h * kTile;
        float sum = 0.0f;
        for (int64_t j = 0; j < width; ++j) {
            sum += g[j] * (row[j] < 0.0f ? 0.0f : row[j]);
            out[j] = row[j] > 0.0f ? g[j] * w[h] : 0.0f;
        }
        d_w[h] += sum;
    }
}

DSA_CPU_MULTIVERSION void scale_values(float* values, int64_t count, float factor) {
    for (int64_t i = 0; i < count; ++i) values[i] *= factor;
}

DSA_CPU_MULTIVERSION void add_values(const float* source, int64_t count, float* target) {
    for (int64_t i = 0; i < count; ++i) target[i] += source[i];
}

// A running log-sum-exp: folds scale * x[j], j < count, into (max, sum).
void update_log_sum_exp(const Kernels& k, const float* x, int64_t count, float scale, float& max, float& sum) {
    float tile_max = kMinusInfinity;
    for (int64_t j = 0; j < count; ++j) tile_max = std::max(tile_max, scale * x[j]);
    const float next = std::max(max, tile_max);
    if (next == kMinusInfinity) return;
    sum = (max == kMinusInfinity ? 0.0f : sum * std::exp(max - next)) + k.exp_sum(x, count, scale, next);
    max = next;
}

// ---- One row ---------------------------------------------------------------------------------

struct Scratch {
    std::vector<int32_t> entries;
    std::vector<float> q, w, teacher_q, keys_t, key_rows, teacher_keys_t, row_buffer, u, z, grad, grad_t, d_q, d_w;
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
          k_(kernels()),
          padded_dim_(round_up(p.dim, 8)),
          group_heads_(p.has_teacher_probs ? 0 : p.teacher_heads / p.teacher_kv_heads) {}

    int64_t padded_dim() const { return padded_dim_; }

    void allocate(Scratch& s) const {
        s.q.assign(static_cast<size_t>(p_.heads * padded_dim_), 0.0f);
        s.w.resize(static_cast<size_t>(p_.heads));
        s.keys_t.resize(static_cast<size_t>(p_.dim * kTile));
        s.key_rows.assign(static_cast<size_t>(kTile * padded_dim_), 0.0f);
        s.row_buffer.resize(static_cast<size_t>(std::max(p_.dim, p_.teacher_dim)));
        s.u.resize(static_cast<size_t>(p_.heads * kTile));
        s.grad.resize(static_cast<size_t>(p_.heads * kTile));
        s.grad_t.resize(static_cast<size_t>(kTile * p_.heads));
        s.d_q.resize(static_cast<size_t>(p_.heads * padded_dim_));
        s.d_w.resize(static_cast<size_t>(p_.heads));
        if (!p_.has_teacher_probs) {
            s.teacher_q.resize(static_cast<size_t>(p_.teacher_heads * p_.teacher_dim));
            s.teacher_keys_t.resize(static_cast<size_t>(p_.teacher_dim * kTile));
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
    void score_student(const int32_t* tokens, int64_t count, Scratch& s, bool with_rows) const {
        const int64_t width = round_up(count, 8);
        gather_transposed(p_.index_k, 0, tokens, count, p_.dim, s.row_buffer.data(), s.keys_t.data());
        if (with_rows) {
            for (int64_t j = 0; j < count; ++j)
                load_row(p_.index_k, tokens[j] * p_.index_k.strides[0], p_.dim, s.key_rows.data() + j * padded_dim_);
        }
        k_.gemm(s.q.data(), padded_dim_, s.keys_t.data(), kTile, s.u.data(), kTile, p_.heads, width, p_.dim, false);
        student_logits(s.u.data(), s.w.data(), p_.heads, width, s.logits);
    }

    // Teacher logits of kv head `group` for the tile (into s.z, unscaled q.k).
    void score_teacher(const int32_t* tokens, int64_t count, int64_t group, Scratch& s) const {
        const int64_t head_offset = p_.teacher_k.ndim == 3 ? group * p_.teacher_k.strides[1] : 0;
        gather_transposed(p_.teacher_k, head_offset, tokens, count, p_.teacher_dim, s.row_buffer.data(),
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
            score_student(tokens, tile, s, false);
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
            score_student(tokens, tile, s, p_.has_d_index_q);
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
            student_gradient(s.u.data(), s.w.data(), s.g, p_.heads, width, s.d_w.data(), s.grad.data());
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
    const Kernels& k_;
    const int64_t padded_dim_, group_heads_;
};

// ---- Panels and the dk reduction -------------------------------------------------------

// Consecutive rows whose dk contributions fit the panel budget (at least one row each).
std::vector<int64_t> panel_starts(const std::vector<int64_t>& counts, int64_t entry_bytes) {
    std::vector<int64_t> starts{0};
    int64_t bytes = 0;
    for (size_t t = 0; t < counts.size(); ++t) {
        const int64_t row_bytes = counts[t] * entry_bytes;
        if (bytes > 0 && bytes + row_bytes > kPanelBytes) {
            starts.push_back(static_cast<int64_t>(t));
            bytes = 0;
        }
        bytes += row_bytes;
    }
    starts.push_back(static_cast<int64_t>(counts.size()));
    return starts;
}

// Adds the active rows' contributions of a panel to d_index_k, each token's in (row, entry)
// order: a counting sort of the panel's entries by token, then one task per block of tokens.
// Entry e of the panel (counted from its first row) has its token at tokens[e] and its
// contribution at contributions[e * padded_dim].
void reduce_panel(Context& context, const IndexerLossProblem& p, int64_t padded_dim, int64_t first_row,
                  int64_t last_row, const std::vector<int64_t>& offsets, const std::vector<uint8_t>& active,
                  const float* contributions, const int32_t* tokens, std::vector<int64_t>& token_starts,
                  std::vector<int64_t>& order) {
    const int64_t base = offsets[first_row];
    std::fill(token_starts.begin(), token_starts.end(), 0);
    for (int64_t t = first_row; t < last_row; ++t)
        if (active[t])
            for (int64_t e = offsets[t] - base; e < offsets[t + 1] - base; ++e) ++token_starts[tokens[e] + 1];
    for (int64_t s = 0; s < p.tokens; ++s) token_starts[s + 1] += token_starts[s];
    std::vector<int64_t> next(token_starts.begin(), token_starts.end() - 1);
    for (int64_t t = first_row; t < last_row; ++t)
        if (active[t])
            for (int64_t e = offsets[t] - base; e < offsets[t + 1] - base; ++e) order[next[tokens[e]]++] = e;
    context.pool().parallel_for(p.tokens, kReduceTokens, [&](int64_t begin, int64_t end) {
        for (int64_t s = begin; s < end; ++s) {
            float* target = p.d_index_k.as<float>() + s * p.d_index_k.strides[0];
            for (int64_t i = token_starts[s]; i < token_starts[s + 1]; ++i)
                add_values(contributions + order[i] * padded_dim, p.dim, target);
        }
    });
}

}  // namespace

void indexer_loss(Context& context, const IndexerLossProblem& p) {
    if (!p.has_loss && !p.has_row_loss && !p.wants_gradients()) return;
    const RowLoss row_loss(p);
    const int64_t padded_dim = row_loss.padded_dim();
    // Entries per row, their offsets, and the panels.
    std::vector<int64_t> counts(static_cast<size_t>(p.rows));
    context.pool().parallel_for(p.rows, 256, [&](int64_t begin, int64_t end) {
        std::vector<int32_t> entries;
        for (int64_t t = begin; t < end; ++t) {
            p.entries(t, entries);
            counts[t] = static_cast<int64_t>(entries.size());
        }
    });
    std::vector<int64_t> offsets(static_cast<size_t>(p.rows + 1), 0);
    for (int64_t t = 0; t < p.rows; ++t) offsets[t + 1] = offsets[t] + counts[t];
    // Without d_index_k nothing is kept per entry but its token: one panel.
    const std::vector<int64_t> starts =
        panel_starts(counts, p.has_d_index_k ? padded_dim * static_cast<int64_t>(sizeof(float)) : 0);
    int64_t panel_entries = 0;
    for (size_t i = 0; i + 1 < starts.size(); ++i)
        panel_entries = std::max(panel_entries, offsets[starts[i + 1]] - offsets[starts[i]]);

    std::vector<float> contributions;
    std::vector<int32_t> tokens;
    std::vector<int64_t> token_starts, order;
    if (p.has_d_index_k) {
        contributions.resize(static_cast<size_t>(panel_entries * padded_dim));
        tokens.resize(static_cast<size_t>(panel_entries));
        token_starts.resize(static_cast<size_t>(p.tokens + 1));
        order.resize(static_cast<size_t>(panel_entries));
        for (int64_t s = 0; s < p.tokens; ++s)
            std::fill_n(p.d_index_k.as<float>() + s * p.d_index_k.strides[0], p.dim, 0.0f);
    }
    std::vector<double> kl(static_cast<size_t>(p.rows), 0.0);
    std::vector<uint8_t> active(static_cast<size_t>(p.rows), 0);

    for (size_t panel = 0; panel + 1 < starts.size(); ++panel) {
        const int64_t first = starts[panel], last = starts[panel + 1];
        context.pool().parallel_for(last - first, 1, [&](int64_t begin, int64_t end) {
            Scratch scratch;
            row_loss.allocate(scratch);
            for (int64_t i = begin; i < end; ++i) {
                const int64_t t = first + i;
                const int64_t entry = offsets[t] - offsets[first];
                const RowOutcome outcome =
                    p.has_d_index_k
                        ? row_loss.run(t, scratch, contributions.data() + entry * padded_dim, tokens.data() + entry)
                        : row_loss.run(t, scratch, nullptr, nullptr);
                kl[t] = outcome.kl;
                active[t] = outcome.active;
            }
        });
        if (p.has_d_index_k)
            reduce_panel(context, p, padded_dim, first, last, offsets, active, contributions.data(), tokens.data(),
                         token_starts, order);
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
