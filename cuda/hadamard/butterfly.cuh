// The block-wide Hadamard butterfly in shared memory, shared by every CUDA rotation: the same
// operations in the same order as the CPU's hadamard_butterfly, so results match bitwise.
#pragma once

#include "../common/runtime.cuh"

namespace dsa::cuda {

// row[0..n) = row . H_n (unscaled) in place, n a power of two. Every thread of the block calls
// it after row is written and synchronised; it returns synchronised.
__device__ inline void block_butterfly(float* row, int n) {
    for (int half = 1; half < n; half *= 2) {
        for (int pair = threadIdx.x; pair < n / 2; pair += blockDim.x) {
            const int j = (pair / half) * 2 * half + pair % half;
            const float a = row[j], b = row[j + half];
            row[j] = a + b;
            row[j + half] = a - b;
        }
        __syncthreads();
    }
}

// Threads per block for a row of n: a pair per thread up to 256 threads, never below a warp
// (a multiple of 32 for every power of two n).
inline int butterfly_threads(int64_t n) { return n >= 512 ? 256 : (n >= 64 ? static_cast<int>(n / 2) : 32); }

// Grid size for one block per row, rows beyond it taken by a grid-stride loop.
inline unsigned row_blocks(int64_t rows) { return static_cast<unsigned>(rows < 65536 * 8 ? rows : 65536 * 8); }

}  // namespace dsa::cuda
