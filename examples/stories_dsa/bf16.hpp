// bf16 <-> f32 for the sparse-attention path (libdsa's sparse attention takes bf16).
#pragma once

#include <bit>
#include <cstdint>

namespace stories {

// Round to nearest even; NaN stays a (quiet) NaN.
inline uint16_t to_bf16(float value) {
    const uint32_t bits = std::bit_cast<uint32_t>(value);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
    return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

inline float from_bf16(uint16_t value) { return std::bit_cast<float>(static_cast<uint32_t>(value) << 16); }

}  // namespace stories
