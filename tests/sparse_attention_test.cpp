// Sparse MLA attention (prefill, paged bf16 and FP8 caches) and the MLA FP8 cache writer on the CPU,
// against the scalar references.
#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <numeric>

#include "../core/ops/sparse_attention.hpp"
#include "support.hpp"

using namespace dsa_test;

namespace {

constexpr uint16_t kBf16Nan = 0x7fc1;  // poison for bf16 outputs and unread inputs
constexpr float kDeepSeekScale = 0.13523378f;

std::vector<uint16_t> random_bf16(size_t count, uint32_t seed) { return to_bf16(random_floats(count, seed)); }

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

dsa_sparse_attention_params_t params_of(const Problem& p) {
    dsa_sparse_attention_params_t params;
    dsa_sparse_attention_params_init(&params);
    params.scale = p.scale;
    params.d_v = static_cast<int32_t>(p.d_v);
    return params;
}

dsa_status_t call(dsa_context_t* context, const Problem& p, Result& r) {
    const dsa_sparse_attention_params_t params = params_of(p);
    const dsa_tensor_t q = p.q_tensor(), kv = p.kv_tensor(), indices = p.indices_tensor(), sink = p.sink_tensor(),
                       lengths = p.lengths_tensor();
    const dsa_tensor_t* sink_arg = p.use_sink ? &sink : nullptr;
    const dsa_tensor_t* lengths_arg = p.use_lengths ? &lengths : nullptr;
    if (p.paged)
        return dsa_sparse_attention_paged(context, &params, &q, &kv, &indices, sink_arg, lengths_arg, &r.out_tensor,
                                          &r.lse_tensor, nullptr);
    return dsa_sparse_attention(context, &params, &q, &kv, &indices, sink_arg, lengths_arg, &r.out_tensor,
                                &r.lse_tensor, p.use_max_logits ? &r.max_tensor : nullptr, nullptr);
}

// The library's result; every output element must have been written (no poison left: the
// selected inputs are finite).
Result run_library(const Problem& p, int threads) {
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

Result run_reference(const Problem& p) {
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
void check_close(const Problem& p, const Result& got, const Result& want) {
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

bool same_bits(const Result& a, const Result& b) {
    return a.out == b.out && std::memcmp(a.lse.data(), b.lse.data(), a.lse.size() * 4) == 0 &&
           std::memcmp(a.max_logits.data(), b.max_logits.data(), a.max_logits.size() * 4) == 0;
}

// q with padded strides (pads hold NaN, which must never be read) and random bf16 values.
void fill_queries(Problem& p, uint32_t seed, bool padded) {
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
void fill_selection(Problem& p, const std::vector<int32_t>& usable, uint32_t seed) {
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
Problem prefill(int64_t s_q, int64_t heads, int64_t d_qk, int64_t d_v, int64_t s_kv, int64_t topk, uint32_t seed,
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

void check_all_variants(Problem p) {
    for (int variant = 0; variant < 4; ++variant) {
        p.use_sink = variant & 1;
        p.use_lengths = variant & 2;
        p.use_max_logits = variant != 2;
        CAPTURE(variant);
        check_close(p, run_library(p, 2), run_reference(p));
    }
}

}  // namespace

TEST_CASE("prefill matches the reference: DeepSeek widths 576/512, any head count") {
    const int64_t heads[] = {1, 3, 16, 64, 128};
    const int64_t rows[] = {7, 5, 4, 3, 3};
    for (int i = 0; i < 5; ++i) {
        CAPTURE(heads[i]);
        check_all_variants(prefill(rows[i], heads[i], 576, 512, 300, 131, 10 + i, i % 2 == 1));
    }
}

TEST_CASE("prefill matches the reference: widths 72/64 and odd ones") {
    const int64_t heads[] = {1, 3, 16, 64, 128};
    for (int i = 0; i < 5; ++i) {
        CAPTURE(heads[i]);
        check_all_variants(prefill(9, heads[i], 72, 64, 200, 70, 20 + i, i % 2 == 0));
    }
    check_all_variants(prefill(6, 5, 13, 5, 40, 17, 30, true));
    check_all_variants(prefill(6, 2, 1, 1, 40, 9, 31));
    check_all_variants(prefill(4, 3, 72, 72, 1000, 300, 32));  // d_v == d_qk; several tiles
}

TEST_CASE("prefill semantics: empty rows, duplicates, the sink, topk_length") {
    Problem p = prefill(3, 2, 72, 64, 50, 6, 40);
    p.use_sink = true;
    p.use_lengths = true;
    p.use_max_logits = true;
    // row 0: one token twice equals weights 2:1 against another; row 1: nothing valid;
    // row 2: length 2 keeps only the first two entries (the rest are NaN rows, never read).
    const int32_t rows[3][6] = {{3, 3, 7, -1, 50, INT32_MIN}, {-1, -5, 50, 51, INT32_MAX, INT32_MIN},
                                {8, 10, 9, 14, 19, 24}};
    for (int r = 0; r < 3; ++r) std::copy_n(rows[r], 6, p.indices.begin() + r * 6);
    p.lengths = {6, 6, 2};
    p.sink = {-INFINITY, 30.0f};  // head 0: no sink effect; head 1: the sink takes all the mass
    const Result got = run_library(p, 1);
    const Result want = run_reference(p);
    check_close(p, got, want);
    for (int64_t h = 0; h < 2; ++h) {
        CHECK(got.lse[1 * 2 + h] == INFINITY);
        CHECK(got.max_logits[1 * 2 + h] == -INFINITY);
        for (int64_t c = 0; c < 64; ++c) CHECK(got.out[(1 * 2 + h) * 64 + c] == 0);
        for (int64_t c = 0; c < 64; ++c) CHECK(std::fabs(dsa::bf16_to_float(got.out[(0 * 2 + 1) * 64 + c])) < 1e-9f);
    }
    // lse excludes the sink: head 1 of row 0 has the same lse as without a sink.
    Problem no_sink = p;
    no_sink.use_sink = false;
    const Result plain = run_library(no_sink, 1);
    CHECK(plain.lse[1] == got.lse[1]);
    // Head 0, row 0: softmax over {3, 3, 7} by hand.
    auto kv_at = [&](int64_t s, int64_t d) { return dsa::bf16_to_float(p.kv[s * p.token_stride + d]); };
    double z3 = 0, z7 = 0;
    for (int64_t d = 0; d < 72; ++d) {
        const double q = dsa::bf16_to_float(p.q[d]);
        z3 += q * kv_at(3, d);
        z7 += q * kv_at(7, d);
    }
    z3 *= p.scale;
    z7 *= p.scale;
    const double lse = std::log(2 * std::exp(z3) + std::exp(z7));
    CHECK(std::fabs(got.lse[0] - lse) < 1e-4);
    CHECK(std::fabs(got.max_logits[0] - std::max(z3, z7)) < 1e-4);
    for (int64_t c = 0; c < 64; ++c) {
        const double expected = (2 * std::exp(z3 - lse) * kv_at(3, c) + std::exp(z7 - lse) * kv_at(7, c));
        CHECK(std::fabs(dsa::bf16_to_float(got.out[c]) - expected) <= 1e-2 * std::fabs(expected) + 1e-3);
    }
}

TEST_CASE("prefill results do not depend on the thread count") {
    Problem p = prefill(6, 128, 576, 512, 400, 100, 50, true);
    p.use_sink = p.use_lengths = p.use_max_logits = true;
    const Result one = run_library(p, 1), two = run_library(p, 2), three = run_library(p, 3);
    CHECK(same_bits(one, two));
    CHECK(same_bits(one, three));
    Problem small = prefill(40, 3, 72, 64, 100, 20, 51);
    CHECK(same_bits(run_library(small, 1), run_library(small, 3)));
}

namespace {

// A paged problem: B sequences of `context` tokens on shuffled pages of `page_size`; q of s_q
// rows per sequence selects from its own sequence (logical positions translated to slots).
// Unused pages are poison (NaN bf16, or 0xff bytes = NaN codes in the FP8 cache).
struct Paging {
    std::vector<int64_t> block_table;  // [B][pages per sequence] -> physical page
    int64_t pages_per_sequence = 0;
};

Paging shuffle_pages(Problem& p, int64_t batch, int64_t context, uint32_t seed) {
    Paging paging;
    paging.pages_per_sequence = (context + p.page_size - 1) / p.page_size;
    p.num_pages = batch * paging.pages_per_sequence + 3;  // 3 spare pages nobody uses
    std::vector<int64_t> physical(p.num_pages);
    std::iota(physical.begin(), physical.end(), 0);
    std::shuffle(physical.begin(), physical.end(), std::mt19937(seed));
    paging.block_table.assign(physical.begin(), physical.begin() + batch * paging.pages_per_sequence);
    return paging;
}

void select_paged(Problem& p, const Paging& paging, int64_t batch, int64_t s_q, int64_t context, uint32_t seed) {
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

Problem paged_bf16(int64_t batch, int64_t s_q, int64_t heads, int64_t d_qk, int64_t d_v, int64_t page_size,
                   int64_t context, int64_t topk, uint32_t seed) {
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
    p.token_stride = d_qk + 2;                   // tokens padded within a page
    p.page_stride = page_size * p.token_stride + 6;  // and pages apart
    p.kv.assign(p.num_pages * p.page_stride, kBf16Nan);
    const std::vector<uint16_t> values = random_bf16(batch * context * d_qk, seed + 1);
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t t = 0; t < context; ++t) {
            const int64_t page = paging.block_table[b * paging.pages_per_sequence + t / page_size];
            std::copy_n(values.begin() + (b * context + t) * d_qk, d_qk,
                        p.kv.begin() + page * p.page_stride + (t % page_size) * p.token_stride);
        }
    fill_queries(p, seed + 2, true);
    select_paged(p, paging, batch, s_q, context, seed + 3);
    return p;
}

// MLA cache writer call on [T, 512] / [T, 64] inputs of `dtype` into p's FP8 cache.
dsa_status_t write_cache(dsa_context_t* context, const Problem& p, const void* c_kv, const void* k_pe, dsa_dtype_t dtype,
                         const std::vector<int64_t>& slots) {
    const int64_t tokens = static_cast<int64_t>(slots.size());
    const dsa_tensor_t c = view(const_cast<void*>(c_kv), {tokens, 512}, dtype);
    const dsa_tensor_t k = view(const_cast<void*>(k_pe), {tokens, 64}, dtype);
    const dsa_tensor_t s = view(const_cast<int64_t*>(slots.data()), {tokens}, DSA_DTYPE_I64);
    const dsa_tensor_t cache = p.kv_tensor();
    return dsa_mla_cache_write(context, &c, &k, &s, &cache, nullptr);
}

Problem paged_fp8(int64_t batch, int64_t s_q, int64_t heads, int64_t page_size, int64_t context, int64_t topk,
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
Problem dequantised(const Problem& fp8) {
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

}  // namespace

TEST_CASE("paged bf16 cache matches the reference: shuffled pages, page sizes 64 and 3") {
    for (int64_t page_size : {64, 3}) {
        CAPTURE(page_size);
        check_all_variants(paged_bf16(3, 2, 16, 72, 64, page_size, 150, 67, 60 + page_size));
        check_all_variants(paged_bf16(2, 1, 128, 576, 512, page_size, 200, 80, 61 + page_size));
    }
}

TEST_CASE("paged FP8 cache matches the reference over the dequantised cache") {
    for (int64_t page_size : {64, 3}) {
        for (int64_t heads : {16, 3, 128}) {
            CAPTURE(page_size);
            CAPTURE(heads);
            Problem p = paged_fp8(2, 2, heads, page_size, 190, 75, 70 + static_cast<uint32_t>(heads + page_size));
            p.use_sink = heads != 3;
            p.use_lengths = heads == 16;
            const Result want = run_reference(p);
            check_close(p, run_library(p, 2), want);
            // The FP8 reference is the bf16 reference over the dequantised entries, bit for bit.
            const Result over_bf16 = run_reference(dequantised(p));
            CHECK(want.out == over_bf16.out);
            CHECK(std::memcmp(want.lse.data(), over_bf16.lse.data(), want.lse.size() * 4) == 0);
        }
    }
}

TEST_CASE("paged results do not depend on the thread count") {
    Problem p = paged_fp8(3, 2, 16, 64, 130, 70, 80);
    p.use_sink = true;
    CHECK(same_bits(run_library(p, 1), run_library(p, 2)));
    CHECK(same_bits(run_library(p, 1), run_library(p, 3)));
}

namespace {

struct CacheWrite {
    int64_t tokens = 0, num_pages = 5, page_size = 3;
    int64_t page_stride = 3 * 656 + 20;
    std::vector<float> c_kv, k_pe;
    std::vector<uint16_t> c_kv_bf16, k_pe_bf16;
    std::vector<int64_t> slots;

    Problem cache_problem() const {
        Problem p;
        p.paged = p.fp8 = true;
        p.num_pages = num_pages;
        p.page_size = page_size;
        p.token_stride = 656;
        p.page_stride = page_stride;
        p.cache.assign(num_pages * page_stride, 0xa5);
        return p;
    }
};

CacheWrite cache_inputs(uint32_t seed) {
    CacheWrite w;
    w.slots = {4, -1, 0, 14, 15, 7, 4, INT64_MIN, 9, 1000, 2, 13};  // 4 twice: token 6 wins; 15, 1000 out of range
    w.tokens = static_cast<int64_t>(w.slots.size());
    w.c_kv = random_floats(w.tokens * 512, seed, -3.0f, 3.0f);
    w.k_pe = random_floats(w.tokens * 64, seed + 1, -5.0f, 5.0f);
    std::fill_n(w.c_kv.begin() + 2 * 512 + 128, 128, 0.0f);  // an all-zero group: scale from the floor
    w.c_kv[3 * 512 + 5] = 1e4f;                              // an outlier
    w.c_kv[5 * 512 + 300] = NAN;                             // NaN stays NaN, not in the scale
    w.c_kv[5 * 512 + 301] = -INFINITY;                       // saturates to -448
    w.c_kv_bf16 = to_bf16(w.c_kv);
    w.k_pe_bf16 = to_bf16(w.k_pe);
    return w;
}

}  // namespace

TEST_CASE("mla_cache_write: bytes field by field, skipped slots untouched, same as the reference") {
    for (dsa_dtype_t dtype : {DSA_DTYPE_F32, DSA_DTYPE_BF16}) {
        CAPTURE(dtype);
        const CacheWrite w = cache_inputs(90);
        const bool bf16 = dtype == DSA_DTYPE_BF16;
        const void* c_kv = bf16 ? static_cast<const void*>(w.c_kv_bf16.data()) : w.c_kv.data();
        const void* k_pe = bf16 ? static_cast<const void*>(w.k_pe_bf16.data()) : w.k_pe.data();
        std::vector<uint8_t> results[3];
        for (int threads = 1; threads <= 3; ++threads) {
            Problem p = w.cache_problem();
            Context context(threads);
            REQUIRE(write_cache(context, p, c_kv, k_pe, dtype, w.slots) == DSA_STATUS_SUCCESS);
            results[threads - 1] = p.cache;
        }
        CHECK(results[0] == results[1]);
        CHECK(results[0] == results[2]);
        const std::vector<uint8_t>& cache = results[0];

        Problem reference = w.cache_problem();
        dsa::MlaCacheWriteProblem problem;
        problem.c_kv = core_view(view(const_cast<void*>(c_kv), {w.tokens, 512}, dtype));
        problem.k_pe = core_view(view(const_cast<void*>(k_pe), {w.tokens, 64}, dtype));
        problem.slot_mapping = core_view(view(const_cast<int64_t*>(w.slots.data()), {w.tokens}, DSA_DTYPE_I64));
        problem.cache = core_view(reference.kv_tensor());
        problem.tokens = w.tokens;
        problem.page_size = w.page_size;
        problem.num_slots = w.num_pages * w.page_size;
        dsa::reference::mla_cache_write(problem);
        CHECK(cache == reference.cache);

        // Which token each slot holds (the last writer), then every byte of the cache.
        std::vector<int64_t> holder(w.num_pages * w.page_size, -1);
        for (int64_t t = 0; t < w.tokens; ++t)
            if (w.slots[t] >= 0 && w.slots[t] < w.num_pages * w.page_size) holder[w.slots[t]] = t;
        CHECK(holder[4] == 6);
        for (int64_t page = 0; page < w.num_pages; ++page) {
            for (int64_t byte = w.page_size * 656; byte < w.page_stride; ++byte)
                CHECK(cache[page * w.page_stride + byte] == 0xa5);  // the gap between pages
            for (int64_t offset = 0; offset < w.page_size; ++offset) {
                const uint8_t* entry = cache.data() + page * w.page_stride + offset * 656;
                const int64_t t = holder[page * w.page_size + offset];
                if (t < 0) {
                    CHECK(std::all_of(entry, entry + 656, [](uint8_t b) { return b == 0xa5; }));
                    continue;
                }
                for (int64_t g = 0; g < 4; ++g) {
                    float scale;
                    std::memcpy(&scale, entry + 512 + 4 * g, 4);
                    double amax = 0;
                    for (int64_t i = g * 128; i < (g + 1) * 128; ++i) {
                        const float x = bf16 ? dsa::bf16_to_float(w.c_kv_bf16[t * 512 + i]) : w.c_kv[t * 512 + i];
                        if (std::isfinite(x)) amax = std::max(amax, std::fabs(static_cast<double>(x)));
                    }
                    amax = std::max(amax, 1e-4);
                    int exponent;
                    CHECK(std::frexp(scale, &exponent) == 0.5f);  // ue8m0: a power of two
                    CHECK(scale >= amax / 448.0);
                    CHECK(scale < 2 * amax / 448.0);
                    for (int64_t i = g * 128; i < (g + 1) * 128; ++i) {
                        const float x = bf16 ? dsa::bf16_to_float(w.c_kv_bf16[t * 512 + i]) : w.c_kv[t * 512 + i];
                        const float decoded = dsa::decode_e4m3(entry[i]);
                        if (std::isnan(x)) {
                            CHECK(std::isnan(decoded));
                        } else if (std::isinf(x)) {
                            CHECK(decoded == std::copysign(448.0f, x));
                        } else {
                            CHECK(std::fabs(decoded * scale - x) <=
                                  std::fmax(std::fabs(x) * 0.0625f, scale * std::ldexp(1.0f, -10)));
                        }
                    }
                }
                for (int64_t i = 0; i < 64; ++i) {
                    uint16_t bits;
                    std::memcpy(&bits, entry + 528 + 2 * i, 2);
                    CHECK(bits == (bf16 ? w.k_pe_bf16[t * 64 + i] : dsa::float_to_bf16(w.k_pe[t * 64 + i])));
                }
            }
        }
    }
}

TEST_CASE("sparse attention rejects bad input with a status naming the argument; outputs untouched") {
    Context context(1);
    Problem p = prefill(2, 2, 72, 64, 20, 5, 100);
    p.use_max_logits = true;
    Result r(p);
    dsa_sparse_attention_params_t params = params_of(p);
    dsa_tensor_t q = p.q_tensor(), kv = p.kv_tensor(), indices = p.indices_tensor(), sink = p.sink_tensor(),
                 lengths = p.lengths_tensor();
    dsa_tensor_t &out = r.out_tensor, &lse = r.lse_tensor, &max = r.max_tensor;
    auto attend = [&](const dsa_sparse_attention_params_t* prm, const dsa_tensor_t* q_, const dsa_tensor_t* kv_,
                      const dsa_tensor_t* idx, const dsa_tensor_t* sink_, const dsa_tensor_t* len,
                      const dsa_tensor_t* out_, const dsa_tensor_t* lse_, const dsa_tensor_t* max_) {
        return dsa_sparse_attention(context, prm, q_, kv_, idx, sink_, len, out_, lse_, max_, nullptr);
    };
    CHECK_FAILS_WITH(dsa_sparse_attention(nullptr, &params, &q, &kv, &indices, &sink, &lengths, &out, &lse, &max, nullptr),
                     DSA_STATUS_INVALID_ARGUMENT, "context");
    CHECK_FAILS_WITH(attend(nullptr, &q, &kv, &indices, &sink, &lengths, &out, &lse, &max), DSA_STATUS_INVALID_ARGUMENT,
                     "params");
    dsa_sparse_attention_params_t bad_params = params;
    bad_params.scale = 0.0f;
    CHECK_FAILS_WITH(attend(&bad_params, &q, &kv, &indices, &sink, &lengths, &out, &lse, &max),
                     DSA_STATUS_INVALID_ARGUMENT, "scale");
    dsa_sparse_attention_params_init(&bad_params);  // init leaves scale 0: rejected
    bad_params.d_v = 64;
    CHECK_FAILS_WITH(attend(&bad_params, &q, &kv, &indices, &sink, &lengths, &out, &lse, &max),
                     DSA_STATUS_INVALID_ARGUMENT, "scale");
    bad_params = params;
    bad_params.scale = NAN;
    CHECK_FAILS_WITH(attend(&bad_params, &q, &kv, &indices, &sink, &lengths, &out, &lse, &max),
                     DSA_STATUS_INVALID_ARGUMENT, "scale");
    bad_params = params;
    bad_params.d_v = 73;
    CHECK_FAILS_WITH(attend(&bad_params, &q, &kv, &indices, &sink, &lengths, &out, &lse, &max),
                     DSA_STATUS_INVALID_ARGUMENT, "d_v");
    bad_params.d_v = 0;
    CHECK_FAILS_WITH(attend(&bad_params, &q, &kv, &indices, &sink, &lengths, &out, &lse, &max),
                     DSA_STATUS_INVALID_ARGUMENT, "d_v");
    bad_params = params;
    bad_params.struct_size = 4;
    CHECK_FAILS_WITH(attend(&bad_params, &q, &kv, &indices, &sink, &lengths, &out, &lse, &max),
                     DSA_STATUS_INVALID_ARGUMENT, "struct_size");

    CHECK_FAILS_WITH(attend(&params, nullptr, &kv, &indices, &sink, &lengths, &out, &lse, &max),
                     DSA_STATUS_INVALID_ARGUMENT, "q");
    CHECK_FAILS_WITH(attend(&params, &q, nullptr, &indices, &sink, &lengths, &out, &lse, &max),
                     DSA_STATUS_INVALID_ARGUMENT, "kv");
    CHECK_FAILS_WITH(attend(&params, &q, &kv, nullptr, &sink, &lengths, &out, &lse, &max),
                     DSA_STATUS_INVALID_ARGUMENT, "indices");
    CHECK_FAILS_WITH(attend(&params, &q, &kv, &indices, &sink, &lengths, nullptr, &lse, &max),
                     DSA_STATUS_INVALID_ARGUMENT, "out");
    CHECK_FAILS_WITH(attend(&params, &q, &kv, &indices, &sink, &lengths, &out, nullptr, &max),
                     DSA_STATUS_INVALID_ARGUMENT, "lse");

    auto with_dtype = [](dsa_tensor_t t, dsa_dtype_t dtype) {
        t.dtype = dtype;
        return t;
    };
    std::vector<float> wide(4096);
    dsa_tensor_t bad = with_dtype(q, DSA_DTYPE_F32);
    bad.data = wide.data();
    CHECK_FAILS_WITH(attend(&params, &bad, &kv, &indices, &sink, &lengths, &out, &lse, &max), DSA_STATUS_DTYPE_MISMATCH, "q");
    bad = with_dtype(kv, DSA_DTYPE_F16);
    CHECK_FAILS_WITH(attend(&params, &q, &bad, &indices, &sink, &lengths, &out, &lse, &max), DSA_STATUS_DTYPE_MISMATCH, "kv");
    bad = with_dtype(indices, DSA_DTYPE_U8);
    CHECK_FAILS_WITH(attend(&params, &q, &kv, &bad, &sink, &lengths, &out, &lse, &max), DSA_STATUS_DTYPE_MISMATCH,
                     "indices");
    bad = with_dtype(sink, DSA_DTYPE_I32);
    CHECK_FAILS_WITH(attend(&params, &q, &kv, &indices, &bad, &lengths, &out, &lse, &max), DSA_STATUS_DTYPE_MISMATCH,
                     "attn_sink");
    bad = with_dtype(lengths, DSA_DTYPE_F32);
    CHECK_FAILS_WITH(attend(&params, &q, &kv, &indices, &sink, &bad, &out, &lse, &max), DSA_STATUS_DTYPE_MISMATCH,
                     "topk_length");
    bad = with_dtype(out, DSA_DTYPE_F16);
    CHECK_FAILS_WITH(attend(&params, &q, &kv, &indices, &sink, &lengths, &bad, &lse, &max), DSA_STATUS_DTYPE_MISMATCH,
                     "out");
    bad = with_dtype(lse, DSA_DTYPE_I32);
    CHECK_FAILS_WITH(attend(&params, &q, &kv, &indices, &sink, &lengths, &out, &bad, &max), DSA_STATUS_DTYPE_MISMATCH,
                     "lse");
    bad = with_dtype(max, DSA_DTYPE_I32);
    CHECK_FAILS_WITH(attend(&params, &q, &kv, &indices, &sink, &lengths, &out, &lse, &bad), DSA_STATUS_DTYPE_MISMATCH,
                     "max_logits");

    bad = kv;
    bad.shape[1] = 71;
    CHECK_FAILS_WITH(attend(&params, &q, &bad, &indices, &sink, &lengths, &out, &lse, &max), DSA_STATUS_SHAPE_MISMATCH, "kv");
    bad = q;
    bad.ndim = 4;
    bad.shape[3] = 1;
    CHECK_FAILS_WITH(attend(&params, &bad, &kv, &indices, &sink, &lengths, &out, &lse, &max), DSA_STATUS_SHAPE_MISMATCH, "q");
    bad = indices;
    bad.shape[0] = 1;
    CHECK_FAILS_WITH(attend(&params, &q, &kv, &bad, &sink, &lengths, &out, &lse, &max), DSA_STATUS_SHAPE_MISMATCH,
                     "indices");
    bad = sink;
    bad.shape[0] = 3;
    CHECK_FAILS_WITH(attend(&params, &q, &kv, &indices, &bad, &lengths, &out, &lse, &max), DSA_STATUS_SHAPE_MISMATCH,
                     "attn_sink");
    bad = lengths;
    bad.shape[0] = 1;
    CHECK_FAILS_WITH(attend(&params, &q, &kv, &indices, &sink, &bad, &out, &lse, &max), DSA_STATUS_SHAPE_MISMATCH,
                     "topk_length");
    bad = out;
    bad.shape[2] = 72;
    CHECK_FAILS_WITH(attend(&params, &q, &kv, &indices, &sink, &lengths, &bad, &lse, &max), DSA_STATUS_SHAPE_MISMATCH,
                     "out");
    bad = lse;
    bad.shape[1] = 1;
    CHECK_FAILS_WITH(attend(&params, &q, &kv, &indices, &sink, &lengths, &out, &bad, &max), DSA_STATUS_SHAPE_MISMATCH,
                     "lse");
    bad = max;
    bad.ndim = 1;
    CHECK_FAILS_WITH(attend(&params, &q, &kv, &indices, &sink, &lengths, &out, &lse, &bad), DSA_STATUS_SHAPE_MISMATCH,
                     "max_logits");

    bad = q;
    bad.strides[2] = 2;
    CHECK_FAILS_WITH(attend(&params, &bad, &kv, &indices, &sink, &lengths, &out, &lse, &max),
                     DSA_STATUS_LAYOUT_UNSUPPORTED, "q");
    bad = out;
    bad.strides[1] = 0;
    CHECK_FAILS_WITH(attend(&params, &q, &kv, &indices, &sink, &lengths, &bad, &lse, &max),
                     DSA_STATUS_LAYOUT_UNSUPPORTED, "out");
    bad = lse;
    bad.data = out.data;
    CHECK_FAILS_WITH(attend(&params, &q, &kv, &indices, &sink, &lengths, &out, &bad, &max),
                     DSA_STATUS_LAYOUT_UNSUPPORTED, "lse");
    bad = out;
    bad.data = p.kv.data();
    CHECK_FAILS_WITH(attend(&params, &q, &kv, &indices, &sink, &lengths, &bad, &lse, &max),
                     DSA_STATUS_LAYOUT_UNSUPPORTED, "out");

    bad = kv;
    bad.device_type = DSA_DEVICE_CUDA;
    CHECK(attend(&params, &q, &bad, &indices, &sink, &lengths, &out, &lse, &max) != DSA_STATUS_SUCCESS);
    CHECK(std::string(dsa_last_error_message()).find("kv") == 0);
    bad = sink;
    bad.device_type = 3;
    CHECK_FAILS_WITH(attend(&params, &q, &kv, &indices, &bad, &lengths, &out, &lse, &max), DSA_STATUS_DEVICE_MISMATCH,
                     "attn_sink");

    // Nothing was written by any failed call.
    CHECK(std::all_of(r.out.begin(), r.out.end(), [](uint16_t b) { return b == kBf16Nan; }));
    CHECK(std::all_of(r.lse.begin(), r.lse.end(), [](float v) { return std::isnan(v); }));
    CHECK(std::all_of(r.max_logits.begin(), r.max_logits.end(), [](float v) { return std::isnan(v); }));
    // And the same arguments succeed.
    CHECK(attend(&params, &q, &kv, &indices, &sink, &lengths, &out, &lse, &max) == DSA_STATUS_SUCCESS);
}

TEST_CASE("paged attention and the cache writer reject bad input") {
    Context context(1);
    Problem fp8 = paged_fp8(1, 1, 2, 4, 10, 5, 110);
    Result r(fp8);
    dsa_sparse_attention_params_t params = params_of(fp8);
    dsa_tensor_t q = fp8.q_tensor(), cache = fp8.kv_tensor(), indices = fp8.indices_tensor();
    auto attend = [&](const dsa_sparse_attention_params_t* prm, const dsa_tensor_t* q_, const dsa_tensor_t* cache_,
                      const dsa_tensor_t* idx) {
        return dsa_sparse_attention_paged(context, prm, q_, cache_, idx, nullptr, nullptr, &r.out_tensor, &r.lse_tensor,
                                          nullptr);
    };
    REQUIRE(attend(&params, &q, &cache, &indices) == DSA_STATUS_SUCCESS);
    dsa_sparse_attention_params_t bad_params = params;
    bad_params.d_v = 64;
    CHECK_FAILS_WITH(attend(&bad_params, &q, &cache, &indices), DSA_STATUS_INVALID_ARGUMENT, "d_v");
    // An FP8 cache with d_qk != 576.
    Problem narrow = paged_bf16(1, 1, 2, 72, 64, 4, 10, 5, 111);
    dsa_tensor_t narrow_q = narrow.q_tensor();
    bad_params.d_v = 64;
    CHECK_FAILS_WITH(attend(&bad_params, &narrow_q, &cache, &indices), DSA_STATUS_SHAPE_MISMATCH, "q");
    dsa_tensor_t bad = cache;
    bad.shape[2] = 600;
    CHECK_FAILS_WITH(attend(&params, &q, &bad, &indices), DSA_STATUS_SHAPE_MISMATCH, "kv_cache");
    bad = cache;
    bad.dtype = DSA_DTYPE_F32;
    bad.shape[2] = 164;
    CHECK_FAILS_WITH(attend(&params, &q, &bad, &indices), DSA_STATUS_DTYPE_MISMATCH, "kv_cache");
    bad = cache;
    bad.ndim = 2;
    CHECK_FAILS_WITH(attend(&params, &q, &bad, &indices), DSA_STATUS_SHAPE_MISMATCH, "kv_cache");
    bad = q;
    bad.ndim = 3;
    CHECK_FAILS_WITH(attend(&params, &bad, &cache, &indices), DSA_STATUS_SHAPE_MISMATCH, "q");
    bad = cache;
    bad.strides[2] = 2;
    CHECK_FAILS_WITH(attend(&params, &q, &bad, &indices), DSA_STATUS_LAYOUT_UNSUPPORTED, "kv_cache");
    CHECK_FAILS_WITH(attend(&params, &q, nullptr, &indices), DSA_STATUS_INVALID_ARGUMENT, "kv_cache");

    // The cache writer.
    std::vector<float> c_kv = random_floats(2 * 512, 1), k_pe = random_floats(2 * 64, 2);
    std::vector<uint16_t> k_pe_bf16 = to_bf16(k_pe);
    std::vector<int64_t> slots = {0, 1};
    std::vector<int32_t> slots32 = {0, 1};
    dsa_tensor_t c = view(c_kv.data(), {2, 512}, DSA_DTYPE_F32), k = view(k_pe.data(), {2, 64}, DSA_DTYPE_F32),
                 s = view(slots.data(), {2}, DSA_DTYPE_I64);
    const std::vector<uint8_t> before = fp8.cache;
    CHECK_FAILS_WITH(dsa_mla_cache_write(nullptr, &c, &k, &s, &cache, nullptr), DSA_STATUS_INVALID_ARGUMENT, "context");
    CHECK_FAILS_WITH(dsa_mla_cache_write(context, nullptr, &k, &s, &cache, nullptr), DSA_STATUS_INVALID_ARGUMENT, "c_kv");
    CHECK_FAILS_WITH(dsa_mla_cache_write(context, &c, &k, &s, nullptr, nullptr), DSA_STATUS_INVALID_ARGUMENT, "kv_cache");
    bad = view(k_pe_bf16.data(), {2, 64}, DSA_DTYPE_BF16);
    CHECK_FAILS_WITH(dsa_mla_cache_write(context, &c, &bad, &s, &cache, nullptr), DSA_STATUS_DTYPE_MISMATCH, "k_pe");
    bad = view(slots32.data(), {2}, DSA_DTYPE_I32);
    CHECK_FAILS_WITH(dsa_mla_cache_write(context, &c, &k, &bad, &cache, nullptr), DSA_STATUS_DTYPE_MISMATCH,
                     "slot_mapping");
    bad = view(c_kv.data(), {4, 256}, DSA_DTYPE_F32);
    CHECK_FAILS_WITH(dsa_mla_cache_write(context, &bad, &k, &s, &cache, nullptr), DSA_STATUS_SHAPE_MISMATCH, "c_kv");
    bad = view(k_pe.data(), {1, 64}, DSA_DTYPE_F32);
    CHECK_FAILS_WITH(dsa_mla_cache_write(context, &c, &bad, &s, &cache, nullptr), DSA_STATUS_SHAPE_MISMATCH, "k_pe");
    bad = view(slots.data(), {1}, DSA_DTYPE_I64);
    CHECK_FAILS_WITH(dsa_mla_cache_write(context, &c, &k, &bad, &cache, nullptr), DSA_STATUS_SHAPE_MISMATCH,
                     "slot_mapping");
    bad = cache;
    bad.shape[2] = 576;
    CHECK_FAILS_WITH(dsa_mla_cache_write(context, &c, &k, &s, &bad, nullptr), DSA_STATUS_SHAPE_MISMATCH, "kv_cache");
    bad = cache;
    bad.dtype = DSA_DTYPE_BF16;
    CHECK_FAILS_WITH(dsa_mla_cache_write(context, &c, &k, &s, &bad, nullptr), DSA_STATUS_DTYPE_MISMATCH, "kv_cache");
    bad = cache;
    bad.strides[1] = 100;  // entries overlap
    CHECK_FAILS_WITH(dsa_mla_cache_write(context, &c, &k, &s, &bad, nullptr), DSA_STATUS_LAYOUT_UNSUPPORTED, "kv_cache");
    bad = c;
    bad.device_type = DSA_DEVICE_CUDA;
    CHECK(dsa_mla_cache_write(context, &bad, &k, &s, &cache, nullptr) != DSA_STATUS_SUCCESS);
    CHECK(std::string(dsa_last_error_message()).find("c_kv") == 0);
    CHECK(fp8.cache == before);
}

TEST_CASE("k = 0 and H_q = 0: empty selections and empty outputs") {
    Problem p = prefill(3, 2, 8, 8, 10, 0, 120);
    p.use_max_logits = true;
    const Result got = run_library(p, 2);
    CHECK(std::all_of(got.out.begin(), got.out.end(), [](uint16_t b) { return b == 0; }));
    CHECK(std::all_of(got.lse.begin(), got.lse.end(), [](float v) { return v == INFINITY; }));
    CHECK(std::all_of(got.max_logits.begin(), got.max_logits.end(), [](float v) { return v == -INFINITY; }));
    Problem headless = prefill(3, 0, 8, 8, 10, 4, 121);
    run_library(headless, 1);
}
