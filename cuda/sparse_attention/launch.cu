// CUDA sparse MLA attention: resolves the problem into kernel arguments, picks the kernel
// (on aligned tensors of d_qk 576 / d_v 512: sm_90a wgmma for H_q a multiple of 64, the narrow
// 16-head mma.sync kernel otherwise; the generic mma.sync kernel for every other shape), splits the index list over CTAs when the rows alone do not fill
// the GPU (partials in stream-ordered scratch, merged by a combine kernel), and launches on the
// caller's stream without synchronising.
#include <algorithm>
#include <cstdlib>
#include <string>
#include <string_view>

#include "../../core/stream_buffer.hpp"
#include "../common/runtime.cuh"
#include "generic.cuh"
#include "narrow.cuh"
#include "sm90.cuh"

namespace dsa::cuda {
namespace {

using namespace attention;

constexpr int kMaxSplits = 64;
constexpr int kCombineThreads = 128;

// Merges the splits of one (row, head): block x = row * heads + head.
__global__ void __launch_bounds__(kCombineThreads) combine_splits_kernel(const __grid_constant__ Arguments a) {
    __shared__ float weight[kMaxSplits];
    __shared__ float merged[2];  // max, sum
    const int64_t index = blockIdx.x;
    const int64_t count = a.rows * a.heads;
    if (threadIdx.x == 0) {
        float max_log2 = -INFINITY;
        for (int s = 0; s < a.splits; ++s) max_log2 = fmaxf(max_log2, a.partial_stats[(s * count + index) * 2]);
        float sum = 0.0f;
        for (int s = 0; s < a.splits; ++s) {
            const float split_max = a.partial_stats[(s * count + index) * 2];
            weight[s] = split_max == -INFINITY ? 0.0f : exp2f(split_max - max_log2);
            sum += weight[s] * a.partial_stats[(s * count + index) * 2 + 1];
        }
        merged[0] = max_log2;
        merged[1] = sum;
    }
    __syncthreads();
    const int64_t row = index / a.heads, head = index % a.heads;
    const RowResult result = finish_row(a, head, merged[0], merged[1]);
    if (threadIdx.x == 0) store_statistics(a, row, head, result);
    uint16_t* target = a.out + a.out_rows.offset(index);
    for (int64_t column = threadIdx.x; column < a.d_v; column += kCombineThreads) {
        float value = 0.0f;
        for (int s = 0; s < a.splits; ++s) value += weight[s] * a.partial_out[(s * count + index) * a.d_v + column];
        target[column] = float_to_bf16(value * result.inverse_denominator);
    }
}

bool aligned(const void* pointer, int64_t bytes) { return reinterpret_cast<uintptr_t>(pointer) % bytes == 0; }

// Every stride but the last (which is 1) is a multiple of `multiple` elements.
bool leading_strides_multiple(const TensorView& tensor, int64_t multiple) {
    for (int axis = 0; axis + 1 < tensor.ndim; ++axis)
        if (tensor.strides[axis] % multiple != 0) return false;
    return true;
}

Arguments arguments_of(const SparseAttentionProblem& p) {
    Arguments a{};
    const bool fp8 = p.format == KvFormat::fp8_mla;
    const int64_t element = fp8 ? 1 : 2;
    a.q = p.q.as<const uint16_t>();
    a.q_rows = leading_rows(p.q);
    a.kv = p.kv.as<const uint8_t>();
    if (p.paged) {
        a.page_size = p.page_size;
        a.page_stride = p.kv.strides[0] * element;
        a.token_stride = p.kv.strides[1] * element;
    } else {
        a.page_size = p.num_slots > 0 ? p.num_slots : 1;
        a.page_stride = 0;
        a.token_stride = p.kv.strides[0] * element;
    }
    a.num_slots = p.num_slots;
    a.indices = p.indices.as<const int32_t>();
    a.index_rows = leading_rows(p.indices);
    a.index_stride = p.indices.stride(-1);
    if (p.has_topk_length) {
        a.topk_length = p.topk_length.as<const int32_t>();
        a.length_layout = element_layout(p.topk_length);
    }
    if (p.has_attn_sink) {
        a.sink = p.attn_sink.as<const float>();
        a.sink_stride = p.attn_sink.strides[0];
    }
    a.out = p.out.as<uint16_t>();
    a.out_rows = leading_rows(p.out);
    a.lse = p.lse.as<float>();
    a.lse_rows = leading_rows(p.lse);
    a.lse_stride = p.lse.stride(-1);
    if (p.has_max_logits) {
        a.max_logits = p.max_logits.as<float>();
        a.max_rows = leading_rows(p.max_logits);
        a.max_stride = p.max_logits.stride(-1);
    }
    a.rows = p.rows;
    a.heads = p.heads;
    a.topk = p.num_slots > 0 ? p.topk : 0;  // no entries: every row is empty, kv is never touched
    a.d_qk = p.d_qk;
    a.d_v = p.d_v;
    a.scale_log2 = p.scale * kLog2e;
    a.fp8 = fp8;
    a.q_aligned = aligned(p.q.data, 16) && p.d_qk % 8 == 0 && leading_strides_multiple(p.q, 8);
    a.kv_aligned = fp8 ? aligned(p.kv.data, 16) && leading_strides_multiple(p.kv, 16)
                       : aligned(p.kv.data, 16) && p.d_qk % 8 == 0 && leading_strides_multiple(p.kv, 8);
    a.out_pairs = aligned(p.out.data, 4) && p.d_v % 2 == 0 && leading_strides_multiple(p.out, 2);
    return a;
}

// True when the sm_90a kernel may run: not switched off with DSA_CUDA_SM90_ATTENTION=0 (a switch
// to compare with the generic kernel), carried by this build, run by the device, and compiled to
// the register count its setmaxnreg split assumes (else it would deadlock).
bool switched_off(const char* variable) {
    const char* value = std::getenv(variable);
    return value != nullptr && std::string_view(value) == "0";
}

bool sm90_kernel_usable(const Context& context) {
    if (switched_off("DSA_CUDA_SM90_ATTENTION")) return false;
    const DeviceProperties& device = context.properties();
    if (device.compute_major != 9 || device.compute_minor != 0) return false;
    if (std::string_view(DSA_CUDA_ARCHITECTURES).find("90a") == std::string_view::npos) return false;
    for (const void* kernel : {reinterpret_cast<const void*>(sm90_attention_kernel<false>),
                               reinterpret_cast<const void*>(sm90_attention_kernel<true>)}) {
        cudaFuncAttributes attributes{};
        if (cudaFuncGetAttributes(&attributes, kernel) != cudaSuccess) {
            cudaGetLastError();
            return false;
        }
        if (attributes.binaryVersion != 90 || attributes.numRegs != kSm90Registers) return false;
    }
    return true;
}

struct Plan {
    const void* kernel = nullptr;
    int threads = 0;
    int smem = 0;
    int groups = 0;          // head groups per row
    int block = 0;           // index positions a CTA consumes per step
    int ctas_per_sm = 1;
};

Status plan_kernel(const Context& context, const SparseAttentionProblem& p, const Arguments& a, Plan* plan) {
    const bool mla_widths = p.d_qk == kNarrowDqk && p.d_v == kNarrowDv && a.q_aligned && a.kv_aligned;
    const bool fast = mla_widths && p.heads % kSm90Heads == 0 && aligned(p.out.data, 16) &&
                      leading_strides_multiple(p.out, 8) && sm90_kernel_usable(context);
    // DSA_CUDA_NARROW_ATTENTION=0 leaves these shapes to the generic kernel (to compare them).
    const bool narrow = !fast && mla_widths && !switched_off("DSA_CUDA_NARROW_ATTENTION");
    if (fast) {
        plan->kernel = a.fp8 ? reinterpret_cast<const void*>(sm90_attention_kernel<true>)
                             : reinterpret_cast<const void*>(sm90_attention_kernel<false>);
        plan->threads = kSm90Threads;
        plan->smem = kSm90SmemBytes;
        plan->groups = static_cast<int>(p.heads / kSm90Heads);
        plan->block = kSm90Block;
    } else if (narrow) {
        plan->kernel = a.fp8 ? reinterpret_cast<const void*>(narrow_attention_kernel<true>)
                             : reinterpret_cast<const void*>(narrow_attention_kernel<false>);
        plan->threads = kNarrowThreads;
        plan->smem = narrow_smem(a.fp8).bytes;
        plan->groups = static_cast<int>((p.heads + kNarrowHeads - 1) / kNarrowHeads);
        plan->block = kNarrowTokens;
    } else {
        if (p.d_qk > kGenericMaxWidth)
            return {StatusCode::unsupported, "q: d_qk " + std::to_string(p.d_qk) + " is wider than the CUDA kernels take (" +
                                                 std::to_string(kGenericMaxWidth) + ")"};
        const bool wide = p.d_v > 128 * 4;
        plan->kernel = wide ? reinterpret_cast<const void*>(generic_attention_kernel<8>)
                            : reinterpret_cast<const void*>(generic_attention_kernel<4>);
        plan->threads = wide ? 256 : 128;
        plan->smem = generic_smem(p.d_qk, a.fp8).bytes;
        plan->groups = static_cast<int>((p.heads + kGenericHeads - 1) / kGenericHeads);
        plan->block = kGenericTokens;
    }
    if (plan->smem > context.properties().shared_memory_per_block_optin)
        return {StatusCode::unsupported, "q: d_qk " + std::to_string(p.d_qk) + " needs " + std::to_string(plan->smem) +
                                             " bytes of shared memory per block; this device offers " +
                                             std::to_string(context.properties().shared_memory_per_block_optin)};
    DSA_TRY(runtime_status(cudaFuncSetAttribute(plan->kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, plan->smem),
                           "cudaFuncSetAttribute(sparse attention)"));
    int resident = 1;
    DSA_TRY(runtime_status(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&resident, plan->kernel, plan->threads,
                                                                         static_cast<size_t>(plan->smem)),
                           "cudaOccupancyMaxActiveBlocksPerMultiprocessor(sparse attention)"));
    plan->ctas_per_sm = resident > 0 ? resident : 1;
    return Status::success();
}

int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

// Index positions per split: enough CTAs to fill the GPU once, each split at least 4 steps.
int64_t split_positions(const Context& context, const Arguments& a, const Plan& plan) {
    const int64_t whole = round_up(a.topk, plan.block);
    if (whole == 0) return plan.block;
    const int64_t ctas = a.rows * plan.groups;
    const int64_t capacity = static_cast<int64_t>(context.properties().multiprocessor_count) * plan.ctas_per_sm;
    const int64_t minimum = 4 * static_cast<int64_t>(plan.block);
    if (ctas >= capacity || whole < 2 * minimum) return whole;
    const int64_t splits = std::min<int64_t>((capacity + ctas - 1) / ctas, std::min<int64_t>(whole / minimum, kMaxSplits));
    return round_up((a.topk + splits - 1) / splits, plan.block);
}

void launch(const Plan& plan, int64_t ctas, const Arguments& a, Stream stream) {
    void* parameters[] = {const_cast<Arguments*>(&a)};
    cudaLaunchKernel(plan.kernel, dim3(static_cast<unsigned>(ctas)), dim3(plan.threads), parameters,
                     static_cast<size_t>(plan.smem), stream);
}

}  // namespace

Status sparse_attention(Context& context, const SparseAttentionProblem& problem, Stream stream) {
    DeviceScope scope(context.device_id());
    DSA_TRY(scope.status());
    Arguments a = arguments_of(problem);
    Plan plan;
    DSA_TRY(plan_kernel(context, problem, a, &plan));
    a.groups = plan.groups;
    a.split_positions = split_positions(context, a, plan);
    const int64_t whole = round_up(a.topk, plan.block);
    a.splits = whole > a.split_positions ? static_cast<int32_t>((a.topk + a.split_positions - 1) / a.split_positions) : 1;
    // Scratch for the partials; without it (allocation refused) one CTA takes a whole row.
    StreamBuffer scratch;
    if (a.splits > 1) {
        const int64_t count = a.splits * a.rows * a.heads;
        if (scratch.allocate(context, count * (a.d_v + 2) * static_cast<int64_t>(sizeof(float)), stream).ok()) {
            a.partial_out = static_cast<float*>(scratch.data());
            a.partial_stats = a.partial_out + count * a.d_v;
        } else {
            a.splits = 1;
            a.split_positions = whole > 0 ? whole : plan.block;
        }
    }
    const int64_t ctas = a.rows * a.groups * a.splits;
    if (ctas > 0x7fffffff)
        return {StatusCode::shape_mismatch, "q: " + std::to_string(a.rows) + " query rows x " +
                                                std::to_string(a.groups * a.splits) +
                                                " CTAs each exceed one CUDA launch (2^31 - 1 CTAs)"};
    launch(plan, ctas, a, stream);
    DSA_TRY(launch_status("sparse attention kernel launch"));
    if (a.splits > 1) {
        // Splits only serve few rows (fewer CTAs than the GPU holds): rows * heads is small.
        combine_splits_kernel<<<static_cast<unsigned>(a.rows * a.heads), kCombineThreads, 0, stream>>>(a);
        DSA_TRY(launch_status("sparse attention combine kernel launch"));
    }
    return Status::success();
}

}  // namespace dsa::cuda
