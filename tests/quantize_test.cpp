// FP8 e4m3 codec and dsa_quantize_fp8 / dsa_dequantize_fp8 on the CPU.
#include <cmath>
#include <limits>

#include "../core/ops/quantize.hpp"
#include "support.hpp"

using namespace dsa_test;

namespace {

// The e4m3fn value of a code, straight from the format's definition (independent of the codec).
double e4m3_value(int code) {
    const int sign = code & 0x80 ? -1 : 1;
    const int exponent = (code >> 3) & 15, mantissa = code & 7;
    if (exponent == 15 && mantissa == 7) return std::numeric_limits<double>::quiet_NaN();
    if (exponent == 0) return sign * std::ldexp(mantissa / 8.0, -6);
    return sign * std::ldexp(1.0 + mantissa / 8.0, exponent - 7);
}

// Independent encoder: nearest representable value by search, ties to the even code, values
// beyond 448 saturate.
uint8_t reference_encode(float x) {
    if (std::isnan(x)) return std::signbit(x) ? 0xff : 0x7f;
    const int sign = std::signbit(x) ? 0x80 : 0;
    const double magnitude = std::fabs(static_cast<double>(x));
    if (magnitude >= 448.0) return static_cast<uint8_t>(sign | 0x7e);
    int best = 0;
    for (int code = 1; code <= 0x7e; ++code) {
        const double distance = std::fabs(e4m3_value(code) - magnitude);
        const double best_distance = std::fabs(e4m3_value(best) - magnitude);
        if (distance < best_distance || (distance == best_distance && (code & 1) == 0)) best = code;
    }
    return static_cast<uint8_t>(sign | best);
}

struct QuantizeBuffers {
    std::vector<uint8_t> codes;
    std::vector<float> scales;
};

}  // namespace

TEST_CASE("every e4m3 code decodes to its defined value") {
    for (int code = 0; code < 256; ++code) {
        const double expected = e4m3_value(code);
        const float decoded = dsa::decode_e4m3(static_cast<uint8_t>(code));
        if (std::isnan(expected)) {
            CHECK(std::isnan(decoded));
        } else {
            CHECK_MESSAGE(static_cast<double>(decoded) == expected, "code ", code);
            CHECK(std::signbit(decoded) == ((code & 0x80) != 0));
        }
    }
}

TEST_CASE("e4m3 encoding is round-to-nearest-even with saturation on every bf16 value") {
    for (uint32_t bits = 0; bits < 65536; ++bits) {
        const float x = dsa::bf16_to_float(static_cast<uint16_t>(bits));
        const uint8_t got = dsa::encode_e4m3(x), want = reference_encode(x);
        if (std::isnan(x)) {
            CHECK(std::isnan(dsa::decode_e4m3(got)));
        } else if (got != want) {
            FAIL_CHECK("bf16 bits ", bits, " value ", x, ": got code ", int(got), " want ", int(want));
        }
    }
}

TEST_CASE("e4m3 encoding on random f32 values and exact midpoints") {
    std::mt19937 engine(7);
    std::uniform_int_distribution<uint32_t> bits(0, 0xffffffffu);
    int mismatches = 0;
    for (int i = 0; i < 200000; ++i) {
        const float x = dsa::bits_float(bits(engine));
        if (std::isnan(x)) continue;
        mismatches += dsa::encode_e4m3(x) != reference_encode(x);
    }
    // Values in the e4m3 range, where rounding matters most.
    std::uniform_real_distribution<float> range(-500.0f, 500.0f);
    for (int i = 0; i < 200000; ++i) {
        const float x = range(engine) * std::ldexp(1.0f, static_cast<int>(i % 24) - 16);
        mismatches += dsa::encode_e4m3(x) != reference_encode(x);
    }
    // Midpoints between neighbouring codes: the tie rule decides.
    for (int code = 0; code < 0x7e; ++code) {
        const float mid = static_cast<float>((e4m3_value(code) + e4m3_value(code + 1)) / 2);
        mismatches += dsa::encode_e4m3(mid) != reference_encode(mid);
        mismatches += dsa::encode_e4m3(-mid) != reference_encode(-mid);
    }
    CHECK(mismatches == 0);
    CHECK(dsa::encode_e4m3(std::numeric_limits<float>::infinity()) == 0x7e);
    CHECK(dsa::encode_e4m3(-std::numeric_limits<float>::infinity()) == 0xfe);
    CHECK(dsa::encode_e4m3(1e30f) == 0x7e);
}

TEST_CASE("quantize_fp8 matches the scalar reference, f32 and ue8m0 scales, all input dtypes") {
    Context context(2);
    const int64_t rows = 37, n = 384;
    for (dsa_scale_format_t format : {DSA_SCALE_FORMAT_F32, DSA_SCALE_FORMAT_UE8M0}) {
        for (dsa_dtype_t dtype : {DSA_DTYPE_F32, DSA_DTYPE_BF16, DSA_DTYPE_F16}) {
            for (int32_t group : {128, 32, 3}) {
                CAPTURE(format); CAPTURE(dtype); CAPTURE(group);
                std::vector<float> values = random_floats(rows * n, 11 + group, -3.0f, 3.0f);
                for (size_t i = 0; i < values.size(); i += 97) values[i] *= 1e3f;  // outliers
                std::vector<uint16_t> halves(values.size());
                for (size_t i = 0; i < values.size(); ++i) {
                    if (dtype == DSA_DTYPE_BF16) halves[i] = dsa::float_to_bf16(values[i]);
                    // f16: truncate an f32 that is exactly representable (small mantissa)
                    if (dtype == DSA_DTYPE_F16) {
                        const float v = std::round(values[i] * 64.0f) / 64.0f;
                        const int e = v == 0 ? 0 : std::ilogb(v);
                        const uint16_t sign = std::signbit(v) ? 0x8000 : 0;
                        const float m = v == 0 ? 0 : std::fabs(v) / std::ldexp(1.0f, e) - 1.0f;
                        halves[i] = v == 0 ? 0 : static_cast<uint16_t>(sign | ((e + 15) << 10) | static_cast<int>(m * 1024));
                    }
                }
                void* input = dtype == DSA_DTYPE_F32 ? static_cast<void*>(values.data()) : halves.data();
                dsa_tensor_t x = view(input, {rows, n}, dtype);
                std::vector<uint8_t> q(rows * n, 0xaa), q_ref(rows * n, 0x55);
                std::vector<float> s(rows * n / group, -1.0f), s_ref(s.size(), -2.0f);
                dsa_tensor_t qt = view(q.data(), {rows, n}, DSA_DTYPE_FP8_E4M3);
                dsa_tensor_t st = view(s.data(), {rows, n / group}, DSA_DTYPE_F32);
                dsa_quantize_fp8_params_t params;
                dsa_quantize_fp8_params_init(&params);
                params.scale_format = format;
                params.group_size = group;
                REQUIRE(dsa_quantize_fp8(context, &params, &x, &qt, &st, nullptr) == DSA_STATUS_SUCCESS);

                dsa::QuantizeFp8Problem problem;
                problem.values = core_view(x);
                problem.codes = core_view(view(q_ref.data(), {rows, n}, DSA_DTYPE_U8));
                problem.scales = core_view(view(s_ref.data(), {rows, n / group}, DSA_DTYPE_F32));
                problem.config = {group, static_cast<dsa::ScaleFormat>(format), 1e-4f};
                problem.rows = rows;
                problem.n = n;
                dsa::reference::quantize_fp8(problem);
                CHECK(q == q_ref);
                CHECK(s == s_ref);
                for (size_t g = 0; g < s.size(); ++g) {
                    if (format == DSA_SCALE_FORMAT_UE8M0) {
                        int exponent;
                        CHECK(std::frexp(s[g], &exponent) == 0.5f);  // a power of two
                    }
                    for (int64_t i = 0; i < group; ++i) {
                        const float decoded = dsa::decode_e4m3(q[g * group + i]);
                        CHECK(std::fabs(decoded) <= 448.0f);
                        // Round-trip error: half an e4m3 step (2^-4 relative) or a subnormal step.
                        const float original = dtype == DSA_DTYPE_F32 ? values[g * group + i]
                                               : dtype == DSA_DTYPE_BF16 ? dsa::bf16_to_float(halves[g * group + i])
                                                                         : dsa::f16_to_float(halves[g * group + i]);
                        const float error = std::fabs(decoded * s[g] - original);
                        // (the 1.001 covers the f32 rounding of decoded * scale)
                        CHECK(error <= 1.001f * std::fmax(std::fabs(original) * 0.0625f, s[g] * std::ldexp(1.0f, -10)));
                    }
                }
            }
        }
    }
}

TEST_CASE("quantize_fp8: zero groups, NaN and Inf inputs") {
    Context context(1);
    std::vector<float> x(256, 0.0f);
    x[130] = std::numeric_limits<float>::quiet_NaN();
    x[131] = std::numeric_limits<float>::infinity();
    x[132] = -std::numeric_limits<float>::infinity();
    x[133] = 2.0f;
    std::vector<uint8_t> q(256);
    std::vector<float> s(2);
    dsa_tensor_t xt = view(x.data(), {256}, DSA_DTYPE_F32), qt = view(q.data(), {256}, DSA_DTYPE_U8),
                 st = view(s.data(), {2}, DSA_DTYPE_F32);
    REQUIRE(dsa_quantize_fp8(context, nullptr, &xt, &qt, &st, nullptr) == DSA_STATUS_SUCCESS);
    CHECK(s[0] == 1e-4f / 448.0f);  // all-zero group: the floor's scale
    for (int i = 0; i < 128; ++i) CHECK(q[i] == 0);
    CHECK(s[1] == 2.0f / 448.0f);  // non-finite values do not set the scale
    CHECK(std::isnan(dsa::decode_e4m3(q[130])));
    CHECK(q[131] == 0x7e);
    CHECK(q[132] == 0xfe);
    CHECK(q[133] == 0x7e);
}

TEST_CASE("dequantize_fp8 inverts quantize_fp8 within e4m3 precision, f32 and bf16 outputs") {
    Context context(2);
    const int64_t rows = 5, n = 256;
    std::vector<float> x = random_floats(rows * n, 3, -10.0f, 10.0f);
    std::vector<uint8_t> q(rows * n);
    std::vector<float> s(rows * 2), y(rows * n, -7.0f);
    std::vector<uint16_t> y16(rows * n, 0xffff);
    dsa_tensor_t xt = view(x.data(), {rows, n}, DSA_DTYPE_F32), qt = view(q.data(), {rows, n}, DSA_DTYPE_FP8_E4M3),
                 st = view(s.data(), {rows, 2}, DSA_DTYPE_F32), yt = view(y.data(), {rows, n}, DSA_DTYPE_F32),
                 y16t = view(y16.data(), {rows, n}, DSA_DTYPE_BF16);
    REQUIRE(dsa_quantize_fp8(context, nullptr, &xt, &qt, &st, nullptr) == DSA_STATUS_SUCCESS);
    REQUIRE(dsa_dequantize_fp8(context, nullptr, &qt, &st, &yt, nullptr) == DSA_STATUS_SUCCESS);
    REQUIRE(dsa_dequantize_fp8(context, nullptr, &qt, &st, &y16t, nullptr) == DSA_STATUS_SUCCESS);
    for (int64_t i = 0; i < rows * n; ++i) {
        CHECK(y[i] == dsa::decode_e4m3(q[i]) * s[i / 128]);
        CHECK(y16[i] == dsa::float_to_bf16(y[i]));
        CHECK(std::fabs(y[i] - x[i]) <= std::fabs(x[i]) * 0.0625f + s[i / 128] * 0.001f);
    }
}

TEST_CASE("quantize_fp8 honours leading strides and results do not depend on the thread count") {
    const int64_t rows = 64, n = 256;
    std::vector<float> storage = random_floats(rows * 2 * n, 5);
    // Every other row of a [rows*2, n] buffer, seen as [8, 8, n] with strides [2*8*n, 2*n, 1].
    dsa_tensor_t x = strided(storage.data(), {8, 8, n}, {16 * n, 2 * n, 1}, DSA_DTYPE_F32);
    std::vector<uint8_t> results[3];
    int threads[3] = {1, 2, 7};
    for (int t = 0; t < 3; ++t) {
        Context context(threads[t]);
        results[t].assign(rows * n, 0);
        std::vector<float> s(rows * 2);
        dsa_tensor_t qt = view(results[t].data(), {8, 8, n}, DSA_DTYPE_U8), st = view(s.data(), {8, 8, 2}, DSA_DTYPE_F32);
        REQUIRE(dsa_quantize_fp8(context, nullptr, &x, &qt, &st, nullptr) == DSA_STATUS_SUCCESS);
    }
    CHECK(results[0] == results[1]);
    CHECK(results[0] == results[2]);
    // Row r of the output is input row 2r.
    std::vector<uint8_t> q_row(n);
    std::vector<float> s_row(2);
    Context context(1);
    dsa_tensor_t xr = view(storage.data() + 2 * 5 * n, {n}, DSA_DTYPE_F32), qr = view(q_row.data(), {n}, DSA_DTYPE_U8),
                 sr = view(s_row.data(), {2}, DSA_DTYPE_F32);
    REQUIRE(dsa_quantize_fp8(context, nullptr, &xr, &qr, &sr, nullptr) == DSA_STATUS_SUCCESS);
    CHECK(std::equal(q_row.begin(), q_row.end(), results[0].begin() + 5 * n));
}

TEST_CASE("quantize_fp8 and dequantize_fp8 reject bad input with a status naming the argument") {
    Context context(1);
    std::vector<float> x(256, 1.0f), s(2);
    std::vector<uint8_t> q(256);
    dsa_tensor_t xt = view(x.data(), {2, 128}, DSA_DTYPE_F32), qt = view(q.data(), {2, 128}, DSA_DTYPE_U8),
                 st = view(s.data(), {2, 1}, DSA_DTYPE_F32);
    const std::vector<uint8_t> q_before = q;

    CHECK_FAILS_WITH(dsa_quantize_fp8(nullptr, nullptr, &xt, &qt, &st, nullptr), DSA_STATUS_INVALID_ARGUMENT, "context");
    CHECK_FAILS_WITH(dsa_quantize_fp8(context, nullptr, nullptr, &qt, &st, nullptr), DSA_STATUS_INVALID_ARGUMENT, "x");
    CHECK_FAILS_WITH(dsa_quantize_fp8(context, nullptr, &xt, &qt, nullptr, nullptr), DSA_STATUS_INVALID_ARGUMENT, "scales");

    dsa_tensor_t bad = xt;
    bad.data = nullptr;
    CHECK_FAILS_WITH(dsa_quantize_fp8(context, nullptr, &bad, &qt, &st, nullptr), DSA_STATUS_INVALID_ARGUMENT, "x");
    bad = xt;
    bad.dtype = DSA_DTYPE_I32;
    CHECK_FAILS_WITH(dsa_quantize_fp8(context, nullptr, &bad, &qt, &st, nullptr), DSA_STATUS_DTYPE_MISMATCH, "x");
    bad = qt;
    bad.dtype = DSA_DTYPE_F32;
    bad.shape[1] = 64;
    CHECK_FAILS_WITH(dsa_quantize_fp8(context, nullptr, &xt, &bad, &st, nullptr), DSA_STATUS_DTYPE_MISMATCH, "q");
    bad = xt;
    bad.dtype = 99;
    CHECK_FAILS_WITH(dsa_quantize_fp8(context, nullptr, &bad, &qt, &st, nullptr), DSA_STATUS_DTYPE_MISMATCH, "x");
    bad = qt;
    bad.shape[1] = 64;
    CHECK_FAILS_WITH(dsa_quantize_fp8(context, nullptr, &xt, &bad, &st, nullptr), DSA_STATUS_SHAPE_MISMATCH, "q");
    bad = st;
    bad.shape[1] = 2;
    CHECK_FAILS_WITH(dsa_quantize_fp8(context, nullptr, &xt, &qt, &bad, nullptr), DSA_STATUS_SHAPE_MISMATCH, "scales");
    bad = xt;
    bad.shape[0] = -1;
    CHECK_FAILS_WITH(dsa_quantize_fp8(context, nullptr, &bad, &qt, &st, nullptr), DSA_STATUS_SHAPE_MISMATCH, "x");
    bad = xt;
    bad.shape[0] = int64_t(1) << 62;
    bad.strides[0] = 1 << 20;
    CHECK_FAILS_WITH(dsa_quantize_fp8(context, nullptr, &bad, &qt, &st, nullptr), DSA_STATUS_SHAPE_MISMATCH, "x");
    bad = xt;
    bad.ndim = 9;
    CHECK_FAILS_WITH(dsa_quantize_fp8(context, nullptr, &bad, &qt, &st, nullptr), DSA_STATUS_INVALID_ARGUMENT, "x");
    bad = xt;
    bad.strides[1] = 2;
    CHECK_FAILS_WITH(dsa_quantize_fp8(context, nullptr, &bad, &qt, &st, nullptr), DSA_STATUS_LAYOUT_UNSUPPORTED, "x");
    bad = xt;
    bad.data = reinterpret_cast<char*>(x.data()) + 1;
    CHECK_FAILS_WITH(dsa_quantize_fp8(context, nullptr, &bad, &qt, &st, nullptr), DSA_STATUS_LAYOUT_UNSUPPORTED, "x");
    bad = qt;
    bad.strides[0] = 0;
    CHECK_FAILS_WITH(dsa_quantize_fp8(context, nullptr, &xt, &bad, &st, nullptr), DSA_STATUS_LAYOUT_UNSUPPORTED, "q");
    bad = qt;
    bad.data = x.data();  // output overlapping the input
    CHECK_FAILS_WITH(dsa_quantize_fp8(context, nullptr, &xt, &bad, &st, nullptr), DSA_STATUS_LAYOUT_UNSUPPORTED, "q");
    bad = xt;
    bad.device_type = DSA_DEVICE_CUDA;
    CHECK(dsa_quantize_fp8(context, nullptr, &bad, &qt, &st, nullptr) != DSA_STATUS_SUCCESS);
    CHECK(std::string(dsa_last_error_message()).find("x") == 0);
    bad.device_type = 3;
    CHECK_FAILS_WITH(dsa_quantize_fp8(context, nullptr, &bad, &qt, &st, nullptr), DSA_STATUS_DEVICE_MISMATCH, "x");

    dsa_quantize_fp8_params_t params;
    dsa_quantize_fp8_params_init(&params);
    params.group_size = 96;  // does not divide 128
    CHECK_FAILS_WITH(dsa_quantize_fp8(context, &params, &xt, &qt, &st, nullptr), DSA_STATUS_INVALID_ARGUMENT, "group_size");
    params.group_size = 0;
    CHECK_FAILS_WITH(dsa_quantize_fp8(context, &params, &xt, &qt, &st, nullptr), DSA_STATUS_INVALID_ARGUMENT, "group_size");
    dsa_quantize_fp8_params_init(&params);
    params.amax_floor = 0.0f;
    CHECK_FAILS_WITH(dsa_quantize_fp8(context, &params, &xt, &qt, &st, nullptr), DSA_STATUS_INVALID_ARGUMENT, "amax_floor");
    dsa_quantize_fp8_params_init(&params);
    params.scale_format = 7;
    CHECK_FAILS_WITH(dsa_quantize_fp8(context, &params, &xt, &qt, &st, nullptr), DSA_STATUS_INVALID_ARGUMENT, "scale_format");
    dsa_quantize_fp8_params_init(&params);
    params.struct_size = 4;
    CHECK_FAILS_WITH(dsa_quantize_fp8(context, &params, &xt, &qt, &st, nullptr), DSA_STATUS_INVALID_ARGUMENT, "struct_size");
    CHECK(q == q_before);  // nothing written on any error

    std::vector<float> y(256);
    dsa_tensor_t yt = view(y.data(), {2, 128}, DSA_DTYPE_F32);
    bad = yt;
    bad.dtype = DSA_DTYPE_F16;
    CHECK_FAILS_WITH(dsa_dequantize_fp8(context, nullptr, &qt, &st, &bad, nullptr), DSA_STATUS_DTYPE_MISMATCH, "y");
    bad = st;
    bad.dtype = DSA_DTYPE_BF16;
    CHECK_FAILS_WITH(dsa_dequantize_fp8(context, nullptr, &qt, &bad, &yt, nullptr), DSA_STATUS_DTYPE_MISMATCH, "scales");
    CHECK_FAILS_WITH(dsa_dequantize_fp8(context, nullptr, nullptr, &st, &yt, nullptr), DSA_STATUS_INVALID_ARGUMENT, "q");
}

TEST_CASE("params structs from a newer caller: unknown fields must be zero") {
    Context context(1);
    struct Newer {
        dsa_quantize_fp8_params_t known;
        int32_t future_field;
    } newer{};
    dsa_quantize_fp8_params_init(&newer.known);
    newer.known.struct_size = sizeof newer;
    std::vector<float> x(128, 1.0f), s(1);
    std::vector<uint8_t> q(128);
    dsa_tensor_t xt = view(x.data(), {128}, DSA_DTYPE_F32), qt = view(q.data(), {128}, DSA_DTYPE_U8),
                 st = view(s.data(), {1}, DSA_DTYPE_F32);
    CHECK(dsa_quantize_fp8(context, &newer.known, &xt, &qt, &st, nullptr) == DSA_STATUS_SUCCESS);
    newer.future_field = 1;
    CHECK_FAILS_WITH(dsa_quantize_fp8(context, &newer.known, &xt, &qt, &st, nullptr), DSA_STATUS_UNSUPPORTED, "params");
}

TEST_CASE("empty tensors are a successful no-op") {
    Context context(1);
    dsa_tensor_t x = view(nullptr, {0, 128}, DSA_DTYPE_F32), q = view(nullptr, {0, 128}, DSA_DTYPE_U8),
                 s = view(nullptr, {0, 1}, DSA_DTYPE_F32);
    CHECK(dsa_quantize_fp8(context, nullptr, &x, &q, &s, nullptr) == DSA_STATUS_SUCCESS);
}
