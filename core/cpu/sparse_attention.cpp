// CPU sparse MLA attention. One task is one query row and a block of its heads: the task gathers
// the row's selected KV entries tile by tile (bf16 -> f32, or FP8 dequantised, once per entry)
// and uses each tile for every head of the block: scores Q.K^T as a small GEMM, an online
// softmax in f32, then O += P.V. Tasks never share outputs and the partition depends only on
// the shape, so results are bitwise identical for any thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "../ops/sparse_attention.hpp"
#include "isa.hpp"

namespace dsa::cpu {
namespace {

constexpr int64_t kTile = 64;            // KV entries gathered and scored per step
constexpr int64_t kMaxHeadBlock = 64;    // heads per task: bounds the Q and O working set
constexpr int64_t kTaskFlopGrain = 1 << 22;  // rough work per parallel_for chunk

int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

// ---- Tile kernels. Rows of Q and K are zero padded to a multiple of 8 floats. -------------------

struct Kernels {
    // s[h * s_stride + j] = scale * (q[h] . k[j]) for h < heads, j < tokens.
    void (*scores)(const float* q, int64_t q_stride, int64_t heads, const float* k, int64_t k_stride, int64_t tokens,
                   int64_t width, float scale, float* s, int64_t s_stride);
    // p[j] = exp(p[j] - max) in place for j < count; returns the sum of the p[j].
    float (*exp_sum)(float* p, int64_t count, float max);
    // o[h][c] += sum_j p[h * p_stride + j] * v[j * v_stride + c] for h < heads, c < width
    // (width a multiple of 8).
    void (*accumulate)(const float* p, int64_t p_stride, int64_t heads, const float* v, int64_t v_stride,
                       int64_t tokens, float* o, int64_t o_stride, int64_t width);
};

void scores_scalar(const float* q, int64_t q_stride, int64_t heads, const float* k, int64_t k_stride, int64_t tokens,
                   int64_t width, float scale, float* s, int64_t s_stride) {
    for (int64_t h = 0; h < heads; ++h)
        for (int64_t j = 0; j < tokens; ++j) {
            float dot = 0.0f;
            for (int64_t d = 0; d < width; ++d) dot += q[h * q_stride + d] * k[j * k_stride + d];
            s[h * s_stride + j] = dot * scale;
        }
}

float exp_sum_scalar(float* p, int64_t count, float max) {
    float sum = 0.0f;
    for (int64_t j = 0; j < count; ++j) sum += p[j] = std::exp(p[j] - max);
    return sum;
}

void accumulate_scalar(const float* p, int64_t p_stride, int64_t heads, const float* v, int64_t v_stride,
                       int64_t tokens, float* o, int64_t o_stride, int64_t width) {
    for (int64_t h = 0; h < heads; ++h)
        for (int64_t j = 0; j < tokens; ++j) {
            const float weight = p[h * p_stride + j];
            for (int64_t c = 0; c < width; ++c) o[h * o_stride + c] += weight * v[j * v_stride + c];
        }
}

#if defined(__x86_64__)
#define DSA_AVX2_FMA __attribute__((target("avx2,fma")))

DSA_AVX2_FMA inline float horizontal_sum(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

// exp for x <= 0 (Cephes expf: range reduction by ln 2, degree-5 polynomial, about 1 ulp);
// results below 2^-126 flush to 0.
DSA_AVX2_FMA inline __m256 exp_nonpositive(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.33654475f));
    const __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    x = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_add_ps(_mm256_fmadd_ps(y, _mm256_mul_ps(x, x), x), _mm256_set1_ps(1.0f));
    const __m256i power = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(power));
}

// A register block of the scores: heads x tokens dot products over the padded width.
template <int Heads, int Tokens>
DSA_AVX2_FMA void scores_block(const float* q, int64_t q_stride, const float* k, int64_t k_stride, int64_t width,
                               float scale, float* s, int64_t s_stride) {
    __m256 acc[Heads][Tokens];
#pragma GCC unroll 4
    for (int h = 0; h < Heads; ++h)
#pragma GCC unroll 3
        for (int t = 0; t < Tokens; ++t) acc[h][t] = _mm256_setzero_ps();
    for (int64_t d = 0; d < width; d += 8) {
        __m256 key[Tokens];
#pragma GCC unroll 3
        for (int t = 0; t < Tokens; ++t) key[t] = _mm256_loadu_ps(k + t * k_stride + d);
#pragma GCC unroll 4
        for (int h = 0; h < Heads; ++h) {
            const __m256 query = _mm256_loadu_ps(q + h * q_stride + d);
#pragma GCC unroll 3
            for (int t = 0; t < Tokens; ++t) acc[h][t] = _mm256_fmadd_ps(query, key[t], acc[h][t]);
        }
    }
    for (int h = 0; h < Heads; ++h)
        for (int t = 0; t < Tokens; ++t) s[h * s_stride + t] = horizontal_sum(acc[h][t]) * scale;
}

using ScoresBlock = void (*)(const float*, int64_t, const float*, int64_t, int64_t, float, float*, int64_t);
constexpr int kScoreHeads = 4, kScoreTokens = 3;  // 12 accumulators + 3 keys + 1 query = 16 registers
constexpr ScoresBlock kScoresBlocks[kScoreHeads][kScoreTokens] = {
    {scores_block<1, 1>, scores_block<1, 2>, scores_block<1, 3>},
    {scores_block<2, 1>, scores_block<2, 2>, scores_block<2, 3>},
    {scores_block<3, 1>, scores_block<3, 2>, scores_block<3, 3>},
    {scores_block<4, 1>, scores_block<4, 2>, scores_block<4, 3>},
};

DSA_AVX2_FMA void scores_avx2(const float* q, int64_t q_stride, int64_t heads, const float* k, int64_t k_stride,
                              int64_t tokens, int64_t width, float scale, float* s, int64_t s_stride) {
    // Head blocks outer: a block's query rows stay in L1 while the key tile streams past.
    for (int64_t h = 0; h < heads; h += kScoreHeads) {
        const int64_t block_heads = std::min<int64_t>(kScoreHeads, heads - h);
        for (int64_t j = 0; j < tokens; j += kScoreTokens) {
            const int64_t block_tokens = std::min<int64_t>(kScoreTokens, tokens - j);
            kScoresBlocks[block_heads - 1][block_tokens - 1](q + h * q_stride, q_stride, k + j * k_stride, k_stride,
                                                             width, scale, s + h * s_stride + j, s_stride);
        }
    }
}

DSA_AVX2_FMA float exp_sum_avx2(float* p, int64_t count, float max) {
    const __m256 shift = _mm256_set1_ps(max);
    __m256 sum = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= count; j += 8) {
        const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(p + j), shift));
        _mm256_storeu_ps(p + j, e);
        sum = _mm256_add_ps(sum, e);
    }
    if (j < count) {
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count - j)), lane);
        const __m256 e = _mm256_and_ps(exp_nonpositive(_mm256_sub_ps(_mm256_maskload_ps(p + j, mask), shift)),
                                       _mm256_castsi256_ps(mask));
        _mm256_maskstore_ps(p + j, mask, e);
        sum = _mm256_add_ps(sum, e);
    }
    return horizontal_sum(sum);
}

// A register block of O += P.V: heads x (8 * Vectors) columns.
template <int Heads, int Vectors>
DSA_AVX2_FMA void accumulate_block(const float* p, int64_t p_stride, const float* v, int64_t v_stride, int64_t tokens,
                                   float* o, int64_t o_stride) {
    __m256 acc[Heads][Vectors];
#pragma GCC unroll 4
    for (int h = 0; h < Heads; ++h)
#pragma GCC unroll 3
        for (int c = 0; c < Vectors; ++c) acc[h][c] = _mm256_setzero_ps();
    for (int64_t j = 0; j < tokens; ++j) {
        __m256 value[Vectors];
#pragma GCC unroll 3
        for (int c = 0; c < Vectors; ++c) value[c] = _mm256_loadu_ps(v + j * v_stride + 8 * c);
#pragma GCC unroll 4
        for (int h = 0; h < Heads; ++h) {
            const __m256 weight = _mm256_broadcast_ss(p + h * p_stride + j);
#pragma GCC unroll 3
            for (int c = 0; c < Vectors; ++c) acc[h][c] = _mm256_fmadd_ps(weight, value[c], acc[h][c]);
        }
    }
#pragma GCC unroll 4
    for (int h = 0; h < Heads; ++h)
#pragma GCC unroll 3
        for (int c = 0; c < Vectors; ++c) {
            float* target = o + h * o_stride + 8 * c;
            _mm256_storeu_ps(target, _mm256_add_ps(_mm256_loadu_ps(target), acc[h][c]));
        }
}

using AccumulateBlock = void (*)(const float*, int64_t, const float*, int64_t, int64_t, float*, int64_t);
constexpr int kValueHeads = 4, kValueVectors = 3;  // 12 accumulators + 3 values + 1 weight = 16 registers
constexpr AccumulateBlock kAccumulateBlocks[kValueHeads][kValueVectors] = {
    {accumulate_block<1, 1>, accumulate_block<1, 2>, accumulate_block<1, 3>},
    {accumulate_block<2, 1>, accumulate_block<2, 2>, accumulate_block<2, 3>},
    {accumulate_block<3, 1>, accumulate_block<3, 2>, accumulate_block<3, 3>},
    {accumulate_block<4, 1>, accumulate_block<4, 2>, accumulate_block<4, 3>},
};

DSA_AVX2_FMA void accumulate_avx2(const float* p, int64_t p_stride, int64_t heads, const float* v, int64_t v_stride,
                                  int64_t tokens, float* o, int64_t o_stride, int64_t width) {
    // Column slabs outer: a slab of the value tile stays in L1 while every head uses it.
    for (int64_t c = 0; c < width; c += 8 * kValueVectors) {
        const int64_t vectors = std::min<int64_t>(kValueVectors, (width - c) / 8);
        for (int64_t h = 0; h < heads; h += kValueHeads) {
            const int64_t block_heads = std::min<int64_t>(kValueHeads, heads - h);
            kAccumulateBlocks[block_heads - 1][vectors - 1](p + h * p_stride, p_stride, v + c, v_stride, tokens,
                                                           o + h * o_stride + c, o_stride);
        }
    }
}
#endif  // __x86_64__

const Kernels& kernels() {
    static const Kernels chosen = [] {
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            return Kernels{scores_avx2, exp_sum_avx2, accumulate_avx2};
#endif
        return Kernels{scores_scalar, exp_sum_scalar, accumulate_scalar};
    }();
    return chosen;
}

// ---- Gathering entries into f32 rows -------------------------------------------------------------

DSA_CPU_MULTIVERSION void widen_bf16(const uint16_t* source, int64_t count, float* row, int64_t padded) {
    for (int64_t i = 0; i < count; ++i) row[i] = bf16_to_float(source[i]);
    for (int64_t i = count; i < padded; ++i) row[i] = 0.0f;
}

// The value of every e4m3 code, from the shared codec.
const float* e4m3_table() {
    static const std::vector<float> table = [] {
        std::vector<float> values(256);
        for (int code = 0; code < 256; ++code) values[code] = decode_e4m3(static_cast<uint8_t>(code));
        return values;
    }();
    return table.data();
}

// An FP8 MLA entry as 576 f32: [codes * group scale ; k_pe].
DSA_CPU_MULTIVERSION void dequantize_mla_entry(const uint8_t* entry, const float* table, float* row) {
    for (int64_t group = 0; group < kMlaGroups; ++group) {
        float scale;
        std::memcpy(&scale, entry + kMlaScaleOffset + 4 * group, sizeof scale);
        for (int64_t i = group * kMlaGroupSize; i < (group + 1) * kMlaGroupSize; ++i) row[i] = table[entry[i]] * scale;
    }
    uint16_t rope[kMlaRopeDim];
    std::memcpy(rope, entry + kMlaRopeOffset, sizeof rope);
    for (int64_t i = 0; i < kMlaRopeDim; ++i) row[kMlaLatentDim + i] = bf16_to_float(rope[i]);
}

DSA_CPU_MULTIVERSION void scale_row(float* row, int64_t count, float factor) {
    for (int64_t i = 0; i < count; ++i) row[i] *= factor;
}

DSA_CPU_MULTIVERSION void store_row(const float* row, int64_t count, float divisor, uint16_t* out) {
    for (int64_t i = 0; i < count; ++i) out[i] = float_to_bf16(row[i] / divisor);
}

// ---- One task: a query row and a block of its heads ----------------------------------------------

struct Scratch {
    std::vector<int64_t> slots;
    std::vector<float> queries, keys, scores, outputs, max, sum;
};

class RowAttention {
public:
    explicit RowAttention(const SparseAttentionProblem& p)
        : p_(p),
          kernels_(kernels()),
          width_(round_up(p.d_qk, 8)),
          value_width_(round_up(p.d_v, 8)),
          head_blocks_((p.heads + kMaxHeadBlock - 1) / kMaxHeadBlock),
          block_heads_((p.heads + head_blocks_ - 1) / head_blocks_),
          q_rows_(leading_rows(p.q)),
          out_rows_(leading_rows(p.out)),
          index_rows_(leading_rows(p.indices)),
          lse_rows_(leading_rows(p.lse)),
          max_rows_(leading_rows(p.max_logits)),
          length_layout_(element_layout(p.topk_length)),
          table_(p.format == KvFormat::fp8_mla ? e4m3_table() : nullptr),
          entry_bytes_(p.format == KvFormat::fp8_mla ? kMlaEntryBytes : 2 * p.d_qk) {}

    int64_t tasks() const { return p_.rows * head_blocks_; }
    int64_t tasks_per_chunk() const {
        const int64_t flops = 2 * block_heads_ * std::max<int64_t>(p_.topk, 1) * (p_.d_qk + p_.d_v);
        return std::max<int64_t>(1, kTaskFlopGrain / flops);
    }

    void allocate(Scratch& s) const {
        s.slots.resize(static_cast<size_t>(p_.topk));
        s.queries.resize(static_cast<size_t>(block_heads_ * width_));
        s.keys.resize(static_cast<size_t>(kTile * width_));
        s.scores.resize(static_cast<size_t>(block_heads_ * kTile));
        s.outputs.resize(static_cast<size_t>(block_heads_ * value_width_));
        s.max.resize(static_cast<size_t>(block_heads_));
        s.sum.resize(static_cast<size_t>(block_heads_));
    }

    void run(int64_t task, Scratch& s) const {
        const int64_t row = task / head_blocks_;
        const int64_t first_head = (task % head_blocks_) * block_heads_;
        const int64_t heads = std::min(block_heads_, p_.heads - first_head);
        const int64_t count = select(row, s.slots.data());
        if (count == 0) return write_empty(row, first_head, heads);

        for (int64_t h = 0; h < heads; ++h)
            widen_bf16(p_.q.as<const uint16_t>() + q_rows_.offset(row * p_.heads + first_head + h), p_.d_qk,
                       s.queries.data() + h * width_, width_);
        std::fill(s.outputs.begin(), s.outputs.begin() + heads * value_width_, 0.0f);
        std::fill(s.max.begin(), s.max.begin() + heads, -std::numeric_limits<float>::infinity());
        std::fill(s.sum.begin(), s.sum.begin() + heads, 0.0f);

        for (int64_t start = 0; start < count; start += kTile) {
            const int64_t tokens = std::min(kTile, count - start);
            for (int64_t j = 0; j < tokens; ++j) gather(s.slots[start + j], s.keys.data() + j * width_);
            // The next tile's entries are random rows: start fetching them while this one computes.
            for (int64_t j = start + kTile; j < std::min(count, start + 2 * kTile); ++j) prefetch(s.slots[j]);
            kernels_.scores(s.queries.data(), width_, heads, s.keys.data(), width_, tokens, width_, p_.scale,
                            s.scores.data(), kTile);
            for (int64_t h = 0; h < heads; ++h) {
                float* p = s.scores.data() + h * kTile;
                const float tile_max = *std::max_element(p, p + tokens);
                const float previous = s.max[h];
                const float current = std::max(previous, tile_max);
                const float sum = kernels_.exp_sum(p, tokens, current);
                if (previous == -std::numeric_limits<float>::infinity()) {
                    s.sum[h] = sum;
                } else if (current != previous) {
                    const float correction = std::exp(previous - current);
                    s.sum[h] = s.sum[h] * correction + sum;
                    scale_row(s.outputs.data() + h * value_width_, value_width_, correction);
                } else {
                    s.sum[h] += sum;
                }
                s.max[h] = current;
            }
            kernels_.accumulate(s.scores.data(), kTile, heads, s.keys.data(), width_, tokens, s.outputs.data(),
                                value_width_, value_width_);
        }
        write(row, first_head, heads, s);
    }

private:
    // The valid slots of a row, in order, into `slots`; returns their number.
    int64_t select(int64_t row, int64_t* slots) const {
        int64_t limit = p_.topk;
        if (p_.has_topk_length)
            limit = std::clamp<int64_t>(p_.topk_length.as<const int32_t>()[length_layout_.offset(row)], 0, p_.topk);
        const int32_t* indices = p_.indices.as<const int32_t>() + index_rows_.offset(row);
        const int64_t stride = p_.indices.stride(-1);
        int64_t count = 0;
        for (int64_t j = 0; j < limit; ++j) {
            const int64_t slot = indices[j * stride];
            if (slot >= 0 && slot < p_.num_slots) slots[count++] = slot;
        }
        return count;
    }

    void prefetch(int64_t slot) const {
        const uint8_t* entry = p_.entry(slot);
        for (int64_t byte = 0; byte < entry_bytes_; byte += 64) __builtin_prefetch(entry + byte, 0, 2);
    }

    void gather(int64_t slot, float* row) const {
        const uint8_t* entry = p_.entry(slot);
        if (p_.format == KvFormat::fp8_mla) {
            dequantize_mla_entry(entry, table_, row);  // 576 = width_: no padding
        } else {
            widen_bf16(reinterpret_cast<const uint16_t*>(entry), p_.d_qk, row, width_);
        }
    }

    float* lse_at(int64_t row, int64_t head) const {
        return p_.lse.as<float>() + lse_rows_.offset(row) + head * p_.lse.stride(-1);
    }
    float* max_at(int64_t row, int64_t head) const {
        return p_.max_logits.as<float>() + max_rows_.offset(row) + head * p_.max_logits.stride(-1);
    }
    uint16_t* out_at(int64_t row, int64_t head) const {
        return p_.out.as<uint16_t>() + out_rows_.offset(row * p_.heads + head);
    }

    void write_empty(int64_t row, int64_t first_head, int64_t heads) const {
        for (int64_t h = first_head; h < first_head + heads; ++h) {
            std::memset(out_at(row, h), 0, static_cast<size_t>(p_.d_v) * 2);
            *lse_at(row, h) = std::numeric_limits<float>::infinity();
            if (p_.has_max_logits) *max_at(row, h) = -std::numeric_limits<float>::infinity();
        }
    }

    void write(int64_t row, int64_t first_head, int64_t heads, const Scratch& s) const {
        for (int64_t h = 0; h < heads; ++h) {
            const int64_t head = first_head + h;
            float denominator = s.sum[h];
            if (p_.has_attn_sink)
                denominator += std::exp(p_.attn_sink.as<const float>()[head * p_.attn_sink.stride(0)] - s.max[h]);
            store_row(s.outputs.data() + h * value_width_, p_.d_v, denominator, out_at(row, head));
            *lse_at(row, head) = s.max[h] + std::log(s.sum[h]);
            if (p_.has_max_logits) *max_at(row, head) = s.max[h];
        }
    }

    const SparseAttentionProblem& p_;
    const Kernels& kernels_;
    const int64_t width_, value_width_, head_blocks_, block_heads_;
    const RowLayout q_rows_, out_rows_, index_rows_, lse_rows_, max_rows_, length_layout_;
    const float* table_;
    const int64_t entry_bytes_;
};

}  // namespace

void sparse_attention(Context& context, const SparseAttentionProblem& problem) {
    const RowAttention attention(problem);
    context.pool().parallel_for(attention.tasks(), attention.tasks_per_chunk(), [&](int64_t begin, int64_t end) {
        Scratch scratch;
        attention.allocate(scratch);
        for (int64_t task = begin; task < end; ++task) attention.run(task, scratch);
    });
}

}  // namespace dsa::cpu
