// dsa_hadamard on the CPU against the explicit Sylvester matrix.
#include <cmath>

#include "../core/ops/hadamard.hpp"
#include "support.hpp"

using namespace dsa_test;

namespace {

double sylvester(int64_t i, int64_t j) { return (__builtin_popcountll(i & j) & 1) ? -1.0 : 1.0; }

}  // namespace

TEST_CASE("hadamard equals x . H_n * n^-0.5 for every power of two up to 1024 (f32)") {
    Context context(2);
    for (int64_t n = 1; n <= 1024; n *= 2) {
        CAPTURE(n);
        const int64_t rows = 3;
        std::vector<float> x = random_floats(rows * n, static_cast<uint32_t>(n)), y(rows * n, NAN);
        dsa_tensor_t xt = view(x.data(), {rows, n}, DSA_DTYPE_F32), yt = view(y.data(), {rows, n}, DSA_DTYPE_F32);
        REQUIRE(dsa_hadamard(context, nullptr, &xt, &yt, nullptr) == DSA_STATUS_SUCCESS);
        double worst = 0.0;
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t col = 0; col < n; ++col) {
                double expected = 0.0;
                for (int64_t i = 0; i < n; ++i) expected += x[r * n + i] * sylvester(i, col);
                expected /= std::sqrt(static_cast<double>(n));
                worst = std::fmax(worst, std::fabs(expected - y[r * n + col]));
            }
        CHECK(worst < 1e-5);
    }
}

TEST_CASE("hadamard is orthonormal and its own inverse; in place works") {
    Context context(2);
    const int64_t rows = 4, n = 128;
    std::vector<float> x = random_floats(rows * n, 9), y = x;
    dsa_tensor_t yt = view(y.data(), {rows, n}, DSA_DTYPE_F32);
    REQUIRE(dsa_hadamard(context, nullptr, &yt, &yt, nullptr) == DSA_STATUS_SUCCESS);  // in place
    for (int64_t r = 0; r < rows; ++r) {
        double norm_x = 0, norm_y = 0;
        for (int64_t i = 0; i < n; ++i) {
            norm_x += double(x[r * n + i]) * x[r * n + i];
            norm_y += double(y[r * n + i]) * y[r * n + i];
        }
        CHECK(std::fabs(norm_x - norm_y) < 1e-4 * norm_x);
    }
    REQUIRE(dsa_hadamard(context, nullptr, &yt, &yt, nullptr) == DSA_STATUS_SUCCESS);
    for (int64_t i = 0; i < rows * n; ++i) CHECK(std::fabs(y[i] - x[i]) < 1e-5f);
}

TEST_CASE("hadamard bf16 matches the f64 reference rounded to bf16; explicit scale; strided rows") {
    Context context(2);
    const int64_t n = 256;
    std::vector<uint16_t> storage = to_bf16(random_floats(6 * n, 4));
    // Rows 0, 2, 4 of a [6, n] buffer.
    dsa_tensor_t xt = strided(storage.data(), {3, n}, {2 * n, 1}, DSA_DTYPE_BF16);
    std::vector<uint16_t> y(3 * n), y_ref(3 * n);
    dsa_tensor_t yt = view(y.data(), {3, n}, DSA_DTYPE_BF16);
    dsa_hadamard_params_t params;
    dsa_hadamard_params_init(&params);
    params.scale = 0.25f;
    REQUIRE(dsa_hadamard(context, &params, &xt, &yt, nullptr) == DSA_STATUS_SUCCESS);
    dsa::HadamardProblem problem{core_view(xt), core_view(view(y_ref.data(), {3, n}, DSA_DTYPE_BF16)), 0.25f, 3, n};
    dsa::reference::hadamard(problem);
    for (int64_t i = 0; i < 3 * n; ++i) {
        const float got = dsa::bf16_to_float(y[i]), want = dsa::bf16_to_float(y_ref[i]);
        CHECK(std::fabs(got - want) <= std::fabs(want) * (1.0f / 128) + 1e-6f);
    }
}

TEST_CASE("hadamard results do not depend on the thread count") {
    const int64_t rows = 300, n = 512;
    std::vector<float> x = random_floats(rows * n, 21);
    std::vector<float> results[2];
    int threads[2] = {1, 3};
    for (int t = 0; t < 2; ++t) {
        Context context(threads[t]);
        results[t].assign(rows * n, 0.0f);
        dsa_tensor_t xt = view(x.data(), {rows, n}, DSA_DTYPE_F32), yt = view(results[t].data(), {rows, n}, DSA_DTYPE_F32);
        REQUIRE(dsa_hadamard(context, nullptr, &xt, &yt, nullptr) == DSA_STATUS_SUCCESS);
    }
    CHECK(results[0] == results[1]);
}

TEST_CASE("hadamard rejects bad input with a status naming the argument") {
    Context context(1);
    std::vector<float> x(3 * 128, 1.0f), y(3 * 128, 5.0f);
    dsa_tensor_t xt = view(x.data(), {3, 128}, DSA_DTYPE_F32), yt = view(y.data(), {3, 128}, DSA_DTYPE_F32);
    const std::vector<float> y_before = y;
    dsa_tensor_t bad = xt;
    bad.shape[1] = 96;
    dsa_tensor_t bad_y = yt;
    bad_y.shape[1] = 96;
    CHECK_FAILS_WITH(dsa_hadamard(context, nullptr, &bad, &bad_y, nullptr), DSA_STATUS_SHAPE_MISMATCH, "power of two");
    std::vector<float> big(2048);
    dsa_tensor_t big_x = view(big.data(), {2048}, DSA_DTYPE_F32);
    CHECK_FAILS_WITH(dsa_hadamard(context, nullptr, &big_x, &big_x, nullptr), DSA_STATUS_SHAPE_MISMATCH, "x");
    bad = yt;
    bad.dtype = DSA_DTYPE_BF16;
    CHECK_FAILS_WITH(dsa_hadamard(context, nullptr, &xt, &bad, nullptr), DSA_STATUS_DTYPE_MISMATCH, "y");
    bad = xt;
    bad.dtype = DSA_DTYPE_F16;
    CHECK_FAILS_WITH(dsa_hadamard(context, nullptr, &bad, &yt, nullptr), DSA_STATUS_DTYPE_MISMATCH, "x");
    bad = yt;
    bad.shape[0] = 2;
    CHECK_FAILS_WITH(dsa_hadamard(context, nullptr, &xt, &bad, nullptr), DSA_STATUS_SHAPE_MISMATCH, "y");
    bad = yt;
    bad.data = x.data() + 64;  // partial overlap with x
    CHECK_FAILS_WITH(dsa_hadamard(context, nullptr, &xt, &bad, nullptr), DSA_STATUS_LAYOUT_UNSUPPORTED, "y");
    CHECK_FAILS_WITH(dsa_hadamard(context, nullptr, nullptr, &yt, nullptr), DSA_STATUS_INVALID_ARGUMENT, "x");
    dsa_hadamard_params_t params;
    dsa_hadamard_params_init(&params);
    params.scale = INFINITY;
    CHECK_FAILS_WITH(dsa_hadamard(context, &params, &xt, &yt, nullptr), DSA_STATUS_INVALID_ARGUMENT, "scale");
    dsa_tensor_t scalar = view(x.data(), {}, DSA_DTYPE_F32);
    CHECK_FAILS_WITH(dsa_hadamard(context, nullptr, &scalar, &scalar, nullptr), DSA_STATUS_SHAPE_MISMATCH, "x");
    CHECK(y == y_before);
}
