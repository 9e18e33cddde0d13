// Zeroing a strided f32 matrix on a stream (outputs that kernels then accumulate into).
#pragma once

#include "../../core/context.hpp"

namespace dsa::cuda {

// data[r * row_stride + c] = 0 for r < rows, c < columns; queued on `stream`.
Status zero_rows(float* data, int64_t rows, int64_t columns, int64_t row_stride, Stream stream);

}  // namespace dsa::cuda
