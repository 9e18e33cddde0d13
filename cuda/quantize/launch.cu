// CUDA FP8 block quantisation: one warp per group (any group size), rows by the grid's x.
// Simple and correct; the pipeline fuses quantisation into its own kernels where it matters.
#include "group.cuh"

namespace dsa::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;

// The flat group index g covers rows * groups_per_row groups.
__global__ void quantize_kernel(QuantizeFp8Problem p, RowLayout x_rows, RowLayout q_rows, RowLayout s_rows,
                                int64_t total_groups) {
    const int64_t group = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
    if (group >= total_groups) return;
    const int64_t groups_per_row = p.groups_per_row();
    const int64_t row = group / groups_per_row, index = group % groups_per_row;
    const int64_t first = index * p.config.group_size;
    const int64_t x_offset = x_rows.offset(row) + first;
    warp_quantize_group([&](int64_t i) { return load_float(p.values.data, p.values.dtype, x_offset + i); }, p.config,
                        static_cast<uint8_t*>(p.codes.data) + q_rows.offset(row) + first,
                        static_cast<float*>(p.scales.data) + s_rows.offset(row) + index * p.scales.stride(-1));
}

__global__ void dequantize_kernel(QuantizeFp8Problem p, RowLayout y_rows, RowLayout q_rows, RowLayout s_rows,
                                  int64_t total) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const int64_t row = i / p.n, column = i % p.n;
    const float scale = static_cast<const float*>(p.scales.data)[s_rows.offset(row) +
                                                                 column / p.config.group_size * p.scales.stride(-1)];
    const float value = decode_e4m3(static_cast<const uint8_t*>(p.codes.data)[q_rows.offset(row) + column]) * scale;
    const int64_t out = y_rows.offset(row) + column;
    if (p.values.dtype == DType::bf16)
        static_cast<uint16_t*>(p.values.data)[out] = float_to_bf16(value);
    else
        static_cast<float*>(p.values.data)[out] = value;
}

}  // namespace

Status quantize_fp8(Context& context, const QuantizeFp8Problem& problem, Stream stream) {
    DeviceScope scope(context.device_id());
    DSA_TRY(scope.status());
    const int64_t total_groups = problem.rows * problem.groups_per_row();
    const int64_t blocks = ceil_div(total_groups, kWarpsPerBlock);
    if (blocks > 0x7fffffff) return {StatusCode::shape_mismatch, "x: more than 2^31 * 8 quantisation groups"};
    quantize_kernel<<<static_cast<unsigned>(blocks), kWarpsPerBlock * 32, 0, stream>>>(
        problem, leading_rows(problem.values), leading_rows(problem.codes), leading_rows(problem.scales), total_groups);
    return launch_status("quantize_fp8 kernel launch");
}

Status dequantize_fp8(Context& context, const QuantizeFp8Problem& problem, Stream stream) {
    DeviceScope scope(context.device_id());
    DSA_TRY(scope.status());
    const int64_t total = problem.rows * problem.n;
    const int64_t blocks = ceil_div(total, 256);
    if (blocks > 0x7fffffff) return {StatusCode::shape_mismatch, "q: more than 2^39 elements"};
    dequantize_kernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(
        problem, leading_rows(problem.values), leading_rows(problem.codes), leading_rows(problem.scales), total);
    return launch_status("dequantize_fp8 kernel launch");
}

}  // namespace dsa::cuda
