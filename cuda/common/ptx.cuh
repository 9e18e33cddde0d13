// Small PTX wrappers the kernels share (sm_80+): shared-memory addresses, 16-byte cp.async,
// ldmatrix, the bf16 pair conversion, and the bf16 row copy into shared memory built on them.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace dsa::cuda {

__device__ __forceinline__ uint32_t shared_address(const void* pointer) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(pointer));
}

// 16-byte global -> shared copy; `bytes` 0 writes zeros without reading `source`.
__device__ __forceinline__ void copy_async_16(uint32_t destination, const void* source, uint32_t bytes) {
    asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;\n" ::"r"(destination), "l"(source),
                 "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void copy_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int Pending>
__device__ __forceinline__ void copy_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending) : "memory");
}

// Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i.
__device__ __forceinline__ void load_matrix_x4(uint32_t address, uint32_t (&r)[4]) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address));
}
// The same, each matrix transposed.
__device__ __forceinline__ void load_matrix_x4_transposed(uint32_t address, uint32_t (&r)[4]) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address));
}
__device__ __forceinline__ void load_matrix_x2(uint32_t address, uint32_t& r0, uint32_t& r1) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n" : "=r"(r0), "=r"(r1) : "r"(address));
}

// Two floats rounded to a bf16 pair, the first in the low half.
__device__ __forceinline__ uint32_t pack_bf16(float low, float high) {
    uint32_t packed;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(packed) : "f"(high), "f"(low));
    return packed;
}

// Whether every row (and head) of a bf16 tensor starts 16-byte aligned.
__device__ __forceinline__ bool rows_aligned(const void* data, int64_t row_stride, int64_t head_stride) {
    return reinterpret_cast<uintptr_t>(data) % 16 == 0 && row_stride % 8 == 0 && head_stride % 8 == 0;
}

// `chunks` 16-byte chunks of a bf16 row into shared memory, the warp's lanes taking every 32nd
// chunk: cp.async when `vector` (the row 16-byte aligned), else 2-byte loads; zeros when
// `source` is NULL (nothing read).
__device__ __forceinline__ void copy_row(uint16_t* target, const uint16_t* source, int chunks, bool vector,
                                         int lane) {
    for (int c = lane; c < chunks; c += 32) {
        uint16_t* to = target + 8 * c;
        if (source == nullptr) {
            *reinterpret_cast<uint4*>(to) = make_uint4(0u, 0u, 0u, 0u);
        } else if (vector) {
            copy_async_16(shared_address(to), source + 8 * c, 16);
        } else {
            const uint16_t* from = source + 8 * c;
            uint32_t words[4];
#pragma unroll
            for (int k = 0; k < 4; ++k)
                words[k] = static_cast<uint32_t>(from[2 * k]) | (static_cast<uint32_t>(from[2 * k + 1]) << 16);
            *reinterpret_cast<uint4*>(to) = make_uint4(words[0], words[1], words[2], words[3]);
        }
    }
}

}  // namespace dsa::cuda
