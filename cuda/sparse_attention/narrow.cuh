// The narrow-head sparse attention kernel (sm_80+, mma.sync) for the DeepSeek widths d_qk 576 /
// d_v 512 wherever the sm_90a kernel does not run: H_q 8, 16, 32 tensor-parallel shards (never
// padded to 64 heads), other head counts, and GPUs before Hopper. Bf16 or FP8 MLA entries,
// 16-byte aligned q, entries and out pairs. A CTA takes one query row, 16 heads (one m16 MMA
// tile) and a range of index positions.
//
// Small-head decode reads each entry for only 16 heads, so it is bound by how many gathered bytes
// are in flight, not by the tensor cores. Hence:
// - entries are gathered 32 a tile with cp.async into a ring of stages (FP8: three raw stages,
//   each dequantised once into one bf16 tile; bf16: two stages that are the tiles themselves):
//   while tile i is consumed, the next stages - 1 tiles are in flight, and each tile's entry
//   offsets are resolved one iteration before its copies are issued (the index load never
//   stalls an issue);
// - 8 warps, two CTAs per SM (registers <= 128, shared memory <= 110 KB);
// - FP8 latent codes are dequantised into the bf16 tile by 8 threads per entry whose octets and
//   scale groups are compile-time constants; the rope part stays in the raw stage, read in place;
// - S = Q.K^T: warp w takes latent group w % 4 (8 k-steps) plus rope k-step w % 4 and the half
//   w / 4 of the tile's 32 tokens, so its quarter of Q stays in registers (36 of them) for the
//   whole row; the softmax sums the four partial scores in a fixed order (bitwise repeatable);
// - online softmax (log2 units) by 16 threads per head row, P as bf16 in shared memory;
// - O += P.V: warp w owns value columns [64 w, 64 w + 64), 32 accumulators a lane.
#pragma once

#include "../common/tensor_core.cuh"
#include "common.cuh"

namespace dsa::cuda::attention {

inline constexpr int kNarrowHeads = 16;
inline constexpr int kNarrowTokens = 32;
inline constexpr int kNarrowThreads = 256;
inline constexpr int kNarrowDqk = 576;
inline constexpr int kNarrowDv = 512;
inline constexpr int kNarrowRow = kNarrowDqk + 8;  // tile row pitch in elements: no ldmatrix bank conflicts
inline constexpr int kNarrowDimGroups = 4;         // warps splitting the k-steps of S = Q.K^T
inline constexpr int kNarrowLatentSteps = static_cast<int>(kMlaLatentDim) / 16 / kNarrowDimGroups;  // 8
inline constexpr int kNarrowStepsPerGroup = kNarrowLatentSteps + 1;  // + one rope k-step
inline constexpr int kNarrowScorePitch = kNarrowTokens + 4;
inline constexpr int kNarrowProbPitch = kNarrowTokens + 8;
static_assert(kNarrowDqk == kMlaLatentDim + kMlaRopeDim && kMlaRopeDim == 16 * kNarrowDimGroups &&
                  kMlaLatentDim == kMlaGroupSize * kNarrowDimGroups,
              "each dim group is one latent scale group and one rope k-step");

// Dim group `group`'s k-step `step` starts at this column of d_qk.
__host__ __device__ constexpr int narrow_step_column(int group, int step) {
    return step < kNarrowLatentSteps ? group * static_cast<int>(kMlaGroupSize) + 16 * step
                                     : static_cast<int>(kMlaLatentDim) + 16 * group;
}
static_assert(kNarrowDv == (kNarrowThreads / 32) * 64, "each warp owns 64 value columns");

__host__ __device__ constexpr int narrow_stages(bool fp8) { return fp8 ? 3 : 2; }

// Shared memory of the narrow kernel (byte offsets, 16-byte aligned). FP8 stages Q in the bf16
// tile (moved to registers before the first dequantisation); bf16 needs its own Q area since
// its stages are the tiles.
struct NarrowSmem {
    int tiles, raw, q, scores, probs, stats, meta, bytes;
};

__host__ __device__ constexpr NarrowSmem narrow_smem(bool fp8) {
    const int tile_bytes = kNarrowTokens * kNarrowRow * 2;
    const int stages = narrow_stages(fp8);
    NarrowSmem s{};
    s.tiles = 0;
    s.raw = s.tiles + (fp8 ? 1 : stages) * tile_bytes;
    s.q = fp8 ? s.tiles : s.raw;
    const int q_end = fp8 ? s.raw : s.q + kNarrowHeads * kNarrowRow * 2;
    s.scores = fp8 ? s.raw + stages * kNarrowTokens * static_cast<int>(kMlaEntryBytes) : q_end;
    s.probs = s.scores + kNarrowDimGroups * kNarrowHeads * kNarrowScorePitch * 4;
    s.stats = s.probs + kNarrowHeads * kNarrowProbPitch * 2;
    s.meta = s.stats + 3 * kNarrowHeads * 4;
    s.bytes = s.meta + (stages + 1) * kNarrowTokens * 8;
    return s;
}

template <bool Fp8>
__global__ void __launch_bounds__(kNarrowThreads, 2) narrow_attention_kernel(const __grid_constant__ Arguments a) {
    constexpr int kT = kNarrowTokens;
    constexpr int kStages = narrow_stages(Fp8);
    constexpr int kMetaSlots = kStages + 1;
    constexpr NarrowSmem layout = narrow_smem(Fp8);
    constexpr int kRowThreads = kNarrowThreads / kNarrowHeads;  // softmax threads per head row
    extern __shared__ __align__(16) uint8_t smem[];
    float* const partial_scores = reinterpret_cast<float*>(smem + layout.scores);
    uint16_t* const probs = reinterpret_cast<uint16_t*>(smem + layout.probs);
    float* const alpha = reinterpret_cast<float*>(smem + layout.stats);
    float* const final_max = alpha + kNarrowHeads;
    float* const final_sum = final_max + kNarrowHeads;
    int64_t* const meta = reinterpret_cast<int64_t*>(smem + layout.meta);
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
    const int dim_group = warp % kNarrowDimGroups, token_half = warp / kNarrowDimGroups;

    const WorkItem item = work_item(a);
    const int64_t head0 = static_cast<int64_t>(item.group) * kNarrowHeads;
    const int heads_here = static_cast<int>(a.heads - head0 < kNarrowHeads ? a.heads - head0 : kNarrowHeads);
    const int64_t positions = item.end > item.begin ? item.end - item.begin : 0;
    const int tiles = static_cast<int>((positions + kT - 1) / kT);
    const int64_t index_base = a.index_rows.offset(item.row);
    auto tile_of_stage = [&](int stage) {
        return reinterpret_cast<uint16_t*>(smem + layout.tiles) + (Fp8 ? 0 : stage) * kT * kNarrowRow;
    };
    auto raw_stage = [&](int stage) { return smem + layout.raw + stage * kT * static_cast<int>(kMlaEntryBytes); };

    // Entry offsets of tile `tile` into its meta slot (-1: skipped, never read).
    auto resolve = [&](int tile) {
        if (tid < kT && tile < tiles)
            meta[(tile % kMetaSlots) * kT + tid] =
                position_offset(a, index_base, item.begin + static_cast<int64_t>(tile) * kT + tid, item.end);
    };
    // Copies of tile `tile` (offsets resolved and visible) into stage tile % kStages, one group.
    auto issue = [&](int tile) {
        if (tile < tiles) {
            const int64_t* offsets = meta + (tile % kMetaSlots) * kT;
            constexpr int kChunks = Fp8 ? static_cast<int>(kMlaEntryBytes) / 16 : kNarrowDqk / 8;
            for (int i = tid; i < kT * kChunks; i += kNarrowThreads) {
                const int token = i / kChunks, chunk = i % kChunks;
                const int64_t offset = offsets[token];
                const uint8_t* source = a.kv + (offset >= 0 ? offset : 0) + 16 * chunk;
                const uint32_t target = Fp8 ? shared_address(raw_stage(tile % kStages) + token * kMlaEntryBytes + 16 * chunk)
                                            : shared_address(tile_of_stage(tile % kStages) + token * kNarrowRow + 8 * chunk);
                copy_async_16(target, source, offset >= 0 ? 16 : 0);
            }
        }
        copy_async_commit();
    };

    // Q: absent heads are zero rows; then this warp's quarter becomes A fragments.
    uint16_t* const q_tile = reinterpret_cast<uint16_t*>(smem + layout.q);
    for (int i = tid; i < (kNarrowHeads - heads_here) * kNarrowDqk / 8; i += kNarrowThreads)
        reinterpret_cast<uint4*>(q_tile + (heads_here + i / (kNarrowDqk / 8)) * kNarrowRow)[i % (kNarrowDqk / 8)] =
            make_uint4(0, 0, 0, 0);
    for (int i = tid; i < heads_here * kNarrowDqk / 8; i += kNarrowThreads) {
        const int h = i / (kNarrowDqk / 8), chunk = i % (kNarrowDqk / 8);
        copy_async_16(shared_address(q_tile + h * kNarrowRow + 8 * chunk),
                      a.q + a.q_rows.offset(item.row * a.heads + head0 + h) + 8 * chunk, 16);
    }
    copy_async_commit();
    for (int tile = 0; tile < kStages; ++tile) resolve(tile);
    __syncthreads();
    for (int tile = 0; tile + 1 < kStages; ++tile) issue(tile);
    copy_async_wait<kStages - 1>();  // Q landed (the tiles may still be in flight)
    __syncthreads();
    uint32_t q_fragments[kNarrowStepsPerGroup][4];
#pragma unroll
    for (int s = 0; s < kNarrowStepsPerGroup; ++s)
        load_matrix_x4(
            shared_address(q_tile + (lane % 16) * kNarrowRow + narrow_step_column(dim_group, s) + (lane / 16) * 8),
            q_fragments[s]);

    float o[8][4];
#pragma unroll
    for (int b = 0; b < 8; ++b) o[b][0] = o[b][1] = o[b][2] = o[b][3] = 0.0f;
    float running_max = -INFINITY, running_sum = 0.0f;  // of head row tid / kRowThreads

    for (int tile = 0; tile < tiles; ++tile) {
        copy_async_wait<kStages - 2>();  // this thread's copies of `tile` landed
        __syncthreads();                 // ... everyone's; the previous tile is fully consumed
        issue(tile + kStages - 1);       // into the stage the previous tile used
        resolve(tile + kStages);         // into the meta slot the previous tile used
        const int64_t* offsets = meta + (tile % kMetaSlots) * kT;
        const uint16_t* keys = tile_of_stage(tile % kStages);
        if (Fp8) {
            // Latent codes only (the rope is read in place): token tid / 8, octets tid % 8 + 8 j.
            const uint8_t* entry = raw_stage(tile % kStages) + (tid / 8) * kMlaEntryBytes;
            uint16_t* target = tile_of_stage(0) + (tid / 8) * kNarrowRow;
#pragma unroll 1
            for (int j = 0; j < static_cast<int>(kMlaLatentDim) / 64; ++j) {
                const int d = (tid % 8 + 8 * j) * 8;
                const uint2 codes = *reinterpret_cast<const uint2*>(entry + d);
                const float scale = *reinterpret_cast<const float*>(entry + kMlaScaleOffset + 4 * (j / 2));
                const uint4 value = make_uint4(dequantize_pair(codes.x, scale), dequantize_pair(codes.x >> 16, scale),
                                               dequantize_pair(codes.y, scale), dequantize_pair(codes.y >> 16, scale));
                *reinterpret_cast<uint4*>(target + d) = value;
            }
            __syncthreads();
        }

        // Partial S over this warp's k-steps for its 16 tokens (two 8-token blocks per x4 load).
        {
            float acc[2][4] = {};
            const int key = token_half * 16 + lane % 8 + (lane / 16) * 8, half = ((lane / 8) % 2) * 8;
            const uint16_t* key_row = keys + key * kNarrowRow + half;
            // The rope of the key (FP8: the raw entry's bf16 rope, read in place).
            const uint16_t* rope_row =
                Fp8 ? reinterpret_cast<const uint16_t*>(raw_stage(tile % kStages) + key * kMlaEntryBytes + kMlaRopeOffset) + half
                    : key_row + kMlaLatentDim;
#pragma unroll
            for (int s = 0; s < kNarrowStepsPerGroup; ++s) {
                uint32_t fb[4];
                const int column = narrow_step_column(dim_group, s);
                load_matrix_x4(shared_address(s < kNarrowLatentSteps ? key_row + column : rope_row + (column - kMlaLatentDim)),
                               fb);
                mma_16x8x16(acc[0], q_fragments[s], fb[0], fb[1]);
                mma_16x8x16(acc[1], q_fragments[s], fb[2], fb[3]);
            }
            float* partial = partial_scores + dim_group * kNarrowHeads * kNarrowScorePitch;
#pragma unroll
            for (int nb = 0; nb < 2; ++nb)
#pragma unroll
                for (int i = 0; i < 4; ++i)
                    partial[(g + 8 * (i / 2)) * kNarrowScorePitch + token_half * 16 + nb * 8 + 2 * t + i % 2] = acc[nb][i];
        }
        __syncthreads();

        // Online softmax: 16 threads per head row, two tokens each.
        {
            const int row = tid / kRowThreads, part = tid % kRowThreads;
            float values[kT / kRowThreads];
#pragma unroll
            for (int i = 0; i < kT / kRowThreads; ++i) {
                const int column = part + i * kRowThreads;
                float score = 0.0f;
#pragma unroll
                for (int d = 0; d < kNarrowDimGroups; ++d)
                    score += partial_scores[(d * kNarrowHeads + row) * kNarrowScorePitch + column];
                values[i] = offsets[column] >= 0 ? score * a.scale_log2 : -INFINITY;
            }
            const float correction = online_softmax_step<kRowThreads>(values, running_max, running_sum);
#pragma unroll
            for (int i = 0; i < kT / kRowThreads; ++i)
                probs[row * kNarrowProbPitch + part + i * kRowThreads] = float_to_bf16(values[i]);
            if (part == 0) alpha[row] = correction;
        }
        __syncthreads();

        // O = O * alpha + P.V over this warp's 64 columns.
        {
            const float alpha_low = alpha[g], alpha_high = alpha[g + 8];
#pragma unroll
            for (int b = 0; b < 8; ++b) {
                o[b][0] *= alpha_low;
                o[b][1] *= alpha_low;
                o[b][2] *= alpha_high;
                o[b][3] *= alpha_high;
            }
#pragma unroll
            for (int ks = 0; ks < kT / 16; ++ks) {
                uint32_t fa[4];
                load_matrix_x4(shared_address(probs + (lane % 16) * kNarrowProbPitch + ks * 16 + (lane / 16) * 8), fa);
                const uint16_t* v_row =
                    keys + (ks * 16 + lane % 8 + ((lane / 8) % 2) * 8) * kNarrowRow + warp * 64 + (lane / 16) * 8;
#pragma unroll
                for (int b = 0; b < 8; b += 2) {
                    uint32_t fb[4];
                    load_matrix_x4_transposed(shared_address(v_row + b * 8), fb);
                    mma_16x8x16(o[b], fa, fb[0], fb[1]);
                    mma_16x8x16(o[b + 1], fa, fb[2], fb[3]);
                }
            }
        }
    }
    copy_async_wait<0>();  // the empty groups of the last iterations

    finish_head_tile<kRowThreads>(a, item, head0, heads_here, running_max, running_sum, final_max, final_sum, o, 8, warp * 64);
}

}  // namespace dsa::cuda::attention
