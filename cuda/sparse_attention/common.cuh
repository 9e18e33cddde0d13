// What every sparse attention kernel shares: the arguments resolved from a validated problem,
// the index rules (which positions count, which slots are valid, where an entry lives), the
// work item of a CTA, and the final softmax statistics. Scores are kept in log2 units
// (s2 = log2(e) * scale * q.k) so the softmax uses exp2.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "../../core/ops/sparse_attention.hpp"
#include "../common/ptx.cuh"

namespace dsa::cuda::attention {

inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;

// Pointers, layouts and sizes of one call. Element offsets come from the tensors' own strides;
// KV entries are addressed in bytes: entry(slot) = kv + (slot / page_size) * page_stride +
// (slot % page_size) * token_stride (prefill: one page holding every token).
struct Arguments {
    const uint16_t* q;
    RowLayout q_rows;  // (row * heads + head) -> element offset of that head's vector
    const uint8_t* kv;
    int64_t page_size, page_stride, token_stride;
    int64_t num_slots;
    const int32_t* indices;
    RowLayout index_rows;
    int64_t index_stride;
    const int32_t* topk_length;  // NULL: every row counts all topk positions
    RowLayout length_layout;
    const float* sink;  // NULL: no attention sink
    int64_t sink_stride;
    uint16_t* out;
    RowLayout out_rows;  // (row * heads + head) -> element offset
    float* lse;
    RowLayout lse_rows;
    int64_t lse_stride;
    float* max_logits;  // NULL: not requested
    RowLayout max_rows;
    int64_t max_stride;
    // Split-k scratch (NULL when unsplit): O [splits][rows * heads][d_v] before normalisation,
    // then (max, sum) [splits][rows * heads][2].
    float* partial_out;
    float* partial_stats;
    int64_t rows, heads, topk, d_qk, d_v;
    int64_t split_positions;  // index positions per split
    int32_t splits;
    int32_t groups;  // head groups per row (the kernel's head tile)
    float scale_log2;
    bool fp8;
    bool q_aligned;   // every q head vector starts 16-byte aligned and d_qk % 8 == 0
    bool kv_aligned;  // every entry starts 16-byte aligned (bf16: and d_qk % 8 == 0)
    bool out_pairs;   // out can be written two bf16 at a time (4-byte aligned, d_v even)
};

// The positions of the index list a row counts: all k, or its topk_length clamped to [0, k].
__device__ __forceinline__ int64_t counted_positions(const Arguments& a, int64_t row) {
    if (a.topk_length == nullptr) return a.topk;
    const int64_t length = a.topk_length[a.length_layout.offset(row)];
    return length < 0 ? 0 : (length > a.topk ? a.topk : length);
}

// Byte offset of a slot's entry, or -1 for a slot that is skipped (never read).
__device__ __forceinline__ int64_t entry_offset(const Arguments& a, int64_t slot) {
    if (slot < 0 || slot >= a.num_slots) return -1;
    return (slot / a.page_size) * a.page_stride + (slot % a.page_size) * a.token_stride;
}

// The slot at position `position` of a row's index list (-1 past the row's counted positions),
// given the row's first index element and its end of counted positions.
__device__ __forceinline__ int64_t position_slot(const Arguments& a, int64_t index_base, int64_t position,
                                                 int64_t end) {
    return position < end ? a.indices[index_base + position * a.index_stride] : -1;
}

// The entry offset of position `position` of a row's index list (-1: skipped).
__device__ __forceinline__ int64_t position_offset(const Arguments& a, int64_t index_base, int64_t position,
                                                   int64_t end) {
    return entry_offset(a, position_slot(a, index_base, position, end));
}

// The work of one CTA: grid x enumerates (row, split, head group), head groups fastest so the
// CTAs that gather the same entries run side by side (and share L2).
struct WorkItem {
    int64_t row;
    int32_t split;
    int32_t group;
    int64_t begin, end;  // index positions [begin, end) of the row (end <= begin: nothing)
};

__device__ __forceinline__ WorkItem work_item(const Arguments& a) {
    WorkItem item;
    const int64_t x = blockIdx.x;
    item.group = static_cast<int32_t>(x % a.groups);
    const int64_t rest = x / a.groups;
    item.split = static_cast<int32_t>(rest % a.splits);
    item.row = rest / a.splits;
    const int64_t counted = counted_positions(a, item.row);
    item.begin = static_cast<int64_t>(item.split) * a.split_positions;
    const int64_t split_end = item.begin + a.split_positions;
    item.end = counted < split_end ? counted : split_end;
    return item;
}

// Final statistics of one (row, head) from its running max (log2 units, -inf when nothing was
// valid) and sum of exp2(s2 - max): 1 / the softmax denominator (the sink joins it), the lse
// (natural log, sink excluded) and the max logit.
struct RowResult {
    float inverse_denominator;
    float lse;
    float max_logit;
};

__device__ __forceinline__ RowResult finish_row(const Arguments& a, int64_t head, float max_log2, float sum) {
    if (max_log2 == -INFINITY) return {0.0f, INFINITY, -INFINITY};
    float denominator = sum;
    if (a.sink != nullptr) denominator += exp2f(a.sink[head * a.sink_stride] * kLog2e - max_log2);
    return {1.0f / denominator, (max_log2 + log2f(sum)) * kLn2, max_log2 * kLn2};
}

__device__ __forceinline__ void store_statistics(const Arguments& a, int64_t row, int64_t head, const RowResult& result) {
    a.lse[a.lse_rows.offset(row) + head * a.lse_stride] = result.lse;
    if (a.max_logits != nullptr) a.max_logits[a.max_rows.offset(row) + head * a.max_stride] = result.max_logit;
}

// Writes lse and max_logits of a finished (row, head) (unsplit) or its (max, sum) (split).
__device__ __forceinline__ void write_row_statistics(const Arguments& a, const WorkItem& item, int64_t head,
                                                     float max_log2, float sum) {
    if (a.partial_out != nullptr) {
        float* stats = a.partial_stats + ((item.split * a.rows + item.row) * a.heads + head) * 2;
        stats[0] = max_log2;
        stats[1] = sum;
        return;
    }
    store_statistics(a, item.row, head, finish_row(a, head, max_log2, sum));
}

// Two e4m3 codes (low byte first) times `scale`, rounded once to a bf16 pair (low code in the
// low half). NaN codes stay NaN.
__device__ __forceinline__ uint32_t dequantize_pair(uint32_t codes, float scale) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    uint32_t packed;
    asm("{\n"
        ".reg .b32 halves;\n"
        ".reg .b16 low, high;\n"
        ".reg .f32 first, second;\n"
        "cvt.rn.f16x2.e4m3x2 halves, %1;\n"
        "mov.b32 {low, high}, halves;\n"
        "cvt.f32.f16 first, low;\n"
        "cvt.f32.f16 second, high;\n"
        "mul.rn.f32 first, first, %2;\n"
        "mul.rn.f32 second, second, %2;\n"
        "cvt.rn.bf16x2.f32 %0, second, first;\n"
        "}\n"
        : "=r"(packed)
        : "h"(static_cast<unsigned short>(codes & 0xffffu)), "f"(scale));
    return packed;
#else
    return pack_bf16(decode_e4m3(static_cast<uint8_t>(codes & 0xffu)) * scale,
                     decode_e4m3(static_cast<uint8_t>((codes >> 8) & 0xffu)) * scale);
#endif
}

// Columns (column, column + 1) of a finished (row, head): normalised bf16 into out, or the split's
// raw partial. Columns at or past d_v are dropped.
__device__ __forceinline__ void store_output_pair(const Arguments& a, const WorkItem& item, int64_t head, int64_t column,
                                                  float low, float high, float inverse_denominator) {
    if (column >= a.d_v) return;
    if (a.partial_out != nullptr) {
        float* target = a.partial_out + ((item.split * a.rows + item.row) * a.heads + head) * a.d_v;
        target[column] = low;
        if (column + 1 < a.d_v) target[column + 1] = high;
        return;
    }
    uint16_t* target = a.out + a.out_rows.offset(item.row * a.heads + head);
    low *= inverse_denominator;
    high *= inverse_denominator;
    if (a.out_pairs) {
        *reinterpret_cast<uint32_t*>(target + column) = pack_bf16(low, high);
    } else {
        target[column] = float_to_bf16(low);
        if (column + 1 < a.d_v) target[column + 1] = float_to_bf16(high);
    }
}

// The end of a 16-head mma.sync CTA (the generic and narrow kernels): the row statistics of its
// heads (RowThreads lanes per head row hold identical running values), then this lane's O
// fragments o[b], b < blocks, of columns first_column + 8 b .. + 7, normalised into out or stored
// as the split's partial. final_max and final_sum are 16 floats of shared memory each.
template <int RowThreads, int Blocks>
__device__ __forceinline__ void finish_head_tile(const Arguments& a, const WorkItem& item, int64_t head0, int heads_here,
                                                 float running_max, float running_sum, float* final_max,
                                                 float* final_sum, const float (&o)[Blocks][4], int blocks,
                                                 int first_column) {
    const int tid = static_cast<int>(threadIdx.x), g = (tid % 32) / 4, t = tid % 4;
    if (tid % RowThreads == 0) {
        final_max[tid / RowThreads] = running_max;
        final_sum[tid / RowThreads] = running_sum;
    }
    __syncthreads();
    if (tid < heads_here) write_row_statistics(a, item, head0 + tid, final_max[tid], final_sum[tid]);
#pragma unroll
    for (int half = 0; half < 2; ++half) {
        const int row = g + 8 * half;
        if (row >= heads_here) continue;
        const int64_t head = head0 + row;
        const RowResult result = finish_row(a, head, final_max[row], final_sum[row]);
#pragma unroll
        for (int b = 0; b < Blocks; ++b)
            if (b < blocks)
                store_output_pair(a, item, head, first_column + 8 * b + 2 * t, o[b][2 * half], o[b][2 * half + 1],
                                  result.inverse_denominator);
    }
}

// One online-softmax step of a head row shared by RowThreads consecutive lanes, each holding
// Values scores of the tile (log2 units, -inf where masked): replaces them by P = exp2(s - max),
// updates the running max and sum (identical in the row's lanes) and returns the factor that
// rescales the row's earlier output.
template <int RowThreads, int Values>
__device__ __forceinline__ float online_softmax_step(float (&values)[Values], float& running_max, float& running_sum) {
    float tile_max = -INFINITY;
#pragma unroll
    for (int i = 0; i < Values; ++i) tile_max = fmaxf(tile_max, values[i]);
#pragma unroll
    for (int offset = RowThreads / 2; offset > 0; offset /= 2)
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, offset));
    const float new_max = fmaxf(running_max, tile_max);
    const float base = new_max == -INFINITY ? 0.0f : new_max;
    const float correction = exp2f(running_max - base);
    float tile_sum = 0.0f;
#pragma unroll
    for (int i = 0; i < Values; ++i) {
        values[i] = exp2f(values[i] - base);
        tile_sum += values[i];
    }
#pragma unroll
    for (int offset = RowThreads / 2; offset > 0; offset /= 2)
        tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, offset);
    running_sum = running_sum * correction + tile_sum;
    running_max = new_max;
    return correction;
}

// Dequantises `entries` raw FP8 MLA entries (kMlaEntryBytes apart, 16-byte aligned) into bf16
// rows `row_elems` apart: 64 octets of codes times their group's scale and 8 octets of rope per
// entry, 16 bytes of bf16 each; the CTA's Threads threads share the work.
template <int Threads>
__device__ __forceinline__ void dequantize_entries(const uint8_t* raw, uint16_t* tile, int row_elems, int entries) {
    constexpr int kOctets = static_cast<int>(kMlaLatentDim / 8 + kMlaRopeDim / 8);
#pragma unroll 1
    for (int i = static_cast<int>(threadIdx.x); i < entries * kOctets; i += Threads) {
        const int token = i / kOctets, octet = i % kOctets;
        const uint8_t* entry = raw + token * kMlaEntryBytes;
        uint4 value;
        if (octet < kMlaLatentDim / 8) {
            const int d = octet * 8;
            const uint2 codes = *reinterpret_cast<const uint2*>(entry + d);
            const float scale = *reinterpret_cast<const float*>(entry + kMlaScaleOffset + 4 * (d / kMlaGroupSize));
            value.x = dequantize_pair(codes.x, scale);
            value.y = dequantize_pair(codes.x >> 16, scale);
            value.z = dequantize_pair(codes.y, scale);
            value.w = dequantize_pair(codes.y >> 16, scale);
        } else {
            value = *reinterpret_cast<const uint4*>(entry + kMlaRopeOffset + 16 * (octet - kMlaLatentDim / 8));
        }
        *reinterpret_cast<uint4*>(tile + token * row_elems + 8 * octet) = value;
    }
}

}  // namespace dsa::cuda::attention
