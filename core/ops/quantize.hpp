// FP8 block quantisation and its inverse (DSA_SPEC section 2): the problem description shared
// by every backend, validation, and the backend entry points.
#pragma once

#include "../context.hpp"

namespace dsa {

enum class ScaleFormat : int32_t { f32 = 0, ue8m0 = 1 };

struct QuantizeFp8Config {
    int64_t group_size = 128;
    ScaleFormat scale_format = ScaleFormat::f32;
    float amax_floor = 1e-4f;
};

// values [..., n] (high precision: f32/bf16/f16 into quantize, f32/bf16 out of dequantize),
// codes [..., n] (e4m3 bytes), scales f32 [..., n / group_size]; rows = product of the leading
// extents.
struct QuantizeFp8Problem {
    TensorView values;
    TensorView codes;
    TensorView scales;
    QuantizeFp8Config config;
    int64_t rows = 0;
    int64_t n = 0;
    DSA_HOST_DEVICE int64_t groups_per_row() const { return n / config.group_size; }
};

Status quantize_fp8(Context& context, const QuantizeFp8Config& config, const TensorView* x, const TensorView* q,
                    const TensorView* scales, Stream stream);
Status dequantize_fp8(Context& context, const QuantizeFp8Config& config, const TensorView* q,
                      const TensorView* scales, const TensorView* y, Stream stream);

// Every check dsa_quantize_fp8 makes on its config (named `params_name` in messages) and on x,
// q and scales, filling *problem; shared with the ops that quantise what they compute.
Status describe_quantize_fp8(Context& context, const QuantizeFp8Config& config, const char* params_name,
                             const TensorView* x, const TensorView* q, const TensorView* scales,
                             QuantizeFp8Problem* problem);

namespace cpu {
void quantize_fp8(Context& context, const QuantizeFp8Problem& problem);
void dequantize_fp8(Context& context, const QuantizeFp8Problem& problem);
// One row of n values into codes q[0..n) and the scale of group g at scales[g * scale_stride]:
// the group quantiser every CPU quantisation uses.
void quantize_fp8_row(const float* x, uint8_t* q, float* scales, int64_t scale_stride, int64_t n,
                      const QuantizeFp8Config& config);
void quantize_fp8_row(const bf16_t* x, uint8_t* q, float* scales, int64_t scale_stride, int64_t n,
                      const QuantizeFp8Config& config);
void quantize_fp8_row(const f16_t* x, uint8_t* q, float* scales, int64_t scale_stride, int64_t n,
                      const QuantizeFp8Config& config);
}  // namespace cpu

namespace cuda {
Status quantize_fp8(Context& context, const QuantizeFp8Problem& problem, Stream stream);
Status dequantize_fp8(Context& context, const QuantizeFp8Problem& problem, Stream stream);
}  // namespace cuda

namespace reference {
// Scalar oracle for tests: one element at a time, straight from DSA_SPEC section 2.
void quantize_fp8(const QuantizeFp8Problem& problem);
void dequantize_fp8(const QuantizeFp8Problem& problem);
}  // namespace reference

}  // namespace dsa
