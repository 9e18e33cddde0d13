// CUDA FP8 block quantisation: one warp per group (any group size), rows by the grid's x.
// Simple and correct; the pipeline fuses quantisation into its own kernels where it matters.
#include "../../core/ops/quantize.hpp"
#include "../common/runtime.cuh"

namespace dsa::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;

DSA_HOST_DEVICE float load_float(const void* base, DType dtype, int64_t i) {
    switch (dtype) {
        case DType::bf16: return bf16_to_float(static_cast<const uint16_t*>(base)[i]);
        case DType::f16: return f16_to_float(static_cast<const uint16_t*>(base)[i]);
        default: return static_cast<const float*>(base)[i];
    }
}

// The flat group index g covers rows * groups_per_row groups.
__global__ void quantize_kernel(QuantizeFp8Problem p, RowLayout x_rows, RowLayout q_rows, RowLayout s_rows,
                                int64_t total_groups) {
    const int lane = threadIdx.x % 32;
    const int64_t group = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
    if (group >= total_groups) return;
    const int64_t groups_per_row = p.groups_per_row();
    const int64_t row = group / groups_per_row, index = group % groups_per_row;
    const int64_t first = index * p.config.group_size;
    const int64_t x_offset = x_rows.offset(row) + first;
    float amax = 0.0f;
    for (int64_t i = lane; i < p.config.group_size; i += 32) {
        const float magnitude = fabsf(load_float(p.values.data, p.values.dtype, x_offset + i));
        amax = magnitude <= 3.402823466e38f && magnitude > amax ? magnitude : amax;
    }
    for (int offset = 16; offset > 0; offset /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
    const float scale =
        fp8_group_scale(amax > p.config.amax_floor ? amax : p.config.amax_floor, p.config.scale_format == ScaleFormat::ue8m0);
    uint8_t* q = static_cast<uint8_t*>(p.codes.data) + q_rows.offset(row) + first;
    for (int64_t i = lane; i < p.config.group_size; i += 32)
        q[i] = quantize_e4m3(load_float(p.values.data, p.values.dtype, x_offset + i), scale);
    if (lane == 0) static_cast<float*>(p.scales.data)[s_rows.offset(row) + index * p.scales.stride(-1)] = scale;
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
