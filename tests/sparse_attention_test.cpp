// Sparse MLA attention (prefill, paged bf16 and FP8 caches) and the MLA FP8 cache writer on the CPU,
// against the scalar references.
#include "sparse_attention_problems.hpp"

using namespace dsa_test;

namespace {

void check_all_variants(const Problem& p) {
    for_each_variant(p, [](const Problem& v) { check_close(v, run_library(v, 2), run_reference(v)); });
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
