// CPU lightning indexer and key-cache writer.
//
// Logits: work is cut into tasks of up to 8 query rows (x 2048 tokens when rows are few). A
// task decodes its rows' q codes to f32 once, then walks the 16-token key panels that meet the
// rows' windows: each panel is decoded to f32 [dim][16] once and scored for every row and head by a
// register-blocked FMA micro-kernel (6 heads x 16 tokens = 12 accumulators), whose epilogue
// applies ReLU, the head weight and the head sum while the dot products are still in registers.
// Every logit is one fixed chain of operations (dot product over d in order, then heads in
// order, then the token's scale), whatever the tiling, so results are bitwise identical for any
// thread count and any row range handed to indexer_logits_rows.
#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <new>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(DSA_NO_MULTIVERSION)
#define DSA_INDEXER_AVX2 1
#include <immintrin.h>
#endif

#include "../ops/indexer.hpp"
#include "../ops/quantize.hpp"

namespace dsa::cpu {
namespace {

constexpr int64_t kPanelTokens = 16;    // tokens per micro-kernel call: two AVX2 vectors
constexpr int kHeadBlock = 6;           // heads per micro-kernel call: 2 x 6 accumulators + 3 temporaries
constexpr int64_t kRowBlock = 8;        // query rows that share each decoded key panel
constexpr int64_t kColumnChunk = 2048;  // tokens per task when there are too few rows to share out
static_assert(kIndexerPageTokens % kPanelTokens == 0, "a key panel must not straddle two pages");
static_assert(kColumnChunk % kPanelTokens == 0, "tasks start on a panel boundary");

constexpr float kMinusInfinity = -std::numeric_limits<float>::infinity();

// e4m3 code -> f32 value, for decoding tiles with one load per code.
const float* e4m3_table() {
    static const std::array<float, 256> table = [] {
        std::array<float, 256> values{};
        for (int code = 0; code < 256; ++code) values[code] = decode_e4m3(static_cast<uint8_t>(code));
        return values;
    }();
    return table.data();
}

// Adds to acc[j], for the 16 tokens j of a key panel, the contribution of `Heads` heads of one
// query row, head after head:  acc[j] += w[h] * ReLU(sum_d q[d][h] * k[d][j]).
// q: [dim][Heads] f32; k: [dim][16] f32, 32-byte aligned; w: [Heads]; acc: [16].
using PanelKernel = void (*)(const float* q, const float* k, int64_t dim, const float* w, float* acc);

// The fallback for CPUs without AVX2+FMA: the same loops in plain C++ (a * b + c, not fused, so
// its last bits differ from the AVX2 path; it is as deterministic).
template <int Heads>
void score_panel_portable(const float* q, const float* k, int64_t dim, const float* w, float* acc) {
    float u[Heads][kPanelTokens] = {};
    for (int64_t d = 0; d < dim; ++d)
        for (int h = 0; h < Heads; ++h) {
            const float qv = q[d * Heads + h];
            for (int64_t j = 0; j < kPanelTokens; ++j) u[h][j] += qv * k[d * kPanelTokens + j];
        }
    for (int h = 0; h < Heads; ++h)
        for (int64_t j = 0; j < kPanelTokens; ++j) acc[j] += w[h] * (u[h][j] < 0.0f ? 0.0f : u[h][j]);
}

#ifdef DSA_INDEXER_AVX2
template <int Heads>
__attribute__((target("avx2,fma"))) void score_panel_avx2(const float* q, const float* k, int64_t dim,
                                                          const float* w, float* acc) {
    // (The head loops are unrolled so the accumulator arrays live in registers.)
    __m256 low[Heads], high[Heads];  // tokens 0-7 and 8-15 of each head
#pragma GCC unroll 8
    for (int h = 0; h < Heads; ++h) low[h] = high[h] = _mm256_setzero_ps();
    for (int64_t d = 0; d < dim; ++d) {
        const __m256 k_low = _mm256_load_ps(k + d * kPanelTokens);
        const __m256 k_high = _mm256_load_ps(k + d * kPanelTokens + 8);
#pragma GCC unroll 8
        for (int h = 0; h < Heads; ++h) {
            const __m256 qv = _mm256_broadcast_ss(q + d * Heads + h);
            low[h] = _mm256_fmadd_ps(qv, k_low, low[h]);
            high[h] = _mm256_fmadd_ps(qv, k_high, high[h]);
        }
    }
    // ReLU as MAXPS(0, u): it returns its second operand when either is NaN, so NaN propagates
    // as in the portable `u < 0 ? 0 : u`.
    const __m256 zero = _mm256_setzero_ps();
    __m256 acc_low = _mm256_loadu_ps(acc), acc_high = _mm256_loadu_ps(acc + 8);
#pragma GCC unroll 8
    for (int h = 0; h < Heads; ++h) {
        const __m256 weight = _mm256_broadcast_ss(w + h);
        acc_low = _mm256_fmadd_ps(weight, _mm256_max_ps(zero, low[h]), acc_low);
        acc_high = _mm256_fmadd_ps(weight, _mm256_max_ps(zero, high[h]), acc_high);
    }
    _mm256_storeu_ps(acc, acc_low);
    _mm256_storeu_ps(acc + 8, acc_high);
}
#endif

// Decodes the codes of a panel's 16 tokens (rows[j], dim codes each; NULL = no token) into
// panel [dim][16] f32, zeros for missing tokens.
using PanelDecoder = void (*)(const uint8_t* const* rows, int64_t dim, float* panel);

void decode_panel_portable(const uint8_t* const* rows, int64_t dim, float* panel) {
    const float* table = e4m3_table();
    for (int64_t j = 0; j < kPanelTokens; ++j) {
        if (rows[j] == nullptr) {
            for (int64_t d = 0; d < dim; ++d) panel[d * kPanelTokens + j] = 0.0f;
        } else {
            for (int64_t d = 0; d < dim; ++d) panel[d * kPanelTokens + j] = table[rows[j][d]];
        }
    }
}

#ifdef DSA_INDEXER_AVX2
// 8 e4m3 codes -> their exact f32 values, as decode_e4m3 gives them, without a table: normal
// codes move their exponent and mantissa bits into place and rebias (+120), subnormal codes are
// m * 2^-9, 0x7f is NaN, and the sign is ORed back.
__attribute__((target("avx2,fma"))) inline __m256 decode8_avx2(const uint8_t* codes) {
    const __m256i code = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes)));
    const __m256i magnitude = _mm256_and_si256(code, _mm256_set1_epi32(0x7f));
    const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(code, _mm256_set1_epi32(0x80)), 24);
    const __m256 normal =
        _mm256_castsi256_ps(_mm256_add_epi32(_mm256_slli_epi32(magnitude, 20), _mm256_set1_epi32(120 << 23)));
    const __m256 subnormal = _mm256_mul_ps(_mm256_cvtepi32_ps(magnitude), _mm256_set1_ps(1.0f / 512.0f));
    __m256 value = _mm256_blendv_ps(normal, subnormal,
                                    _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(8), magnitude)));
    value = _mm256_blendv_ps(value, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc00000)),
                             _mm256_castsi256_ps(_mm256_cmpeq_epi32(magnitude, _mm256_set1_epi32(0x7f))));
    return _mm256_or_ps(value, _mm256_castsi256_ps(sign));
}

// Blocks of 8 tokens x 8 codes: decode each token's 8 codes, transpose 8 x 8 in registers, store
// 8 rows of the panel. The last dim % 8 codes go through the table.
__attribute__((target("avx2,fma"))) void decode_panel_avx2(const uint8_t* const* rows, int64_t dim, float* panel) {
    const int64_t vector_dim = dim / 8 * 8;
    for (int64_t group = 0; group < kPanelTokens; group += 8) {
        for (int64_t d = 0; d < vector_dim; d += 8) {
            __m256 r[8];
            for (int j = 0; j < 8; ++j)
                r[j] = rows[group + j] != nullptr ? decode8_avx2(rows[group + j] + d) : _mm256_setzero_ps();
            const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
            const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
            const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
            const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
            const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xee);
            const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xee);
            const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xee);
            const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xee);
            float* out = panel + d * kPanelTokens + group;
            _mm256_store_ps(out + 0 * kPanelTokens, _mm256_permute2f128_ps(s0, s4, 0x20));
            _mm256_store_ps(out + 1 * kPanelTokens, _mm256_permute2f128_ps(s1, s5, 0x20));
            _mm256_store_ps(out + 2 * kPanelTokens, _mm256_permute2f128_ps(s2, s6, 0x20));
            _mm256_store_ps(out + 3 * kPanelTokens, _mm256_permute2f128_ps(s3, s7, 0x20));
            _mm256_store_ps(out + 4 * kPanelTokens, _mm256_permute2f128_ps(s0, s4, 0x31));
            _mm256_store_ps(out + 5 * kPanelTokens, _mm256_permute2f128_ps(s1, s5, 0x31));
            _mm256_store_ps(out + 6 * kPanelTokens, _mm256_permute2f128_ps(s2, s6, 0x31));
            _mm256_store_ps(out + 7 * kPanelTokens, _mm256_permute2f128_ps(s3, s7, 0x31));
        }
    }
    const float* table = e4m3_table();
    for (int64_t j = 0; j < kPanelTokens; ++j)
        for (int64_t d = vector_dim; d < dim; ++d)
            panel[d * kPanelTokens + j] = rows[j] != nullptr ? table[rows[j][d]] : 0.0f;
}
#endif

// The kernels for head blocks of 1 .. kHeadBlock heads (index = heads; 0 unused) and the panel
// decoder of one vector path.
struct PanelKernels {
    PanelKernel by_heads[kHeadBlock + 1];
    PanelDecoder decode;
};
static_assert(kHeadBlock == 6, "the kernel tables below list 1 .. 6 heads");

PanelKernels choose_kernels() {
#ifdef DSA_INDEXER_AVX2
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return {{nullptr, score_panel_avx2<1>, score_panel_avx2<2>, score_panel_avx2<3>, score_panel_avx2<4>,
                 score_panel_avx2<5>, score_panel_avx2<6>},
                decode_panel_avx2};
#endif
    return {{nullptr, score_panel_portable<1>, score_panel_portable<2>, score_panel_portable<3>,
             score_panel_portable<4>, score_panel_portable<5>, score_panel_portable<6>},
            decode_panel_portable};
}

const PanelKernels& panel_kernels() {
    static const PanelKernels kernels = choose_kernels();
    return kernels;
}

// Scratch floats aligned for vector loads.
class AlignedFloats {
public:
    explicit AlignedFloats(int64_t count)
        : data_(static_cast<float*>(::operator new(static_cast<size_t>(count) * sizeof(float), kAlignment))) {}
    ~AlignedFloats() { ::operator delete(data_, kAlignment); }
    AlignedFloats(const AlignedFloats&) = delete;
    AlignedFloats& operator=(const AlignedFloats&) = delete;
    float* get() const { return data_; }

private:
    static constexpr std::align_val_t kAlignment{64};
    float* data_;
};

// One task: rows [row_begin, row_end) (one sequence in the paged form) x tokens
// [column_begin, column_end); `out` points at row row_begin's output row.
class Task {
public:
    Task(const IndexerProblem& problem, const PanelKernels& kernels, int64_t row_begin, int64_t row_end,
         int64_t column_begin, int64_t column_end, float* out, int64_t out_row_stride)
        : p_(problem), kernels_(kernels), row_begin_(row_begin), rows_(row_end - row_begin),
          column_begin_(column_begin), column_end_(column_end), out_(out), out_row_stride_(out_row_stride) {}

    void run() {
        // Clip each row's window to the task, write -inf around it, and find the union of the
        // windows: only panels inside it are decoded and scored.
        int64_t union_begin = column_end_, union_end = column_begin_;
        for (int64_t i = 0; i < rows_; ++i) {
            int64_t begin, end;
            p_.window(row_begin_ + i, &begin, &end);
            begin = std::max(begin, column_begin_);
            end = std::min(end, column_end_);
            if (begin >= end) begin = end = column_end_;
            float* row = out_ + i * out_row_stride_;
            std::fill(row + column_begin_, row + begin, kMinusInfinity);
            std::fill(row + end, row + column_end_, kMinusInfinity);
            window_begin_[i] = begin;
            window_end_[i] = end;
            if (begin < end) {
                union_begin = std::min(union_begin, begin);
                union_end = std::max(union_end, end);
            }
        }
        if (union_begin >= union_end) return;

        decode_queries();
        AlignedFloats panel(p_.dim * kPanelTokens);
        for (int64_t first = union_begin / kPanelTokens * kPanelTokens; first < union_end; first += kPanelTokens) {
            const bool any_valid = decode_keys(first, std::max(first, union_begin),
                                               std::min(first + kPanelTokens, union_end), panel.get());
            for (int64_t i = 0; i < rows_; ++i) {
                const int64_t begin = std::max(window_begin_[i], first);
                const int64_t end = std::min(window_end_[i], first + kPanelTokens);
                if (begin >= end) continue;
                float* row = out_ + i * out_row_stride_;
                if (!any_valid) {
                    std::fill(row + begin, row + end, kMinusInfinity);
                    continue;
                }
                alignas(32) float acc[kPanelTokens] = {};
                score_row(i, panel.get(), acc);
                for (int64_t s = begin; s < end; ++s) {
                    const int64_t j = s - first;
                    row[s] = valid_[j] ? scale_[j] * acc[j] : kMinusInfinity;
                }
            }
        }
    }

private:
    // q rows to f32, each row's heads packed in blocks of kHeadBlock as [dim][heads of block]
    // (what the micro-kernel broadcasts from); weights beside them.
    void decode_queries() {
        const float* table = e4m3_table();
        const int64_t heads = p_.heads, dim = p_.dim;
        q_.resize(static_cast<size_t>(rows_ * heads * dim));
        w_.resize(static_cast<size_t>(rows_ * heads));
        for (int64_t i = 0; i < rows_; ++i) {
            const int64_t row = row_begin_ + i;
            const uint8_t* codes = p_.q.as<const uint8_t>() + p_.q_offset(row);
            for (int64_t block = 0; block < heads; block += kHeadBlock) {
                const int64_t block_heads = std::min<int64_t>(kHeadBlock, heads - block);
                float* packed = q_.data() + (i * heads + block) * dim;
                for (int64_t h = 0; h < block_heads; ++h) {
                    const uint8_t* head = codes + (block + h) * dim;
                    for (int64_t d = 0; d < dim; ++d) packed[d * block_heads + h] = table[head[d]];
                }
            }
            for (int64_t h = 0; h < heads; ++h)
                w_[i * heads + h] =
                    p_.weights.as<const float>()[row * p_.weights.strides[0] + h * p_.weights.strides[1]];
        }
    }

    // Decodes tokens [begin, end) of the panel starting at token `first` into panel [dim][16]
    // (other columns zero) with their scales and validity. Tokens of a paged block-table entry
    // outside the cache are invalid and their page is not read. Returns whether any is valid.
    bool decode_keys(int64_t first, int64_t begin, int64_t end, float* panel) {
        const int64_t dim = p_.dim;
        const uint8_t* page = nullptr;
        if (p_.keys == IndexerKeys::paged) {
            const int64_t index = p_.page(row_begin_, first / kIndexerPageTokens);
            if (index < 0) return false;
            page = p_.k_cache.as<const uint8_t>() + index * p_.k_cache.strides[0];
        }
        const uint8_t* rows[kPanelTokens] = {};
        for (int64_t j = 0; j < kPanelTokens; ++j) valid_[j] = false;
        for (int64_t s = begin; s < end; ++s) {
            const int64_t j = s - first;
            if (page == nullptr) {
                rows[j] = p_.k.as<const uint8_t>() + s * p_.k.strides[0];
                scale_[j] = p_.k_scale.as<const float>()[s * p_.k_scale.strides[0]];
            } else {
                const int64_t slot = s % kIndexerPageTokens;
                rows[j] = page + slot * dim;
                std::memcpy(&scale_[j], page + kIndexerPageTokens * dim + 4 * slot, sizeof(float));
            }
            valid_[j] = true;
        }
        kernels_.decode(rows, dim, panel);
        return true;
    }

    // acc[j] = sum over the heads of row i, in order, of w * ReLU(q . k_j).
    void score_row(int64_t i, const float* panel, float* acc) const {
        const int64_t heads = p_.heads, dim = p_.dim;
        for (int64_t block = 0; block < heads; block += kHeadBlock) {
            const int64_t block_heads = std::min<int64_t>(kHeadBlock, heads - block);
            kernels_.by_heads[block_heads](q_.data() + (i * heads + block) * dim, panel, dim,
                                           w_.data() + i * heads + block, acc);
        }
    }

    const IndexerProblem& p_;
    const PanelKernels& kernels_;
    int64_t row_begin_, rows_, column_begin_, column_end_;
    float* out_;
    int64_t out_row_stride_;
    int64_t window_begin_[kRowBlock], window_end_[kRowBlock];
    std::vector<float> q_, w_;
    float scale_[kPanelTokens];
    bool valid_[kPanelTokens];
};

TensorView contiguous_view(void* data, DType dtype, int64_t rows, int64_t columns) {
    TensorView view;
    view.data = data;
    view.ndim = 2;
    view.dtype = dtype;
    view.shape[0] = rows;
    view.shape[1] = columns;
    view.strides[0] = columns;
    view.strides[1] = 1;
    return view;
}

}  // namespace

void indexer_logits_rows(Context& context, const IndexerProblem& problem, int64_t row_begin, int64_t row_end,
                         float* out, int64_t out_row_stride) {
    // Row blocks of at most kRowBlock rows, never across two sequences (their keys differ).
    std::vector<int64_t> block_starts;
    for (int64_t row = row_begin; row < row_end;) {
        block_starts.push_back(row);
        int64_t next = std::min(row_end, row + kRowBlock);
        if (problem.keys == IndexerKeys::paged) next = std::min(next, (problem.sequence(row) + 1) * problem.next_n);
        row = next;
    }
    block_starts.push_back(row_end);
    const int64_t blocks = static_cast<int64_t>(block_starts.size()) - 1;
    // Row blocks alone keep the pool busy in prefill: a task then takes whole rows and decodes
    // their q once. Few rows (decode) are split into column chunks as well. Either way each
    // logit is computed the same way, so the choice cannot change a bit of the result.
    const bool many_blocks = blocks >= 8 * static_cast<int64_t>(context.pool().num_threads());
    const int64_t chunk_columns = many_blocks ? std::max<int64_t>(problem.columns, 1) : kColumnChunk;
    const int64_t chunks = (problem.columns + chunk_columns - 1) / chunk_columns;
    const PanelKernels& kernels = panel_kernels();
    context.pool().parallel_for(blocks * chunks, 1, [&](int64_t first, int64_t last) {
        for (int64_t task = first; task < last; ++task) {
            const int64_t block = task / chunks, chunk = task % chunks;
            const int64_t rows_begin = block_starts[static_cast<size_t>(block)];
            Task(problem, kernels, rows_begin, block_starts[static_cast<size_t>(block + 1)], chunk * chunk_columns,
                 std::min(problem.columns, (chunk + 1) * chunk_columns),
                 out + (rows_begin - row_begin) * out_row_stride, out_row_stride)
                .run();
        }
    });
}

void indexer_cache_write(Context& context, const IndexerCacheWriteProblem& problem) {
    // Quantise every token on the pool with dsa_quantize_fp8's own code (one group of D_I per
    // token, ue8m0 scale, floor 1e-4) into staging buffers, then scatter in token order, so a
    // slot named twice keeps the last token whatever the thread count.
    const int64_t tokens = problem.tokens, dim = problem.dim;
    std::vector<uint8_t> codes(static_cast<size_t>(tokens * dim));
    std::vector<float> scales(static_cast<size_t>(tokens));
    QuantizeFp8Problem quantize;
    quantize.values = problem.k;
    quantize.codes = contiguous_view(codes.data(), DType::u8, tokens, dim);
    quantize.scales = contiguous_view(scales.data(), DType::f32, tokens, 1);
    quantize.config = {dim, ScaleFormat::ue8m0, 1e-4f};
    quantize.rows = tokens;
    quantize.n = dim;
    quantize_fp8(context, quantize);

    const int64_t slots = problem.num_pages * kIndexerPageTokens;
    uint8_t* cache = problem.k_cache.as<uint8_t>();
    for (int64_t token = 0; token < tokens; ++token) {
        const int64_t slot = problem.slot_mapping.as<const int64_t>()[token * problem.slot_mapping.strides[0]];
        if (slot < 0 || slot >= slots) continue;
        uint8_t* page = cache + (slot / kIndexerPageTokens) * problem.k_cache.strides[0];
        const int64_t row = slot % kIndexerPageTokens;
        std::memcpy(page + row * dim, codes.data() + token * dim, static_cast<size_t>(dim));
        std::memcpy(page + kIndexerPageTokens * dim + 4 * row, &scales[static_cast<size_t>(token)], sizeof(float));
    }
}

}  // namespace dsa::cpu
