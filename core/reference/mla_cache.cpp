// Scalar oracle of the MLA FP8 cache writer, from DSA_SPEC sections 2 and 7.2 (tests only).
#include <cmath>
#include <cstring>

#include "../ops/mla_cache.hpp"

namespace dsa::reference {
namespace {

float load(const TensorView& t, int64_t offset) {
    return t.dtype == DType::bf16 ? bf16_to_float(t.as<const uint16_t>()[offset]) : t.as<const float>()[offset];
}

}  // namespace

void mla_cache_write(const MlaCacheWriteProblem& p) {
    // Token order: a later token overwrites an earlier one with the same slot.
    for (int64_t t = 0; t < p.tokens; ++t) {
        const int64_t slot = p.slot_mapping.as<const int64_t>()[t * p.slot_mapping.strides[0]];
        if (slot < 0 || slot >= p.num_slots) continue;
        uint8_t* entry = p.cache.as<uint8_t>() + (slot / p.page_size) * p.cache.strides[0] +
                         (slot % p.page_size) * p.cache.strides[1];
        for (int64_t group = 0; group < 4; ++group) {
            float amax = 0.0f;
            for (int64_t i = group * 128; i < (group + 1) * 128; ++i) {
                const float v = load(p.c_kv, t * p.c_kv.strides[0] + i);
                if (std::isfinite(v)) amax = std::fmax(amax, std::fabs(v));
            }
            amax = std::fmax(amax, 1e-4f);
            int exponent = 0;
            const float mantissa = std::frexp(amax / 448.0f, &exponent);  // ratio = mantissa * 2^exponent
            const float scale = std::ldexp(1.0f, mantissa == 0.5f ? exponent - 1 : exponent);
            for (int64_t i = group * 128; i < (group + 1) * 128; ++i) {
                const float v = load(p.c_kv, t * p.c_kv.strides[0] + i);
                const float clamped = std::isnan(v) ? v : std::fmin(std::fmax(v / scale, -448.0f), 448.0f);
                entry[i] = encode_e4m3(clamped);
            }
            std::memcpy(entry + 512 + 4 * group, &scale, 4);
        }
        for (int64_t i = 0; i < 64; ++i) {
            const uint16_t bits = p.k_pe.dtype == DType::bf16 ? p.k_pe.as<const uint16_t>()[t * p.k_pe.strides[0] + i]
                                                             : float_to_bf16(p.k_pe.as<const float>()[t * p.k_pe.strides[0] + i]);
            std::memcpy(entry + 528 + 2 * i, &bits, 2);
        }
    }
}

}  // namespace dsa::reference
