// One warp quantises one FP8 group: shared by every CUDA quantisation so that amax, the scale
// and the codes are computed exactly as dsa_quantize_fp8 computes them on every backend.
#pragma once

#include "../../core/ops/quantize.hpp"
#include "../common/runtime.cuh"

namespace dsa::cuda {

DSA_HOST_DEVICE float load_float(const void* base, DType dtype, int64_t i) {
    switch (dtype) {
        case DType::bf16: return bf16_to_float(static_cast<const uint16_t*>(base)[i]);
        case DType::f16: return f16_to_float(static_cast<const uint16_t*>(base)[i]);
        default: return static_cast<const float*>(base)[i];
    }
}

// value(i) gives element i < config.group_size of the group; all 32 lanes of the warp call this.
// Writes codes[i] and, from lane 0, *scale_out.
template <typename Value>
__device__ inline void warp_quantize_group(const Value& value, const QuantizeFp8Config& config, uint8_t* codes,
                                           float* scale_out) {
    const int lane = threadIdx.x % 32;
    float amax = 0.0f;
    for (int64_t i = lane; i < config.group_size; i += 32) {
        const float magnitude = fabsf(value(i));
        amax = magnitude <= 3.402823466e38f && magnitude > amax ? magnitude : amax;  // skips NaN and Inf
    }
    for (int offset = 16; offset > 0; offset /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
    const float scale =
        fp8_group_scale(amax > config.amax_floor ? amax : config.amax_floor, config.scale_format == ScaleFormat::ue8m0);
    for (int64_t i = lane; i < config.group_size; i += 32) codes[i] = quantize_e4m3(value(i), scale);
    if (lane == 0) *scale_out = scale;
}

}  // namespace dsa::cuda
