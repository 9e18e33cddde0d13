// Warp-level bf16 tensor-core products (mma.sync m16n8k16, f32 accumulation, sm_80+) over
// operands read element by element through a functor, so one helper serves any layout (row-
// or column-major, shared or global memory, f32 or bf16 sources, zero padding) without a
// staging copy per layout. With Split, every f32 operand value x is carried as a bf16 high
// part h = bf16(x) and a bf16 remainder l = bf16(x - h), and the product takes h*h + h*l + l*h
// (three MMAs): about 16 mantissa bits per operand, near-f32 accuracy for f32 inputs. Also the
// f32/bf16 element load and the fixed-order warp sum the kernels built on it use.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "../../core/numeric.hpp"

namespace dsa::cuda {

// d (16x8 f32) += a (16x16 bf16, row) * b (16x8 bf16, col).
__device__ __forceinline__ void mma_16x8x16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Element (row, column) of a 16x8 accumulator fragment held by this lane: register i of the
// lane with group g = lane / 4 and pair c = 2 * (lane % 4) is (g + 8 * (i / 2), c + i % 2).
__device__ __forceinline__ int accumulator_row(int i) { return static_cast<int>(threadIdx.x % 32) / 4 + 8 * (i / 2); }
__device__ __forceinline__ int accumulator_column(int i) { return 2 * (static_cast<int>(threadIdx.x % 32) % 4) + i % 2; }

// Two values as a bf16 pair (the first in the low half) and, with Split, their remainders.
template <bool Split>
__device__ __forceinline__ void split_pair(float first, float second, uint32_t& high, uint32_t& low) {
    const __nv_bfloat162 rounded = __floats2bfloat162_rn(first, second);
    high = *reinterpret_cast<const uint32_t*>(&rounded);
    if constexpr (Split) {
        const float2 back = __bfloat1622float2(rounded);
        const __nv_bfloat162 rest = __floats2bfloat162_rn(first - back.x, second - back.y);
        low = *reinterpret_cast<const uint32_t*>(&rest);
    }
}

// d (16x8) += A (16 x 16*steps) * B (16*steps x 8), A(r, k) = a(r, k), B(k, n) = b(k, n): the
// functors return f32 values (0 outside the operands' extents). Every lane of the warp calls it.
template <bool Split, typename A, typename B>
__device__ __forceinline__ void warp_product(float (&d)[4], const A& a, const B& b, int steps) {
    const int lane = static_cast<int>(threadIdx.x % 32), g = lane / 4, c = 2 * (lane % 4);
    for (int step = 0; step < steps; ++step) {
        const int k = step * 16 + c;
        uint32_t a_high[4], a_low[4], b_high[2], b_low[2];
        split_pair<Split>(a(g, k), a(g, k + 1), a_high[0], a_low[0]);
        split_pair<Split>(a(g + 8, k), a(g + 8, k + 1), a_high[1], a_low[1]);
        split_pair<Split>(a(g, k + 8), a(g, k + 9), a_high[2], a_low[2]);
        split_pair<Split>(a(g + 8, k + 8), a(g + 8, k + 9), a_high[3], a_low[3]);
        split_pair<Split>(b(k, g), b(k + 1, g), b_high[0], b_low[0]);
        split_pair<Split>(b(k + 8, g), b(k + 9, g), b_high[1], b_low[1]);
        mma_16x8x16(d, a_high, b_high[0], b_high[1]);
        if constexpr (Split) {
            mma_16x8x16(d, a_high, b_low[0], b_low[1]);
            mma_16x8x16(d, a_low, b_high[0], b_high[1]);
        }
    }
}

// Element `offset` of an f32 or bf16 tensor as f32.
__device__ __forceinline__ float load_value(const void* data, bool bf16, int64_t offset) {
    return bf16 ? bf16_to_float(static_cast<const uint16_t*>(data)[offset]) : static_cast<const float*>(data)[offset];
}

// Sum over the warp's lanes, the same tree for every call (deterministic).
__device__ __forceinline__ float warp_sum(float value) {
    for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
    return value;
}

}  // namespace dsa::cuda
