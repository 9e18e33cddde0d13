// Scalar number formats shared by the CPU, the CUDA kernels and the tests: FP8 e4m3 ("fn"), bf16
// and f16 conversions by bit manipulation, so every backend rounds identically.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define DSA_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define DSA_HOST_DEVICE inline
#endif

namespace dsa {

inline constexpr float kFp8Max = 448.0f;

DSA_HOST_DEVICE uint32_t float_bits(float value) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(value);
#else
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    return bits;
#endif
}

DSA_HOST_DEVICE float bits_float(uint32_t bits) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(bits);
#else
    float value;
    std::memcpy(&value, &bits, sizeof value);
    return value;
#endif
}

DSA_HOST_DEVICE bool is_nan_bits(uint32_t bits) { return (bits & 0x7fffffffu) > 0x7f800000u; }

// f32 -> e4m3fn code: clamp to [-448, 448], round to nearest even, NaN -> NaN (sign kept).
DSA_HOST_DEVICE uint8_t encode_e4m3(float value) {
    const uint32_t bits = float_bits(value);
    const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
    if (is_nan_bits(bits)) return static_cast<uint8_t>(sign | 0x7f);
    uint32_t magnitude = bits & 0x7fffffffu;
    if (magnitude >= 0x43e00000u) return static_cast<uint8_t>(sign | 0x7e);  // >= 448 (incl. Inf)
    if (magnitude < 0x3c800000u) {
        // Below 2^-6: subnormal codes m * 2^-9. Scaling by 2^9 is exact; adding and subtracting
        // 1.5 * 2^23 rounds to an integer, to nearest even in the default rounding mode (the
        // sum lies in [2^23, 2^24), where the spacing is 1).
        const float scaled = bits_float(magnitude) * 512.0f;
        const float rounded = (scaled + 12582912.0f) - 12582912.0f;
        return static_cast<uint8_t>(sign | static_cast<uint8_t>(rounded));  // 8 -> 0x08 = 2^-6
    }
    // Normal: keep 3 mantissa bits, round to nearest even on the 20 dropped bits. A carry moves
    // into the exponent, which is the right result.
    magnitude += 0x7ffffu + ((magnitude >> 20) & 1u);
    const uint32_t exponent = (magnitude >> 23) - 127u + 7u;
    const uint32_t mantissa = (magnitude >> 20) & 7u;
    const uint32_t code = (exponent << 3) | mantissa;
    return static_cast<uint8_t>(sign | (code > 0x7eu ? 0x7eu : code));
}

// e4m3fn code -> f32, exact.
DSA_HOST_DEVICE float decode_e4m3(uint8_t code) {
    const uint32_t sign = static_cast<uint32_t>(code & 0x80u) << 24;
    const uint32_t exponent = (code >> 3) & 0xfu;
    const uint32_t mantissa = code & 7u;
    if (exponent == 0xfu && mantissa == 7u) return bits_float(sign | 0x7fc00000u);
    if (exponent == 0) {
        // m * 2^-9, exact in f32.
        return bits_float(sign | float_bits(static_cast<float>(mantissa) * (1.0f / 512.0f)));
    }
    return bits_float(sign | ((exponent - 7u + 127u) << 23) | (mantissa << 20));
}

// 16-bit float storage types, distinct so templates can tell them apart.
struct bf16_t { uint16_t bits; };
struct f16_t { uint16_t bits; };

// bf16 is the top half of an f32.
DSA_HOST_DEVICE float bf16_to_float(uint16_t value) { return bits_float(static_cast<uint32_t>(value) << 16); }

DSA_HOST_DEVICE uint16_t float_to_bf16(float value) {
    const uint32_t bits = float_bits(value);
    if (is_nan_bits(bits)) return static_cast<uint16_t>((bits >> 16) | 0x40u);  // quiet NaN
    return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

DSA_HOST_DEVICE float f16_to_float(uint16_t value) {
    const uint32_t sign = static_cast<uint32_t>(value & 0x8000u) << 16;
    const uint32_t exponent = (value >> 10) & 0x1fu;
    const uint32_t mantissa = value & 0x3ffu;
    if (exponent == 0x1fu) return bits_float(sign | 0x7f800000u | (mantissa << 13));
    if (exponent == 0) {
        // m * 2^-24, exact in f32.
        return bits_float(sign | float_bits(static_cast<float>(mantissa) * 5.9604644775390625e-8f));
    }
    return bits_float(sign | ((exponent - 15u + 127u) << 23) | (mantissa << 13));
}

DSA_HOST_DEVICE float to_float(float value) { return value; }
DSA_HOST_DEVICE float to_float(bf16_t value) { return bf16_to_float(value.bits); }
DSA_HOST_DEVICE float to_float(f16_t value) { return f16_to_float(value.bits); }

// Power-of-two scale rounded up: 2^ceil(log2(ratio)) for a finite ratio > 0, computed on the
// bits so it is exact.
DSA_HOST_DEVICE float pow2_ceil(float ratio) {
    const uint32_t bits = float_bits(ratio);
    uint32_t exponent = bits >> 23;
    const uint32_t mantissa = bits & 0x7fffffu;
    if (exponent == 0) {
        // Subnormal ratio: the next power of two is at most 2^-126.
        uint32_t power = 1;
        while (power < mantissa) power <<= 1;
        return power >= 0x800000u ? bits_float(0x00800000u) : bits_float(power);
    }
    if (mantissa != 0) ++exponent;
    return exponent >= 255 ? bits_float(0x7f800000u) : bits_float(exponent << 23);
}

// The scale of one quantisation group given its amax (already floored).
DSA_HOST_DEVICE float fp8_group_scale(float amax, bool power_of_two) {
    const float ratio = amax / kFp8Max;
    return power_of_two ? pow2_ceil(ratio) : ratio;
}

DSA_HOST_DEVICE uint8_t quantize_e4m3(float value, float scale) { return encode_e4m3(value / scale); }

}  // namespace dsa
