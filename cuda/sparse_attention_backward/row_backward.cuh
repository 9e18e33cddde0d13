// The CUDA sparse attention backward kernel (FlashAttention-2 style, one query row per CTA).
// A CTA takes one row and walks its heads in groups of 16 (one m16 MMA tile; padded heads are
// zero and have P = 0) and, per group, the row's index positions in tiles of 16 entries:
//   gather the tile's KV rows (invalid positions: zero rows, never read),
//   S = Q.K^T and dP = dOut.V^T (tensor cores), P = exp(scale S - L) from the forward's lse,
//   dS = scale * P * (dP - D) with D = rowsum(dOut * Out),
//   dq += dS.K (accumulated in shared memory over the row's tiles),
//   dkv rows of the tile += dS^T.Q + P^T.dOut (the first d_v columns: MLA's value is the key's
//   first d_v dims, so both land in the same row).
// The dkv contribution of an entry goes either straight into dkv with f32 atomics (FAST) or into
// the entry's own slot of a panel buffer (DETERMINISTIC; the CTA owns the slot and adds its head
// groups in order), which launch.cu then reduces per token in ascending entry order.
// Everything is staged in shared memory as f32; Split carries f32 operands as three bf16
// parts (cuda/common/tensor_core.cuh) for inputs given in f32.
#pragma once

#include <cmath>
#include <cstdint>

#include "../common/tensor_core.cuh"

namespace dsa::cuda::attention_backward {

inline constexpr int kHeadTile = 16;
inline constexpr int kEntryTile = 16;
inline constexpr int kThreads = 128;
inline constexpr int kWarps = kThreads / 32;
// Row pitch of the 16 x 16 P and dS tiles: 4 mod 32 floats, so the MMA fragment reads (lane
// pattern row g, column 2t, and its transpose) hit at most two lanes per bank.
inline constexpr int kScorePitch = kEntryTile + 4;

// Pointers, element strides and sizes of one call (resolved from the validated problem).
struct Arguments {
    const void* q;
    int64_t q_row, q_head;
    const void* kv;
    int64_t kv_row;
    const int32_t* indices;
    int64_t index_row;
    const int32_t* topk_length;  // NULL: every row counts all topk positions
    int64_t length_stride;
    const float* sink;  // NULL: no attention sink
    int64_t sink_stride;
    const void* out;
    int64_t out_row, out_head;
    const float* lse;
    int64_t lse_row, lse_head;
    const void* dout;
    int64_t dout_row, dout_head;
    void* dq;
    int64_t dq_row, dq_head;
    float* dkv;  // FAST: the atomics' target (zeroed first)
    int64_t dkv_row;
    // DETERMINISTIC: entry (row - first_row) * topk + position's dkv contribution at
    // contributions[entry * d_qk]; NULL in FAST mode.
    float* contributions;
    int32_t* row_contributes;  // NULL, or per row: 1 when it has a valid entry and a finite L
    int64_t rows, heads, d_qk, d_v, topk, tokens;
    int64_t first_row;  // the panel's first row (blockIdx.x counts from it)
    float scale;
    int ctas_per_row;  // bf16 kernel: CTAs a row is split over, each taking every ctas_per_row-th head group
    bool q_bf16, kv_bf16, out_bf16, dout_bf16, dq_bf16;
};

// The positions of a row's index list that count: all topk, or topk_length clamped to [0, topk].
__device__ __forceinline__ int64_t counted_positions(const Arguments& a, int64_t row) {
    if (a.topk_length == nullptr) return a.topk;
    const int64_t length = a.topk_length[row * a.length_stride];
    return length < 0 ? 0 : (length > a.topk ? a.topk : length);
}

// The token of a position (-1 when past the counted positions or out of [0, tokens)).
__device__ __forceinline__ int32_t position_token(const Arguments& a, int64_t row, int64_t position, int64_t counted) {
    if (position >= counted) return -1;
    const int32_t token = a.indices[row * a.index_row + position];
    return token >= 0 && token < a.tokens ? token : -1;
}

// L[t,h] = log(exp(lse) + exp(sink)) (lse alone without a sink or when lse is +inf).
__device__ __forceinline__ float softmax_normaliser(const Arguments& a, int64_t row, int64_t head) {
    const float lse = a.lse[row * a.lse_row + head * a.lse_head];
    if (a.sink == nullptr || lse == INFINITY) return lse;
    const float sink = a.sink[head * a.sink_stride];
    const float high = fmaxf(lse, sink);
    return high + logf(expf(lse - high) + expf(sink - high));
}

// D[t,h] = dout[t,h,:] . out[t,h,:], summed by one warp (every lane gets it).
__device__ __forceinline__ float output_gradient_dot(const Arguments& a, int64_t row, int64_t head) {
    float sum = 0.0f;
    for (int64_t c = threadIdx.x % 32; c < a.d_v; c += 32)
        sum += load_value(a.dout, a.dout_bf16, row * a.dout_row + head * a.dout_head + c) *
               load_value(a.out, a.out_bf16, row * a.out_row + head * a.out_head + c);
    return warp_sum(sum);
}

// D and L of `head` of the row into delta[slot] and normaliser[slot] (0 and +inf for a padded
// head past H_q); *finite is set when L is finite (unless `finite` is NULL). Every lane of one
// warp calls it.
__device__ __forceinline__ void store_head_statistics(const Arguments& a, int64_t row, int64_t head, int slot,
                                                      float* delta, float* normaliser, int32_t* finite) {
    const float dot = head < a.heads ? output_gradient_dot(a, row, head) : 0.0f;
    if (threadIdx.x % 32 != 0) return;
    const float l = head < a.heads ? softmax_normaliser(a, row, head) : INFINITY;
    delta[slot] = dot;
    normaliser[slot] = l;
    if (finite != nullptr && l != INFINITY) *finite = 1;
}

// Shared memory of the kernel, in floats: Q, dOut, the KV tile and the dq accumulator (16 rows
// of `width` = d_qk rounded up to 16, zero padded each, `pitch` = width + 4 apart for the same
// bank spread as kScorePitch), P and dS (16 x 16), L and D per head, the tile's tokens.
struct SharedLayout {
    int width, pitch, q, dout, kv, dq, probs, grads, normaliser, delta, tokens, flags, floats;
};

__host__ __device__ inline SharedLayout shared_layout(int64_t d_qk) {
    SharedLayout s;
    s.width = static_cast<int>((d_qk + 15) / 16 * 16);
    s.pitch = s.width + 4;
    s.q = 0;
    s.dout = s.q + kHeadTile * s.pitch;
    s.kv = s.dout + kHeadTile * s.pitch;
    s.dq = s.kv + kEntryTile * s.pitch;
    s.probs = s.dq + kHeadTile * s.pitch;
    s.grads = s.probs + kHeadTile * kScorePitch;
    s.normaliser = s.grads + kHeadTile * kScorePitch;
    s.delta = s.normaliser + kHeadTile;
    s.tokens = s.delta + kHeadTile;
    s.flags = s.tokens + kEntryTile;
    s.floats = s.flags + 2;
    return s;
}

template <bool Split>
__global__ void __launch_bounds__(kThreads) row_backward_kernel(const __grid_constant__ Arguments a) {
    extern __shared__ __align__(16) float smem[];
    const SharedLayout layout = shared_layout(a.d_qk);
    const int width = layout.width, pitch = layout.pitch;
    float* const q_tile = smem + layout.q;
    float* const dout_tile = smem + layout.dout;
    float* const kv_tile = smem + layout.kv;
    float* const dq_tile = smem + layout.dq;
    float* const probs = smem + layout.probs;
    float* const grads = smem + layout.grads;
    float* const normaliser = smem + layout.normaliser;
    float* const delta = smem + layout.delta;
    int32_t* const tokens = reinterpret_cast<int32_t*>(smem + layout.tokens);
    int32_t* const flags = reinterpret_cast<int32_t*>(smem + layout.flags);  // any valid entry, any finite L
    const int tid = static_cast<int>(threadIdx.x), warp = tid / 32;
    const int64_t row = a.first_row + blockIdx.x;
    const int64_t counted = counted_positions(a, row);
    const int64_t entry_base = (row - a.first_row) * a.topk;
    const int value_steps = static_cast<int>((a.d_v + 15) / 16);
    if (tid < 2) flags[tid] = 0;
    __syncthreads();

    for (int64_t first_head = 0; first_head < a.heads; first_head += kHeadTile) {
        for (int i = tid; i < kHeadTile * width; i += kThreads) {
            const int h = i / width, c = i % width;
            const int64_t head = first_head + h;
            const bool real = head < a.heads;
            q_tile[h * pitch + c] =
                real && c < a.d_qk ? load_value(a.q, a.q_bf16, row * a.q_row + head * a.q_head + c) : 0.0f;
            dout_tile[h * pitch + c] =
                real && c < a.d_v ? load_value(a.dout, a.dout_bf16, row * a.dout_row + head * a.dout_head + c) : 0.0f;
            dq_tile[h * pitch + c] = 0.0f;
        }
        for (int h = warp; h < kHeadTile; h += kWarps) store_head_statistics(a, row, first_head + h, h, delta, normaliser, flags + 1);
        __syncthreads();

        for (int64_t first = 0; first < counted; first += kEntryTile) {
            if (tid < kEntryTile) {
                tokens[tid] = position_token(a, row, first + tid, counted);
                if (tokens[tid] >= 0) flags[0] = 1;
            }
            __syncthreads();
            for (int i = tid; i < kEntryTile * width; i += kThreads) {
                const int j = i / width, c = i % width;
                const int32_t token = tokens[j];
                kv_tile[j * pitch + c] =
                    token >= 0 && c < a.d_qk ? load_value(a.kv, a.kv_bf16, token * a.kv_row + c) : 0.0f;
            }
            __syncthreads();

            // Warps 0-1: S for entry columns [8 * warp, +8); warps 2-3: dP for the same columns.
            {
                const int block = warp % 2;
                const bool scores = warp < 2;
                const float* left = scores ? q_tile : dout_tile;
                float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                warp_product<Split>(
                    acc, [&](int r, int k) { return left[r * pitch + k]; },
                    [&](int k, int n) { return kv_tile[(block * 8 + n) * pitch + k]; },
                    scores ? width / 16 : value_steps);
                for (int i = 0; i < 4; ++i) {
                    const int r = accumulator_row(i), n = block * 8 + accumulator_column(i);
                    if (scores)
                        probs[r * kScorePitch + n] = tokens[n] >= 0 && normaliser[r] != INFINITY
                                                        ? expf(a.scale * acc[i] - normaliser[r])
                                                        : 0.0f;
                    else
                        grads[r * kScorePitch + n] = acc[i];
                }
            }
            __syncthreads();
            for (int i = tid; i < kHeadTile * kEntryTile; i += kThreads) {
                const int h = i / kEntryTile, at = h * kScorePitch + i % kEntryTile;
                grads[at] = a.scale * probs[at] * (grads[at] - delta[h]);
            }
            __syncthreads();

            // Each warp owns 8-column blocks: dq += dS.K there, and the entries' dkv there.
            for (int block = warp; block < width / 8; block += kWarps) {
                const int column = block * 8;
                float dq_part[4];
                for (int i = 0; i < 4; ++i) dq_part[i] = dq_tile[accumulator_row(i) * pitch + column + accumulator_column(i)];
                warp_product<Split>(
                    dq_part, [&](int r, int k) { return grads[r * kScorePitch + k]; },
                    [&](int k, int n) { return kv_tile[k * pitch + column + n]; }, 1);
                for (int i = 0; i < 4; ++i) dq_tile[accumulator_row(i) * pitch + column + accumulator_column(i)] = dq_part[i];

                float dkv_part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                warp_product<Split>(
                    dkv_part, [&](int r, int k) { return grads[k * kScorePitch + r]; },
                    [&](int k, int n) { return q_tile[k * pitch + column + n]; }, 1);
                if (column < a.d_v)
                    warp_product<Split>(
                        dkv_part, [&](int r, int k) { return probs[k * kScorePitch + r]; },
                        [&](int k, int n) { return dout_tile[k * pitch + column + n]; }, 1);
                for (int i = 0; i < 4; ++i) {
                    const int entry = accumulator_row(i);
                    const int64_t c = column + accumulator_column(i);
                    const int32_t token = tokens[entry];
                    if (token < 0 || c >= a.d_qk) continue;
                    if (a.contributions == nullptr) {
                        atomicAdd(a.dkv + token * a.dkv_row + c, dkv_part[i]);
                    } else {
                        float* slot = a.contributions + (entry_base + first + entry) * a.d_qk + c;
                        *slot = first_head == 0 ? dkv_part[i] : *slot + dkv_part[i];
                    }
                }
            }
            __syncthreads();
        }

        for (int i = tid; i < kHeadTile * width; i += kThreads) {
            const int h = i / width, c = i % width;
            const int64_t head = first_head + h;
            if (head >= a.heads || c >= a.d_qk) continue;
            const int64_t offset = row * a.dq_row + head * a.dq_head + c;
            if (a.dq_bf16)
                static_cast<uint16_t*>(a.dq)[offset] = float_to_bf16(dq_tile[h * pitch + c]);
            else
                static_cast<float*>(a.dq)[offset] = dq_tile[h * pitch + c];
        }
        __syncthreads();
    }
    if (a.row_contributes != nullptr && tid == 0) a.row_contributes[row] = flags[0] && flags[1];
}

// d_attn_sink[h] = -sum over contributing rows t with finite L of exp(sink[h] - L[t,h]) * D[t,h].
// One CTA per head; warp w takes rows w, w + kWarps, ... in order and the warps' sums are added
// in order: the same chain every run.
__global__ void __launch_bounds__(kThreads) sink_gradient_kernel(const __grid_constant__ Arguments a, float* d_sink,
                                                                 int64_t d_sink_stride) {
    __shared__ float partial[kWarps];
    const int64_t head = blockIdx.x;
    const int warp = static_cast<int>(threadIdx.x) / 32;
    const float sink = a.sink[head * a.sink_stride];
    float sum = 0.0f;
    for (int64_t row = warp; row < a.rows; row += kWarps) {
        if (!a.row_contributes[row]) continue;
        const float l = softmax_normaliser(a, row, head);
        if (l == INFINITY) continue;
        sum += -expf(sink - l) * output_gradient_dot(a, row, head);
    }
    if (threadIdx.x % 32 == 0) partial[warp] = sum;
    __syncthreads();
    if (threadIdx.x != 0) return;
    float total = 0.0f;
    for (int w = 0; w < kWarps; ++w) total += partial[w];
    d_sink[head * d_sink_stride] = total;
}

}  // namespace dsa::cuda::attention_backward
