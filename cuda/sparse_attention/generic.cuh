// The generic sparse attention kernel (sm_80+, mma.sync): any H_q, d_qk <= 1024, d_v <= d_qk,
// any strides, bf16 or FP8 MLA entries. A CTA takes one query row, 16 heads (one m16 MMA tile:
// small head counts are not padded further) and a range of index positions. Entries are
// gathered 32 at a time into a double buffer with cp.async (FP8 entries land raw and are
// dequantised once into a bf16 tile), then: S = Q.K^T (warps split the tokens), an online
// softmax in shared memory (log2 units), O += P.V (warps split the value columns).
#pragma once

#include "../common/tensor_core.cuh"
#include "common.cuh"

namespace dsa::cuda::attention {

inline constexpr int kGenericHeads = 16;
inline constexpr int kGenericTokens = 32;
inline constexpr int kGenericMaxWidth = 1024;
inline constexpr int kGenericBlocksPerWarp = 16;  // 8-column blocks of O a warp accumulates
inline constexpr int kMetaSlots = 3;              // tiles whose entry offsets are resolved at once

// Shared memory of the generic kernel (byte offsets, all 16-byte aligned).
struct GenericSmem {
    int width;  // d_qk rounded up to 16 (zero padded)
    int row;    // elements between rows of the Q and KV tiles (width + 8: no ldmatrix bank conflicts)
    int q, tiles, raw, scores, probs, stats, meta, bytes;
};

__host__ __device__ inline GenericSmem generic_smem(int64_t d_qk, bool fp8) {
    GenericSmem s;
    s.width = static_cast<int>((d_qk + 15) / 16 * 16);
    s.row = s.width + 8;
    const int tile_bytes = kGenericTokens * s.row * 2;
    s.q = 0;
    s.tiles = s.q + kGenericHeads * s.row * 2;
    s.raw = s.tiles + (fp8 ? 1 : 2) * tile_bytes;  // FP8: one bf16 tile, two raw stages
    s.scores = s.raw + (fp8 ? 2 * kGenericTokens * static_cast<int>(kMlaEntryBytes) : 0);
    s.probs = s.scores + kGenericHeads * (kGenericTokens + 4) * 4;
    s.stats = s.probs + kGenericHeads * (kGenericTokens + 8) * 2;
    s.meta = s.stats + 3 * kGenericHeads * 4;
    s.bytes = s.meta + kMetaSlots * kGenericTokens * 8;
    return s;
}

template <int Warps>
__global__ void __launch_bounds__(Warps * 32) generic_attention_kernel(const __grid_constant__ Arguments a) {
    constexpr int kThreads = Warps * 32;
    constexpr int kT = kGenericTokens;
    constexpr int kRowThreads = kThreads / kGenericHeads;  // softmax threads per head row
    constexpr int kRowValues = kT / kRowThreads;
    extern __shared__ __align__(16) uint8_t smem[];
    const GenericSmem layout = generic_smem(a.d_qk, a.fp8);
    uint16_t* const q_tile = reinterpret_cast<uint16_t*>(smem + layout.q);
    float* const scores = reinterpret_cast<float*>(smem + layout.scores);
    uint16_t* const probs = reinterpret_cast<uint16_t*>(smem + layout.probs);
    float* const alpha = reinterpret_cast<float*>(smem + layout.stats);
    float* const final_max = alpha + kGenericHeads;
    float* const final_sum = final_max + kGenericHeads;
    int64_t* const meta = reinterpret_cast<int64_t*>(smem + layout.meta);
    const int row_elems = layout.row;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;

    const WorkItem item = work_item(a);
    const int64_t head0 = static_cast<int64_t>(item.group) * kGenericHeads;
    const int heads_here = static_cast<int>(a.heads - head0 < kGenericHeads ? a.heads - head0 : kGenericHeads);
    const int64_t positions = item.end > item.begin ? item.end - item.begin : 0;
    const int tiles = static_cast<int>((positions + kT - 1) / kT);
    const int64_t index_base = a.index_rows.offset(item.row);
    auto bf16_tile = [&](int stage) { return reinterpret_cast<uint16_t*>(smem + layout.tiles) + stage * kT * row_elems; };
    auto raw_stage = [&](int stage) { return smem + layout.raw + stage * kT * static_cast<int>(kMlaEntryBytes); };

    // Zero Q and the bf16 tiles: padding columns and absent heads must read as 0.
    {
        const int zero_bytes = layout.raw - layout.q;
        for (int i = tid; i < zero_bytes / 16; i += kThreads) reinterpret_cast<uint4*>(smem + layout.q)[i] = make_uint4(0, 0, 0, 0);
    }
    __syncthreads();
    for (int h = warp; h < heads_here; h += Warps) {
        const uint16_t* source = a.q + a.q_rows.offset(item.row * a.heads + head0 + h);
        uint16_t* target = q_tile + h * row_elems;
        if (a.q_aligned) {
            for (int c = lane; c < a.d_qk / 8; c += 32) copy_async_16(shared_address(target + 8 * c), source + 8 * c, 16);
        } else {
            for (int e = lane; e < a.d_qk; e += 32) target[e] = source[e];
        }
    }

    auto resolve = [&](int tile) {
        if (tid < kT)
            meta[(tile % kMetaSlots) * kT + tid] =
                position_offset(a, index_base, item.begin + static_cast<int64_t>(tile) * kT + tid, item.end);
    };
    // Issues the copies of tile `tile` (its offsets resolved and visible) into stage tile % 2.
    auto issue = [&](int tile) {
        const int64_t* offsets = meta + (tile % kMetaSlots) * kT;
        const int stage = tile % 2;
        for (int token = warp; token < kT; token += Warps) {
            const int64_t offset = offsets[token];
            const uint8_t* entry = a.kv + (offset >= 0 ? offset : 0);
            const uint32_t bytes = offset >= 0 ? 16 : 0;
            if (a.fp8) {
                uint8_t* target = raw_stage(stage) + token * kMlaEntryBytes;
                if (a.kv_aligned) {
                    for (int c = lane; c < kMlaEntryBytes / 16; c += 32)
                        copy_async_16(shared_address(target + 16 * c), entry + 16 * c, bytes);
                } else {
                    for (int e = lane; e < kMlaEntryBytes; e += 32) target[e] = offset >= 0 ? entry[e] : 0;
                }
            } else {
                uint16_t* target = bf16_tile(stage) + token * row_elems;
                const uint16_t* source = reinterpret_cast<const uint16_t*>(entry);
                if (a.kv_aligned) {
                    for (int c = lane; c < a.d_qk / 8; c += 32)
                        copy_async_16(shared_address(target + 8 * c), source + 8 * c, bytes);
                } else {
                    for (int e = lane; e < a.d_qk; e += 32) target[e] = offset >= 0 ? source[e] : 0;
                }
            }
        }
    };

    // Column blocks of O this warp owns in P.V (pairs, for the transposed x4 loads).
    const int value_blocks = static_cast<int>((a.d_v + 7) / 8);
    const int per_warp = ((value_blocks + Warps - 1) / Warps + 1) / 2 * 2;
    const int first_block = warp * per_warp;
    const int my_blocks = value_blocks - first_block < per_warp ? value_blocks - first_block : per_warp;
    float o[kGenericBlocksPerWarp][4];
#pragma unroll
    for (int b = 0; b < kGenericBlocksPerWarp; ++b) o[b][0] = o[b][1] = o[b][2] = o[b][3] = 0.0f;
    float running_max = -INFINITY, running_sum = 0.0f;  // of head row tid / kRowThreads

    if (tiles > 0) resolve(0);
    __syncthreads();
    if (tiles > 0) issue(0);
    copy_async_commit();  // Q (and tile 0)
    if (tiles > 1) resolve(1);

    for (int tile = 0; tile < tiles; ++tile) {
        __syncthreads();  // tile + 1's offsets visible; stage (tile + 1) % 2 no longer read
        if (tile + 1 < tiles) issue(tile + 1);
        copy_async_commit();
        copy_async_wait<1>();
        if (tile + 2 < tiles) resolve(tile + 2);
        __syncthreads();  // tile's data visible to every thread
        const int64_t* offsets = meta + (tile % kMetaSlots) * kT;
        const uint16_t* keys = bf16_tile(a.fp8 ? 0 : tile % 2);
        if (a.fp8) {
            dequantize_entries<kThreads>(raw_stage(tile % 2), bf16_tile(0), row_elems, kT);
            __syncthreads();
        }

        // S = Q.K^T for this warp's 8-token blocks, masked and in log2 units.
        for (int nb = warp; nb < kT / 8; nb += Warps) {
            float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            const uint32_t a_address = shared_address(q_tile + (lane % 16) * row_elems + (lane / 16) * 8);
            const uint32_t b_address = shared_address(keys + (nb * 8 + lane % 8) * row_elems + ((lane / 8) % 2) * 8);
            for (int k0 = 0; k0 < layout.width; k0 += 16) {
                uint32_t fa[4], b0, b1;
                load_matrix_x4(a_address + 2 * k0, fa);
                load_matrix_x2(b_address + 2 * k0, b0, b1);
                mma_16x8x16(acc, fa, b0, b1);
            }
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int row = g + 8 * (i / 2), column = nb * 8 + 2 * t + i % 2;
                scores[row * (kT + 4) + column] = offsets[column] >= 0 ? acc[i] * a.scale_log2 : -INFINITY;
            }
        }
        __syncthreads();

        // Online softmax: kRowThreads threads per head row.
        {
            const int row = tid / kRowThreads, part = tid % kRowThreads;
            float values[kRowValues];
#pragma unroll
            for (int i = 0; i < kRowValues; ++i) values[i] = scores[row * (kT + 4) + part + i * kRowThreads];
            const float correction = online_softmax_step<kRowThreads>(values, running_max, running_sum);
#pragma unroll
            for (int i = 0; i < kRowValues; ++i) probs[row * (kT + 8) + part + i * kRowThreads] = float_to_bf16(values[i]);
            if (part == 0) alpha[row] = correction;
        }
        __syncthreads();

        // O = O * alpha + P.V over this warp's column blocks.
        {
            const float alpha_low = alpha[g], alpha_high = alpha[g + 8];
#pragma unroll
            for (int b = 0; b < kGenericBlocksPerWarp; ++b) {
                o[b][0] *= alpha_low;
                o[b][1] *= alpha_low;
                o[b][2] *= alpha_high;
                o[b][3] *= alpha_high;
            }
#pragma unroll
            for (int ks = 0; ks < kT / 16; ++ks) {
                uint32_t fa[4];
                load_matrix_x4(shared_address(probs + (lane % 16) * (kT + 8) + ks * 16 + (lane / 16) * 8), fa);
                const uint16_t* v_row = keys + (ks * 16 + lane % 8 + ((lane / 8) % 2) * 8) * row_elems + (lane / 16) * 8;
#pragma unroll
                for (int b = 0; b < kGenericBlocksPerWarp; b += 2) {
                    if (b < my_blocks) {
                        uint32_t fb[4];
                        load_matrix_x4_transposed(shared_address(v_row + (first_block + b) * 8), fb);
                        mma_16x8x16(o[b], fa, fb[0], fb[1]);
                        mma_16x8x16(o[b + 1], fa, fb[2], fb[3]);
                    }
                }
            }
        }
    }

    copy_async_wait<0>();  // nothing left in flight (Q of a row without tiles)

    finish_head_tile<kRowThreads>(a, item, head0, heads_here, running_max, running_sum, final_max, final_sum, o, my_blocks,
                                  first_block * 8);
}

}  // namespace dsa::cuda::attention
