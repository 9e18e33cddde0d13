// dsa_topk on the CPU against the full-sort reference, plus hand-worked cases for the tie rule,
// NaN / -inf, hybrid sink / local selection, output orders and block-table translation.
#include <algorithm>
#include <cmath>
#include <limits>

#include "../core/ops/topk.hpp"
#include "support.hpp"

using namespace dsa_test;

namespace {

constexpr int32_t kPoison = 0x7eadbeef;
const float kNan = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

// Score distributions that stress different parts of the selection.
enum class Distribution { uniform, few_levels, low_bits, relu_plateau, count };

std::vector<float> random_scores(int64_t count, Distribution distribution, uint32_t seed) {
    std::mt19937 engine(seed);
    std::vector<float> values = random_floats(static_cast<size_t>(count), seed + 1000);
    for (float& v : values) {
        switch (distribution) {
            case Distribution::uniform: break;
            case Distribution::few_levels: v = std::floor(v * 4.0f); break;  // 8 values: heavy ties
            case Distribution::low_bits:  // keys equal but for the last two radix digits
                v = dsa::bits_float(dsa::float_bits(1.0f) + static_cast<uint32_t>(engine() % 3000));
                break;
            case Distribution::relu_plateau: v = engine() % 20 == 0 ? std::fabs(v) : 0.0f; break;
            case Distribution::count: break;
        }
    }
    return values;
}

// Runs dsa_topk into poisoned indices and the reference, and compares them: exactly for the
// sorted orders, as multisets per row for the unspecified one (then the -1 padding must still be
// at the end when there is no block table).
void check_against_reference(dsa_context_t* context, const dsa_topk_params_t& params, const dsa_tensor_t& scores,
                             const dsa_tensor_t* row_starts, const dsa_tensor_t* row_ends,
                             const dsa_tensor_t* block_table, int64_t indices_row_stride = 0) {
    const int64_t rows = scores.shape[0], k = params.k;
    const int64_t stride = indices_row_stride > 0 ? indices_row_stride : k;
    std::vector<int32_t> got(static_cast<size_t>(rows * stride), kPoison), want(static_cast<size_t>(rows * k), kPoison);
    dsa_tensor_t got_view = strided(got.data(), {rows, k}, {stride, 1}, DSA_DTYPE_I32);
    REQUIRE_MESSAGE(dsa_topk(context, &params, &scores, row_starts, row_ends, block_table, &got_view, nullptr) ==
                        DSA_STATUS_SUCCESS,
                    dsa_last_error_message());

    dsa::TopkProblem problem;
    problem.scores = core_view(scores);
    problem.has_row_starts = row_starts != nullptr;
    problem.has_row_ends = row_ends != nullptr;
    problem.has_block_table = block_table != nullptr;
    if (row_starts) problem.row_starts = core_view(*row_starts);
    if (row_ends) problem.row_ends = core_view(*row_ends);
    if (block_table) {
        problem.block_table = core_view(*block_table);
        problem.block_rows = block_table->shape[0];
        problem.max_pages = block_table->shape[1];
    }
    problem.indices = core_view(view(want.data(), {rows, k}, DSA_DTYPE_I32));
    problem.config.k = k;
    problem.config.order = static_cast<dsa::TopkOrder>(params.order);
    problem.config.n_sink = params.n_sink;
    problem.config.n_local = params.n_local;
    problem.config.page_size = params.page_size;
    problem.rows = rows;
    problem.n = scores.shape[1];
    dsa::reference::topk(problem);

    int64_t mismatched_rows = 0;
    for (int64_t r = 0; r < rows; ++r) {
        std::vector<int32_t> row_got(got.begin() + r * stride, got.begin() + r * stride + k);
        std::vector<int32_t> row_want(want.begin() + r * k, want.begin() + (r + 1) * k);
        if (params.order == DSA_TOPK_ORDER_UNSPECIFIED) {
            if (block_table == nullptr) {
                const auto first_pad = std::find(row_got.begin(), row_got.end(), -1);
                CHECK(std::all_of(first_pad, row_got.end(), [](int32_t v) { return v == -1; }));
            }
            std::sort(row_got.begin(), row_got.end());
            std::sort(row_want.begin(), row_want.end());
        }
        if (row_got != row_want && ++mismatched_rows <= 3) {
            CAPTURE(r);
            CHECK(row_got == row_want);
        }
    }
    CHECK(mismatched_rows == 0);
    // Row padding between strided rows is never written.
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = k; i < stride; ++i) CHECK(got[r * stride + i] == kPoison);
}

// Runs dsa_topk on one row and returns its k outputs.
std::vector<int32_t> topk_row(const std::vector<float>& scores, const dsa_topk_params_t& params,
                              int num_threads = 1) {
    Context context(num_threads);
    std::vector<float> copy = scores;
    std::vector<int32_t> out(static_cast<size_t>(params.k), kPoison);
    dsa_tensor_t scores_view = view(copy.data(), {1, static_cast<int64_t>(copy.size())}, DSA_DTYPE_F32);
    dsa_tensor_t out_view = view(out.data(), {1, params.k}, DSA_DTYPE_I32);
    REQUIRE_MESSAGE(dsa_topk(context, &params, &scores_view, nullptr, nullptr, nullptr, &out_view, nullptr) ==
                        DSA_STATUS_SUCCESS,
                    dsa_last_error_message());
    return out;
}

}  // namespace

TEST_CASE("topk matches the reference on random rows, odd sizes, every k and order, with and without windows") {
    Context context(2);
    const int64_t lengths[] = {1, 7, 1000, 4099, 70000};
    const int32_t ks[] = {1, 5, 512, 2048};
    const dsa_topk_order_t orders[] = {DSA_TOPK_ORDER_UNSPECIFIED, DSA_TOPK_ORDER_SCORE, DSA_TOPK_ORDER_INDEX};
    uint32_t seed = 1;
    for (int64_t n : lengths) {
        const int64_t rows = n >= 70000 ? 4 : 8;
        // Each row its own distribution.
        std::vector<float> scores;
        for (int64_t r = 0; r < rows; ++r) {
            const auto part = random_scores(n, static_cast<Distribution>(r % int(Distribution::count)), seed++);
            scores.insert(scores.end(), part.begin(), part.end());
        }
        dsa_tensor_t scores_view = view(scores.data(), {rows, n}, DSA_DTYPE_F32);
        // Ragged windows: start > end, empty, out of range on both sides (clamped), full.
        std::mt19937 engine(seed++);
        std::vector<int32_t> starts(rows), ends(rows);
        for (int64_t r = 0; r < rows; ++r) {
            starts[r] = static_cast<int32_t>(engine() % (n + 20)) - 10;
            ends[r] = static_cast<int32_t>(engine() % (n + 20)) - 10;
        }
        starts[0] = -5, ends[0] = static_cast<int32_t>(n) + 5;
        starts[1] = ends[1] = static_cast<int32_t>(n / 2);
        dsa_tensor_t starts_view = view(starts.data(), {rows}, DSA_DTYPE_I32);
        dsa_tensor_t ends_view = view(ends.data(), {rows}, DSA_DTYPE_I32);
        for (int32_t k : ks)
            for (dsa_topk_order_t order : orders) {
                CAPTURE(n);
                CAPTURE(k);
                CAPTURE(order);
                const dsa_topk_params_t params = topk_params(k, order);
                check_against_reference(context, params, scores_view, nullptr, nullptr, nullptr);
                check_against_reference(context, params, scores_view, &starts_view, &ends_view, nullptr);
            }
    }
}

TEST_CASE("topk only row_starts or only row_ends; strided score and index rows") {
    Context context(3);
    const int64_t rows = 5, n = 6000, row_stride = 6100;
    std::vector<float> storage = random_scores(rows * row_stride, Distribution::few_levels, 77);
    dsa_tensor_t scores_view = strided(storage.data(), {rows, n}, {row_stride, 1}, DSA_DTYPE_F32);
    std::vector<int32_t> bounds = {0, 100, 5000, 6000, 7000};
    dsa_tensor_t bounds_view = view(bounds.data(), {rows}, DSA_DTYPE_I32);
    for (dsa_topk_order_t order : {DSA_TOPK_ORDER_UNSPECIFIED, DSA_TOPK_ORDER_SCORE}) {
        const dsa_topk_params_t params = topk_params(700, order, 3, 9);
        check_against_reference(context, params, scores_view, &bounds_view, nullptr, nullptr, 703);
        check_against_reference(context, params, scores_view, nullptr, &bounds_view, nullptr, 703);
    }
    // Window bounds with a stride (every other element of a buffer).
    std::vector<int32_t> spaced = {10, -1, 900, -1, 2000, -1, 50, -1, 5999, -1};
    dsa_tensor_t spaced_view = strided(spaced.data(), {rows}, {2}, DSA_DTYPE_I32);
    check_against_reference(context, topk_params(64, DSA_TOPK_ORDER_INDEX), scores_view, &spaced_view, nullptr, nullptr);
}

TEST_CASE("topk ties: equal scores go to the smallest indices; -0.0 ties with +0.0") {
    const dsa_topk_params_t params = topk_params(3, DSA_TOPK_ORDER_SCORE);
    CHECK(topk_row({1.0f, 2.0f, 1.0f, 2.0f, 1.0f}, params) == std::vector<int32_t>{1, 3, 0});
    CHECK(topk_row({-0.0f, 0.0f, -0.0f, 0.0f, -1.0f}, params) == std::vector<int32_t>{0, 1, 2});
    // The same on a long row (radix path): a plateau of zeros behind 10 positive scores.
    std::vector<float> plateau(9000, 0.0f);
    for (int i = 0; i < 10; ++i) plateau[500 * i + 7] = 1.0f + static_cast<float>(i);
    plateau[3] = -0.0f;
    std::vector<int32_t> got = topk_row(plateau, topk_params(14, DSA_TOPK_ORDER_INDEX));
    CHECK(got == std::vector<int32_t>{0, 1, 2, 3, 7, 507, 1007, 1507, 2007, 2507, 3007, 3507, 4007, 4507});
}

TEST_CASE("topk on tie-heavy rows is identical across runs and thread counts and equals the reference") {
    const int64_t rows = 37;
    for (int64_t n : {3000, 9001}) {  // the small-window and the radix paths
        std::vector<float> scores = random_scores(rows * n, Distribution::relu_plateau, static_cast<uint32_t>(n));
        dsa_tensor_t scores_view = view(scores.data(), {rows, n}, DSA_DTYPE_F32);
        const dsa_topk_params_t params = topk_params(512);
        std::vector<int32_t> first;
        for (int threads : {1, 2, 3, 3}) {
            Context context(threads);
            std::vector<int32_t> out(rows * 512, kPoison);
            dsa_tensor_t out_view = view(out.data(), {rows, 512}, DSA_DTYPE_I32);
            REQUIRE(dsa_topk(context, &params, &scores_view, nullptr, nullptr, nullptr, &out_view, nullptr) ==
                    DSA_STATUS_SUCCESS);
            if (first.empty()) {
                first = out;
                check_against_reference(context, params, scores_view, nullptr, nullptr, nullptr);
            }
            CHECK(out == first);  // bitwise, order included
        }
    }
}

TEST_CASE("topk never selects NaN; -inf is selected last; all-NaN rows give -1") {
    CHECK(topk_row({kNan, -kInf, 3.0f, kNan, -kInf}, topk_params(4, DSA_TOPK_ORDER_SCORE)) ==
          std::vector<int32_t>{2, 1, 4, -1});
    CHECK(topk_row({kNan, kNan, kNan}, topk_params(2, DSA_TOPK_ORDER_INDEX)) == std::vector<int32_t>{-1, -1});
    CHECK(topk_row({kInf, -kInf, kNan, 0.0f}, topk_params(2, DSA_TOPK_ORDER_SCORE)) == std::vector<int32_t>{0, 3});
    // Long rows against the reference: NaN-heavy, -inf-heavy, all NaN, negative NaN payloads.
    Context context(2);
    const int64_t rows = 4, n = 8000;
    std::vector<float> scores = random_scores(rows * n, Distribution::uniform, 5);
    for (int64_t j = 0; j < n; ++j) {
        if (j % 3 != 0) scores[j] = kNan;
        if (j % 2 == 0) scores[n + j] = -kInf;
        scores[2 * n + j] = kNan;
        if (j % 5 != 0) scores[3 * n + j] = -kNan;
    }
    dsa_tensor_t scores_view = view(scores.data(), {rows, n}, DSA_DTYPE_F32);
    for (int32_t k : {100, 2048, 5000})
        for (dsa_topk_order_t order : {DSA_TOPK_ORDER_UNSPECIFIED, DSA_TOPK_ORDER_SCORE, DSA_TOPK_ORDER_INDEX})
            check_against_reference(context, topk_params(k, order), scores_view, nullptr, nullptr, nullptr);
}

TEST_CASE("topk hybrid: sink and local tokens are always kept, NaN included, and count toward k") {
    // Window [0, 6): forced 0 (sink) and 5 (local), then the best two of 1..4.
    const std::vector<float> scores = {kNan, 5.0f, 1.0f, 9.0f, 2.0f, kNan};
    CHECK(topk_row(scores, topk_params(4, DSA_TOPK_ORDER_SCORE, 1, 1)) == std::vector<int32_t>{3, 1, 0, 5});
    CHECK(topk_row(scores, topk_params(4, DSA_TOPK_ORDER_INDEX, 1, 1)) == std::vector<int32_t>{0, 1, 3, 5});
    // A forced token takes its place by its own score.
    CHECK(topk_row({0.0f, 5.0f, 1.0f, 9.0f, 2.0f, 7.0f}, topk_params(3, DSA_TOPK_ORDER_SCORE, 1, 1)) ==
          std::vector<int32_t>{3, 5, 0});
    // The window is shorter than n_sink + n_local: everything in it, once.
    CHECK(topk_row({1.0f, kNan, 3.0f}, topk_params(8, DSA_TOPK_ORDER_INDEX, 2, 2)) ==
          std::vector<int32_t>{0, 1, 2, -1, -1, -1, -1, -1});
    // n_sink + n_local == k: only forced tokens.
    CHECK(topk_row({4.0f, 5.0f, 6.0f, 7.0f, 1.0f}, topk_params(2, DSA_TOPK_ORDER_INDEX, 1, 1)) ==
          std::vector<int32_t>{0, 4});

    Context context(2);
    const int64_t rows = 6;
    for (int64_t n : {900, 20000}) {
        std::vector<float> values = random_scores(rows * n, Distribution::few_levels, static_cast<uint32_t>(n));
        for (int64_t i = 0; i < rows * n; i += 7) values[i] = kNan;
        dsa_tensor_t scores_view = view(values.data(), {rows, n}, DSA_DTYPE_F32);
        const int32_t m = static_cast<int32_t>(n);
        std::vector<int32_t> starts = {0, 10, m - 30, 500, -4, m - 5}, ends = {m, 40, m, 520, m / 2, m + 9};
        dsa_tensor_t starts_view = view(starts.data(), {rows}, DSA_DTYPE_I32);
        dsa_tensor_t ends_view = view(ends.data(), {rows}, DSA_DTYPE_I32);
        for (auto [sink, local] : {std::pair{4, 0}, std::pair{0, 64}, std::pair{16, 16}, std::pair{200, 312}})
            for (dsa_topk_order_t order : {DSA_TOPK_ORDER_UNSPECIFIED, DSA_TOPK_ORDER_SCORE, DSA_TOPK_ORDER_INDEX}) {
                CAPTURE(n);
                CAPTURE(sink);
                CAPTURE(local);
                check_against_reference(context, topk_params(512, order, sink, local), scores_view, &starts_view,
                                        &ends_view, nullptr);
            }
    }
}

TEST_CASE("topk translates through a block table; bad pages and entries give -1") {
    Context context(2);
    // 4 rows share 2 block-table rows: rows 0, 1 use table row 0; rows 2, 3 use table row 1.
    const int64_t rows = 4, n = 16;
    std::vector<float> scores(rows * n);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < n; ++j) scores[r * n + j] = static_cast<float>(j);  // best = highest index
    std::vector<int32_t> table = {5, -1, 2,  // page 1 unmapped
                                  0, 7, INT32_MAX / 2};  // the last page's slots overflow int32
    dsa_tensor_t scores_view = view(scores.data(), {rows, n}, DSA_DTYPE_F32);
    dsa_tensor_t table_view = view(table.data(), {2, 3}, DSA_DTYPE_I32);
    dsa_topk_params_t params = topk_params(n + 2, DSA_TOPK_ORDER_INDEX);
    params.page_size = 4;
    std::vector<int32_t> starts = {0, 6, 0, 3}, ends = {16, 9, 13, 5};
    dsa_tensor_t starts_view = view(starts.data(), {rows}, DSA_DTYPE_I32);
    dsa_tensor_t ends_view = view(ends.data(), {rows}, DSA_DTYPE_I32);
    std::vector<int32_t> out(rows * (n + 2), kPoison);
    dsa_tensor_t out_view = view(out.data(), {rows, n + 2}, DSA_DTYPE_I32);
    REQUIRE(dsa_topk(context, &params, &scores_view, &starts_view, &ends_view, &table_view, &out_view, nullptr) ==
            DSA_STATUS_SUCCESS);
    const std::vector<int32_t> pad(n + 2, -1);
    auto row = [&](int64_t r) { return std::vector<int32_t>(out.begin() + r * (n + 2), out.begin() + (r + 1) * (n + 2)); };
    // Row 0: tokens 0..15 -> pages 0 (block 5), 1 (unmapped), 2 (block 2), 3 (beyond max_pages).
    std::vector<int32_t> expected = {20, 21, 22, 23, -1, -1, -1, -1, 8, 9, 10, 11, -1, -1, -1, -1, -1, -1};
    CHECK(row(0) == expected);
    // Row 1: tokens 6, 7 (page 1, unmapped), 8 (page 2 -> block 2).
    expected = pad;
    expected[0] = expected[1] = -1, expected[2] = 8;
    CHECK(row(1) == expected);
    // Row 2: tokens 0..12 through table row 1: blocks 0, 7, then the overflowing page.
    expected = {0, 1, 2, 3, 28, 29, 30, 31, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
    CHECK(row(2) == expected);
    // Row 3: tokens 3 (block 0) and 4 (block 7).
    expected = pad;
    expected[0] = 3, expected[1] = 28;
    CHECK(row(3) == expected);

    // Random rows through a transposed (strided) block table, against the reference.
    const int64_t big_rows = 6, big_n = 5000, pages = 70;
    std::vector<float> big = random_scores(big_rows * big_n, Distribution::uniform, 3);
    std::vector<int32_t> pages_by_row(3 * pages);
    std::mt19937 engine(4);
    for (int32_t& entry : pages_by_row) entry = static_cast<int32_t>(engine() % 1000) - 50;  // some negative
    dsa_tensor_t big_view = view(big.data(), {big_rows, big_n}, DSA_DTYPE_F32);
    dsa_tensor_t transposed = strided(pages_by_row.data(), {3, pages}, {1, 3}, DSA_DTYPE_I32);
    for (dsa_topk_order_t order : {DSA_TOPK_ORDER_UNSPECIFIED, DSA_TOPK_ORDER_SCORE, DSA_TOPK_ORDER_INDEX}) {
        dsa_topk_params_t big_params = topk_params(2048, order, 2, 5);
        big_params.page_size = 64;  // 70 pages cover 4480 of the 5000 tokens
        check_against_reference(context, big_params, big_view, nullptr, nullptr, &transposed);
    }
}

TEST_CASE("topk handles more than 65535 rows and N = 0") {
    Context context(3);
    const int64_t rows = 70001, n = 5;
    std::vector<float> scores = random_scores(rows * n, Distribution::few_levels, 11);
    std::vector<int32_t> ends(rows);
    for (int64_t r = 0; r < rows; ++r) ends[r] = static_cast<int32_t>(r % 7);
    dsa_tensor_t scores_view = view(scores.data(), {rows, n}, DSA_DTYPE_F32);
    dsa_tensor_t ends_view = view(ends.data(), {rows}, DSA_DTYPE_I32);
    check_against_reference(context, topk_params(3, DSA_TOPK_ORDER_SCORE), scores_view, nullptr, &ends_view, nullptr);

    std::vector<int32_t> out(6, kPoison);
    dsa_tensor_t empty = view(nullptr, {3, 0}, DSA_DTYPE_F32);
    dsa_tensor_t out_view = view(out.data(), {3, 2}, DSA_DTYPE_I32);
    const dsa_topk_params_t params = topk_params(2, DSA_TOPK_ORDER_UNSPECIFIED, 1, 1);
    REQUIRE(dsa_topk(context, &params, &empty, nullptr, nullptr, nullptr, &out_view, nullptr) == DSA_STATUS_SUCCESS);
    CHECK(out == std::vector<int32_t>(6, -1));
}

TEST_CASE("topk rejects bad input with a status naming the argument and leaves indices untouched") {
    Context context(1);
    const int64_t rows = 4, n = 32, k = 8;
    std::vector<float> scores = random_scores(rows * n, Distribution::uniform, 2);
    std::vector<int32_t> starts(rows, 0), ends(rows, n), table(2 * 4, 1), out(rows * k, kPoison);
    dsa_tensor_t st = view(scores.data(), {rows, n}, DSA_DTYPE_F32);
    dsa_tensor_t rs = view(starts.data(), {rows}, DSA_DTYPE_I32), re = view(ends.data(), {rows}, DSA_DTYPE_I32);
    dsa_tensor_t bt = view(table.data(), {2, 4}, DSA_DTYPE_I32), it = view(out.data(), {rows, k}, DSA_DTYPE_I32);
    dsa_topk_params_t params = topk_params(static_cast<int32_t>(k));
    const dsa_topk_params_t good = params;
    auto call = [&](const dsa_tensor_t* s, const dsa_tensor_t* a, const dsa_tensor_t* b, const dsa_tensor_t* t,
                    const dsa_tensor_t* i) { return dsa_topk(context, &params, s, a, b, t, i, nullptr); };
    REQUIRE(call(&st, &rs, &re, &bt, &it) == DSA_STATUS_SUCCESS);  // the baseline is valid
    std::fill(out.begin(), out.end(), kPoison);

    CHECK_FAILS_WITH(dsa_topk(nullptr, &params, &st, &rs, &re, &bt, &it, nullptr), DSA_STATUS_INVALID_ARGUMENT,
                     "context");
    CHECK_FAILS_WITH(call(nullptr, &rs, &re, &bt, &it), DSA_STATUS_INVALID_ARGUMENT, "scores");
    CHECK_FAILS_WITH(call(&st, &rs, &re, &bt, nullptr), DSA_STATUS_INVALID_ARGUMENT, "indices");

    params.k = 0;
    CHECK_FAILS_WITH(call(&st, &rs, &re, &bt, &it), DSA_STATUS_INVALID_ARGUMENT, "params.k");
    params = good, params.n_sink = -1;
    CHECK_FAILS_WITH(call(&st, &rs, &re, &bt, &it), DSA_STATUS_INVALID_ARGUMENT, "n_sink");
    params = good, params.n_local = -2;
    CHECK_FAILS_WITH(call(&st, &rs, &re, &bt, &it), DSA_STATUS_INVALID_ARGUMENT, "n_local");
    params = good, params.n_sink = 5, params.n_local = 4;
    CHECK_FAILS_WITH(call(&st, &rs, &re, &bt, &it), DSA_STATUS_INVALID_ARGUMENT, "n_sink + params.n_local");
    params = good, params.order = 3;
    CHECK_FAILS_WITH(call(&st, &rs, &re, &bt, &it), DSA_STATUS_INVALID_ARGUMENT, "params.order");
    params = good, params.page_size = 0;
    CHECK_FAILS_WITH(call(&st, &rs, &re, &bt, &it), DSA_STATUS_INVALID_ARGUMENT, "params.page_size");
    params = good, params.struct_size = 8;
    CHECK_FAILS_WITH(call(&st, &rs, &re, &bt, &it), DSA_STATUS_INVALID_ARGUMENT, "struct_size");
    params = good;

    dsa_tensor_t bad = st;
    bad.dtype = DSA_DTYPE_BF16;
    CHECK_FAILS_WITH(call(&bad, &rs, &re, &bt, &it), DSA_STATUS_DTYPE_MISMATCH, "scores");
    bad = it, bad.dtype = DSA_DTYPE_I64;
    CHECK_FAILS_WITH(call(&st, &rs, &re, &bt, &bad), DSA_STATUS_DTYPE_MISMATCH, "indices");
    bad = rs, bad.dtype = DSA_DTYPE_F32;
    CHECK_FAILS_WITH(call(&st, &bad, &re, &bt, &it), DSA_STATUS_DTYPE_MISMATCH, "row_starts");
    bad = re, bad.dtype = DSA_DTYPE_I64;
    CHECK_FAILS_WITH(call(&st, &rs, &bad, &bt, &it), DSA_STATUS_DTYPE_MISMATCH, "row_ends");
    bad = bt, bad.dtype = DSA_DTYPE_U8;
    CHECK_FAILS_WITH(call(&st, &rs, &re, &bad, &it), DSA_STATUS_DTYPE_MISMATCH, "block_table");

    dsa_tensor_t rank3 = view(scores.data(), {2, 2, n}, DSA_DTYPE_F32);
    CHECK_FAILS_WITH(call(&rank3, &rs, &re, &bt, &it), DSA_STATUS_SHAPE_MISMATCH, "scores");
    bad = it, bad.shape[1] = k - 1;
    CHECK_FAILS_WITH(call(&st, &rs, &re, &bt, &bad), DSA_STATUS_SHAPE_MISMATCH, "indices");
    bad = it, bad.shape[0] = rows - 1;
    CHECK_FAILS_WITH(call(&st, &rs, &re, &bt, &bad), DSA_STATUS_SHAPE_MISMATCH, "indices");
    bad = rs, bad.shape[0] = rows - 1;
    CHECK_FAILS_WITH(call(&st, &bad, &re, &bt, &it), DSA_STATUS_SHAPE_MISMATCH, "row_starts");
    dsa_tensor_t ends_2d = view(ends.data(), {2, 2}, DSA_DTYPE_I32);
    CHECK_FAILS_WITH(call(&st, &rs, &ends_2d, &bt, &it), DSA_STATUS_SHAPE_MISMATCH, "row_ends");
    dsa_tensor_t table_3 = view(table.data(), {3, 2}, DSA_DTYPE_I32);  // 3 does not divide 4 rows
    CHECK_FAILS_WITH(call(&st, &rs, &re, &table_3, &it), DSA_STATUS_SHAPE_MISMATCH, "block_table");
    dsa_tensor_t table_0 = view(table.data(), {0, 2}, DSA_DTYPE_I32);
    CHECK_FAILS_WITH(call(&st, &rs, &re, &table_0, &it), DSA_STATUS_SHAPE_MISMATCH, "block_table");
    dsa_tensor_t table_1d = view(table.data(), {8}, DSA_DTYPE_I32);
    CHECK_FAILS_WITH(call(&st, &rs, &re, &table_1d, &it), DSA_STATUS_SHAPE_MISMATCH, "block_table");

    dsa_tensor_t scores_gap = strided(scores.data(), {rows, n / 2}, {n, 2}, DSA_DTYPE_F32);
    CHECK_FAILS_WITH(call(&scores_gap, &rs, &re, &bt, &it), DSA_STATUS_LAYOUT_UNSUPPORTED, "scores");
    std::vector<int32_t> wide(rows * k * 2);
    dsa_tensor_t indices_gap = strided(wide.data(), {rows, k}, {2 * k, 2}, DSA_DTYPE_I32);
    CHECK_FAILS_WITH(call(&st, &rs, &re, &bt, &indices_gap), DSA_STATUS_LAYOUT_UNSUPPORTED, "indices");
    dsa_tensor_t indices_shared = strided(out.data(), {rows, k}, {0, 1}, DSA_DTYPE_I32);
    CHECK_FAILS_WITH(call(&st, &rs, &re, &bt, &indices_shared), DSA_STATUS_LAYOUT_UNSUPPORTED, "indices");
    dsa_tensor_t over_scores = view(scores.data(), {rows, k}, DSA_DTYPE_I32);
    CHECK_FAILS_WITH(call(&st, &rs, &re, &bt, &over_scores), DSA_STATUS_LAYOUT_UNSUPPORTED, "scores");
    std::vector<int32_t> shared(rows * k + rows, 0);
    dsa_tensor_t over_out = view(shared.data(), {rows, k}, DSA_DTYPE_I32);
    dsa_tensor_t over_starts = view(shared.data() + rows * k - 1, {rows}, DSA_DTYPE_I32);
    CHECK_FAILS_WITH(call(&st, &over_starts, &re, &bt, &over_out), DSA_STATUS_LAYOUT_UNSUPPORTED, "row_starts");
    dsa_tensor_t over_ends = view(shared.data(), {rows}, DSA_DTYPE_I32);
    CHECK_FAILS_WITH(call(&st, &rs, &over_ends, &bt, &over_out), DSA_STATUS_LAYOUT_UNSUPPORTED, "row_ends");
    dsa_tensor_t over_table = view(shared.data() + 4, {2, 2}, DSA_DTYPE_I32);
    CHECK_FAILS_WITH(call(&st, &rs, &re, &over_table, &over_out), DSA_STATUS_LAYOUT_UNSUPPORTED, "block_table");

    bad = st, bad.device_type = DSA_DEVICE_CUDA;
    CHECK(call(&bad, &rs, &re, &bt, &it) != DSA_STATUS_SUCCESS);
    CHECK(std::string(dsa_last_error_message()).find("scores") == 0);
    bad = bt, bad.device_type = 3;
    CHECK_FAILS_WITH(call(&st, &rs, &re, &bad, &it), DSA_STATUS_DEVICE_MISMATCH, "block_table");
    bad = re, bad.device_type = 3;
    CHECK_FAILS_WITH(call(&st, &rs, &bad, &bt, &it), DSA_STATUS_DEVICE_MISMATCH, "row_ends");

    CHECK(out == std::vector<int32_t>(rows * k, kPoison));
    CHECK(dsa_topk_params_init(nullptr) == DSA_STATUS_INVALID_ARGUMENT);
}
