#include "training_kernels.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "isa.hpp"

namespace dsa::cpu {
namespace {

constexpr int64_t kPanelBytes = int64_t{32} << 20;  // contributions of one panel
constexpr int64_t kReduceTokens = 64;                // tokens per task of the reduction
constexpr float kMinusInfinity = -std::numeric_limits<float>::infinity();

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

void transpose_portable(const float* rows, int64_t row_stride, int64_t rows_count, int64_t dim, float* out) {
    for (int64_t j = 0; j < rows_count; ++j)
        for (int64_t d = 0; d < dim; ++d) out[d * kEntryTile + j] = rows[j * row_stride + d];
}

#if defined(__x86_64__)
#define DSA_AVX2_FMA __attribute__((target("avx2,fma")))

// 8 x 8 blocks through registers: unpack pairs, shuffle quads, swap 128-bit halves.
DSA_AVX2_FMA void transpose_avx2(const float* rows, int64_t row_stride, int64_t rows_count, int64_t dim, float* out) {
    for (int64_t j = 0; j < rows_count; j += 8)
        for (int64_t d = 0; d < dim; d += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(rows + (j + i) * row_stride + d);
            __m256 t[8], u[8];
            for (int i = 0; i < 8; i += 2) {
                t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
                t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
            }
            for (int i = 0; i < 8; i += 4) {
                u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
                u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
                u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
                u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
            }
            float* target = out + d * kEntryTile + j;
            for (int i = 0; i < 4; ++i) {
                _mm256_storeu_ps(target + i * kEntryTile, _mm256_permute2f128_ps(u[i], u[i + 4], 0x20));
                _mm256_storeu_ps(target + (i + 4) * kEntryTile, _mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
            }
        }
}

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
    const __m256i lanes =
        _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(first)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), lanes));
}

DSA_AVX2_FMA float exp_sum_avx2(const float* x, int64_t count, float scale, float shift) {
    __m256 sum = _mm256_setzero_ps();
    for (int64_t j = 0; j < count; j += 8) {
        const __m256 e =
            exp_avx2(_mm256_fmsub_ps(_mm256_set1_ps(scale), _mm256_loadu_ps(x + j), _mm256_set1_ps(shift)));
        sum = _mm256_add_ps(sum, _mm256_and_ps(e, lane_mask(j, count)));
    }
    __m128 half = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
    half = _mm_add_ps(half, _mm_movehl_ps(half, half));
    return _mm_cvtss_f32(_mm_add_ss(half, _mm_movehdup_ps(half)));
}

DSA_AVX2_FMA void exp_add_avx2(const float* x, int64_t count, float scale, float shift, float* out) {
    for (int64_t j = 0; j < count; j += 8) {
        const __m256 e =
            exp_avx2(_mm256_fmsub_ps(_mm256_set1_ps(scale), _mm256_loadu_ps(x + j), _mm256_set1_ps(shift)));
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

}  // namespace

const TrainingKernels& training_kernels() {
    static const TrainingKernels chosen = [] {
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            return TrainingKernels{gemm_avx2, exp_sum_avx2, exp_add_avx2, transpose_avx2};
#endif
        return TrainingKernels{gemm_portable, exp_sum_portable, exp_add_portable, transpose_portable};
    }();
    return chosen;
}

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

void gather_entries(const TensorView& tensor, int64_t offset, const int32_t* tokens, int64_t count, int64_t dim,
                    float* rows, float* transposed) {
    const int64_t stride = round_up(dim, 8), padded = round_up(count, 8);
    for (int64_t j = 0; j < count; ++j) load_row(tensor, tokens[j] * tensor.strides[0] + offset, dim, rows + j * stride);
    for (int64_t j = count; j < padded; ++j) std::fill_n(rows + j * stride, dim, 0.0f);
    training_kernels().transpose(rows, stride, padded, stride, transposed);
}

DSA_CPU_MULTIVERSION void scale_values(float* values, int64_t count, float factor) {
    for (int64_t i = 0; i < count; ++i) values[i] *= factor;
}

DSA_CPU_MULTIVERSION void add_values(const float* source, int64_t count, float* target) {
    for (int64_t i = 0; i < count; ++i) target[i] += source[i];
}

void update_log_sum_exp(const TrainingKernels& kernels, const float* x, int64_t count, float scale, float& max,
                        float& sum) {
    float tile_max = kMinusInfinity;
    for (int64_t j = 0; j < count; ++j) tile_max = std::max(tile_max, scale * x[j]);
    const float next = std::max(max, tile_max);
    if (next == kMinusInfinity) return;
    sum = (max == kMinusInfinity ? 0.0f : sum * std::exp(max - next)) + kernels.exp_sum(x, count, scale, next);
    max = next;
}

// ---- TokenReduction ---------------------------------------------------------------------------

namespace {
int64_t aligned(int64_t bytes) { return round_up(bytes, 64); }
}  // namespace

int64_t TokenReduction::panel_entries(const Context& context, int64_t rows, int64_t max_row_entries, int64_t dim) {
    if (rows == 0 || max_row_entries == 0) return 0;
    const int64_t entry_bytes = round_up(dim, 8) * static_cast<int64_t>(sizeof(float)) + 12;
    const int64_t least = std::min<int64_t>(rows, 2 * context.num_threads()) * max_row_entries;
    return std::min(rows * max_row_entries, std::max(kPanelBytes / entry_bytes, least));
}

int64_t TokenReduction::scratch_bytes(int64_t capacity, int64_t dim, int64_t tokens) {
    return aligned(capacity * round_up(dim, 8) * static_cast<int64_t>(sizeof(float))) + aligned(capacity * 4) +
           aligned(capacity * 8) + aligned((tokens + 1) * 8);
}

TokenReduction::TokenReduction(int64_t capacity, int64_t dim, int64_t tokens, void* memory)
    : capacity_(capacity), dim_(dim), stride_(round_up(dim, 8)), tokens_(tokens) {
    unsigned char* bytes = static_cast<unsigned char*>(memory);
    if (bytes == nullptr) {
        owned_.reset(new unsigned char[static_cast<size_t>(scratch_bytes(capacity, dim, tokens)) + 64]);
        bytes = owned_.get() + (64 - reinterpret_cast<uintptr_t>(owned_.get()) % 64) % 64;
    }
    contributions_ = reinterpret_cast<float*>(bytes);
    bytes += aligned(capacity * stride_ * static_cast<int64_t>(sizeof(float)));
    entry_tokens_ = reinterpret_cast<int32_t*>(bytes);
    bytes += aligned(capacity * 4);
    order_ = reinterpret_cast<int64_t*>(bytes);
    bytes += aligned(capacity * 8);
    token_starts_ = reinterpret_cast<int64_t*>(bytes);
}

void TokenReduction::run(Context& context, const std::vector<int64_t>& counts, std::vector<uint8_t>& contributes,
                         const TensorView& output, const Rows& rows) {
    const int64_t row_count = static_cast<int64_t>(counts.size());
    for (int64_t s = 0; s < tokens_; ++s) std::fill_n(output.as<float>() + s * output.strides[0], dim_, 0.0f);
    std::vector<int64_t> offsets(static_cast<size_t>(row_count + 1), 0);
    for (int64_t t = 0; t < row_count; ++t) offsets[t + 1] = offsets[t] + counts[t];
    for (int64_t first = 0; first < row_count;) {
        int64_t last = first + 1;
        while (last < row_count && offsets[last + 1] - offsets[first] <= capacity_) ++last;
        const Panel panel{contributions_, entry_tokens_, offsets.data(), first, stride_};
        context.pool().parallel_for(last - first, 1, [&](int64_t begin, int64_t end) {
            rows(first + begin, first + end, panel);
        });
        reduce(context, first, last, offsets, contributes, output);
        first = last;
    }
}

// A counting sort of the panel's entries by token, then one task per block of tokens adding
// each token's contributions in (row, entry) order.
void TokenReduction::reduce(Context& context, int64_t first, int64_t last, const std::vector<int64_t>& offsets,
                            const std::vector<uint8_t>& contributes, const TensorView& output) {
    const int64_t base = offsets[first];
    std::fill(token_starts_, token_starts_ + tokens_ + 1, 0);
    for (int64_t t = first; t < last; ++t)
        if (contributes[t])
            for (int64_t e = offsets[t] - base; e < offsets[t + 1] - base; ++e) ++token_starts_[entry_tokens_[e] + 1];
    for (int64_t s = 0; s < tokens_; ++s) token_starts_[s + 1] += token_starts_[s];
    std::vector<int64_t> next(token_starts_, token_starts_ + tokens_);
    for (int64_t t = first; t < last; ++t)
        if (contributes[t])
            for (int64_t e = offsets[t] - base; e < offsets[t + 1] - base; ++e) order_[next[entry_tokens_[e]]++] = e;
    context.pool().parallel_for(tokens_, kReduceTokens, [&](int64_t begin, int64_t end) {
        for (int64_t s = begin; s < end; ++s) {
            float* target = output.as<float>() + s * output.strides[0];
            for (int64_t i = token_starts_[s]; i < token_starts_[s + 1]; ++i)
                add_values(contributions_ + order_[i] * stride_, dim_, target);
        }
    });
}

}  // namespace dsa::cpu
