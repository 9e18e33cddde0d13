// Lightning indexer (dsa_indexer_logits, dsa_indexer_logits_paged) and its key-cache writer
// (dsa_indexer_cache_write) on the CPU, against the scalar references.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "indexer_fixtures.hpp"

using namespace dsa_test;

TEST_CASE("indexer_logits matches the reference: H_I 1/3/64, D_I 64/128, causal and ragged windows") {
    Context context(2);
    uint32_t seed = 1;
    for (int64_t heads : {1, 3, 64}) {
        for (int64_t dim : {64, 128}) {
            CAPTURE(heads);
            CAPTURE(dim);
            // Odd sizes (no tile multiples), strided q rows, logits rows with padding.
            Prefill problem(37, 101, heads, dim, seed += 10, /*q_padding=*/7, /*logits_padding=*/3);
            problem.causal(101 - 37);  // chunked prefill: the last 37 queries of 101 tokens
            problem.check(problem.run(context), problem.reference());
            problem.ragged(seed);
            problem.check(problem.run(context), problem.reference());
        }
    }
}

TEST_CASE("indexer_logits: several tasks in both directions, causal from position 0, column-major weights, D_I 20") {
    Context context(3);
    Prefill problem(45, 2100 + 37, 3, 64, 77, 0, 0, /*transposed=*/true);  // > one 2048-token chunk
    problem.ragged(78);
    problem.ke[5] = 2100 + 37;
    problem.ks[5] = 2040;  // a window across the chunk boundary
    problem.check(problem.run(context), problem.reference());
    Prefill causal(45, 45, 5, 64, 79);
    causal.check(causal.run(context), causal.reference());
    Prefill narrow(13, 50, 2, 20, 80);  // D_I not a multiple of 8
    narrow.ragged(81);
    narrow.check(narrow.run(context), narrow.reference());
}

TEST_CASE("indexer_logits results are bitwise identical for 1, 2 and 3 threads and for any task shape") {
    // 150 rows = 19 row blocks: 1 and 2 threads give each task whole rows, 3 threads split the
    // rows into 2048-token chunks too; 29 rows are chunked for every thread count.
    for (int64_t rows : {150, 29}) {
        CAPTURE(rows);
        Prefill problem(rows, 2100, 7, 64, 5, 1, 2);
        problem.ragged(6);
        Context one(1), two(2), three(3);
        const std::vector<float> reference = problem.run(one);
        problem.check(reference, problem.reference());
        CHECK(same_bits(problem.run(two), reference));
        CHECK(same_bits(problem.run(three), reference));
    }
}

TEST_CASE("indexer_logits decodes every e4m3 key code exactly (vector and tail columns)") {
    // Token s holds code s in column `column`, zeros elsewhere; q is +1 (row 0) or -1 (row 1) in
    // that column. Every product and sum is exact, so logits are ReLU(+-value(s)) exactly.
    Context context(1);
    for (int64_t dim : {8, 11}) {
        for (int64_t column : {int64_t(3), dim - 1}) {
            CAPTURE(dim);
            CAPTURE(column);
            std::vector<uint8_t> q(2 * dim, 0), k(256 * dim, 0);
            q[column] = 0x38;        // +1
            q[dim + column] = 0xb8;  // -1
            for (int64_t code = 0; code < 256; ++code) k[code * dim + column] = static_cast<uint8_t>(code);
            std::vector<float> w(2, 1.0f), scale(256, 1.0f), out(2 * 256);
            std::vector<int32_t> ks(2, 0), ke(2, 256);
            dsa_tensor_t qt = view(q.data(), {2, 1, dim}, DSA_DTYPE_U8), wt = view(w.data(), {2, 1}, DSA_DTYPE_F32),
                         kt = view(k.data(), {256, dim}, DSA_DTYPE_U8), st = view(scale.data(), {256}, DSA_DTYPE_F32),
                         kst = view(ks.data(), {2}, DSA_DTYPE_I32), ket = view(ke.data(), {2}, DSA_DTYPE_I32),
                         lt = view(out.data(), {2, 256}, DSA_DTYPE_F32);
            REQUIRE(dsa_indexer_logits(context, nullptr, &qt, &wt, &kt, &st, &kst, &ket, &lt, nullptr) == DSA_STATUS_SUCCESS);
            for (int code = 0; code < 256; ++code) {
                const float value = dsa::decode_e4m3(static_cast<uint8_t>(code));
                CAPTURE(code);
                if (is_nan_float(value)) {
                    CHECK(is_nan_float(out[code]));
                    CHECK(is_nan_float(out[256 + code]));
                } else {
                    CHECK(out[code] == std::fmax(value, 0.0f));
                    CHECK(out[256 + code] == std::fmax(-value, 0.0f));
                }
            }
        }
    }
}

TEST_CASE("indexer_logits: a NaN key code gives NaN in the rows that see it, nowhere else") {
    Context context(2);
    Prefill problem(9, 40, 3, 64, 11);
    problem.causal(12);             // row t sees tokens [0, 13 + t)
    problem.k[17 * 64 + 5] = 0x7f;  // a NaN code in token 17
    const std::vector<float> got = problem.run(context);
    problem.check(got, problem.reference());
    for (int64_t t = 0; t < 9; ++t)
        for (int64_t s = 0; s < 40; ++s) CHECK(is_nan_float(got[t * 40 + s]) == (s == 17 && t >= 5));
}

TEST_CASE("indexer_logits_paged matches the reference: n_next 1 and 2, shuffled pages, NaN elsewhere") {
    Context context(2);
    for (int64_t next_n : {1, 2}) {
        for (int64_t heads : {3, 64}) {
            for (int64_t dim : {64, 128}) {
                CAPTURE(next_n);
                CAPTURE(heads);
                CAPTURE(dim);
                // max_pages 5 = 320 tokens; max_context 300. Lengths: partial last page, beyond
                // the table and max_context (clamped to 300), zero, shorter than n_next, negative.
                Paged problem(6, next_n, heads, dim, 5, 300, {130, 1000, 0, 1, -4, 64}, 3 + next_n + heads + dim);
                problem.check(problem.run(context), problem.reference());
                // Block-table entries outside the cache inside visible ranges: -inf, never read.
                problem.block_table[0 * 5 + 1] = -1;
                problem.block_table[1 * 5 + 0] = static_cast<int32_t>(problem.num_pages);
                problem.block_table[1 * 5 + 3] = std::numeric_limits<int32_t>::max();
                const std::vector<float> got = problem.run(context);
                problem.check(got, problem.reference());
                CHECK(got[64] == -kInf);  // row 0 (sequence 0), token 64 sits in the bad block
            }
        }
    }
}

TEST_CASE("indexer_logits_paged: strided q, one long sequence, and identical results for 1, 2, 3 threads") {
    Paged problem(2, 2, 5, 64, 40, 40 * 64, {2500, 2100}, 9);
    // Every other [H, D] block of a larger buffer: q strides {2 * 2 * H*D, 2 * H*D, D, 1}.
    std::vector<uint8_t> spread(problem.q.size() * 2, 0x7f);
    for (int64_t r = 0; r < problem.rows(); ++r)
        std::copy_n(problem.q.begin() + r * 5 * 64, 5 * 64, spread.begin() + 2 * r * 5 * 64);
    Context one(1), two(2), three(3);
    std::vector<float> out = problem.poisoned_output();
    dsa_tensor_t qt = strided(spread.data(), {2, 2, 5, 64}, {4 * 5 * 64, 2 * 5 * 64, 64, 1}, DSA_DTYPE_U8),
                 wt = problem.weights_view(), ct = problem.cache_view(), tt = problem.table_view(),
                 lt = problem.lens_view(), ot = problem.logits_view(out);
    REQUIRE(dsa_indexer_logits_paged(one, nullptr, &qt, &wt, &ct, &tt, &lt, &ot, nullptr) == DSA_STATUS_SUCCESS);
    const std::vector<float> reference = problem.run(one);
    CHECK(same_bits(out, reference));
    problem.check(reference, problem.reference());
    CHECK(same_bits(problem.run(two), reference));
    CHECK(same_bits(problem.run(three), reference));
}

// ---- Key-cache writer ---------------------------------------------------------------------

namespace {

// The codes and ue8m0 scales dsa_quantize_fp8 gives each row of x [T, dim] as one group.
void quantize_rows(dsa_context_t* context, dsa_tensor_t x, int64_t tokens, int64_t dim, std::vector<uint8_t>* codes,
                   std::vector<float>* scales) {
    codes->assign(static_cast<size_t>(tokens * dim), 0);
    scales->assign(static_cast<size_t>(tokens), 0.0f);
    dsa_quantize_fp8_params_t params;
    dsa_quantize_fp8_params_init(&params);
    params.group_size = static_cast<int32_t>(dim);
    params.scale_format = DSA_SCALE_FORMAT_UE8M0;
    dsa_tensor_t qt = view(codes->data(), {tokens, dim}, DSA_DTYPE_U8), st = view(scales->data(), {tokens, 1}, DSA_DTYPE_F32);
    REQUIRE(dsa_quantize_fp8(context, &params, &x, &qt, &st, nullptr) == DSA_STATUS_SUCCESS);
}

}  // namespace

TEST_CASE("indexer_cache_write: codes and scales land byte for byte where DSA_SPEC 7.1 says") {
    Context context(2);
    for (dsa_dtype_t dtype : {DSA_DTYPE_F32, DSA_DTYPE_BF16}) {
        for (int64_t dim : {128, 64, 20}) {
            CAPTURE(dtype);
            CAPTURE(dim);
            const int64_t tokens = 37, num_pages = 5, page_bytes = kPage * (dim + 4), page_stride = page_bytes + 40;
            std::vector<float> keys = random_floats(static_cast<size_t>(tokens * (dim + 3)), static_cast<uint32_t>(dim), -4.0f, 4.0f);
            for (size_t i = 0; i < keys.size(); i += 53) keys[i] *= 100.0f;  // outliers set the scale
            std::fill_n(keys.begin() + 4 * (dim + 3), dim, 0.0f);            // token 4: all zero (the floor)
            const std::vector<uint16_t> keys16 = to_bf16(keys);
            void* data = dtype == DSA_DTYPE_F32 ? static_cast<void*>(keys.data()) : const_cast<uint16_t*>(keys16.data());
            dsa_tensor_t kt = strided(data, {tokens, dim}, {dim + 3, 1}, dtype);  // padded rows

            std::vector<int64_t> slots(static_cast<size_t>(tokens));
            std::vector<int64_t> order(static_cast<size_t>(num_pages * kPage - 2));  // distinct slots but the ends
            std::iota(order.begin(), order.end(), 1);
            std::mt19937 engine(static_cast<uint32_t>(dim + dtype));
            std::shuffle(order.begin(), order.end(), engine);
            std::copy_n(order.begin(), tokens, slots.begin());
            slots[3] = -1;                       // padding token
            slots[8] = -1000;                    // padding token
            slots[11] = num_pages * kPage;       // past the cache: skipped
            slots[12] = std::numeric_limits<int64_t>::max();
            slots[13] = 0;                       // the first slot
            slots[14] = num_pages * kPage - 1;   // the last slot
            dsa_tensor_t st = view(slots.data(), {tokens}, DSA_DTYPE_I64);

            std::vector<uint8_t> cache(static_cast<size_t>(num_pages * page_stride), 0x5a), expected = cache;
            dsa_tensor_t ct = strided(cache.data(), {num_pages, page_bytes}, {page_stride, 1}, DSA_DTYPE_U8);
            REQUIRE_MESSAGE(dsa_indexer_cache_write(context, &kt, &st, &ct, nullptr) == DSA_STATUS_SUCCESS,
                            dsa_last_error_message());

            // Field by field: each stored token's codes and scale; every other byte untouched.
            std::vector<uint8_t> codes;
            std::vector<float> scales;
            quantize_rows(context, kt, tokens, dim, &codes, &scales);
            std::vector<bool> written(cache.size(), false);
            for (int64_t t = 0; t < tokens; ++t) {
                const int64_t slot = slots[t];
                if (slot < 0 || slot >= num_pages * kPage) continue;
                const int64_t base = (slot / kPage) * page_stride, row = slot % kPage;
                for (int64_t d = 0; d < dim; ++d) {
                    CHECK(cache[base + row * dim + d] == codes[t * dim + d]);
                    written[base + row * dim + d] = true;
                }
                float stored;
                std::memcpy(&stored, cache.data() + base + kPage * dim + 4 * row, 4);
                CHECK(stored == scales[t]);
                int exponent;
                CHECK(std::frexp(stored, &exponent) == 0.5f);  // ue8m0: a power of two
                for (int i = 0; i < 4; ++i) written[base + kPage * dim + 4 * row + i] = true;
            }
            CHECK(scales[4] == std::ldexp(1.0f, -22));  // 2^ceil(log2(1e-4 / 448))
            int64_t stray = 0;
            for (size_t i = 0; i < cache.size(); ++i) stray += !written[i] && cache[i] != 0x5a;
            CHECK(stray == 0);

            // The independent byte-level reference agrees on every byte.
            dsa::IndexerCacheWriteProblem p;
            p.k = core_view(kt);
            p.slot_mapping = core_view(st);
            p.k_cache = core_view(strided(expected.data(), {num_pages, page_bytes}, {page_stride, 1}, DSA_DTYPE_U8));
            p.tokens = tokens;
            p.dim = dim;
            p.num_pages = num_pages;
            dsa::reference::indexer_cache_write(p);
            CHECK(cache == expected);
        }
    }
}

TEST_CASE("indexer_cache_write: a slot named twice keeps the last token, for any thread count") {
    const int64_t tokens = 300, dim = 64;
    std::vector<float> keys = random_floats(static_cast<size_t>(tokens * dim), 21);
    std::vector<int64_t> slots(static_cast<size_t>(tokens));
    for (int64_t t = 0; t < tokens; ++t) slots[t] = t % 70;  // tokens t, t+70, ... share a slot
    dsa_tensor_t kt = view(keys.data(), {tokens, dim}, DSA_DTYPE_F32), st = view(slots.data(), {tokens}, DSA_DTYPE_I64);
    std::vector<uint8_t> results[3];
    for (int threads : {1, 2, 3}) {
        Context context(threads);
        std::vector<uint8_t>& cache = results[threads - 1];
        cache.assign(static_cast<size_t>(2 * kPage * (dim + 4)), 0);
        dsa_tensor_t ct = view(cache.data(), {2, kPage * (dim + 4)}, DSA_DTYPE_U8);
        REQUIRE(dsa_indexer_cache_write(context, &kt, &st, &ct, nullptr) == DSA_STATUS_SUCCESS);
    }
    CHECK(results[0] == results[1]);
    CHECK(results[0] == results[2]);
    Context context(1);
    std::vector<uint8_t> codes;
    std::vector<float> scales;
    quantize_rows(context, view(keys.data(), {tokens, dim}, DSA_DTYPE_F32), tokens, dim, &codes, &scales);
    for (int64_t slot = 0; slot < 70; ++slot) {
        const int64_t last = slot + 70 * ((tokens - 1 - slot) / 70);
        const uint8_t* page = results[0].data() + (slot / kPage) * kPage * (dim + 4);
        CHECK(std::equal(codes.begin() + last * dim, codes.begin() + (last + 1) * dim, page + (slot % kPage) * dim));
    }
}

TEST_CASE("cache writer + paged decode equals the prefill logits of the same keys, bit for bit") {
    Context context(2);
    const int64_t batch = 3, next_n = 2, heads = 64, dim = 128, max_pages = 4, num_pages = 16, max_context = 250;
    const std::vector<int32_t> lengths = {150, 77, 256};  // the last is clamped to max_context
    std::vector<uint8_t> q = random_codes(static_cast<size_t>(batch * next_n * heads * dim), 31);
    std::vector<float> weights = random_floats(static_cast<size_t>(batch * next_n * heads), 32);
    std::vector<int32_t> table(static_cast<size_t>(batch * max_pages));
    std::iota(table.begin(), table.end(), 0);
    std::mt19937 engine(33);
    std::shuffle(table.begin(), table.end(), engine);
    std::vector<uint8_t> cache(static_cast<size_t>(num_pages * kPage * (dim + 4)), 0xff);
    dsa_tensor_t ct = view(cache.data(), {num_pages, kPage * (dim + 4)}, DSA_DTYPE_U8);
    std::vector<std::vector<float>> keys(batch);
    for (int64_t b = 0; b < batch; ++b) {
        const int64_t length = std::min<int64_t>(lengths[b], max_context);
        keys[b] = random_floats(static_cast<size_t>(length * dim), static_cast<uint32_t>(40 + b), -3.0f, 3.0f);
        std::vector<int64_t> slots(static_cast<size_t>(length));
        for (int64_t s = 0; s < length; ++s) slots[s] = table[b * max_pages + s / kPage] * kPage + s % kPage;
        dsa_tensor_t kt = view(keys[b].data(), {length, dim}, DSA_DTYPE_F32), st = view(slots.data(), {length}, DSA_DTYPE_I64);
        REQUIRE(dsa_indexer_cache_write(context, &kt, &st, &ct, nullptr) == DSA_STATUS_SUCCESS);
    }
    std::vector<float> paged(static_cast<size_t>(batch * next_n * max_context), std::numeric_limits<float>::quiet_NaN());
    dsa_tensor_t qt = view(q.data(), {batch, next_n, heads, dim}, DSA_DTYPE_FP8_E4M3),
                 wt = view(weights.data(), {batch * next_n, heads}, DSA_DTYPE_F32),
                 tt = view(table.data(), {batch, max_pages}, DSA_DTYPE_I32),
                 lt = view(const_cast<int32_t*>(lengths.data()), {batch}, DSA_DTYPE_I32),
                 ot = view(paged.data(), {batch * next_n, max_context}, DSA_DTYPE_F32);
    REQUIRE(dsa_indexer_logits_paged(context, nullptr, &qt, &wt, &ct, &tt, &lt, &ot, nullptr) == DSA_STATUS_SUCCESS);

    for (int64_t b = 0; b < batch; ++b) {
        const int64_t length = std::min<int64_t>(lengths[b], max_context);
        std::vector<uint8_t> codes;
        std::vector<float> scales;
        quantize_rows(context, view(keys[b].data(), {length, dim}, DSA_DTYPE_F32), length, dim, &codes, &scales);
        std::vector<int32_t> ks(next_n, 0), ke(next_n);
        for (int64_t j = 0; j < next_n; ++j) ke[j] = static_cast<int32_t>(length - next_n + j + 1);
        std::vector<float> prefill(static_cast<size_t>(next_n * length));
        dsa_tensor_t pq = view(q.data() + b * next_n * heads * dim, {next_n, heads, dim}, DSA_DTYPE_U8),
                     pw = view(weights.data() + b * next_n * heads, {next_n, heads}, DSA_DTYPE_F32),
                     pk = view(codes.data(), {length, dim}, DSA_DTYPE_FP8_E4M3),
                     ps = view(scales.data(), {length}, DSA_DTYPE_F32), pks = view(ks.data(), {next_n}, DSA_DTYPE_I32),
                     pke = view(ke.data(), {next_n}, DSA_DTYPE_I32),
                     pl = view(prefill.data(), {next_n, length}, DSA_DTYPE_F32);
        REQUIRE(dsa_indexer_logits(context, nullptr, &pq, &pw, &pk, &ps, &pks, &pke, &pl, nullptr) == DSA_STATUS_SUCCESS);
        for (int64_t j = 0; j < next_n; ++j) {
            const float* row = paged.data() + (b * next_n + j) * max_context;
            CHECK(std::memcmp(row, prefill.data() + j * length, static_cast<size_t>(length) * sizeof(float)) == 0);
            CHECK(std::all_of(row + length, row + max_context, [](float v) { return v == -kInf; }));
            CHECK(std::isfinite(row[ke[j] - 1]));
        }
    }
}

// ---- Bad inputs ---------------------------------------------------------------------------

TEST_CASE("indexer_logits rejects bad input with a status naming the argument, output untouched") {
    Context context(1);
    Prefill p(4, 9, 2, 8, 3);
    std::vector<float> out = p.poisoned_output();
    const std::vector<float> before = out;
    dsa_tensor_t q = p.q_view(), w = p.weights_view(), k = p.k_view(), s = p.k_scale_view(), ks = p.ks_view(),
                 ke = p.ke_view(), l = p.logits_view(out);
    auto call = [&](const dsa_tensor_t* q_, const dsa_tensor_t* w_, const dsa_tensor_t* k_, const dsa_tensor_t* s_,
                    const dsa_tensor_t* ks_, const dsa_tensor_t* ke_, const dsa_tensor_t* l_) {
        return dsa_indexer_logits(context, nullptr, q_, w_, k_, s_, ks_, ke_, l_, nullptr);
    };
    REQUIRE(call(&q, &w, &k, &s, &ks, &ke, &l) == DSA_STATUS_SUCCESS);
    out = before;

    CHECK_FAILS_WITH(dsa_indexer_logits(nullptr, nullptr, &q, &w, &k, &s, &ks, &ke, &l, nullptr), DSA_STATUS_INVALID_ARGUMENT, "context");
    CHECK_FAILS_WITH(call(nullptr, &w, &k, &s, &ks, &ke, &l), DSA_STATUS_INVALID_ARGUMENT, "q");
    CHECK_FAILS_WITH(call(&q, nullptr, &k, &s, &ks, &ke, &l), DSA_STATUS_INVALID_ARGUMENT, "weights");
    CHECK_FAILS_WITH(call(&q, &w, nullptr, &s, &ks, &ke, &l), DSA_STATUS_INVALID_ARGUMENT, "k");
    CHECK_FAILS_WITH(call(&q, &w, &k, nullptr, &ks, &ke, &l), DSA_STATUS_INVALID_ARGUMENT, "k_scale");
    CHECK_FAILS_WITH(call(&q, &w, &k, &s, nullptr, &ke, &l), DSA_STATUS_INVALID_ARGUMENT, "ks");
    CHECK_FAILS_WITH(call(&q, &w, &k, &s, &ks, nullptr, &l), DSA_STATUS_INVALID_ARGUMENT, "ke");
    CHECK_FAILS_WITH(call(&q, &w, &k, &s, &ks, &ke, nullptr), DSA_STATUS_INVALID_ARGUMENT, "logits");

    dsa_tensor_t bad = q;
    bad.dtype = DSA_DTYPE_F32;
    CHECK_FAILS_WITH(call(&bad, &w, &k, &s, &ks, &ke, &l), DSA_STATUS_DTYPE_MISMATCH, "q");
    bad = q;
    bad.ndim = 2;
    CHECK_FAILS_WITH(call(&bad, &w, &k, &s, &ks, &ke, &l), DSA_STATUS_SHAPE_MISMATCH, "q");
    bad = q;
    bad.shape[1] = 0;
    CHECK_FAILS_WITH(call(&bad, &w, &k, &s, &ks, &ke, &l), DSA_STATUS_SHAPE_MISMATCH, "q");
    bad = q;
    bad.strides[2] = 2;  // the last dimension spread out
    bad.strides[1] = 16;
    bad.strides[0] = 40;
    CHECK_FAILS_WITH(call(&bad, &w, &k, &s, &ks, &ke, &l), DSA_STATUS_LAYOUT_UNSUPPORTED, "q");
    bad = q;
    bad.strides[1] = 9;  // heads not adjacent
    bad.strides[0] = 20;
    CHECK_FAILS_WITH(call(&bad, &w, &k, &s, &ks, &ke, &l), DSA_STATUS_LAYOUT_UNSUPPORTED, "q");
    bad = w;
    bad.dtype = DSA_DTYPE_BF16;
    CHECK_FAILS_WITH(call(&q, &bad, &k, &s, &ks, &ke, &l), DSA_STATUS_DTYPE_MISMATCH, "weights");
    bad = w;
    bad.shape[1] = 3;
    CHECK_FAILS_WITH(call(&q, &bad, &k, &s, &ks, &ke, &l), DSA_STATUS_SHAPE_MISMATCH, "weights");
    bad = k;
    bad.shape[1] = 7;
    CHECK_FAILS_WITH(call(&q, &w, &bad, &s, &ks, &ke, &l), DSA_STATUS_SHAPE_MISMATCH, "k");
    bad = k;
    bad.dtype = DSA_DTYPE_I32;
    CHECK_FAILS_WITH(call(&q, &w, &bad, &s, &ks, &ke, &l), DSA_STATUS_DTYPE_MISMATCH, "k");
    bad = k;
    bad.strides[1] = 0;
    CHECK_FAILS_WITH(call(&q, &w, &bad, &s, &ks, &ke, &l), DSA_STATUS_LAYOUT_UNSUPPORTED, "k");
    bad = s;
    bad.shape[0] = 8;
    CHECK_FAILS_WITH(call(&q, &w, &k, &bad, &ks, &ke, &l), DSA_STATUS_SHAPE_MISMATCH, "k_scale");
    bad = ks;
    bad.dtype = DSA_DTYPE_I64;
    CHECK_FAILS_WITH(call(&q, &w, &k, &s, &bad, &ke, &l), DSA_STATUS_DTYPE_MISMATCH, "ks");
    bad = ke;
    bad.shape[0] = 5;
    CHECK_FAILS_WITH(call(&q, &w, &k, &s, &ks, &bad, &l), DSA_STATUS_SHAPE_MISMATCH, "ke");
    bad = l;
    bad.shape[1] = 10;
    CHECK_FAILS_WITH(call(&q, &w, &k, &s, &ks, &ke, &bad), DSA_STATUS_SHAPE_MISMATCH, "logits");
    bad = l;
    bad.dtype = DSA_DTYPE_F16;
    CHECK_FAILS_WITH(call(&q, &w, &k, &s, &ks, &ke, &bad), DSA_STATUS_DTYPE_MISMATCH, "logits");
    bad = l;
    bad.strides[0] = 4;  // rows overlap
    CHECK_FAILS_WITH(call(&q, &w, &k, &s, &ks, &ke, &bad), DSA_STATUS_LAYOUT_UNSUPPORTED, "logits");
    bad = l;
    bad.strides[1] = 2;
    bad.strides[0] = 20;
    CHECK_FAILS_WITH(call(&q, &w, &k, &s, &ks, &ke, &bad), DSA_STATUS_LAYOUT_UNSUPPORTED, "logits");
    std::vector<float> shared(64);
    dsa_tensor_t shared_weights = view(shared.data(), {4, 2}, DSA_DTYPE_F32), overlapping = view(shared.data() + 4, {4, 9}, DSA_DTYPE_F32);
    CHECK_FAILS_WITH(call(&q, &shared_weights, &k, &s, &ks, &ke, &overlapping), DSA_STATUS_LAYOUT_UNSUPPORTED, "logits");
    bad = k;
    bad.device_type = DSA_DEVICE_CUDA;  // UNSUPPORTED in a CPU-only build, DEVICE_MISMATCH otherwise
    CHECK(call(&q, &w, &bad, &s, &ks, &ke, &l) != DSA_STATUS_SUCCESS);
    CHECK(std::string(dsa_last_error_message()).find("k: ") == 0);
    bad.device_type = 3;
    CHECK_FAILS_WITH(call(&q, &w, &bad, &s, &ks, &ke, &l), DSA_STATUS_DEVICE_MISMATCH, "k");
    bad = k;
    bad.data = nullptr;
    CHECK_FAILS_WITH(call(&q, &w, &bad, &s, &ks, &ke, &l), DSA_STATUS_INVALID_ARGUMENT, "k");

    dsa_indexer_params_t params;
    REQUIRE(dsa_indexer_params_init(&params) == DSA_STATUS_SUCCESS);
    CHECK(params.struct_size == sizeof params);
    params.struct_size = 2;
    CHECK_FAILS_WITH(dsa_indexer_logits(context, &params, &q, &w, &k, &s, &ks, &ke, &l, nullptr), DSA_STATUS_INVALID_ARGUMENT, "struct_size");
    struct {
        dsa_indexer_params_t known;
        int32_t future;
    } newer{};
    dsa_indexer_params_init(&newer.known);
    newer.known.struct_size = sizeof newer;
    newer.future = 1;
    CHECK_FAILS_WITH(dsa_indexer_logits(context, &newer.known, &q, &w, &k, &s, &ks, &ke, &l, nullptr), DSA_STATUS_UNSUPPORTED, "params");
    CHECK_FAILS_WITH(dsa_indexer_params_init(nullptr), DSA_STATUS_INVALID_ARGUMENT, "params");
    CHECK(same_bits(out, before));
    newer.future = 0;
    CHECK(dsa_indexer_logits(context, &newer.known, &q, &w, &k, &s, &ks, &ke, &l, nullptr) == DSA_STATUS_SUCCESS);
}

TEST_CASE("indexer_logits_paged and indexer_cache_write reject bad input, naming the argument") {
    Context context(1);
    Paged p(2, 2, 3, 8, 2, 100, {70, 5}, 4);
    std::vector<float> out = p.poisoned_output();
    const std::vector<float> before = out;
    dsa_tensor_t q = p.q_view(), w = p.weights_view(), c = p.cache_view(), t = p.table_view(), n = p.lens_view(),
                 l = p.logits_view(out);
    auto call = [&](const dsa_tensor_t* q_, const dsa_tensor_t* w_, const dsa_tensor_t* c_, const dsa_tensor_t* t_,
                    const dsa_tensor_t* n_, const dsa_tensor_t* l_) {
        return dsa_indexer_logits_paged(context, nullptr, q_, w_, c_, t_, n_, l_, nullptr);
    };
    CHECK_FAILS_WITH(call(nullptr, &w, &c, &t, &n, &l), DSA_STATUS_INVALID_ARGUMENT, "q");
    CHECK_FAILS_WITH(call(&q, &w, &c, &t, &n, nullptr), DSA_STATUS_INVALID_ARGUMENT, "logits");
    dsa_tensor_t bad = q;
    bad.ndim = 3;
    CHECK_FAILS_WITH(call(&bad, &w, &c, &t, &n, &l), DSA_STATUS_SHAPE_MISMATCH, "q");
    bad = q;
    bad.shape[1] = 0;  // n_next = 0
    CHECK_FAILS_WITH(call(&bad, &w, &c, &t, &n, &l), DSA_STATUS_SHAPE_MISMATCH, "q");
    bad = w;
    bad.shape[0] = 2;  // B rows instead of B * n_next
    CHECK_FAILS_WITH(call(&q, &bad, &c, &t, &n, &l), DSA_STATUS_SHAPE_MISMATCH, "weights");
    bad = c;
    bad.shape[1] = kPage * 8;  // no room for the scales
    CHECK_FAILS_WITH(call(&q, &w, &bad, &t, &n, &l), DSA_STATUS_SHAPE_MISMATCH, "k_cache");
    bad = c;
    bad.dtype = DSA_DTYPE_FP8_E4M3;
    CHECK_FAILS_WITH(call(&q, &w, &bad, &t, &n, &l), DSA_STATUS_DTYPE_MISMATCH, "k_cache");
    bad = t;
    bad.shape[0] = 3;
    CHECK_FAILS_WITH(call(&q, &w, &c, &bad, &n, &l), DSA_STATUS_SHAPE_MISMATCH, "block_table");
    bad = t;
    bad.dtype = DSA_DTYPE_I64;
    CHECK_FAILS_WITH(call(&q, &w, &c, &bad, &n, &l), DSA_STATUS_DTYPE_MISMATCH, "block_table");
    bad = n;
    bad.ndim = 2;
    bad.shape[1] = 1;
    CHECK_FAILS_WITH(call(&q, &w, &c, &t, &bad, &l), DSA_STATUS_SHAPE_MISMATCH, "context_lens");
    bad = l;
    bad.shape[0] = 2;
    CHECK_FAILS_WITH(call(&q, &w, &c, &t, &n, &bad), DSA_STATUS_SHAPE_MISMATCH, "logits");
    bad = l;
    bad.data = p.cache.data();  // over the cache
    CHECK_FAILS_WITH(call(&q, &w, &c, &t, &n, &bad), DSA_STATUS_LAYOUT_UNSUPPORTED, "logits");
    CHECK(same_bits(out, before));

    // The writer.
    std::vector<float> keys(3 * 8, 1.0f);
    std::vector<int64_t> slots = {0, 1, 2};
    dsa_tensor_t k = view(keys.data(), {3, 8}, DSA_DTYPE_F32), s = view(slots.data(), {3}, DSA_DTYPE_I64);
    const std::vector<uint8_t> cache_before = p.cache;
    CHECK_FAILS_WITH(dsa_indexer_cache_write(nullptr, &k, &s, &c, nullptr), DSA_STATUS_INVALID_ARGUMENT, "context");
    CHECK_FAILS_WITH(dsa_indexer_cache_write(context, nullptr, &s, &c, nullptr), DSA_STATUS_INVALID_ARGUMENT, "k");
    CHECK_FAILS_WITH(dsa_indexer_cache_write(context, &k, nullptr, &c, nullptr), DSA_STATUS_INVALID_ARGUMENT, "slot_mapping");
    CHECK_FAILS_WITH(dsa_indexer_cache_write(context, &k, &s, nullptr, nullptr), DSA_STATUS_INVALID_ARGUMENT, "k_cache");
    bad = k;
    bad.dtype = DSA_DTYPE_F16;
    CHECK_FAILS_WITH(dsa_indexer_cache_write(context, &bad, &s, &c, nullptr), DSA_STATUS_DTYPE_MISMATCH, "k");
    bad = k;
    bad.shape[1] = 4;
    CHECK_FAILS_WITH(dsa_indexer_cache_write(context, &bad, &s, &c, nullptr), DSA_STATUS_SHAPE_MISMATCH, "k_cache");
    bad = s;
    bad.dtype = DSA_DTYPE_I32;
    CHECK_FAILS_WITH(dsa_indexer_cache_write(context, &k, &bad, &c, nullptr), DSA_STATUS_DTYPE_MISMATCH, "slot_mapping");
    bad = s;
    bad.shape[0] = 2;
    CHECK_FAILS_WITH(dsa_indexer_cache_write(context, &k, &bad, &c, nullptr), DSA_STATUS_SHAPE_MISMATCH, "slot_mapping");
    bad = c;
    bad.strides[0] = 10;  // pages overlap
    CHECK_FAILS_WITH(dsa_indexer_cache_write(context, &k, &s, &bad, nullptr), DSA_STATUS_LAYOUT_UNSUPPORTED, "k_cache");
    dsa_tensor_t inside = view(p.cache.data(), {3, 8}, DSA_DTYPE_F32);  // k inside the cache
    CHECK_FAILS_WITH(dsa_indexer_cache_write(context, &inside, &s, &c, nullptr), DSA_STATUS_LAYOUT_UNSUPPORTED, "k_cache");
    CHECK(p.cache == cache_before);
}

TEST_CASE("empty problems are a successful no-op") {
    Context context(1);
    std::vector<uint8_t> q(2 * 8);
    std::vector<float> w(2), out(2, kPadding);
    std::vector<int32_t> ks(2), ke(2, 5);
    dsa_tensor_t qt = view(q.data(), {2, 1, 8}, DSA_DTYPE_U8), wt = view(w.data(), {2, 1}, DSA_DTYPE_F32),
                 kt = view(nullptr, {0, 8}, DSA_DTYPE_U8), st = view(nullptr, {0}, DSA_DTYPE_F32),
                 kst = view(ks.data(), {2}, DSA_DTYPE_I32), ket = view(ke.data(), {2}, DSA_DTYPE_I32),
                 lt = strided(out.data(), {2, 0}, {1, 1}, DSA_DTYPE_F32);
    CHECK(dsa_indexer_logits(context, nullptr, &qt, &wt, &kt, &st, &kst, &ket, &lt, nullptr) == DSA_STATUS_SUCCESS);
    CHECK(out[0] == kPadding);
    dsa_tensor_t k = view(nullptr, {0, 8}, DSA_DTYPE_F32), slots = view(nullptr, {0}, DSA_DTYPE_I64),
                 cache = view(nullptr, {0, kPage * 12}, DSA_DTYPE_U8);
    CHECK(dsa_indexer_cache_write(context, &k, &slots, &cache, nullptr) == DSA_STATUS_SUCCESS);
}
