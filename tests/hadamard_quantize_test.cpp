// dsa_hadamard_quantize_fp8 on the CPU: bitwise the two-op pipeline it replaces (dsa_hadamard of
// f32(x) into an f32 temporary, then dsa_quantize_fp8 of it), and its validation.
#include <cmath>
#include <cstring>

#include "../core/numeric.hpp"
#include "support.hpp"

using namespace dsa_test;

namespace {

// x as the element type `dtype`; values() is f32(x), what the two-op pipeline rotates.
struct Input {
    dsa_dtype_t dtype;
    std::vector<float> f32;
    std::vector<uint16_t> halves;
    void* data() { return dtype == DSA_DTYPE_F32 ? static_cast<void*>(f32.data()) : halves.data(); }
    float value(size_t i) const {
        if (dtype == DSA_DTYPE_BF16) return dsa::bf16_to_float(halves[i]);
        if (dtype == DSA_DTYPE_F16) return dsa::f16_to_float(halves[i]);
        return f32[i];
    }
};

// count random values in [-3, 3) with outliers every 97th, as `dtype`; f16 values are random
// normal f16 bit patterns of magnitude 2^-5 to 2^5.
Input random_input(dsa_dtype_t dtype, size_t count, uint32_t seed) {
    Input input{dtype, random_floats(count, seed, -3.0f, 3.0f), {}};
    for (size_t i = 0; i < count; i += 97) input.f32[i] *= 1e3f;
    if (dtype == DSA_DTYPE_BF16) input.halves = to_bf16(input.f32);
    if (dtype == DSA_DTYPE_F16) {
        input.halves.resize(count);
        const std::vector<float> draws = random_floats(count, seed + 1, 0.0f, 1.0f);
        for (size_t i = 0; i < count; ++i) {
            const uint16_t sign = input.f32[i] < 0 ? 0x8000 : 0;
            const uint16_t exponent = static_cast<uint16_t>(10 + static_cast<int>(draws[i] * 10.999f));
            const uint16_t mantissa = static_cast<uint16_t>(static_cast<uint32_t>(std::fabs(input.f32[i]) * 1e4f) & 0x3ff);
            input.halves[i] = static_cast<uint16_t>(sign | (exponent << 10) | mantissa);
        }
    }
    return input;
}

struct Quantized {
    std::vector<uint8_t> codes;
    std::vector<float> scales;
};

bool same_bits(const Quantized& a, const Quantized& b) {
    return a.codes == b.codes && a.scales.size() == b.scales.size() &&
           std::memcmp(a.scales.data(), b.scales.data(), a.scales.size() * sizeof(float)) == 0;
}

// The two-op pipeline on rows x [rows, n] (contiguous).
Quantized two_op_pipeline(dsa_context_t* context, const Input& x, int64_t rows, int64_t n,
                          const dsa_hadamard_params_t* hadamard_params, const dsa_quantize_fp8_params_t* quantize_params) {
    std::vector<float> widened(rows * n), rotated(rows * n);
    for (size_t i = 0; i < widened.size(); ++i) widened[i] = x.value(i);
    dsa_tensor_t wt = view(widened.data(), {rows, n}, DSA_DTYPE_F32), rt = view(rotated.data(), {rows, n}, DSA_DTYPE_F32);
    REQUIRE(dsa_hadamard(context, hadamard_params, &wt, &rt, nullptr) == DSA_STATUS_SUCCESS);
    const int64_t group = quantize_params != nullptr ? quantize_params->group_size : 128;
    Quantized out{std::vector<uint8_t>(rows * n, 0x11), std::vector<float>(rows * n / group, -3.0f)};
    dsa_tensor_t qt = view(out.codes.data(), {rows, n}, DSA_DTYPE_FP8_E4M3);
    dsa_tensor_t st = view(out.scales.data(), {rows, n / group}, DSA_DTYPE_F32);
    REQUIRE(dsa_quantize_fp8(context, quantize_params, &rt, &qt, &st, nullptr) == DSA_STATUS_SUCCESS);
    return out;
}

Quantized fused(dsa_context_t* context, Input& x, int64_t rows, int64_t n, const dsa_hadamard_params_t* hadamard_params,
                const dsa_quantize_fp8_params_t* quantize_params) {
    const int64_t group = quantize_params != nullptr ? quantize_params->group_size : 128;
    Quantized out{std::vector<uint8_t>(rows * n, 0x22), std::vector<float>(rows * n / group, -4.0f)};
    dsa_tensor_t xt = view(x.data(), {rows, n}, x.dtype);
    dsa_tensor_t qt = view(out.codes.data(), {rows, n}, DSA_DTYPE_FP8_E4M3);
    dsa_tensor_t st = view(out.scales.data(), {rows, n / group}, DSA_DTYPE_F32);
    const dsa_status_t status = dsa_hadamard_quantize_fp8(context, hadamard_params, quantize_params, &xt, &qt, &st, nullptr);
    REQUIRE_MESSAGE(status == DSA_STATUS_SUCCESS, dsa_last_error_message());
    return out;
}

dsa_quantize_fp8_params_t quantize_params(int32_t group_size, dsa_scale_format_t format, float amax_floor = 1e-4f) {
    dsa_quantize_fp8_params_t params;
    dsa_quantize_fp8_params_init(&params);
    params.group_size = group_size;
    params.scale_format = format;
    params.amax_floor = amax_floor;
    return params;
}

}  // namespace

TEST_CASE("hadamard_quantize_fp8 equals hadamard (f32) then quantize_fp8 bitwise: every n, group size, format, dtype") {
    Context context(2);
    const int64_t rows = 9;
    for (dsa_dtype_t dtype : {DSA_DTYPE_F32, DSA_DTYPE_BF16, DSA_DTYPE_F16})
        for (int64_t n = 1; n <= 1024; n *= 2)
            for (int64_t group : {n, n / 2, int64_t{32}, int64_t{1}}) {
                if (group < 1 || group > n) continue;
                for (dsa_scale_format_t format : {DSA_SCALE_FORMAT_F32, DSA_SCALE_FORMAT_UE8M0}) {
                    CAPTURE(dtype); CAPTURE(n); CAPTURE(group); CAPTURE(format);
                    Input x = random_input(dtype, rows * n, static_cast<uint32_t>(n * 7 + group));
                    const dsa_quantize_fp8_params_t params = quantize_params(static_cast<int32_t>(group), format);
                    CHECK(same_bits(fused(context, x, rows, n, nullptr, &params),
                                    two_op_pipeline(context, x, rows, n, nullptr, &params)));
                }
            }
}

TEST_CASE("hadamard_quantize_fp8 defaults (NULL params), explicit scale and amax_floor") {
    Context context(2);
    const int64_t rows = 5, n = 256;
    Input x = random_input(DSA_DTYPE_BF16, rows * n, 3);
    CHECK(same_bits(fused(context, x, rows, n, nullptr, nullptr), two_op_pipeline(context, x, rows, n, nullptr, nullptr)));
    dsa_hadamard_params_t rotation;
    dsa_hadamard_params_init(&rotation);
    rotation.scale = -0.75f;
    const dsa_quantize_fp8_params_t params = quantize_params(64, DSA_SCALE_FORMAT_UE8M0, 2.0f);  // floor above most amax
    CHECK(same_bits(fused(context, x, rows, n, &rotation, &params), two_op_pipeline(context, x, rows, n, &rotation, &params)));
}

TEST_CASE("hadamard_quantize_fp8 NaN, Inf and all-zero rows follow quantize_fp8's rules") {
    Context context(2);
    const int64_t rows = 6, n = 128;
    Input x = random_input(DSA_DTYPE_F32, rows * n, 5);
    x.f32[0 * n + 3] = NAN;                                // row 0 rotates to all NaN
    x.f32[1 * n + 7] = INFINITY;                           // row 1: +-Inf everywhere
    x.f32[2 * n + 1] = INFINITY, x.f32[2 * n + 2] = -INFINITY;  // row 2: Inf - Inf = NaN in places
    for (int64_t i = 0; i < n; ++i) x.f32[3 * n + i] = 0.0f;   // row 3: all zero (amax_floor)
    x.f32[4 * n + 5] = 3e38f, x.f32[4 * n + 6] = 3e38f;        // row 4: overflows to Inf in the butterfly
    for (dsa_scale_format_t format : {DSA_SCALE_FORMAT_F32, DSA_SCALE_FORMAT_UE8M0}) {
        CAPTURE(format);
        const dsa_quantize_fp8_params_t params = quantize_params(32, format);
        const Quantized got = fused(context, x, rows, n, nullptr, &params);
        CHECK(same_bits(got, two_op_pipeline(context, x, rows, n, nullptr, &params)));
        for (int64_t g = 0; g < n / 32; ++g) CHECK(got.scales[3 * (n / 32) + g] == dsa::fp8_group_scale(1e-4f, format == DSA_SCALE_FORMAT_UE8M0));
        for (int64_t i = 0; i < n; ++i) CHECK(got.codes[3 * n + i] == 0);
    }
}

TEST_CASE("hadamard_quantize_fp8 strided leading dimensions, U8 codes, a strided scale column") {
    Context context(3);
    const int64_t n = 64, group = 16, groups = n / group;
    // x [2, 3, n] taken from a [2, 4, 2n] buffer; q [2, 3, n] from a [2, 3, n + 8] buffer; scales
    // [2, 3, groups] with last stride 2.
    Input storage = random_input(DSA_DTYPE_BF16, 2 * 4 * 2 * n, 17);
    dsa_tensor_t xt = strided(storage.data(), {2, 3, n}, {4 * 2 * n, 2 * n, 1}, DSA_DTYPE_BF16);
    std::vector<uint8_t> q(2 * 3 * (n + 8), 0x5a);
    dsa_tensor_t qt = strided(q.data(), {2, 3, n}, {3 * (n + 8), n + 8, 1}, DSA_DTYPE_U8);
    std::vector<float> s(2 * 3 * groups * 2, -7.0f);
    dsa_tensor_t st = strided(s.data(), {2, 3, groups}, {3 * groups * 2, groups * 2, 2}, DSA_DTYPE_F32);
    const dsa_quantize_fp8_params_t params = quantize_params(group, DSA_SCALE_FORMAT_UE8M0);
    REQUIRE(dsa_hadamard_quantize_fp8(context, nullptr, &params, &xt, &qt, &st, nullptr) == DSA_STATUS_SUCCESS);

    Input packed{DSA_DTYPE_BF16, {}, std::vector<uint16_t>(6 * n)};
    for (int64_t b = 0; b < 2; ++b)
        for (int64_t r = 0; r < 3; ++r)
            std::memcpy(&packed.halves[(b * 3 + r) * n], &storage.halves[b * 4 * 2 * n + r * 2 * n], n * sizeof(uint16_t));
    const Quantized want = two_op_pipeline(context, packed, 6, n, nullptr, &params);
    for (int64_t b = 0; b < 2; ++b)
        for (int64_t r = 0; r < 3; ++r) {
            CAPTURE(b); CAPTURE(r);
            const int64_t row = b * 3 + r;
            CHECK(std::memcmp(&q[b * 3 * (n + 8) + r * (n + 8)], &want.codes[row * n], n) == 0);
            for (int64_t i = n; i < n + 8; ++i) CHECK(q[b * 3 * (n + 8) + r * (n + 8) + i] == 0x5a);  // the gaps
            for (int64_t g = 0; g < groups; ++g) {
                const float got = s[b * 3 * groups * 2 + r * groups * 2 + g * 2];
                CHECK(std::memcmp(&got, &want.scales[row * groups + g], sizeof(float)) == 0);
                CHECK(s[b * 3 * groups * 2 + r * groups * 2 + g * 2 + 1] == -7.0f);
            }
        }
}

TEST_CASE("hadamard_quantize_fp8 results do not depend on the thread count; empty x is a no-op") {
    const int64_t rows = 300, n = 512;
    Input x = random_input(DSA_DTYPE_F32, rows * n, 23);
    const dsa_quantize_fp8_params_t params = quantize_params(128, DSA_SCALE_FORMAT_F32);
    Context one(1), three(3);
    CHECK(same_bits(fused(one, x, rows, n, nullptr, &params), fused(three, x, rows, n, nullptr, &params)));
    uint8_t q = 0x33;
    float s = 1.5f;
    dsa_tensor_t xt = view(x.data(), {0, n}, DSA_DTYPE_F32), qt = view(&q, {0, n}, DSA_DTYPE_FP8_E4M3);
    dsa_tensor_t st = view(&s, {0, n / 128}, DSA_DTYPE_F32);
    CHECK(dsa_hadamard_quantize_fp8(one, nullptr, &params, &xt, &qt, &st, nullptr) == DSA_STATUS_SUCCESS);
    CHECK(q == 0x33);
    CHECK(s == 1.5f);
}

TEST_CASE("hadamard_quantize_fp8 rejects bad input with a status naming the argument, outputs untouched") {
    Context context(1);
    const int64_t rows = 3, n = 128;
    std::vector<float> x(rows * n, 1.0f), s(rows, 9.0f);
    std::vector<uint8_t> q(rows * n, 0x77);
    dsa_tensor_t xt = view(x.data(), {rows, n}, DSA_DTYPE_F32), qt = view(q.data(), {rows, n}, DSA_DTYPE_FP8_E4M3);
    dsa_tensor_t st = view(s.data(), {rows, 1}, DSA_DTYPE_F32);
    const std::vector<uint8_t> q_before = q;
    const std::vector<float> s_before = s;
    auto call = [&](const dsa_hadamard_params_t* h, const dsa_quantize_fp8_params_t* p, const dsa_tensor_t* a,
                    const dsa_tensor_t* b, const dsa_tensor_t* c) {
        return dsa_hadamard_quantize_fp8(context, h, p, a, b, c, nullptr);
    };

    CHECK_FAILS_WITH(dsa_hadamard_quantize_fp8(nullptr, nullptr, nullptr, &xt, &qt, &st, nullptr),
                     DSA_STATUS_INVALID_ARGUMENT, "context");
    CHECK_FAILS_WITH(call(nullptr, nullptr, nullptr, &qt, &st), DSA_STATUS_INVALID_ARGUMENT, "x");
    CHECK_FAILS_WITH(call(nullptr, nullptr, &xt, nullptr, &st), DSA_STATUS_INVALID_ARGUMENT, "q");
    CHECK_FAILS_WITH(call(nullptr, nullptr, &xt, &qt, nullptr), DSA_STATUS_INVALID_ARGUMENT, "scales");

    dsa_hadamard_params_t rotation;
    dsa_hadamard_params_init(&rotation);
    rotation.scale = NAN;
    CHECK_FAILS_WITH(call(&rotation, nullptr, &xt, &qt, &st), DSA_STATUS_INVALID_ARGUMENT, "hadamard_params.scale");
    dsa_hadamard_params_init(&rotation);
    rotation.struct_size = 2;
    CHECK_FAILS_WITH(call(&rotation, nullptr, &xt, &qt, &st), DSA_STATUS_INVALID_ARGUMENT, "hadamard_params");
    dsa_quantize_fp8_params_t params = quantize_params(0, DSA_SCALE_FORMAT_F32);
    CHECK_FAILS_WITH(call(nullptr, &params, &xt, &qt, &st), DSA_STATUS_INVALID_ARGUMENT, "quantize_params.group_size");
    params = quantize_params(96, DSA_SCALE_FORMAT_F32);  // does not divide 128
    CHECK_FAILS_WITH(call(nullptr, &params, &xt, &qt, &st), DSA_STATUS_INVALID_ARGUMENT, "quantize_params.group_size");
    params = quantize_params(128, 7);
    CHECK_FAILS_WITH(call(nullptr, &params, &xt, &qt, &st), DSA_STATUS_INVALID_ARGUMENT, "quantize_params.scale_format");
    params = quantize_params(128, DSA_SCALE_FORMAT_F32, 0.0f);
    CHECK_FAILS_WITH(call(nullptr, &params, &xt, &qt, &st), DSA_STATUS_INVALID_ARGUMENT, "quantize_params.amax_floor");
    params = quantize_params(128, DSA_SCALE_FORMAT_F32);
    params.struct_size = 4;
    CHECK_FAILS_WITH(call(nullptr, &params, &xt, &qt, &st), DSA_STATUS_INVALID_ARGUMENT, "quantize_params");

    // N = 96 (not a power of two) with a group size that divides it: the rotation's rule.
    std::vector<float> x96(rows * 96);
    std::vector<uint8_t> q96(rows * 96);
    dsa_tensor_t x96t = view(x96.data(), {rows, 96}, DSA_DTYPE_F32), q96t = view(q96.data(), {rows, 96}, DSA_DTYPE_U8);
    params = quantize_params(32, DSA_SCALE_FORMAT_F32);
    dsa_tensor_t s96t = view(s.data(), {rows, 3}, DSA_DTYPE_F32);
    std::vector<float> s96(rows * 3, 9.0f);
    s96t.data = s96.data();
    CHECK_FAILS_WITH(call(nullptr, &params, &x96t, &q96t, &s96t), DSA_STATUS_SHAPE_MISMATCH, "power of two");
    std::vector<float> big(2048);
    std::vector<uint8_t> big_q(2048);
    std::vector<float> big_s(16);
    dsa_tensor_t big_x = view(big.data(), {2048}, DSA_DTYPE_F32), big_qt = view(big_q.data(), {2048}, DSA_DTYPE_U8);
    dsa_tensor_t big_st = view(big_s.data(), {16}, DSA_DTYPE_F32);
    CHECK_FAILS_WITH(call(nullptr, nullptr, &big_x, &big_qt, &big_st), DSA_STATUS_SHAPE_MISMATCH, "x");

    dsa_tensor_t bad = xt;
    bad.dtype = DSA_DTYPE_I32;
    CHECK_FAILS_WITH(call(nullptr, nullptr, &bad, &qt, &st), DSA_STATUS_DTYPE_MISMATCH, "x");
    bad = qt;
    bad.dtype = DSA_DTYPE_BF16;
    CHECK_FAILS_WITH(call(nullptr, nullptr, &xt, &bad, &st), DSA_STATUS_DTYPE_MISMATCH, "q");
    bad = st;
    bad.dtype = DSA_DTYPE_BF16;
    CHECK_FAILS_WITH(call(nullptr, nullptr, &xt, &qt, &bad), DSA_STATUS_DTYPE_MISMATCH, "scales");
    bad = qt;
    bad.shape[0] = 2;
    CHECK_FAILS_WITH(call(nullptr, nullptr, &xt, &bad, &st), DSA_STATUS_SHAPE_MISMATCH, "q");
    bad = st;
    bad.shape[1] = 2;
    CHECK_FAILS_WITH(call(nullptr, nullptr, &xt, &qt, &bad), DSA_STATUS_SHAPE_MISMATCH, "scales");
    bad = xt;
    bad.strides[1] = 2;
    bad.shape[0] = 1;
    dsa_tensor_t q1 = qt, s1 = st;
    q1.shape[0] = s1.shape[0] = 1;
    CHECK_FAILS_WITH(call(nullptr, nullptr, &bad, &q1, &s1), DSA_STATUS_LAYOUT_UNSUPPORTED, "x");
    bad = qt;
    bad.data = x.data();  // q over x
    CHECK_FAILS_WITH(call(nullptr, nullptr, &xt, &bad, &st), DSA_STATUS_LAYOUT_UNSUPPORTED, "q");
    bad = st;
    bad.data = q.data() + 64;  // scales over q
    CHECK_FAILS_WITH(call(nullptr, nullptr, &xt, &qt, &bad), DSA_STATUS_LAYOUT_UNSUPPORTED, "scales");
    bad = st;
    bad.strides[0] = 0;  // every row's scale in one place
    CHECK_FAILS_WITH(call(nullptr, nullptr, &xt, &qt, &bad), DSA_STATUS_LAYOUT_UNSUPPORTED, "scales");
    bad = xt;
    bad.device_type = DSA_DEVICE_CUDA;  // UNSUPPORTED in a CPU-only build, DEVICE_MISMATCH otherwise
    CHECK(call(nullptr, nullptr, &bad, &qt, &st) != DSA_STATUS_SUCCESS);
    CHECK(std::string(dsa_last_error_message()).find("x: ") == 0);
    bad = qt;
    bad.device_type = 3;
    CHECK_FAILS_WITH(call(nullptr, nullptr, &xt, &bad, &st), DSA_STATUS_DEVICE_MISMATCH, "q");
    dsa_tensor_t scalar = view(x.data(), {}, DSA_DTYPE_F32), scalar_q = view(q.data(), {}, DSA_DTYPE_U8);
    CHECK_FAILS_WITH(call(nullptr, nullptr, &scalar, &scalar_q, &st), DSA_STATUS_SHAPE_MISMATCH, "x");

    CHECK(q == q_before);
    CHECK(s == s_before);
    for (float v : s96) CHECK(v == 9.0f);
}
