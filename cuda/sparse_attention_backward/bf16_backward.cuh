// The bf16 fast path of the CUDA sparse attention backward (q, kv, out and dout all bf16, d_qk and
// d_v multiples of 16, d_qk <= 576, sm_80+). Same semantics and the same dkv contract as
// row_backward_kernel (row_backward.cuh), which serves everything else.
//
// Design (why it is several times faster than the f32-staged row kernel):
// - CTAs of 16 warps (four a scheduler: the kernel is latency-bound, and 8 warps left 68% of
//   cycles without an eligible warp); heads in groups of 32 (two m16 tiles), the row's index
//   positions in tiles of 32 entries. FAST gives every (row, head group) a CTA of its own (the
//   groups share nothing but the atomically added dkv; a row per CTA left the last wave of
//   4096 rows on 132 SMs with 4 rows); DETERMINISTIC gives a CTA a whole row, its groups in
//   turn (its panel slots are added to in group order by one thread, below). Fewer, larger
//   head groups than the row kernel's 16 mean fewer KV gathers and, above all, fewer dkv
//   scatters: every (row, entry, column) is added once
//   per head group, so 128 heads cost 4 adds per (row, entry, column) instead of the row
//   kernel's 8 (a 64-head tile would need 72 dq registers per thread of 16 warps, past the 128
//   that 512 threads may have).
// - Every operand stays bf16 in shared memory (row pitch width + 8 bf16, an odd multiple of 16
//   bytes mod 128, so the 8 row addresses of an ldmatrix hit 8 different 16-byte bank groups;
//   the 80-byte P / dS rows likewise), fragments come from
//   ldmatrix (.trans for B operands whose k dimension is the stored row index, and for the dS^T
//   and P^T A operands). Q and dOut of the head group are loaded once per group; the KV tile is
//   gathered by index with 16-byte cp.async into a double buffer: tile j + 1 is in flight while
//   the MMAs of tile j run. Invalid positions become zero rows (plain shared stores, the source is
//   never read); their P is forced to 0, so they contribute nothing and are never scattered.
//   Tensors whose rows are not 16-byte aligned (strided views) take synchronous 2-byte loads into
//   the same layout: the same products, hence the same bits.
// - Per entry tile (three barriers):
//     A: S = Q.K^T (warps 0-7) and dP = dOut.V^T (warps 8-15), each warp 32 heads x 16 entries
//        over a quarter of the k16 steps (per step two A and one B ldmatrix.x4 feed four MMAs
//        into four independent accumulators: no long dependent MMA chain); the partial sums go
//        to shared memory (f32);
//                                                                                 | barrier S2
//     every thread takes 2 (head, entry) elements: S and dP = the four partials added in
//        quarter order, P = exp(scale S - L) (0 for invalid entries or L = +inf), dS = scale P (dP - D),
//        both stored as bf16 [head][entry];                                       | barrier S3
//     B: dq += dS.K, dq accumulated in registers over the whole row (warp w owns the n8 column
//        tiles w, w + 16, ...: up to 5 x 2 x 4 = 40 f32 registers), one ldmatrix.x4.trans of K
//        covers both k16 steps (all 32 entries) of a column tile;
//     C: dkv = dS^T.Q + P^T.dOut (the latter on the first d_v columns) per column tile in
//        registers, scattered straight from the accumulators: a lane swaps half its fragment
//        with its neighbour so that it holds 4 consecutive columns of one entry, then
//        FAST: one red.global.add.v4.f32 (sm_90; 4 atomicAdds elsewhere or when dkv's rows are
//        not 16-byte aligned), DETERMINISTIC: the entry's own panel slot (the CTA owns it and
//        adds its head groups in order: the row kernel's contract, so launch.cu's sort +
//        per-token reduction is unchanged), the first group with a relaxed 16-byte store and
//        the others with the same reductions, issued by the same thread in group order:
//        coherence keeps that order, so the bits are the same every run, and nothing waits on
//        a read of the slot (a read-modify-write from HBM would stall every group but the
//        first for ~18 dependent loads per tile).
//   The next tile's barrier S1 (after cp.async.wait_group 0) orders every reuse: the gather into
//   the other KV buffer and its tokens is issued only after S1, when tile j - 1's readers of that
//   buffer are done; the partials, P and dS are rewritten only after S1 of the next tile; Q, dOut, L
//   and D only after the barrier S0 that opens the next head group.
// - dq leaves once per head group (no atomics: the CTA owns the row), so dq is bitwise the same
//   in both modes. P and dS are rounded to bf16 for the products, as in the row kernel's bf16
//   path (the 2e-2 test tolerance).
#pragma once

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "../common/ptx.cuh"
#include "row_backward.cuh"

namespace dsa::cuda::attention_backward {

inline constexpr int kBf16Heads = 32;    // head tile: two m16 tiles
inline constexpr int kBf16Entries = 32;  // entry tile: two k16 steps of the dq / dkv products
inline constexpr int kBf16Threads = 512;
inline constexpr int kBf16Warps = kBf16Threads / 32;
inline constexpr int kBf16MaxWidth = 576;
inline constexpr int kBf16ColumnTiles = (kBf16MaxWidth / 8 + kBf16Warps - 1) / kBf16Warps;  // n8 tiles a warp owns
inline constexpr int kBf16PartialSlots = 8;  // four k-quarters of S, then four of dP
static_assert(kBf16Entries % kBf16Warps == 0 && kBf16Heads % kBf16Warps == 0, "gathers and head loads split evenly");
static_assert(kBf16Warps == 16, "phase A maps warps to (S or dP, k-quarter, entry half)");
inline constexpr int kBf16ScorePitch = kBf16Entries + 8;                  // bf16 P and dS rows (80 bytes)
inline constexpr int kBf16PartialPitch = kBf16Entries + 8;                // f32 partial S / dP rows

// Shared memory of the bf16 kernel, in bytes: Q (32 x d_qk), dOut (32 x d_v), two KV tiles
// (32 x d_qk), P and dS (32 x 32 bf16), the partial S and dP of each k-quarter (32 x 32 f32 each), L and
// D per head, the two KV tiles' tokens, a flag. Pitches in elements; every part starts
// 16-byte aligned. d_qk = 576, d_v = 512: 192,016 bytes.
struct Bf16Layout {
    int q_pitch, v_pitch;
    int q, dout, kv, probs, grads, partials, normaliser, delta, tokens, any_valid, bytes;
};

__host__ __device__ inline Bf16Layout bf16_layout(int64_t d_qk, int64_t d_v) {
    Bf16Layout s;
    s.q_pitch = static_cast<int>(d_qk) + 8;
    s.v_pitch = static_cast<int>(d_v) + 8;
    s.q = 0;
    s.dout = s.q + kBf16Heads * s.q_pitch * 2;
    s.kv = s.dout + kBf16Heads * s.v_pitch * 2;
    s.probs = s.kv + 2 * kBf16Entries * s.q_pitch * 2;
    s.grads = s.probs + kBf16Heads * kBf16ScorePitch * 2;
    s.partials = s.grads + kBf16Heads * kBf16ScorePitch * 2;
    s.normaliser = s.partials + kBf16PartialSlots * kBf16Heads * kBf16PartialPitch * 4;
    s.delta = s.normaliser + kBf16Heads * 4;
    s.tokens = s.delta + kBf16Heads * 4;
    s.any_valid = s.tokens + 2 * kBf16Entries * 4;
    s.bytes = s.any_valid + 16;
    return s;
}

// Whether the bf16 kernel takes a problem of these widths (the caller checks dtypes, the
// device's compute capability and the shared memory).
__host__ __device__ inline bool bf16_widths_supported(int64_t d_qk, int64_t d_v) {
    return d_qk >= 16 && d_qk <= kBf16MaxWidth && d_qk % 16 == 0 && d_v >= 16 && d_v <= d_qk && d_v % 16 == 0;
}

namespace bf16_detail {

// dkv[p .. p + 3] += v: one vector reduction on sm_90 when p is 16-byte aligned, else four f32
// atomics.
__device__ __forceinline__ void add_four(float* p, float4 v, bool vector) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (vector) {
        asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"l"(p), "f"(v.x), "f"(v.y), "f"(v.z),
                     "f"(v.w)
                     : "memory");
        return;
    }
#else
    (void)vector;
#endif
    atomicAdd(p, v.x);
    atomicAdd(p + 1, v.y);
    atomicAdd(p + 2, v.z);
    atomicAdd(p + 3, v.w);
}

// p[0 .. 3] = v as a relaxed (morally strong) store, so that this thread's later reductions of
// the same addresses are ordered after it (coherence follows program order).
__device__ __forceinline__ void store_four(float* p, float4 v) {
#if defined(__CUDA_ARCH__)
    asm volatile("st.relaxed.gpu.global.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"l"(p), "f"(v.x), "f"(v.y), "f"(v.z),
                 "f"(v.w)
                 : "memory");
#else
    *reinterpret_cast<float4*>(p) = v;
#endif
}

}  // namespace bf16_detail

__global__ void __launch_bounds__(kBf16Threads, 1) bf16_backward_kernel(const __grid_constant__ Arguments a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();  // launch.cu only picks this kernel on sm_80+
#else
    using namespace bf16_detail;
    extern __shared__ __align__(16) unsigned char shared[];
    const Bf16Layout layout = bf16_layout(a.d_qk, a.d_v);
    const int qp = layout.q_pitch, vp = layout.v_pitch;
    uint16_t* const q_tile = reinterpret_cast<uint16_t*>(shared + layout.q);
    uint16_t* const dout_tile = reinterpret_cast<uint16_t*>(shared + layout.dout);
    uint16_t* const kv_tiles = reinterpret_cast<uint16_t*>(shared + layout.kv);  // two, kBf16Entries * qp apart
    uint16_t* const probs = reinterpret_cast<uint16_t*>(shared + layout.probs);  // [head][entry]
    uint16_t* const grads = reinterpret_cast<uint16_t*>(shared + layout.grads);  // dS, [head][entry]
    float* const partials = reinterpret_cast<float*>(shared + layout.partials);  // [warp][head][entry]
    float* const normaliser = reinterpret_cast<float*>(shared + layout.normaliser);
    float* const delta = reinterpret_cast<float*>(shared + layout.delta);
    int32_t* const tokens = reinterpret_cast<int32_t*>(shared + layout.tokens);  // two tiles'
    int32_t* const any_valid = reinterpret_cast<int32_t*>(shared + layout.any_valid);

    const int tid = static_cast<int>(threadIdx.x), warp = tid / 32, lane = tid % 32;
    const int g = lane / 4, t = lane % 4;
    const int split = a.ctas_per_row, part = static_cast<int>(blockIdx.x % split);
    const int64_t row = a.first_row + blockIdx.x / split;
    const int64_t counted = counted_positions(a, row);
    const int64_t entry_base = (row - a.first_row) * a.topk;
    const int d_qk = static_cast<int>(a.d_qk), d_v = static_cast<int>(a.d_v);
    const int column_tiles = d_qk / 8, qk_steps = d_qk / 16, v_steps = d_v / 16;
    const int64_t tiles = (counted + kBf16Entries - 1) / kBf16Entries;
    const uint16_t* const q_data = static_cast<const uint16_t*>(a.q);
    const uint16_t* const kv_data = static_cast<const uint16_t*>(a.kv);
    const uint16_t* const dout_data = static_cast<const uint16_t*>(a.dout);
    const bool q_vector = rows_aligned(a.q, a.q_row, a.q_head);
    const bool kv_vector = rows_aligned(a.kv, a.kv_row, 0);
    const bool dout_vector = rows_aligned(a.dout, a.dout_row, a.dout_head);
    const bool dkv_vector = reinterpret_cast<uintptr_t>(a.dkv) % 16 == 0 && a.dkv_row % 4 == 0;

    // Warp w gathers rows w and w + 16 of every KV tile. Their tokens are read one
    // tile ahead (fetch_tokens), so the index loads' latency hides behind a whole tile of MMAs
    // instead of stalling every gather (a cp.async's memory clobber keeps later loads behind it).
    int32_t upcoming[kBf16Entries / kBf16Warps];
    auto fetch_tokens = [&](int64_t tile) {
#pragma unroll
        for (int i = 0; i < kBf16Entries / kBf16Warps; ++i)
            upcoming[i] = position_token(a, row, tile * kBf16Entries + warp + kBf16Warps * i, counted);
    };
    // Gathers the tile whose tokens `upcoming` holds into KV buffer `buffer`.
    auto gather = [&](int buffer) {
        uint16_t* const kv_tile = kv_tiles + buffer * kBf16Entries * qp;
#pragma unroll
        for (int i = 0; i < kBf16Entries / kBf16Warps; ++i) {
            const int r = warp + kBf16Warps * i;
            const int32_t token = upcoming[i];
            if (lane == 0) {
                tokens[buffer * kBf16Entries + r] = token;
                if (token >= 0) *any_valid = 1;
            }
            copy_row(kv_tile + r * qp, token >= 0 ? kv_data + token * a.kv_row : nullptr, d_qk / 8, kv_vector, lane);
        }
    };

    if (tid == 0) *any_valid = 0;

    for (int64_t first_head = part * kBf16Heads; first_head < a.heads; first_head += split * kBf16Heads) {
        copy_async_wait<0>();  // nothing is in flight here; kept so that no copy can outlive a group
        __syncthreads();        // S0: the previous group's readers of every buffer are done
        if (tiles > 0) {
            fetch_tokens(0);
#pragma unroll
            for (int i = 0; i < kBf16Heads / kBf16Warps; ++i) {
                const int h = warp + kBf16Warps * i;
                const int64_t head = first_head + h;
                const bool real = head < a.heads;
                copy_row(q_tile + h * qp, real ? q_data + row * a.q_row + head * a.q_head : nullptr, d_qk / 8,
                         q_vector, lane);
                copy_row(dout_tile + h * vp, real ? dout_data + row * a.dout_row + head * a.dout_head : nullptr,
                         d_v / 8, dout_vector, lane);
            }
            gather(0);
            if (tiles > 1) fetch_tokens(1);
        }
        copy_async_commit();
#pragma unroll
        for (int i = 0; i < kBf16Heads / kBf16Warps; ++i) {
            const int h = warp + kBf16Warps * i;
            store_head_statistics(a, row, first_head + h, h, delta, normaliser, nullptr);
        }

        float dq[2][kBf16ColumnTiles][4];
#pragma unroll
        for (int m = 0; m < 2; ++m)
#pragma unroll
            for (int i = 0; i < kBf16ColumnTiles; ++i)
#pragma unroll
                for (int k = 0; k < 4; ++k) dq[m][i][k] = 0.0f;

        for (int64_t tile = 0; tile < tiles; ++tile) {
            const int buffer = static_cast<int>(tile & 1);
            const uint16_t* const kv_tile = kv_tiles + buffer * kBf16Entries * qp;
            const int32_t* const tile_tokens = tokens + buffer * kBf16Entries;
            copy_async_wait<0>();
            __syncthreads();  // S1: tile `tile` (and Q, dOut, L, D) visible; tile - 1 fully consumed
            if (tile + 1 < tiles) {
                gather(buffer ^ 1);
                if (tile + 2 < tiles) fetch_tokens(tile + 2);
            }
            copy_async_commit();

            // A: warps 0-7 compute S = Q.K^T, warps 8-15 dP = dOut.V^T; warp w takes entries
            // 16 (w & 1) + [0, 16) over k-quarter (w & 7) / 2 of the k16 steps (two A and one B
            // ldmatrix.x4 per four MMAs, four independent accumulators), and parks the partial
            // sums in shared memory (f32), slot quarter (S) or 4 + quarter (dP).
            {
                const bool scores = warp < 8;
                const int half = warp & 1, quarter = (warp & 7) >> 1;
                const uint16_t* const left = scores ? q_tile : dout_tile;
                const int left_pitch = scores ? qp : vp, steps = scores ? qk_steps : v_steps;
                const int step_begin = quarter * steps / 4, step_end = (quarter + 1) * steps / 4;
                float acc[2][2][4];  // [head tile][entry n8 tile][fragment]
#pragma unroll
                for (int m = 0; m < 2; ++m)
#pragma unroll
                    for (int n = 0; n < 2; ++n)
#pragma unroll
                        for (int k = 0; k < 4; ++k) acc[m][n][k] = 0.0f;
                // A rows: heads 16 m + (lane & 7) + 8 ((lane >> 3) & 1) at column 8 (lane >> 4);
                // B rows: entries 16 half + (lane & 7) + 8 (lane >> 4) at column 8 ((lane >> 3) & 1).
                uint32_t a_address[2];
#pragma unroll
                for (int m = 0; m < 2; ++m)
                    a_address[m] = shared_address(left + (16 * m + (lane & 7) + 8 * ((lane >> 3) & 1)) * left_pitch +
                                                  8 * (lane >> 4));
                const uint32_t b_address = shared_address(kv_tile + (16 * half + (lane & 7) + 8 * (lane >> 4)) * qp +
                                                          8 * ((lane >> 3) & 1));
#pragma unroll 3
                for (int step = step_begin; step < step_end; ++step) {
                    uint32_t af[2][4], bf[4];
#pragma unroll
                    for (int m = 0; m < 2; ++m) load_matrix_x4(a_address[m] + 32 * step, af[m]);
                    load_matrix_x4(b_address + 32 * step, bf);
#pragma unroll
                    for (int m = 0; m < 2; ++m) {
                        mma_16x8x16(acc[m][0], af[m], bf[0], bf[1]);
                        mma_16x8x16(acc[m][1], af[m], bf[2], bf[3]);
                    }
                }
                float* const mine = partials + (quarter + (scores ? 0 : 4)) * kBf16Heads * kBf16PartialPitch + 16 * half;
#pragma unroll
                for (int m = 0; m < 2; ++m)
#pragma unroll
                    for (int n = 0; n < 2; ++n)
#pragma unroll
                        for (int row_half = 0; row_half < 2; ++row_half)
                            *reinterpret_cast<float2*>(mine + (16 * m + g + 8 * row_half) * kBf16PartialPitch + 8 * n +
                                                       2 * t) =
                                make_float2(acc[m][n][2 * row_half], acc[m][n][2 * row_half + 1]);
            }
            __syncthreads();  // S2: the partial sums visible

            // P = exp(scale S - L) (0 for invalid entries and L = +inf), dS = scale P (dP - D), as
            // bf16: thread i takes head i / 16, entries 2 (i % 16) + [0, 2); the four partial sums
            // of S and of dP are added in quarter order (the same bits every run).
            {
                const int h = tid / 16, e = 2 * (tid % 16);
                float2 s2 = make_float2(0.0f, 0.0f), d2 = s2;
#pragma unroll
                for (int w = 0; w < 4; ++w) {
                    const float2 x = *reinterpret_cast<const float2*>(
                        partials + (w * kBf16Heads + h) * kBf16PartialPitch + e);
                    const float2 y = *reinterpret_cast<const float2*>(
                        partials + ((w + 4) * kBf16Heads + h) * kBf16PartialPitch + e);
                    s2 = make_float2(s2.x + x.x, s2.y + x.y);
                    d2 = make_float2(d2.x + y.x, d2.y + y.y);
                }
                const float sc[2] = {s2.x, s2.y}, dpv[2] = {d2.x, d2.y};
                const float l = normaliser[h], d = delta[h];
                float p[2], ds[2];
#pragma unroll
                for (int k = 0; k < 2; ++k) {
                    p[k] = tile_tokens[e + k] >= 0 && l != INFINITY ? expf(a.scale * sc[k] - l) : 0.0f;
                    ds[k] = a.scale * p[k] * (dpv[k] - d);
                }
                *reinterpret_cast<uint32_t*>(probs + h * kBf16ScorePitch + e) = pack_bf16(p[0], p[1]);
                *reinterpret_cast<uint32_t*>(grads + h * kBf16ScorePitch + e) = pack_bf16(ds[0], ds[1]);
            }
            __syncthreads();  // S3: P and dS visible to every warp

            // B: dq += dS.K over the warp's column tiles w, w + 16, ...
            {
                uint32_t ds_frag[2][2][4];  // [head tile][entry step]
#pragma unroll
                for (int m = 0; m < 2; ++m)
#pragma unroll
                    for (int s = 0; s < 2; ++s)
                        load_matrix_x4(shared_address(grads + (16 * m + (lane & 7) + 8 * ((lane >> 3) & 1)) * kBf16ScorePitch +
                                                      16 * s + 8 * (lane >> 4)),
                                       ds_frag[m][s]);
#pragma unroll
                for (int i = 0; i < kBf16ColumnTiles; ++i) {
                    const int column_tile = warp + kBf16Warps * i;
                    if (column_tile >= column_tiles) continue;
                    uint32_t kf[4];  // b0, b1 of entries [0, 16), then of [16, 32)
                    load_matrix_x4_transposed(shared_address(kv_tile + lane * qp + 8 * column_tile), kf);
#pragma unroll
                    for (int m = 0; m < 2; ++m) {
                        mma_16x8x16(dq[m][i], ds_frag[m][0], kf[0], kf[1]);
                        mma_16x8x16(dq[m][i], ds_frag[m][1], kf[2], kf[3]);
                    }
                }
            }

            // C: dkv of the tile's entries = dS^T.Q + P^T.dOut, scattered per column tile.
            {
                uint32_t ds_t[2][2][4], p_t[2][2][4];  // [entry tile][head step]
#pragma unroll
                for (int m = 0; m < 2; ++m)
#pragma unroll
                    for (int s = 0; s < 2; ++s) {
                        const int at = (16 * s + (lane & 7) + 8 * (lane >> 4)) * kBf16ScorePitch + 16 * m +
                                       8 * ((lane >> 3) & 1);
                        load_matrix_x4_transposed(shared_address(grads + at), ds_t[m][s]);
                        load_matrix_x4_transposed(shared_address(probs + at), p_t[m][s]);
                    }
                const int odd = t & 1;
#pragma unroll
                for (int i = 0; i < kBf16ColumnTiles; ++i) {
                    const int column_tile = warp + kBf16Warps * i;
                    if (column_tile >= column_tiles) continue;
                    const int column = 8 * column_tile;
                    float part[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
                    uint32_t qf[4];  // b0, b1 of heads [0, 16), then of [16, 32)
                    load_matrix_x4_transposed(shared_address(q_tile + lane * qp + column), qf);
#pragma unroll
                    for (int m = 0; m < 2; ++m) {
                        mma_16x8x16(part[m], ds_t[m][0], qf[0], qf[1]);
                        mma_16x8x16(part[m], ds_t[m][1], qf[2], qf[3]);
                    }
                    if (column < d_v) {
                        uint32_t vf[4];
                        load_matrix_x4_transposed(shared_address(dout_tile + lane * vp + column), vf);
#pragma unroll
                        for (int m = 0; m < 2; ++m) {
                            mma_16x8x16(part[m], p_t[m][0], vf[0], vf[1]);
                            mma_16x8x16(part[m], p_t[m][1], vf[2], vf[3]);
                        }
                    }
                    // Lane (g, t) holds entries g and g + 8 at columns 2t, 2t + 1. Even t keeps entry g
                    // and takes its odd neighbour's pair (columns 2t + 2, 2t + 3); odd t keeps entry g + 8
                    // and takes its even neighbour's pair (columns 2t - 2, 2t - 1).
#pragma unroll
                    for (int m = 0; m < 2; ++m) {
                        const float send0 = odd ? part[m][0] : part[m][2], send1 = odd ? part[m][1] : part[m][3];
                        const float got0 = __shfl_xor_sync(0xffffffffu, send0, 1);
                        const float got1 = __shfl_xor_sync(0xffffffffu, send1, 1);
                        const float4 v = odd ? make_float4(got0, got1, part[m][2], part[m][3])
                                             : make_float4(part[m][0], part[m][1], got0, got1);
                        const int entry = 16 * m + g + 8 * odd;
                        const int c = column + 2 * (t & 2);
                        const int32_t token = tile_tokens[entry];
                        if (token < 0) continue;
                        if (a.contributions == nullptr) {
                            add_four(a.dkv + token * a.dkv_row + c, v, dkv_vector);
                        } else {
                            // The first head group stores, the later ones add with reductions issued
                            // in group order by this same thread: no read of the slot (a read-
                            // modify-write would stall on every slot), the same order every run.
                            float* slot = a.contributions + (entry_base + tile * kBf16Entries + entry) * a.d_qk + c;
                            if (first_head == 0)
                                store_four(slot, v);
                            else
                                add_four(slot, v, true);
                        }
                    }
                }
            }
        }

        // dq of the group's real heads (the CTA owns the row: plain stores).
#pragma unroll
        for (int i = 0; i < kBf16ColumnTiles; ++i) {
            const int column_tile = warp + kBf16Warps * i;
            if (column_tile >= column_tiles) continue;
#pragma unroll
            for (int m = 0; m < 2; ++m)
#pragma unroll
                for (int half = 0; half < 2; ++half) {
                    const int64_t head = first_head + 16 * m + g + 8 * half;
                    if (head >= a.heads) continue;
                    const int64_t offset = row * a.dq_row + head * a.dq_head + 8 * column_tile + 2 * t;
                    const float x = dq[m][i][2 * half], y = dq[m][i][2 * half + 1];
                    if (a.dq_bf16) {
                        static_cast<uint16_t*>(a.dq)[offset] = float_to_bf16(x);
                        static_cast<uint16_t*>(a.dq)[offset + 1] = float_to_bf16(y);
                    } else {
                        static_cast<float*>(a.dq)[offset] = x;
                        static_cast<float*>(a.dq)[offset + 1] = y;
                    }
                }
        }
    }
    copy_async_wait<0>();
    __syncthreads();  // the flag's writers are done
    // The row's flag for d_attn_sink, over all its heads (a CTA of a split row sees some).
    if (a.row_contributes != nullptr && part == 0 && warp == 0) {
        bool finite = false;
        for (int64_t head = lane; head < a.heads; head += 32) finite |= softmax_normaliser(a, row, head) != INFINITY;
        finite = __any_sync(0xffffffffu, finite);
        if (lane == 0) a.row_contributes[row] = *any_valid && finite;
    }
#endif
}

}  // namespace dsa::cuda::attention_backward
