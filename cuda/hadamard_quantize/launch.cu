// CUDA fused rotation + quantisation: one block per row, as the rotation kernel. The row is
// rotated in shared memory in f32 with the rotation's butterfly, scaled, and then each warp
// quantises whole groups from shared memory with the quantiser's warp routine, so codes and
// scales equal dsa_hadamard (f32) followed by dsa_quantize_fp8, bit for bit.
#include "../../core/ops/hadamard_quantize.hpp"
#include "../hadamard/butterfly.cuh"
#include "../quantize/group.cuh"

namespace dsa::cuda {
namespace {

__global__ void hadamard_quantize_kernel(HadamardQuantizeFp8Problem problem, RowLayout x_rows, RowLayout q_rows,
                                         RowLayout s_rows) {
    __shared__ float row[kHadamardMaxLength];
    const QuantizeFp8Problem& p = problem.quantization;
    const int n = static_cast<int>(p.n);
    const int64_t group_size = p.config.group_size, groups = p.groups_per_row();
    const int warp = threadIdx.x / 32, warps = blockDim.x / 32;
    for (int64_t r = blockIdx.x; r < p.rows; r += gridDim.x) {
        const int64_t x_offset = x_rows.offset(r);
        for (int j = threadIdx.x; j < n; j += blockDim.x) row[j] = load_float(p.values.data, p.values.dtype, x_offset + j);
        __syncthreads();
        block_butterfly(row, n);
        // Scaled in place, as dsa_hadamard writes its f32 output, before any group reads it.
        for (int j = threadIdx.x; j < n; j += blockDim.x) row[j] *= problem.scale;
        __syncthreads();
        uint8_t* codes = static_cast<uint8_t*>(p.codes.data) + q_rows.offset(r);
        float* scales = static_cast<float*>(p.scales.data) + s_rows.offset(r);
        for (int64_t group = warp; group < groups; group += warps) {
            const float* values = row + group * group_size;
            warp_quantize_group([values](int64_t i) { return values[i]; }, p.config, codes + group * group_size,
                                scales + group * p.scales.stride(-1));
        }
        __syncthreads();  // the next row overwrites row only after every warp has read it
    }
}

}  // namespace

Status hadamard_quantize_fp8(Context& context, const HadamardQuantizeFp8Problem& problem, Stream stream) {
    DeviceScope scope(context.device_id());
    DSA_TRY(scope.status());
    const QuantizeFp8Problem& p = problem.quantization;
    hadamard_quantize_kernel<<<row_blocks(p.rows), butterfly_threads(p.n), 0, stream>>>(
        problem, leading_rows(p.values), leading_rows(p.codes), leading_rows(p.scales));
    return launch_status("hadamard_quantize_fp8 kernel launch");
}

}  // namespace dsa::cuda
