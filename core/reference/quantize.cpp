// Scalar oracle for FP8 block quantisation, written from DSA_SPEC section 2 (tests only).
#include <cmath>

#include "../ops/quantize.hpp"

namespace dsa::reference {
namespace {

float load(const TensorView& t, int64_t offset) {
    switch (t.dtype) {
        case DType::bf16: return bf16_to_float(t.as<const uint16_t>()[offset]);
        case DType::f16: return f16_to_float(t.as<const uint16_t>()[offset]);
        default: return t.as<const float>()[offset];
    }
}

}  // namespace

void quantize_fp8(const QuantizeFp8Problem& p) {
    const RowLayout x_rows = leading_rows(p.values), q_rows = leading_rows(p.codes), s_rows = leading_rows(p.scales);
    for (int64_t row = 0; row < p.rows; ++row) {
        for (int64_t group = 0; group < p.groups_per_row(); ++group) {
            const int64_t first = group * p.config.group_size;
            float amax = 0.0f;
            for (int64_t i = first; i < first + p.config.group_size; ++i) {
                const float v = load(p.values, x_rows.offset(row) + i);
                if (std::isfinite(v)) amax = std::fmax(amax, std::fabs(v));
            }
            amax = std::fmax(amax, p.config.amax_floor);
            float scale = amax / 448.0f;
            if (p.config.scale_format == ScaleFormat::ue8m0) {
                int exponent = 0;
                const float mantissa = std::frexp(scale, &exponent);  // scale = mantissa * 2^exponent
                scale = std::ldexp(1.0f, mantissa == 0.5f ? exponent - 1 : exponent);
            }
            for (int64_t i = first; i < first + p.config.group_size; ++i) {
                const float v = load(p.values, x_rows.offset(row) + i);
                const float clamped = std::isnan(v) ? v : std::fmin(std::fmax(v / scale, -448.0f), 448.0f);
                p.codes.as<uint8_t>()[q_rows.offset(row) + i] = encode_e4m3(clamped);
            }
            p.scales.as<float>()[s_rows.offset(row) + group * p.scales.stride(-1)] = scale;
        }
    }
}

void dequantize_fp8(const QuantizeFp8Problem& p) {
    const RowLayout y_rows = leading_rows(p.values), q_rows = leading_rows(p.codes), s_rows = leading_rows(p.scales);
    for (int64_t row = 0; row < p.rows; ++row)
        for (int64_t i = 0; i < p.n; ++i) {
            const float scale = p.scales.as<const float>()[s_rows.offset(row) + (i / p.config.group_size) * p.scales.stride(-1)];
            const float value = decode_e4m3(p.codes.as<const uint8_t>()[q_rows.offset(row) + i]) * scale;
            if (p.values.dtype == DType::bf16)
                p.values.as<uint16_t>()[y_rows.offset(row) + i] = float_to_bf16(value);
            else
                p.values.as<float>()[y_rows.offset(row) + i] = value;
        }
}

}  // namespace dsa::reference
