// CPU FP8 block quantisation: one group at a time, rows split over the pool.
#include <cfloat>
#include <cmath>

#include "../ops/quantize.hpp"
#include "isa.hpp"

namespace dsa::cpu {
namespace {

// Enough groups per chunk to amortise scheduling (~64K elements).
int64_t rows_per_chunk(int64_t n) { return n >= 65536 ? 1 : 65536 / n; }

template <typename T>
inline __attribute__((always_inline)) void quantize_row_impl(const T* x, uint8_t* q, float* scales, int64_t scale_stride,
                                                             int64_t n, const QuantizeFp8Config& config) {
    const bool power_of_two = config.scale_format == ScaleFormat::ue8m0;
    for (int64_t group = 0; group * config.group_size < n; ++group) {
        const T* xg = x + group * config.group_size;
        uint8_t* qg = q + group * config.group_size;
        float amax = 0.0f;
        for (int64_t i = 0; i < config.group_size; ++i) {
            const float magnitude = std::fabs(to_float(xg[i]));
            amax = magnitude <= FLT_MAX && magnitude > amax ? magnitude : amax;  // skips NaN and Inf
        }
        const float scale = fp8_group_scale(amax > config.amax_floor ? amax : config.amax_floor, power_of_two);
        for (int64_t i = 0; i < config.group_size; ++i) qg[i] = quantize_e4m3(to_float(xg[i]), scale);
        scales[group * scale_stride] = scale;
    }
}

template <typename T>
inline __attribute__((always_inline)) void dequantize_row_impl(const uint8_t* q, const float* scales,
                                                               int64_t scale_stride, T* y, int64_t n,
                                                               int64_t group_size) {
    for (int64_t group = 0; group * group_size < n; ++group) {
        const float scale = scales[group * scale_stride];
        for (int64_t i = group * group_size; i < (group + 1) * group_size; ++i) {
            const float value = decode_e4m3(q[i]) * scale;
            if constexpr (sizeof(T) == 4) {
                y[i] = value;
            } else {
                y[i] = bf16_t{float_to_bf16(value)};
            }
        }
    }
}

DSA_CPU_MULTIVERSION void dequantize_row(const uint8_t* q, const float* s, int64_t ss, float* y, int64_t n, int64_t g) {
    dequantize_row_impl(q, s, ss, y, n, g);
}
DSA_CPU_MULTIVERSION void dequantize_row(const uint8_t* q, const float* s, int64_t ss, bf16_t* y, int64_t n, int64_t g) {
    dequantize_row_impl(q, s, ss, y, n, g);
}

}  // namespace

DSA_CPU_MULTIVERSION void quantize_fp8_row(const float* x, uint8_t* q, float* s, int64_t ss, int64_t n,
                                           const QuantizeFp8Config& c) {
    quantize_row_impl(x, q, s, ss, n, c);
}
DSA_CPU_MULTIVERSION void quantize_fp8_row(const bf16_t* x, uint8_t* q, float* s, int64_t ss, int64_t n,
                                           const QuantizeFp8Config& c) {
    quantize_row_impl(x, q, s, ss, n, c);
}
DSA_CPU_MULTIVERSION void quantize_fp8_row(const f16_t* x, uint8_t* q, float* s, int64_t ss, int64_t n,
                                           const QuantizeFp8Config& c) {
    quantize_row_impl(x, q, s, ss, n, c);
}

namespace {

template <typename T>
void quantize_rows(Context& context, const QuantizeFp8Problem& p) {
    const RowLayout x_rows = leading_rows(p.values), q_rows = leading_rows(p.codes), s_rows = leading_rows(p.scales);
    const int64_t scale_stride = p.scales.stride(-1);
    context.pool().parallel_for(p.rows, rows_per_chunk(p.n), [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row)
            quantize_fp8_row(p.values.as<const T>() + x_rows.offset(row), p.codes.as<uint8_t>() + q_rows.offset(row),
                             p.scales.as<float>() + s_rows.offset(row), scale_stride, p.n, p.config);
    });
}

template <typename T>
void dequantize_rows(Context& context, const QuantizeFp8Problem& p) {
    const RowLayout y_rows = leading_rows(p.values), q_rows = leading_rows(p.codes), s_rows = leading_rows(p.scales);
    const int64_t scale_stride = p.scales.stride(-1);
    context.pool().parallel_for(p.rows, rows_per_chunk(p.n), [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row)
            dequantize_row(p.codes.as<const uint8_t>() + q_rows.offset(row), p.scales.as<const float>() + s_rows.offset(row),
                           scale_stride, p.values.as<T>() + y_rows.offset(row), p.n, p.config.group_size);
    });
}

}  // namespace

void quantize_fp8(Context& context, const QuantizeFp8Problem& problem) {
    switch (problem.values.dtype) {
        case DType::bf16: return quantize_rows<bf16_t>(context, problem);
        case DType::f16: return quantize_rows<f16_t>(context, problem);
        default: return quantize_rows<float>(context, problem);
    }
}

void dequantize_fp8(Context& context, const QuantizeFp8Problem& problem) {
    if (problem.values.dtype == DType::bf16) return dequantize_rows<bf16_t>(context, problem);
    return dequantize_rows<float>(context, problem);
}

}  // namespace dsa::cpu
