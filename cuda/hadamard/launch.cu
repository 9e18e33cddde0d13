// CUDA Hadamard rotation: one block per row, the butterfly in shared memory in f32 (the same
// operations in the same order as the CPU path, so results match bitwise).
#include "../../core/ops/hadamard.hpp"
#include "butterfly.cuh"

namespace dsa::cuda {
namespace {

template <typename T>
__global__ void hadamard_kernel(HadamardProblem p, RowLayout x_rows, RowLayout y_rows) {
    __shared__ float row[kHadamardMaxLength];
    const int n = static_cast<int>(p.n);
    for (int64_t r = blockIdx.x; r < p.rows; r += gridDim.x) {
        const T* x = static_cast<const T*>(p.x.data) + x_rows.offset(r);
        for (int j = threadIdx.x; j < n; j += blockDim.x) row[j] = to_float(x[j]);
        __syncthreads();
        block_butterfly(row, n);
        T* y = static_cast<T*>(p.y.data) + y_rows.offset(r);
        for (int j = threadIdx.x; j < n; j += blockDim.x) {
            const float value = row[j] * p.scale;
            if constexpr (sizeof(T) == 4) {
                y[j] = value;
            } else {
                y[j] = bf16_t{float_to_bf16(value)};
            }
        }
        __syncthreads();
    }
}

}  // namespace

Status hadamard(Context& context, const HadamardProblem& problem, Stream stream) {
    DeviceScope scope(context.device_id());
    DSA_TRY(scope.status());
    const int threads = butterfly_threads(problem.n);
    const unsigned blocks = row_blocks(problem.rows);
    if (problem.x.dtype == DType::bf16)
        hadamard_kernel<bf16_t><<<blocks, threads, 0, stream>>>(problem, leading_rows(problem.x), leading_rows(problem.y));
    else
        hadamard_kernel<float><<<blocks, threads, 0, stream>>>(problem, leading_rows(problem.x), leading_rows(problem.y));
    return launch_status("hadamard kernel launch");
}

}  // namespace dsa::cuda
