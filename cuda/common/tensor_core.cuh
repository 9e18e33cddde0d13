// Warp-level bf16 tensor-core products (mma.sync m16n8k16, f32 accumulation, sm_80+) over
// operands read element by element through a functor, so one helper serves any layout (row-
// or column-major, shared or global memory, f32 or bf16 sources, zero padding) without a
// staging copy per layout. With Split, every f32 operand value x is carried as three bf16
// parts h = bf16(x), m = bf16(x - h), l = bf16(x - h - m) (24 mantissa bits: f32's), and the
// product takes every pair of parts above 2^-24 relative: hh + hm + mh + hl + lh + mm (six
// MMAs). Two parts (16 bits) were not enough: a ReLU input within 2^-16 of zero could take the
// other side of the kink than the f32 CPU path and move a gradient by a whole term. Also the
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

// Two values as bf16 pairs (the first in the low half): parts[0] the rounded values and, with
// Split, parts[1] and parts[2] the successive remainders.
template <bool Split>
__device__ __forceinline__ void split_pair(float first, float second, uint32_t (&parts)[3]) {
#pragma unroll
    for (int part = 0; part < (Split ? 3 : 1); ++part) {
        const __nv_bfloat162 rounded = __floats2bfloat162_rn(first, second);
        parts[part] = *reinterpret_cast<const uint32_t*>(&rounded);
        const float2 back = __bfloat1622float2(rounded);
        first -= back.x;
        second -= back.y;
    }
}

// d (16x8) += A (16 x 16*steps) * B (16*steps x 8), A(r, k) = a(r, k), B(k, n) = b(k, n): the
// functors return f32 values (0 outside the operands' extents). Every lane of the warp calls it.
template <bool Split, typename A, typename B>
__device__ __forceinline__ void warp_product(float (&d)[4], const A& a, const B& b, int steps) {
    const int lane = static_cast<int>(threadIdx.x % 32), g = lane / 4, c = 2 * (lane % 4);
    for (int step = 0; step < steps; ++step) {
        const int k = step * 16 + c;
        uint32_t a_pairs[4][3], b_pairs[2][3];
        split_pair<Split>(a(g, k), a(g, k + 1), a_pairs[0]);
        split_pair<Split>(a(g + 8, k), a(g + 8, k + 1), a_pairs[1]);
        split_pair<Split>(a(g, k + 8), a(g, k + 9), a_pairs[2]);
        split_pair<Split>(a(g + 8, k + 8), a(g + 8, k + 9), a_pairs[3]);
        split_pair<Split>(b(k, g), b(k + 1, g), b_pairs[0]);
        split_pair<Split>(b(k + 8, g), b(k + 9, g), b_pairs[1]);
        // Part pairs (i, j) with i + j <= 2, the small terms first; without Split only (0, 0).
        constexpr int kPartA[6] = {1, 0, 2, 1, 0, 0}, kPartB[6] = {1, 2, 0, 0, 1, 0};
#pragma unroll
        for (int product = Split ? 0 : 5; product < 6; ++product) {
            const uint32_t a_part[4] = {a_pairs[0][kPartA[product]], a_pairs[1][kPartA[product]],
                                        a_pairs[2][kPartA[product]], a_pairs[3][kPartA[product]]};
            mma_16x8x16(d, a_part, b_pairs[0][kPartB[product]], b_pairs[1][kPartB[product]]);
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
