// CUDA sparse attention backward: resolves the problem into kernel arguments, zeroes dkv, runs
// a row kernel and reduces dkv by the mode. The row kernel: bf16_backward_kernel
// (bf16_backward.cuh) when q, kv, out and dout are all bf16, d_qk and d_v multiples of 16 with
// d_qk <= 576, on sm_80+ with its shared memory available; row_backward_kernel
// (row_backward.cuh) otherwise. Both honour the same dkv contract:
//   FAST: the row kernel adds each entry's contribution into dkv with f32 atomics (the order of
//   the additions, hence the last bits, depends on timing);
//   DETERMINISTIC: rows run in panels; each panel writes one contribution per (row, position)
//   into the workspace, the panel's (token, entry) pairs are sorted by token with CUB's stable
//   radix sort (entries stay in ascending order within a token), and one CTA per token adds its
//   contributions in that order to dkv, panel after panel: the same chain of additions every run.
// d_attn_sink has its own fixed-order kernel in both modes. Everything is queued on the caller's
// stream without synchronising.
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <string>

#include "../../core/ops/sparse_attention_backward.hpp"
#include "../../core/stream_buffer.hpp"
#include "../common/runtime.cuh"
#include "../common/zero_rows.cuh"
#include "bf16_backward.cuh"
#include "row_backward.cuh"

namespace dsa::cuda {
namespace {

using namespace attention_backward;

// Contribution bytes a DETERMINISTIC panel may hold (the panel's rows follow from it).
constexpr int64_t kPanelBytes = int64_t{1} << 30;
constexpr int64_t kPartAlignment = 256;
constexpr int kReduceThreads = 128;
constexpr int64_t kMaxGrid = 1 << 20;  // CTAs of the grid-stride kernels

int64_t align_part(int64_t bytes) { return (bytes + kPartAlignment - 1) / kPartAlignment * kPartAlignment; }

// Bits of the sort keys: tokens in [0, tokens), the sentinel `tokens` for skipped positions.
int key_bits(int64_t tokens) {
    int bits = 1;
    while (bits < 63 && (int64_t{1} << bits) <= tokens) ++bits;
    return bits;
}

// CUB's scratch bytes for sorting `entries` pairs of keys below `tokens` + 1.
Status sort_scratch_bytes(int64_t entries, int64_t tokens, size_t* bytes) {
    *bytes = 0;
    if (cub::DeviceRadixSort::SortPairs<uint32_t, uint32_t>(nullptr, *bytes, nullptr, nullptr, nullptr, nullptr,
                                                            static_cast<int>(entries), 0,
                                                            key_bits(tokens)) != cudaSuccess) {
        cudaGetLastError();
        return {StatusCode::cuda_error, "sparse_attention_backward: the CUB radix sort's scratch query failed"};
    }
    return Status::success();
}

// Rows in the last panel when panels hold `panel_rows` rows.
int64_t last_panel_rows(int64_t rows, int64_t panel_rows) { return rows - (rows - 1) / panel_rows * panel_rows; }

// Where each part of the workspace lies (byte offsets), for rows of topk positions.
struct ScratchPlan {
    int64_t panel_rows = 0, panel_entries = 0;
    size_t sort_bytes = 0;
    int64_t flags = 0, contributions = 0, keys = 0, sorted_keys = 0, order = 0, sorted_order = 0, starts = 0,
            ends = 0, sort = 0, bytes = 0;
};

Status plan_scratch(const SparseAttentionBackwardConfig& config, int64_t rows, int64_t topk, int64_t tokens,
                    int64_t d_qk, ScratchPlan* plan) {
    ScratchPlan s;
    s.flags = 0;
    s.bytes = align_part(rows * 4);
    if (config.mode == SparseAttentionBackwardMode::deterministic && rows > 0 && topk > 0 && tokens > 0) {
        s.panel_rows = std::clamp<int64_t>(kPanelBytes / (4 * topk * d_qk), 1, rows);
        s.panel_entries = s.panel_rows * topk;
        if (tokens > INT32_MAX)  // the sort keys are 32-bit tokens plus a sentinel
            return {StatusCode::unsupported, "kv: " + std::to_string(tokens) +
                                                 " tokens exceed the CUDA deterministic reduction (at most 2^31 - 1)"};
        if (s.panel_entries > INT32_MAX)
            return {StatusCode::unsupported, "indices: k = " + std::to_string(topk) +
                                                 " positions per row exceed the CUDA deterministic reduction (at most "
                                                 "2^31 - 1 entries per panel)"};
        // CUB's scratch for a full panel and for the last (shorter) one: the larger serves both.
        for (const int64_t entries : {s.panel_entries, last_panel_rows(rows, s.panel_rows) * topk}) {
            size_t bytes = 0;
            DSA_TRY(sort_scratch_bytes(entries, tokens, &bytes));
            s.sort_bytes = std::max(s.sort_bytes, bytes);
        }
        const int64_t list_bytes = align_part(s.panel_entries * 4), token_bytes = align_part(tokens * 4);
        s.contributions = s.bytes;
        s.keys = s.contributions + align_part(s.panel_entries * d_qk * 4);
        s.sorted_keys = s.keys + list_bytes;
        s.order = s.sorted_keys + list_bytes;
        s.sorted_order = s.order + list_bytes;
        s.starts = s.sorted_order + list_bytes;
        s.ends = s.starts + token_bytes;
        s.sort = s.ends + token_bytes;
        s.bytes = s.sort + align_part(static_cast<int64_t>(s.sort_bytes));
    }
    *plan = s;
    return Status::success();
}

Arguments arguments_of(const SparseAttentionBackwardProblem& p) {
    Arguments a{};
    a.q = p.q.data;
    a.q_row = p.q.strides[0];
    a.q_head = p.q.strides[1];
    a.kv = p.kv.data;
    a.kv_row = p.kv.strides[0];
    a.indices = p.indices.as<const int32_t>();
    a.index_row = p.indices.strides[0];
    if (p.has_topk_length) {
        a.topk_length = p.topk_length.as<const int32_t>();
        a.length_stride = p.topk_length.strides[0];
    }
    if (p.has_attn_sink) {
        a.sink = p.attn_sink.as<const float>();
        a.sink_stride = p.attn_sink.strides[0];
    }
    a.out = p.out.data;
    a.out_row = p.out.strides[0];
    a.out_head = p.out.strides[1];
    a.lse = p.lse.as<const float>();
    a.lse_row = p.lse.strides[0];
    a.lse_head = p.lse.strides[1];
    a.dout = p.dout.data;
    a.dout_row = p.dout.strides[0];
    a.dout_head = p.dout.strides[1];
    a.dq = p.dq.data;
    a.dq_row = p.dq.strides[0];
    a.dq_head = p.dq.strides[1];
    a.dkv = p.dkv.as<float>();
    a.dkv_row = p.dkv.strides[0];
    a.rows = p.rows;
    a.heads = p.heads;
    a.d_qk = p.d_qk;
    a.d_v = p.d_v;
    a.topk = p.topk;
    a.tokens = p.tokens;
    a.scale = p.config.scale;
    a.q_bf16 = p.q.dtype == DType::bf16;
    a.kv_bf16 = p.kv.dtype == DType::bf16;
    a.out_bf16 = p.out.dtype == DType::bf16;
    a.dout_bf16 = p.dout.dtype == DType::bf16;
    a.dq_bf16 = p.dq.dtype == DType::bf16;
    return a;
}

// DETERMINISTIC panels of whole waves: the planned panel rows rounded down to a multiple of the
// rows the GPU runs at once (a panel of 227 rows on 132 SMs ran as 2 waves, 95 rows wide the
// second), if CUB's scratch for the rounded panels fits the planned one.
Status wave_panel_rows(const Context& context, const void* kernel, int threads, int smem, int64_t rows, int64_t topk,
                       int64_t tokens, const ScratchPlan& plan, int64_t* panel_rows) {
    *panel_rows = plan.panel_rows;
    int per_sm = 0;
    DSA_TRY(runtime_status(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem),
                           "cudaOccupancyMaxActiveBlocksPerMultiprocessor(sparse attention backward)"));
    const int64_t wave = static_cast<int64_t>(per_sm) * context.properties().multiprocessor_count;
    if (wave <= 0 || plan.panel_rows <= wave || plan.panel_rows >= rows) return Status::success();
    const int64_t rounded = plan.panel_rows / wave * wave;
    for (const int64_t entries : {rounded * topk, last_panel_rows(rows, rounded) * topk}) {
        size_t bytes = 0;
        DSA_TRY(sort_scratch_bytes(entries, tokens, &bytes));
        if (bytes > plan.sort_bytes) return Status::success();
    }
    *panel_rows = rounded;
    return Status::success();
}

unsigned grid_for(int64_t items, int64_t per_cta) {
    return static_cast<unsigned>(std::clamp<int64_t>((items + per_cta - 1) / per_cta, 1, kMaxGrid));
}

// Sort input of a panel of `rows` rows: key = the entry's token (`tokens` when skipped), value =
// the entry's number in the panel.
__global__ void entry_keys_kernel(const __grid_constant__ Arguments a, int64_t rows, uint32_t* keys, uint32_t* order) {
    const int64_t entries = rows * a.topk;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < entries;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t row = a.first_row + i / a.topk;
        const int32_t token = position_token(a, row, i % a.topk, counted_positions(a, row));
        keys[i] = static_cast<uint32_t>(token < 0 ? a.tokens : token);
        order[i] = static_cast<uint32_t>(i);
    }
}

// [starts[t], ends[t]) = the sorted positions holding token t (both zeroed beforehand).
__global__ void segment_bounds_kernel(const uint32_t* keys, int64_t entries, int64_t tokens, uint32_t* starts,
                                      uint32_t* ends) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < entries;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const uint32_t key = keys[i];
        if (key >= tokens) continue;
        if (i == 0 || keys[i - 1] != key) starts[key] = static_cast<uint32_t>(i);
        if (i + 1 == entries || keys[i + 1] != key) ends[key] = static_cast<uint32_t>(i + 1);
    }
}

// dkv[t, :] += the panel's contributions of token t, in ascending entry order.
__global__ void __launch_bounds__(kReduceThreads)
    token_sum_kernel(const __grid_constant__ Arguments a, const uint32_t* order, const uint32_t* starts,
                     const uint32_t* ends) {
    for (int64_t token = blockIdx.x; token < a.tokens; token += gridDim.x) {
        const uint32_t begin = starts[token], end = ends[token];
        for (int64_t c = threadIdx.x; c < a.d_qk && begin < end; c += kReduceThreads) {
            float sum = 0.0f;
            for (uint32_t i = begin; i < end; ++i) sum += a.contributions[order[i] * a.d_qk + c];
            a.dkv[token * a.dkv_row + c] += sum;
        }
    }
}

// `rows` rows of a.ctas_per_row CTAs each.
Status launch_rows(const void* kernel, int threads, int64_t rows, int smem, const Arguments& a, Stream stream) {
    if (rows > 0x7fffffff / a.ctas_per_row)
        return {StatusCode::shape_mismatch, "q: " + std::to_string(rows) + " query rows of " +
                                                std::to_string(a.ctas_per_row) +
                                                " CTAs each exceed one CUDA launch (2^31 - 1 CTAs)"};
    const int64_t ctas = rows * a.ctas_per_row;
    void* parameters[] = {const_cast<Arguments*>(&a)};
    cudaLaunchKernel(kernel, dim3(static_cast<unsigned>(ctas)), dim3(static_cast<unsigned>(threads)), parameters,
                     static_cast<size_t>(smem),
                     stream);
    return launch_status("sparse attention backward kernel launch");
}

}  // namespace

Status sparse_attention_backward_workspace_bytes(const Context& context, const SparseAttentionBackwardConfig& config,
                                                 int64_t rows, int64_t topk, int64_t tokens, int64_t d_qk,
                                                 int64_t* bytes) {
    DeviceScope scope(context.device_id());
    DSA_TRY(scope.status());
    ScratchPlan plan;
    DSA_TRY(plan_scratch(config, rows, topk, tokens, d_qk, &plan));
    *bytes = plan.bytes;
    return Status::success();
}

Status sparse_attention_backward(Context& context, const SparseAttentionBackwardProblem& p, Workspace workspace,
                                 Stream stream) {
    DeviceScope scope(context.device_id());
    DSA_TRY(scope.status());
    const int64_t optin = context.properties().shared_memory_per_block_optin;
    const bool all_bf16 = p.q.dtype == DType::bf16 && p.kv.dtype == DType::bf16 && p.out.dtype == DType::bf16 &&
                          p.dout.dtype == DType::bf16;
    const bool fast_bf16 = all_bf16 && bf16_widths_supported(p.d_qk, p.d_v) &&
                           context.properties().compute_major >= 8 && bf16_layout(p.d_qk, p.d_v).bytes <= optin;
    int smem = 0, threads = 0, ctas_per_row = 1;
    const void* kernel = nullptr;
    if (fast_bf16) {
        smem = bf16_layout(p.d_qk, p.d_v).bytes;
        threads = kBf16Threads;
        kernel = reinterpret_cast<const void*>(bf16_backward_kernel);
        // FAST: a CTA per (row, head group); DETERMINISTIC: a CTA per row (bf16_backward.cuh).
        if (p.config.mode == SparseAttentionBackwardMode::fast)
            ctas_per_row = static_cast<int>(std::min<int64_t>((p.heads + kBf16Heads - 1) / kBf16Heads, INT32_MAX));
    } else {
        const SharedLayout layout = shared_layout(p.d_qk);
        smem = layout.floats * static_cast<int>(sizeof(float));
        if (smem > optin)
            return {StatusCode::unsupported, "q: d_qk " + std::to_string(p.d_qk) + " needs " + std::to_string(smem) +
                                                 " bytes of shared memory per block; this device offers " +
                                                 std::to_string(optin)};
        // f32 inputs take the split (near-f32) products; all-bf16 inputs the plain bf16 ones.
        const bool split = p.q.dtype == DType::f32 || p.kv.dtype == DType::f32 || p.dout.dtype == DType::f32;
        threads = kThreads;
        kernel = split ? reinterpret_cast<const void*>(row_backward_kernel<true>)
                       : reinterpret_cast<const void*>(row_backward_kernel<false>);
    }
    DSA_TRY(runtime_status(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem),
                           "cudaFuncSetAttribute(sparse attention backward)"));

    ScratchPlan plan;
    DSA_TRY(plan_scratch(p.config, p.rows, p.topk, p.tokens, p.d_qk, &plan));
    StreamBuffer owned;
    uint8_t* scratch = static_cast<uint8_t*>(workspace.data);
    if (scratch == nullptr && plan.bytes > 0) {
        DSA_TRY(owned.allocate(context, plan.bytes, stream));
        scratch = static_cast<uint8_t*>(owned.data());
    }

    Arguments a = arguments_of(p);
    a.ctas_per_row = std::max(ctas_per_row, 1);  // heads = 0 still takes a CTA a row (dq is empty)
    a.row_contributes = p.has_d_attn_sink ? reinterpret_cast<int32_t*>(scratch + plan.flags) : nullptr;
    DSA_TRY(zero_rows(a.dkv, p.tokens, p.d_qk, a.dkv_row, stream));

    if (plan.panel_entries == 0) {
        // FAST, or nothing to reduce (no rows, positions or tokens): atomics into dkv.
        if (p.rows > 0) DSA_TRY(launch_rows(kernel, threads, p.rows, smem, a, stream));
    } else {
        a.contributions = reinterpret_cast<float*>(scratch + plan.contributions);
        uint32_t* keys = reinterpret_cast<uint32_t*>(scratch + plan.keys);
        uint32_t* sorted_keys = reinterpret_cast<uint32_t*>(scratch + plan.sorted_keys);
        uint32_t* order = reinterpret_cast<uint32_t*>(scratch + plan.order);
        uint32_t* sorted_order = reinterpret_cast<uint32_t*>(scratch + plan.sorted_order);
        uint32_t* starts = reinterpret_cast<uint32_t*>(scratch + plan.starts);
        uint32_t* ends = reinterpret_cast<uint32_t*>(scratch + plan.ends);
        int64_t panel_rows = 0;
        DSA_TRY(wave_panel_rows(context, kernel, threads, smem, p.rows, p.topk, p.tokens, plan, &panel_rows));
        for (int64_t first = 0; first < p.rows; first += panel_rows) {
            const int64_t rows = std::min(panel_rows, p.rows - first), entries = rows * p.topk;
            a.first_row = first;
            DSA_TRY(launch_rows(kernel, threads, rows, smem, a, stream));
            entry_keys_kernel<<<grid_for(entries, 256), 256, 0, stream>>>(a, rows, keys, order);
            DSA_TRY(launch_status("sparse attention backward: entry keys"));
            size_t sort_bytes = plan.sort_bytes;
            DSA_TRY(runtime_status(cub::DeviceRadixSort::SortPairs(scratch + plan.sort, sort_bytes, keys, sorted_keys,
                                                                   order, sorted_order, static_cast<int>(entries), 0,
                                                                   key_bits(p.tokens), stream),
                                   "sparse attention backward: CUB radix sort"));
            DSA_TRY(runtime_status(cudaMemsetAsync(starts, 0, static_cast<size_t>(p.tokens) * 4, stream),
                                   "sparse attention backward: cudaMemsetAsync"));
            DSA_TRY(runtime_status(cudaMemsetAsync(ends, 0, static_cast<size_t>(p.tokens) * 4, stream),
                                   "sparse attention backward: cudaMemsetAsync"));
            segment_bounds_kernel<<<grid_for(entries, 256), 256, 0, stream>>>(sorted_keys, entries, p.tokens, starts,
                                                                             ends);
            DSA_TRY(launch_status("sparse attention backward: segment bounds"));
            token_sum_kernel<<<grid_for(p.tokens, 1), kReduceThreads, 0, stream>>>(a, sorted_order, starts, ends);
            DSA_TRY(launch_status("sparse attention backward: token sums"));
        }
    }

    if (p.has_d_attn_sink && p.heads > 0) {
        if (p.heads > 0x7fffffff)
            return {StatusCode::shape_mismatch, "attn_sink: " + std::to_string(p.heads) +
                                                    " heads exceed one CUDA launch (2^31 - 1 CTAs)"};
        if (p.rows == 0) {
            return zero_rows(p.d_attn_sink.as<float>(), p.heads, 1, p.d_attn_sink.strides[0], stream);
        }
        sink_gradient_kernel<<<static_cast<unsigned>(p.heads), kThreads, 0, stream>>>(
            a, p.d_attn_sink.as<float>(), p.d_attn_sink.strides[0]);
        DSA_TRY(launch_status("sparse attention backward: d_attn_sink"));
    }
    return Status::success();
}

}  // namespace dsa::cuda
