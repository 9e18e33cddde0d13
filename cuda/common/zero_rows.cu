#include <algorithm>

#include "runtime.cuh"
#include "zero_rows.cuh"

namespace dsa::cuda {
namespace {

__global__ void zero_rows_kernel(float* data, int64_t rows, int64_t columns, int64_t row_stride) {
    const int64_t count = rows * columns;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        data[(i / columns) * row_stride + i % columns] = 0.0f;
}

}  // namespace

Status zero_rows(float* data, int64_t rows, int64_t columns, int64_t row_stride, Stream stream) {
    const int64_t count = rows * columns;
    if (count <= 0) return Status::success();
    const unsigned grid = static_cast<unsigned>(std::clamp<int64_t>((count + 255) / 256, 1, int64_t{1} << 20));
    zero_rows_kernel<<<grid, 256, 0, stream>>>(data, rows, columns, row_stride);
    return launch_status("zeroing an output");
}

}  // namespace dsa::cuda
