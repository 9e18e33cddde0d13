// Sparse attention test problems shared by the CPU and GPU tests: prefill and paged (bf16 and
// FP8) inputs with poisoned padding and unused rows, invalid-index sentinels, sinks and
// topk_length, the library call, the scalar reference, and the tolerance check.
#pragma once

#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <numeric>

#include "../core/ops/sparse_attention.hpp"
#include "support.hpp"

namespace dsa_test {
constexpr uint16_t kBf16Nan = 0x7fc1;  // poison for bf16 outputs and unread inputs
constexpr float kDeepSeekScale = 0.13523378f;

inline std::vector<uint16_t> random_bf16(size_t count, uint32_t seed) { return to_bf16(random_floats(count, seed)); }

// One attention call's inputs: prefill (rows = {S_q}, kv [S_kv, d_qk]) or paged (rows = {B, s_q},
// kv [num_pages, page_size, width] with free page and token strides). q may have padded strides.
struct Problem {
    std::vector<int64_t> row_shape;
    int64_t heads = 1, d_qk = 1, d_v = 1, topk = 1;
    float scale = 0.3f;
    bool paged = false, fp8 = false;
    bool use_sink = false, use_lengths = false, use_max_logits = false;

    int64_t q_head_stride = 0, q_row_stride = 0;
    std::vector<uint16_t> q;
    // kv: token-major or paged; strides in elements (bytes for the FP8 cache)
    int64_t num_pages = 0, page_size = 0, s_kv = 0, token_stride = 0, page_stride = 0;
    std::vector<uint16_t> kv;
    std::vector<uint8_t> cache;
    std::vector<int32_t> indices;
    std::vector<float> sink;
    std::vector<int32_t> lengths;

    int64_t rows() const { return std::accumulate(row_shape.begin(), row_shape.end(), int64_t{1}, std::multiplies<>()); }
    int64_t slots() const { return paged ? num_pages * page_size : s_kv; }
    int64_t width() const { return fp8 ? 656 : d_qk; }

    std::vector<int64_t> with_rows(std::initializer_list<int64_t> tail) const {
        std::vector<int64_t> shape = row_shape;
        shape.insert(shape.end(), tail);
        return shape;
    }
    dsa_tensor_t q_tensor() const {
        dsa_tensor_t t = make(const_cast<uint16_t*>(q.data()), with_rows({heads, d_qk}), DSA_DTYPE_BF16);
        t.strides[t.ndim - 1] = 1;
        t.strides[t.ndim - 2] = q_head_stride;
        t.strides[t.ndim - 3] = q_row_stride;
        if (paged) t.strides[0] = row_shape[1] * q_row_stride;
        return t;
    }
    dsa_tensor_t kv_tensor() const {
        void* data = fp8 ? static_cast<void*>(const_cast<uint8_t*>(cache.data())) : const_cast<uint16_t*>(kv.data());
        if (!paged) {
            dsa_tensor_t t = make(data, {s_kv, d_qk}, DSA_DTYPE_BF16);
            t.strides[0] = token_stride;
            return t;
        }
        dsa_tensor_t t = make(data, {num_pages, page_size, width()}, fp8 ? DSA_DTYPE_U8 : DSA_DTYPE_BF16);
        t.strides[0] = page_stride;
        t.strides[1] = token_stride;
        return t;
    }
    dsa_tensor_t indices_tensor() const {
        return make(const_cast<int32_t*>(indices.data()), with_rows({topk}), DSA_DTYPE_I32);
    }
    dsa_tensor_t sink_tensor() const { return make(const_cast<float*>(sink.data()), {heads}, DSA_DTYPE_F32); }
    dsa_tensor_t lengths_tensor() const {
        return make(const_cast<int32_t*>(lengths.data()), with_rows({}), DSA_DTYPE_I32);
    }

    static dsa_tensor_t make(void* data, const std::vector<int64_t>& shape, dsa_dtype_t dtype) {
        dsa_tensor_t t;
        REQUIRE(dsa_tensor_init_contiguous(&t, data, static_cast<int32_t>(shape.size()), shape.data(), dtype,
                                           DSA_DEVICE_CPU, 0) == DSA_STATUS_SUCCESS);
        return t;
    }
};

struct Result {
    std::vector<uint16_t> out;
    std::vector<float> lse, max_logits;
    dsa_tensor_t out_tensor, lse_tensor, max_tensor;

    explicit Result(const Problem& p)
        : out(p.rows() * p.heads * p.d_v, kBf16Nan),
          lse(p.rows() * p.heads, NAN),
          max_logits(p.rows() * p.heads, NAN),
          out_tensor(Problem::make(out.data(), p.with_rows({p.heads, p.d_v}), DSA_DTYPE_BF16)),
          lse_tensor(Problem::make(lse.data(), p.with_rows({p.heads}), DSA_DTYPE_F32)),
          max_tensor(Problem::make(max_logits.data(), p.with_rows({p.heads}), DSA_DTYPE_F32)) {}
};

inline dsa_sparse_attention_params_t params_of(const Problem& p) {
    dsa_sparse_attention_params_t params;
    dsa_sparse_attention_params_init(&params);
    params.scale = p.scale;
    params.d_v = static_cast<int32_t>(p.d_v);
    return params;
}

// The tensors of one call: host views of p and r, or device views of the same layout.
struct Tensors {
    dsa_tensor_t q, kv, indices, sink, lengths, out, lse, max_logits;
};

inline Tensors host_tensors(const Problem& p, const Result& r) {
    return {p.q_tensor(), p.kv_tensor(), p.indices_tensor(), p.sink_tensor(), p.lengths_tensor(),
            r.out_tensor, r.lse_tensor, r.max_tensor};
}

inline dsa_status_t call(dsa_context_t* context, const Problem& p, const Tensors& t) {
    const dsa_sparse_attention_params_t params = params_of(p);
    const dsa_tensor_t* sink_arg = p.use_sink ? &t.sink : nullptr;
    const dsa_tensor_t* lengths_arg = p.use_lengths ? &t.lengths : nullptr;
    if (p.paged)
        return dsa_sparse_attention_paged(context, &params, &t.q, &t.kv, &t.indices, sink_arg, lengths_arg, &t.out,
                                          &t.lse, nullptr);
    return dsa_sparse_attention(context, &params, &t.q, &t.kv, &t.indices, sink_arg, lengths_arg, &t.out, &t.lse,
                                p.use_max_logits ? &t.max_logits : nullptr, nullptr);
}

inline dsa_status_t call(dsa_context_t* context, const Problem& p, Result& r) {
    return call(context, p, host_tensors(p, r));
}

// The library's result; every output element must have been written (no poison left: the
// selected inputs are finite).
inline Result run_library(const Problem& p, int threads) {
    Context context(threads);
    Result r(p);
    const dsa_status_t status = call(context, p, r);
    REQUIRE_MESSAGE(status == DSA_STATUS_SUCCESS, dsa_last_error_message());
    for (uint16_t bits : r.out) REQUIRE(!std::isnan(dsa::bf16_to_float(bits)));
    for (float value : r.lse) REQUIRE(!std::isnan(value));
    if (p.use_max_logits && !p.paged)
        for (float value : r.max_logits) REQUIRE(!std::isnan(value));
    return r;
}

inline Result run_reference(const Problem& p) {
    Result r(p);
    dsa::SparseAttentionProblem problem;
    problem.q = core_view(p.q_tensor());
    problem.kv = core_view(p.kv_tensor());
    problem.indices = core_view(p.indices_tensor());
    problem.attn_sink = core_view(p.sink_tensor());
    problem.topk_length = core_view(p.lengths_tensor());
    problem.out = core_view(r.out_tensor);
    problem.lse = core_view(r.lse_tensor);
    problem.max_logits = core_view(r.max_tensor);
    problem.has_attn_sink = p.use_sink;
    problem.has_topk_length = p.use_lengths;
    problem.has_max_logits = p.use_max_logits && !p.paged;
    problem.format = p.fp8 ? dsa::KvFormat::fp8_mla : dsa::KvFormat::bf16;
    problem.scale = p.scale;
    problem.d_qk = p.d_qk;
    problem.d_v = p.d_v;
    problem.heads = p.heads;
    problem.rows = p.rows();
    problem.topk = p.topk;
    problem.paged = p.paged;
    problem.page_size = p.page_size;
    problem.num_slots = p.slots();
    dsa::reference::sparse_attention(problem);
    return r;
}

// out: relative error of the whole output < 1e-2 (bf16 rounding); lse and max_logits: absolute
// error < 1e-3, infinities equal.
inline void check_close(const Problem& p, const Result& got, const Result& want) {
    double error = 0.0, norm = 0.0;
    for (size_t i = 0; i < got.out.size(); ++i) {
        const double a = dsa::bf16_to_float(got.out[i]), b = dsa::bf16_to_float(want.out[i]);
        error += (a - b) * (a - b);
        norm += b * b;
    }
    CHECK(std::sqrt(error) <= 1e-2 * std::sqrt(norm) + 1e-30);
    auto check_values = [](const std::vector<float>& a, const std::vector<float>& b) {
        for (size_t i = 0; i < a.size(); ++i) {
            if (std::isinf(b[i])) {
                REQUIRE_MESSAGE(a[i] == b[i], "element ", i, ": ", a[i], " vs ", b[i]);
            } else {
                REQUIRE_MESSAGE(std::fabs(a[i] - b[i]) < 1e-3f, "element ", i, ": ", a[i], " vs ", b[i]);
            }
        }
    };
    check_values(got.lse, want.lse);
    if (p.use_max_logits && !p.paged) check_values(got.max_logits, want.max_logits);
}

// Runs check(p) for the combinations of the optional inputs: sink, topk_length, max_logits.
template <typename Check>
void for_each_variant(Problem p, Check check) {
    for (int variant = 0; variant < 4; ++variant) {
        p.use_sink = variant & 1;
        p.use_lengths = variant & 2;
        p.use_max_logits = variant != 2;
        CAPTURE(variant);
        check(p);
    }
}

inline bool same_bits(const Result& a, const Result& b) {
    return a.out == b.out && std::memcmp(a.lse.data(), b.lse.data(), a.lse.size() * 4) == 0 &&
           std::memcmp(a.max_logits.data(), b.max_logits.data(), a.max_logits.size() * 4) == 0;
}

// q with padded strides (pads hold NaN, which must never be read) and random bf16 values.
inline void fill_queries(Problem& p, uint32_t seed, bool padded) {
    p.q_head_stride = p.d_qk + (padded ? 5 : 0);
    p.q_row_stride = p.heads * p.q_head_stride + (padded ? 3 : 0);
    p.q.assign(p.rows() * p.q_row_stride, kBf16Nan);
    const std::vector<uint16_t> values = random_bf16(p.rows() * p.heads * p.d_qk, seed);
    for (int64_t r = 0; r < p.rows(); ++r)
        for (int64_t h = 0; h < p.heads; ++h)
            std::copy_n(values.begin() + (r * p.heads + h) * p.d_qk, p.d_qk,
                        p.q.begin() + r * p.q_row_stride + h * p.q_head_stride);
}

// Per row: valid slots drawn from `usable` (with repeats), invalid ones sprinkled in (-1,
// slots, INT32_MIN, ...), row 1 entirely invalid, and, with lengths, rows cut short (including
// to 0, negative and beyond k).
inline void fill_selection(Problem& p, const std::vector<int32_t>& usable, uint32_t seed) {
    std::mt19937 engine(seed);
    const int32_t slots = static_cast<int32_t>(p.slots());
    const int32_t invalid[] = {-1, slots, slots + 7, INT32_MIN, INT32_MAX, -2};
    p.indices.resize(p.rows() * p.topk);
    for (int64_t r = 0; r < p.rows(); ++r)
        for (int64_t j = 0; j < p.topk; ++j) {
            int32_t& index = p.indices[r * p.topk + j];
            if (r == 1 || engine() % 10 == 0) {
                index = invalid[engine() % 6];
            } else {
                index = usable[engine() % usable.size()];
                if (j > 0 && engine() % 8 == 0 && p.indices[r * p.topk + j - 1] >= 0)
                    index = p.indices[r * p.topk + j - 1];  // an explicit duplicate
            }
        }
    p.sink = random_floats(p.heads, seed + 1, -2.0f, 2.0f);
    p.lengths.resize(p.rows());
    for (int64_t r = 0; r < p.rows(); ++r) {
        const int32_t choices[] = {static_cast<int32_t>(p.topk), static_cast<int32_t>(engine() % (p.topk + 1)), 0,
                                   -3, static_cast<int32_t>(p.topk + 5)};
        p.lengths[r] = choices[r % 5];
    }
}

// A prefill problem: every fifth kv row is NaN and never selected.
inline Problem prefill(int64_t s_q, int64_t heads, int64_t d_qk, int64_t d_v, int64_t s_kv, int64_t topk, uint32_t seed,
                bool padded = false) {
    Problem p;
    p.row_shape = {s_q};
    p.heads = heads;
    p.d_qk = d_qk;
    p.d_v = d_v;
    p.topk = topk;
    p.s_kv = s_kv;
    p.scale = d_qk == 576 ? kDeepSeekScale : static_cast<float>(1.5 / std::sqrt(static_cast<double>(d_qk)));
    p.token_stride = d_qk + (padded ? 3 : 0);
    p.kv = random_bf16(s_kv * p.token_stride, seed);
    std::vector<int32_t> usable;
    for (int32_t s = 0; s < s_kv; ++s) {
        if (s % 5 == 4) {
            std::fill_n(p.kv.begin() + s * p.token_stride, p.token_stride, kBf16Nan);
        } else {
            usable.push_back(s);
        }
    }
    fill_queries(p, seed + 1, padded);
    fill_selection(p, usable, seed + 2);
    return p;
}



// A paged problem: B sequences of `context` tokens on shuffled pages of `page_size`; q of s_q
// rows per sequence selects from its own sequence (logical positions translated to slots).
// Unused pages are poison (NaN bf16, or 0xff bytes = NaN codes in the FP8 cache).
struct Paging {
    std::vector<int64_t> block_table;  // [B][pages per sequence] -> physical page
    int64_t pages_per_sequence = 0;
};

inline Paging shuffle_pages(Problem& p, int64_t batch, int64_t context, uint32_t seed) {
    Paging paging;
    paging.pages_per_sequence = (context + p.page_size - 1) / p.page_size;
    p.num_pages = batch * paging.pages_per_sequence + 3;  // 3 spare pages nobody uses
    std::vector<int64_t> physical(p.num_pages);
    std::iota(physical.begin(), physical.end(), 0);
    std::shuffle(physical.begin(), physical.end(), std::mt19937(seed));
    paging.block_table.assign(physical.begin(), physical.begin() + batch * paging.pages_per_sequence);
    return paging;
}

inline void select_paged(Problem& p, const Paging& paging, int64_t batch, int64_t s_q, int64_t context, uint32_t seed) {
    // Usable slots per sequence; fill_selection draws from one pool, so draw per sequence here.
    std::mt19937 engine(seed);
    std::vector<int32_t> everything;
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t t = 0; t < context; ++t)
            everything.push_back(static_cast<int32_t>(
                paging.block_table[b * paging.pages_per_sequence + t / p.page_size] * p.page_size + t % p.page_size));
    fill_selection(p, everything, seed);
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t i = 0; i < s_q; ++i)
            for (int64_t j = 0; j < p.topk; ++j) {
                int32_t& index = p.indices[((b * s_q) + i) * p.topk + j];
                if (index >= 0 && index < p.slots()) index = everything[b * context + engine() % context];
            }
}

inline Problem paged_bf16(int64_t batch, int64_t s_q, int64_t heads, int64_t d_qk, int64_t d_v, int64_t page_size,
                          int64_t context, int64_t topk, uint32_t seed, bool padded = true) {
    Problem p;
    p.paged = true;
    p.row_shape = {batch, s_q};
    p.heads = heads;
    p.d_qk = d_qk;
    p.d_v = d_v;
    p.topk = topk;
    p.page_size = page_size;
    p.scale = d_qk == 576 ? kDeepSeekScale : 0.2f;
    const Paging paging = shuffle_pages(p, batch, context, seed);
    p.token_stride = d_qk + (padded ? 2 : 0);                   // tokens padded within a page
    p.page_stride = page_size * p.token_stride + (padded ? 6 : 0);  // and pages apart
    p.kv.assign(p.num_pages * p.page_stride, kBf16Nan);
    const std::vector<uint16_t> values = random_bf16(batch * context * d_qk, seed + 1);
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t t = 0; t < context; ++t) {
            const int64_t page = paging.block_table[b * paging.pages_per_sequence + t / page_size];
            std::copy_n(values.begin() + (b * context + t) * d_qk, d_qk,
                        p.kv.begin() + page * p.page_stride + (t % page_size) * p.token_stride);
        }
    fill_queries(p, seed + 2, padded);
    select_paged(p, paging, batch, s_q, context, seed + 3);
    return p;
}

// MLA cache writer call on [T, 512] / [T, 64] inputs of `dtype` into p's FP8 cache.
inline dsa_status_t write_cache(dsa_context_t* context, const Problem& p, const void* c_kv, const void* k_pe, dsa_dtype_t dtype,
                         const std::vector<int64_t>& slots) {
    const int64_t tokens = static_cast<int64_t>(slots.size());
    const dsa_tensor_t c = view(const_cast<void*>(c_kv), {tokens, 512}, dtype);
    const dsa_tensor_t k = view(const_cast<void*>(k_pe), {tokens, 64}, dtype);
    const dsa_tensor_t s = view(const_cast<int64_t*>(slots.data()), {tokens}, DSA_DTYPE_I64);
    const dsa_tensor_t cache = p.kv_tensor();
    return dsa_mla_cache_write(context, &c, &k, &s, &cache, nullptr);
}

inline Problem paged_fp8(int64_t batch, int64_t s_q, int64_t heads, int64_t page_size, int64_t context, int64_t topk,
                  uint32_t seed) {
    Problem p;
    p.paged = p.fp8 = true;
    p.row_shape = {batch, s_q};
    p.heads = heads;
    p.d_qk = 576;
    p.d_v = 512;
    p.topk = topk;
    p.page_size = page_size;
    p.scale = kDeepSeekScale;
    const Paging paging = shuffle_pages(p, batch, context, seed);
    p.token_stride = 656;
    p.page_stride = page_size * 656 + 16;
    p.cache.assign(p.num_pages * p.page_stride, 0xff);
    std::vector<int64_t> slots;
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t t = 0; t < context; ++t)
            slots.push_back(paging.block_table[b * paging.pages_per_sequence + t / page_size] * page_size + t % page_size);
    std::vector<float> c_kv = random_floats(slots.size() * 512, seed + 1, -2.0f, 2.0f);
    for (size_t i = 0; i < c_kv.size(); i += 131) c_kv[i] *= 40.0f;  // outliers set the group scales
    const std::vector<float> k_pe = random_floats(slots.size() * 64, seed + 2);
    Context writer(2);
    REQUIRE(write_cache(writer, p, c_kv.data(), k_pe.data(), DSA_DTYPE_F32, slots) == DSA_STATUS_SUCCESS);
    fill_queries(p, seed + 3, false);
    select_paged(p, paging, batch, s_q, context, seed + 4);
    return p;
}

// The FP8 cache dequantised into a bf16 paged cache (exact: e4m3 values times power-of-two scales
// fit bf16), NaN where the FP8 entry is poison.
inline Problem dequantised(const Problem& fp8) {
    Problem p = fp8;
    p.fp8 = false;
    p.cache.clear();
    p.token_stride = 576;
    p.page_stride = p.page_size * 576;
    p.kv.assign(p.num_pages * p.page_stride, kBf16Nan);
    for (int64_t page = 0; page < p.num_pages; ++page)
        for (int64_t t = 0; t < p.page_size; ++t) {
            const uint8_t* entry = fp8.cache.data() + page * fp8.page_stride + t * 656;
            uint16_t* row = p.kv.data() + page * p.page_stride + t * 576;
            for (int64_t d = 0; d < 512; ++d) {
                float scale;
                std::memcpy(&scale, entry + 512 + 4 * (d / 128), 4);
                const float value = dsa::decode_e4m3(entry[d]) * scale;
                row[d] = dsa::float_to_bf16(value);
                if (!std::isnan(value)) REQUIRE(dsa::bf16_to_float(row[d]) == value);
            }
            std::memcpy(row + 512, entry + 528, 128);
        }
    return p;
}


}  // namespace dsa_test
