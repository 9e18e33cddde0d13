// The rebuilt teacher's fast path (bf16 teacher_q and teacher_k, d a multiple of 8, sm_80+): two
// kernels that do what score_teacher (row_loss.cuh) does inside the student kernels, with the
// teacher's scores as ldmatrix-fed bf16 tensor-core products instead of element-wise operand
// assembly. The teacher is ~80% of the loss's FLOP at DeepSeek's widths (H_q 128 x d 576 against
// H_I 64 x D_I 128), so it gets its own kernels, shaped like an attention forward without P.V.
//
// One query row per CTA of 8 warps; the row's teacher heads in blocks of up to 128 (all heads of
// one kv head: warp w takes heads 16 w + [0, 16)), the row's entries in tiles of 32, gathered by
// token with 16-byte cp.async into a double buffer (tile j + 1 in flight while tile j's MMAs
// run; rows that are not 16-byte aligned take 2-byte loads into the same layout, so the same
// bits). Per k16 step a warp issues one A and two B ldmatrix.x4 for four MMAs (16 heads x 32
// entries, four independent accumulators). Shared rows are d (rounded up to 16) + 8 bf16 apart:
// an odd multiple of 16 bytes, so the 8 row addresses of an ldmatrix hit 8 bank groups.
// - teacher_statistics_kernel: per (row, head) the running (max, sum) of teacher_scale * z over
//   the row's valid entries, each lane over its own columns, the quad's four combined at the end
//   in a fixed order; into a.teacher_stats, as the fused path leaves it (statistics_kernel then
//   decides which rows are active from it).
// - teacher_probability_kernel (active rows only): p[position] = mean over heads of
//   exp(teacher_scale * z - lse_head) into a.teacher_p (row - a.first_row, position), 0 at invalid
//   positions. Heads are summed in a fixed tree: within the warp by shuffles, then warps in order,
//   then head blocks in order (the CTA owns the row's p), so p is the same every run.
// Barriers per tile: S1 (after cp.async.wait_group 0) makes tile j visible and orders every reuse
// (the gather into the other buffer, the partial sums), S2 publishes the per-warp partial sums.
#pragma once

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "../common/ptx.cuh"
#include "row_loss.cuh"

namespace dsa::cuda::distillation {

inline constexpr int kTeacherThreads = 256;
inline constexpr int kTeacherWarps = kTeacherThreads / 32;
inline constexpr int kTeacherBlockHeads = 16 * kTeacherWarps;
inline constexpr int kTeacherEntries = 32;
inline constexpr int kTeacherRowsPerWarp = kTeacherEntries / kTeacherWarps;  // gathered K rows
static_assert(kTeacherEntries % kTeacherWarps == 0 && kTeacherBlockHeads % kTeacherWarps == 0,
              "gathers and head loads split evenly over the warps");

// Shared memory of the teacher kernels, in bytes: the head block's teacher_q rows, two K tiles,
// their tokens, and the per-warp partial sums of p. H_q 128 (MQA), d 576: 225,536 bytes.
struct TeacherLayout {
    int width, pitch, block_heads;
    int q, k, tokens, partials, bytes;
};

__host__ __device__ inline TeacherLayout teacher_layout(int64_t group_heads, int64_t dim) {
    TeacherLayout s;
    s.width = static_cast<int>((dim + 15) / 16 * 16);
    s.pitch = s.width + 8;
    s.block_heads = static_cast<int>(group_heads >= kTeacherBlockHeads ? kTeacherBlockHeads : (group_heads + 15) / 16 * 16);
    s.q = 0;
    s.k = s.q + s.block_heads * s.pitch * 2;
    s.tokens = s.k + 2 * kTeacherEntries * s.pitch * 2;
    s.partials = s.tokens + 2 * kTeacherEntries * 4;
    s.bytes = s.partials + kTeacherWarps * kTeacherEntries * 4;
    return s;
}

namespace teacher_detail {

// Folds (m2, s2) into (m, s), two running (max, sum of exp(x - max)) pairs. A max of -inf (no
// finite value yet) shifts by 0 instead, so exp(-inf - shift) = 0 and a NaN sum stays NaN. The
// expression is symmetric in the two pairs: both lanes of a shuffle get the same bits.
__device__ __forceinline__ void combine(float& m, float& s, float m2, float s2) {
    const float next = fmaxf(m, m2), shift = next == -INFINITY ? 0.0f : next;
    s = s * expf(m - shift) + s2 * expf(m2 - shift);
    m = next;
}

// The row's teacher work, shared by both kernels: for every (kv head, head block), `begin_block`
// once its teacher_q rows are loaded, then per entry tile `use_tile(acc, tile_tokens, tile,
// heads_here)` with the warp's scores acc[n][i] (head 16 warp + accumulator_row(i), entry 8 n +
// accumulator_column(i) of the tile), then `end_block`. Every thread of the CTA calls it.
template <typename BeginBlock, typename UseTile, typename EndBlock>
__device__ __forceinline__ void for_each_score_tile(const Arguments& a, int64_t row, unsigned char* shared,
                                                    const BeginBlock& begin_block, const UseTile& use_tile,
                                                    const EndBlock& end_block) {
    const int64_t group_heads = a.teacher_heads / a.teacher_kv_heads;
    const TeacherLayout layout = teacher_layout(group_heads, a.teacher_dim);
    const int pitch = layout.pitch, dim_chunks = static_cast<int>(a.teacher_dim / 8);
    const int pad_chunks = layout.width / 8 - dim_chunks, steps = layout.width / 16;
    uint16_t* const q_tile = reinterpret_cast<uint16_t*>(shared + layout.q);
    uint16_t* const k_tiles = reinterpret_cast<uint16_t*>(shared + layout.k);  // two, kTeacherEntries * pitch apart
    int32_t* const tokens = reinterpret_cast<int32_t*>(shared + layout.tokens);
    const int tid = static_cast<int>(threadIdx.x), warp = tid / 32, lane = tid % 32;
    const RowEntries e = row_entries(a, row);
    const int64_t tiles = (e.count + kTeacherEntries - 1) / kTeacherEntries;
    const uint16_t* const q_data = static_cast<const uint16_t*>(a.teacher_q);
    const uint16_t* const k_data = static_cast<const uint16_t*>(a.teacher_k);
    const bool q_vector = rows_aligned(a.teacher_q, a.teacher_q_row, a.teacher_q_head);
    const bool k_vector = rows_aligned(a.teacher_k, a.teacher_k_row, a.teacher_k_head);

    // A row of `chunks` chunks and its zero padding up to the tile width.
    auto copy_padded = [&](uint16_t* target, const uint16_t* source, bool vector) {
        copy_row(target, source, dim_chunks, vector, lane);
        if (pad_chunks > 0 && lane < pad_chunks) copy_row(target + 8 * dim_chunks + 8 * lane, nullptr, 1, false, 0);
    };
    // Warp w gathers rows w + 8 i of every K tile; their tokens are read a tile ahead, so the
    // index loads' latency hides behind a tile of MMAs.
    int32_t upcoming[kTeacherRowsPerWarp];
    auto fetch_tokens = [&](int64_t tile) {
#pragma unroll
        for (int i = 0; i < kTeacherRowsPerWarp; ++i)
            upcoming[i] = entry_token(a, row, e, tile * kTeacherEntries + warp + kTeacherWarps * i);
    };
    auto gather = [&](int buffer, int64_t group) {
        uint16_t* const k_tile = k_tiles + buffer * kTeacherEntries * pitch;
#pragma unroll
        for (int i = 0; i < kTeacherRowsPerWarp; ++i) {
            const int r = warp + kTeacherWarps * i;
            const int32_t token = upcoming[i];
            if (lane == 0) tokens[buffer * kTeacherEntries + r] = token;
            copy_padded(k_tile + r * pitch,
                        token >= 0 ? k_data + token * a.teacher_k_row + group * a.teacher_k_head : nullptr, k_vector);
        }
    };

    // ldmatrix row addresses. A: heads 16 warp + (lane & 7) + 8 ((lane >> 3) & 1) at column
    // 8 (lane >> 4); B (entry half h): entries 16 h + (lane & 7) + 8 (lane >> 4) at column
    // 8 ((lane >> 3) & 1).
    const uint32_t a_address =
        shared_address(q_tile + (16 * warp + (lane & 7) + 8 * ((lane >> 3) & 1)) * pitch + 8 * (lane >> 4));
    uint32_t b_address[2][2];
#pragma unroll
    for (int buffer = 0; buffer < 2; ++buffer)
#pragma unroll
        for (int half = 0; half < 2; ++half)
            b_address[buffer][half] = shared_address(k_tiles + buffer * kTeacherEntries * pitch +
                                                     (16 * half + (lane & 7) + 8 * (lane >> 4)) * pitch +
                                                     8 * ((lane >> 3) & 1));

    for (int64_t group = 0; group < a.teacher_kv_heads; ++group) {
        for (int64_t block_first = 0; block_first < group_heads; block_first += layout.block_heads) {
            const int heads_here = static_cast<int>(
                group_heads - block_first < layout.block_heads ? group_heads - block_first : layout.block_heads);
            const int64_t first_head = group * group_heads + block_first;
            copy_async_wait<0>();
            __syncthreads();  // the previous block's readers of Q and of both K buffers are done
            if (tiles > 0) fetch_tokens(0);
            for (int h = warp; h < layout.block_heads; h += kTeacherWarps)
                copy_padded(q_tile + h * pitch,
                            h < heads_here ? q_data + row * a.teacher_q_row + (first_head + h) * a.teacher_q_head
                                           : nullptr,
                            q_vector);
            if (tiles > 0) {
                gather(0, group);
                if (tiles > 1) fetch_tokens(1);
            }
            copy_async_commit();
            begin_block(first_head, heads_here);
            for (int64_t tile = 0; tile < tiles; ++tile) {
                const int buffer = static_cast<int>(tile & 1);
                copy_async_wait<0>();
                __syncthreads();  // S1
                if (tile + 1 < tiles) {
                    gather(buffer ^ 1, group);
                    if (tile + 2 < tiles) fetch_tokens(tile + 2);
                }
                copy_async_commit();
                float acc[4][4];
#pragma unroll
                for (int n = 0; n < 4; ++n)
#pragma unroll
                    for (int i = 0; i < 4; ++i) acc[n][i] = 0.0f;
                if (16 * warp < heads_here) {
#pragma unroll 4
                    for (int step = 0; step < steps; ++step) {
                        uint32_t af[4], bf[2][4];
                        load_matrix_x4(a_address + 32 * step, af);
#pragma unroll
                        for (int half = 0; half < 2; ++half) load_matrix_x4(b_address[buffer][half] + 32 * step, bf[half]);
#pragma unroll
                        for (int half = 0; half < 2; ++half) {
                            mma_16x8x16(acc[2 * half], af, bf[half][0], bf[half][1]);
                            mma_16x8x16(acc[2 * half + 1], af, bf[half][2], bf[half][3]);
                        }
                    }
                }
                use_tile(acc, tokens + buffer * kTeacherEntries, tile, heads_here);
            }
            end_block(first_head, heads_here, block_first + layout.block_heads >= group_heads &&
                                                  group + 1 == a.teacher_kv_heads);
        }
    }
    copy_async_wait<0>();
}

}  // namespace teacher_detail

__global__ void __launch_bounds__(kTeacherThreads, 1) teacher_statistics_kernel(const __grid_constant__ Arguments a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();  // launch.cu only picks the teacher kernels on sm_80+
#else
    using namespace teacher_detail;
    extern __shared__ __align__(16) unsigned char shared[];
    const int64_t row = launch_row(a);
    const int warp = static_cast<int>(threadIdx.x / 32), lane = static_cast<int>(threadIdx.x % 32);
    float max[2], sum[2];  // heads 16 warp + lane / 4 + 8 r, this lane's columns
    for_each_score_tile(
        a, row, shared,
        [&](int64_t, int) {
            for (int r = 0; r < 2; ++r) max[r] = -INFINITY, sum[r] = 0.0f;
        },
        [&](const float (&acc)[4][4], const int32_t* tile_tokens, int64_t, int) {
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                float x[8], tile_max = -INFINITY;
#pragma unroll
                for (int n = 0; n < 4; ++n)
#pragma unroll
                    for (int c = 0; c < 2; ++c) {
                        const bool valid = tile_tokens[8 * n + 2 * (lane % 4) + c] >= 0;
                        x[2 * n + c] = valid ? a.teacher_scale * acc[n][2 * r + c] : -INFINITY;
                        tile_max = fmaxf(tile_max, x[2 * n + c]);
                    }
                const float next = fmaxf(max[r], tile_max), shift = next == -INFINITY ? 0.0f : next;
                float s = sum[r] * expf(max[r] - shift);
#pragma unroll
                for (int j = 0; j < 8; ++j) s += expf(x[j] - shift);
                max[r] = next, sum[r] = s;
            }
        },
        [&](int64_t first_head, int heads_here, bool) {
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                for (int offset = 1; offset < 4; offset *= 2)
                    combine(max[r], sum[r], __shfl_xor_sync(0xffffffffu, max[r], offset),
                            __shfl_xor_sync(0xffffffffu, sum[r], offset));
                const int h = 16 * warp + lane / 4 + 8 * r;
                if (lane % 4 == 0 && h < heads_here)
                    a.teacher_stats[row * a.teacher_heads + first_head + h] = make_float2(max[r], sum[r]);
            }
        });
#endif
}

__global__ void __launch_bounds__(kTeacherThreads, 1) teacher_probability_kernel(const __grid_constant__ Arguments a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();
#else
    using namespace teacher_detail;
    extern __shared__ __align__(16) unsigned char shared[];
    const int64_t row = launch_row(a);
    if (a.active[row] == 0) return;  // the gradient kernel reads no teacher for inactive rows
    const TeacherLayout layout = teacher_layout(a.teacher_heads / a.teacher_kv_heads, a.teacher_dim);
    float* const partials = reinterpret_cast<float*>(shared + layout.partials);  // [warp][entry]
    const int tid = static_cast<int>(threadIdx.x), warp = tid / 32, lane = tid % 32;
    const int64_t count = row_entries(a, row).count;
    float* const p = a.teacher_p + (row - a.first_row) * a.teacher_p_row;
    const float inverse_heads = 1.0f / static_cast<float>(a.teacher_heads);
    float lse[2];
    bool first_block = true;
    for_each_score_tile(
        a, row, shared,
        [&](int64_t first_head, int heads_here) {
            for (int r = 0; r < 2; ++r) {
                const int h = 16 * warp + lane / 4 + 8 * r;
                const float2 stats =
                    h < heads_here ? a.teacher_stats[row * a.teacher_heads + first_head + h] : make_float2(0.0f, 1.0f);
                lse[r] = stats.x + logf(stats.y);
            }
        },
        [&](const float (&acc)[4][4], const int32_t* tile_tokens, int64_t tile, int heads_here) {
            float column[4][2];
#pragma unroll
            for (int n = 0; n < 4; ++n)
#pragma unroll
                for (int c = 0; c < 2; ++c) {
                    const bool valid = tile_tokens[8 * n + 2 * (lane % 4) + c] >= 0;
                    float value = 0.0f;
#pragma unroll
                    for (int r = 0; r < 2; ++r)
                        if (valid && 16 * warp + lane / 4 + 8 * r < heads_here)
                            value += expf(a.teacher_scale * acc[n][2 * r + c] - lse[r]);
                    for (int offset = 4; offset < 32; offset *= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
                    column[n][c] = value;
                }
            if (lane < 4)
#pragma unroll
                for (int n = 0; n < 4; ++n)
                    *reinterpret_cast<float2*>(partials + warp * kTeacherEntries + 8 * n + 2 * lane) =
                        make_float2(column[n][0], column[n][1]);
            __syncthreads();  // S2
            const int64_t position = tile * kTeacherEntries + tid;
            if (tid < kTeacherEntries && position < count) {
                float value = first_block ? 0.0f : p[position];
                for (int w = 0; 16 * w < heads_here; ++w) value += partials[w * kTeacherEntries + tid];
                p[position] = value;
            }
        },
        [&](int64_t, int, bool last_block) {
            first_block = false;
            if (!last_block) return;
            // The thread that wrote each position scales it (its own earlier store).
            for (int64_t position = tid % kTeacherEntries; tid < kTeacherEntries && position < count;
                 position += kTeacherEntries)
                p[position] *= inverse_heads;
        });
#endif
}

}  // namespace dsa::cuda::distillation
