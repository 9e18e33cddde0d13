// The Hopper indexer kernel (sm_90a): FP8 e4m3 wgmma (QGMMA) fed by TMA through an mbarrier
// pipeline, the ReLU * weight / head-sum / key-scale epilogue in registers.
//
// The MMA's N = 128 columns are query rows x heads (128 / H_I rows, 2 at H_I = 64); the keys are
// the M side, 64 tokens per warpgroup; K = D_I (a multiple of 128), in 128-byte chunks that TMA
// writes with the 128-byte swizzle wgmma reads, 4 MMAs of K = 32 per chunk.
// A CUDA block has 4 math warpgroups, one producer warp (TMA) and one warp that writes -inf to
// the columns outside every window (so the MMA never waits for it):
//   - prefill: 2 groups of 128 / H_I query rows; warpgroups (group, half) score 64-token halves
//     of a 128-token key tile, so each tile in shared memory feeds both groups;
//   - paged: 1 group of the rows of one sequence; the 4 warpgroups score the 4 pages (64 tokens
//     each) of a 256-token tile, loaded page by page through the block table (codes by TMA,
//     the 64 scales by a bulk copy).
// Warpgroups interleave on the tensor cores, so one's epilogue runs under another's MMA.
// Each logit is the wgmma's f32 dot product, then w * ReLU summed in a fixed order (the
// thread's heads, then a 2-round quad exchange), times the key's scale: its value does not
// depend on which block or split computed it.
#include <cuda.h>  // CUtensorMap and its enums; the encoder is reached through the runtime

#include "../common/ptx.cuh"
#include "logits.cuh"

namespace dsa::cuda::indexer {
namespace {

constexpr int kMathWarpgroups = 4;
constexpr int kProducerWarp = kMathWarpgroups * 4;
constexpr int kFillWarp = kProducerWarp + 1;
constexpr int kThreads = (kFillWarp + 1) * 32;
constexpr int kN = 128;            // MMA columns: query rows x heads
constexpr int kMaxStages = 6;      // key-tile pipeline depth (fewer when shared memory is short)
constexpr int kChunk = 128;        // bytes of D_I per swizzled shared row (the 128-byte swizzle)
constexpr int kMaxDim = 256;       // D_I up to 2 chunks

struct Sm90Layout {
    int chunks;  // D_I / kChunk
    int stages;
    int keys_offset;    // from the 1024-aligned base of dynamic shared memory
    int scales_offset;  // paged: each stage's 256 key scales
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ void barrier_init(uint64_t* barrier, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(shared_address(barrier)), "r"(count) : "memory");
}

__device__ __forceinline__ void barrier_expect(uint64_t* barrier, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(shared_address(barrier)), "r"(bytes)
                 : "memory");
}

__device__ __forceinline__ void barrier_arrive(uint64_t* barrier) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(shared_address(barrier)) : "memory");
}

// Waits until the barrier's phase of this parity has completed.
__device__ __forceinline__ void barrier_wait(uint64_t* barrier, uint32_t parity) {
    uint32_t done = 0;
    do {
        asm volatile(
            "{\n.reg .pred complete;\n"
            "mbarrier.try_wait.parity.shared::cta.b64 complete, [%1], %2;\n"
            "selp.u32 %0, 1, 0, complete;\n}\n"
            : "=r"(done)
            : "r"(shared_address(barrier)), "r"(parity)
            : "memory");
    } while (!done);
}

__device__ __forceinline__ void tma_load_2d(uint32_t destination, const CUtensorMap* map, uint64_t* barrier, int x,
                                            int y) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];" ::"r"(
            destination),
        "l"(map), "r"(shared_address(barrier)), "r"(x), "r"(y)
        : "memory");
}

__device__ __forceinline__ void tma_load_3d(uint32_t destination, const CUtensorMap* map, uint64_t* barrier, int x,
                                            int y, int z) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], "
        "[%2];" ::"r"(destination),
        "l"(map), "r"(shared_address(barrier)), "r"(x), "r"(y), "r"(z)
        : "memory");
}

__device__ __forceinline__ void tma_load_4d(uint32_t destination, const CUtensorMap* map, uint64_t* barrier, int x,
                                            int y, int z, int w) {
    asm volatile(
        "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5, %6}], "
        "[%2];" ::"r"(destination),
        "l"(map), "r"(shared_address(barrier)), "r"(x), "r"(y), "r"(z), "r"(w)
        : "memory");
}

// Contiguous bytes (16-byte aligned, a multiple of 16) into shared memory.
__device__ __forceinline__ void bulk_load(uint32_t destination, const void* source, uint32_t bytes,
                                          uint64_t* barrier) {
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(destination),
        "l"(source), "r"(bytes), "r"(shared_address(barrier))
        : "memory");
}

// The wgmma descriptor of a K-major operand whose 128-byte rows TMA wrote with the 128-byte
// swizzle: low word = start address / 16 (bits 0-13) and LBO 1 (unused by this layout); high
// word = SBO 1024 / 16 (8-row core groups 1024 bytes apart) and layout 1 (128B swizzle) at bit
// 62. Kept as the low word, so advancing the operand by 16 n bytes is one 32-bit add of n.
constexpr uint32_t kDescriptorHigh = ((8 * kChunk) >> 4) | (1u << 30);
__device__ __forceinline__ uint32_t descriptor_low(uint32_t address) { return ((address >> 4) & 0x3fff) | (1u << 16); }
__device__ __forceinline__ uint64_t descriptor(uint32_t low) {
    return (static_cast<uint64_t>(kDescriptorHigh) << 32) | low;
}

// acc (+)= A (64 tokens x 32) * B (32 x 128 query-row heads); accumulate = 0 overwrites.
__device__ __forceinline__ void wgmma_128(float (&d)[64], uint64_t a, uint64_t b, uint32_t accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, "
        "%23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, "
        "%44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
        "%64, %65, p, 1, 1;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(a), "l"(b), "r"(accumulate));
}

// Keeps the compiler from moving accumulator accesses across the asynchronous MMA.
__device__ __forceinline__ void pin_accumulators(float (&d)[64]) {
#pragma unroll
    for (int i = 0; i < 64; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
#endif

template <int kHeads, bool kPaged>
__global__ void __launch_bounds__(kThreads, 1)
    sm90_logits_kernel(const __grid_constant__ LogitsLaunch launch, const __grid_constant__ CUtensorMap q_map,
                       const __grid_constant__ CUtensorMap key_map, const Sm90Layout layout) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int kGroups = kPaged ? 1 : 2;
    constexpr int kQueries = kN / kHeads;  // query rows per group
    constexpr int kBlockRows = kGroups * kQueries;
    constexpr int kQuarters = kMathWarpgroups / kGroups;  // warpgroups per group
    constexpr int kTile = kQuarters * 64;                 // key tokens per stage
    constexpr int kHeadTiles = kHeads / 8;                // 8-column accumulator tiles per query row
    constexpr int kPrefetchTiles = 8;  // paged: the producer warp reads 8 tiles x 4 pages of block table at once
    constexpr int kPageScaleBytes = static_cast<int>(kIndexerPageTokens) * 4;

    extern __shared__ uint8_t dynamic_shared[];
    __shared__ __align__(8) uint64_t full[kMaxStages], empty[kMaxStages], q_ready;
    __shared__ int64_t window_begin[kBlockRows], window_end[kBlockRows];
    __shared__ __align__(16) float weights[kGroups * kN];
    __shared__ int page_ok[kMaxStages][kQuarters];
    __shared__ int64_t tile_span[2];  // first tile, number of tiles

    uint8_t* base = dynamic_shared + ((1024 - shared_address(dynamic_shared) % 1024) % 1024);
    const IndexerProblem& p = launch.problem;
    const int64_t index = blockIdx.x / launch.splits;
    const int64_t split = blockIdx.x % launch.splits;
    // Prefill: the last row blocks (the longest causal windows) start first, so the tail is short.
    const RowBlock rows = row_block(launch, kPaged ? index : launch.row_blocks - 1 - index);
    const ColumnRange columns = split_range(launch, split);
    const int64_t column_begin = columns.begin, column_end = columns.end;
    const int dim = kChunk * layout.chunks;
    const int tid = threadIdx.x;

    // Each row's window clipped to this block's columns (empty: begin = end = column_end).
    if (tid < kBlockRows) {
        int64_t begin = column_end, end = column_end;
        if (tid >= rows.valid_begin && tid < rows.valid_end) {
            p.window(rows.first + tid, &begin, &end);
            begin = begin > column_begin ? begin : column_begin;
            end = end < column_end ? end : column_end;
            if (begin >= end) begin = end = column_end;
        }
        window_begin[tid] = begin;
        window_end[tid] = end;
    }
    // weights[group * 128 + n] for MMA column n = query row n / H_I, head n % H_I (0 for rows not written).
    for (int i = tid; i < kGroups * kN; i += kThreads) {
        const int local = i / kHeads, head = i % kHeads;
        weights[i] = local >= rows.valid_begin && local < rows.valid_end
                         ? p.weights.as<const float>()[(rows.first + local) * p.weights.strides[0] +
                                                       head * p.weights.strides[1]]
                         : 0.0f;
    }
    if (tid == 0) {
        for (int s = 0; s < layout.stages; ++s) {
            barrier_init(&full[s], 1);
            barrier_init(&empty[s], kMathWarpgroups * 4);
        }
        barrier_init(&q_ready, 1);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    if (tid == 0) {
        // The key tiles that meet the union of the windows; outside them every element is -inf.
        int64_t low = column_end, high = column_begin;
        for (int i = 0; i < kBlockRows; ++i)
            if (window_begin[i] < window_end[i]) {
                low = window_begin[i] < low ? window_begin[i] : low;
                high = window_end[i] > high ? window_end[i] : high;
            }
        tile_span[0] = low < high ? low / kTile : 0;
        tile_span[1] = low < high ? ceil_div(high, kTile) - low / kTile : 0;
    }
    __syncthreads();
    const int64_t first_tile = tile_span[0], tiles = tile_span[1];
    const int warp = tid / 32, lane = tid % 32;

    if (warp == kProducerWarp) {
        if (tiles == 0) return;
        const uint32_t q_base = shared_address(base);
        const uint32_t key_base = q_base + layout.keys_offset;
        if (lane == 0) {
            uint32_t bytes = 0;
            for (int g = 0; g < kGroups; ++g)
                if (g * kQueries < rows.valid_end && (g + 1) * kQueries > rows.valid_begin) bytes += kN * dim;
            barrier_expect(&q_ready, bytes);
            for (int g = 0; g < kGroups; ++g) {
                if (!(g * kQueries < rows.valid_end && (g + 1) * kQueries > rows.valid_begin)) continue;
                for (int c = 0; c < layout.chunks; ++c) {
                    const uint32_t destination = q_base + (g * layout.chunks + c) * kN * kChunk;
                    const int position = static_cast<int>(rows.position) + g * kQueries;
                    if constexpr (kPaged)
                        tma_load_4d(destination, &q_map, &q_ready, c * kChunk, 0, position,
                                    static_cast<int>(rows.sequence));
                    else
                        tma_load_3d(destination, &q_map, &q_ready, c * kChunk, 0, position);
                }
            }
        }
        int64_t entry = -1;  // paged: the block-table entry of page (first_tile + it / 8 * 8) * 4 + lane
        int stage = 0;
        uint32_t phase = 0;  // of the current round through the stages
        for (int it = 0; it < static_cast<int>(tiles); ++it) {
            const int64_t tile = first_tile + it;
            if (it >= layout.stages) barrier_wait(&empty[stage], phase ^ 1);  // released in the previous round
            const uint32_t stage_base = key_base + stage * kTile * dim;
            if constexpr (kPaged) {
                if (it % kPrefetchTiles == 0) {
                    const int64_t block = tile * kQuarters + lane;
                    entry = block < p.max_pages ? p.page(rows.first, block) : -1;
                }
                int64_t pages[kQuarters];
#pragma unroll
                for (int q = 0; q < kQuarters; ++q)
                    pages[q] = __shfl_sync(0xffffffffu, entry, (it % kPrefetchTiles) * kQuarters + q);
                if (lane == 0) {
                    uint32_t bytes = 0;
#pragma unroll
                    for (int q = 0; q < kQuarters; ++q) {
                        page_ok[stage][q] = pages[q] >= 0;
                        if (pages[q] >= 0) bytes += kIndexerPageTokens * dim + kPageScaleBytes;
                    }
                    barrier_expect(&full[stage], bytes);
                    const uint32_t scale_base = q_base + layout.scales_offset + stage * kTile * 4;
#pragma unroll
                    for (int q = 0; q < kQuarters; ++q) {
                        if (pages[q] < 0) continue;
                        for (int c = 0; c < layout.chunks; ++c)
                            tma_load_3d(stage_base + c * kTile * kChunk + q * 64 * kChunk, &key_map, &full[stage],
                                        c * kChunk, 0, static_cast<int>(pages[q]));
                        const uint8_t* page = p.k_cache.as<const uint8_t>() + pages[q] * p.k_cache.strides[0];
                        bulk_load(scale_base + q * kPageScaleBytes, page + kIndexerPageTokens * dim, kPageScaleBytes,
                                  &full[stage]);
                    }
                }
            } else if (lane == 0) {
                barrier_expect(&full[stage], kTile * dim);
                for (int c = 0; c < layout.chunks; ++c)
                    tma_load_2d(stage_base + c * kTile * kChunk, &key_map, &full[stage], c * kChunk,
                                static_cast<int>(tile * kTile));
            }
            if (++stage == layout.stages) {
                stage = 0;
                phase ^= 1;
            }
        }
        return;
    }

    if (warp == kFillWarp) {
        if (!launch.outside_windows) return;
        int64_t low = column_begin, high = column_begin;  // the processed tiles, within the columns
        if (tiles > 0) {
            low = first_tile * kTile;
            high = (first_tile + tiles) * kTile < column_end ? (first_tile + tiles) * kTile : column_end;
        }
        for (int local = rows.valid_begin; local < rows.valid_end; ++local) {
            float* out = output_row(launch, rows.first + local);
            fill_minus_inf(out, column_begin, low, lane, 32);
            fill_minus_inf(out, high, column_end, lane, 32);
        }
        return;
    }

    // Math warpgroups. Everything that does not change from tile to tile is set up here, so a
    // tile costs the MMAs, the ReLU * weight sums (the floor: 2 instructions per accumulator),
    // a 3-shuffle reduction and one store per lane per row pair.
    if (tiles == 0) return;
    const int warpgroup = warp / 4;
    const int group = warpgroup / kQuarters, quarter = warpgroup % kQuarters;
    const int row_in_quarter = (warp % 4) * 16 + lane / 4;  // accumulator rows: this token and token + 8
    const int pair = 2 * (lane % 4);                        // accumulator columns: 8 i + pair, + 1
    // After the quad's reduction each lane owns the values v = 4 m + lane % 4 of the 2 * kQueries
    // (row r = v / 2, token + 8 (v % 2)) the quad computed: its token is token + 8 (lane % 2).
    constexpr int kValues = 2 * kQueries;
    constexpr int kOwned = kValues >= 4 ? kValues / 4 : 1;
    const int half = lane % 2;
    float* owned_row[kOwned];  // NULL: not this lane's, or a row not to write
    int owned_begin[kOwned], owned_end[kOwned];
#pragma unroll
    for (int m = 0; m < kOwned; ++m) {
        const int v = kValues >= 4 ? 4 * m + lane % 4 : lane % 4;
        const int local = group * kQueries + v / 2;
        const bool mine = v < kValues && local >= rows.valid_begin && local < rows.valid_end;
        owned_row[m] = mine ? output_row(launch, rows.first + local) : nullptr;
        owned_begin[m] = mine ? static_cast<int>(window_begin[local]) : 0;
        owned_end[m] = mine ? static_cast<int>(window_end[local]) : 0;
    }
    bool row_written[kQueries];  // rows of the group to score at all (uniform across the warpgroup)
#pragma unroll
    for (int r = 0; r < kQueries; ++r)
        row_written[r] = group * kQueries + r >= rows.valid_begin && group * kQueries + r < rows.valid_end;
    const int last_column = static_cast<int>(column_end);
    const int first_token = static_cast<int>(first_tile * kTile) + quarter * 64 + row_in_quarter + 8 * half;
    const int64_t k_scale_stride = p.k_scale.strides[0];
    const float* k_scale = p.k_scale.as<const float>() + first_token * k_scale_stride;  // this tile's, stepping
    const float* scale_shared =
        reinterpret_cast<const float*>(base + layout.scales_offset) + quarter * 64 + row_in_quarter + 8 * half;
    const float* group_weights = weights + group * kN;
    const float minus_inf = -__int_as_float(0x7f800000);
    // Descriptor low words of stage 0, chunk 0.
    const uint32_t a_first = descriptor_low(shared_address(base) + layout.keys_offset + quarter * 64 * kChunk);
    const uint32_t b_first = descriptor_low(shared_address(base) + group * kN * dim);
    const uint32_t a_stage_step = static_cast<uint32_t>(kTile * dim) >> 4;
    constexpr uint32_t kAChunkStep = static_cast<uint32_t>(kTile * kChunk) >> 4;
    constexpr uint32_t kBChunkStep = static_cast<uint32_t>(kN * kChunk) >> 4;
    barrier_wait(&q_ready, 0);
    float acc[64];
#pragma unroll
    for (int i = 0; i < 64; ++i) acc[i] = 0.0f;  // overwritten by the first MMA of each tile
    int stage = 0;
    uint32_t phase = 0;
    for (int it = 0; it < static_cast<int>(tiles); ++it) {
        const int token = first_token + it * kTile;
        float scale = 0.0f;
        if constexpr (!kPaged) {  // issued before the wait, so the load overlaps it
            if (token < p.columns) scale = *k_scale;
            k_scale += kTile * k_scale_stride;
        }
        barrier_wait(&full[stage], phase);
        bool page_valid = true;
        if constexpr (kPaged) {
            page_valid = page_ok[stage][quarter] != 0;
            scale = scale_shared[stage * kTile];
        }
        asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
        uint32_t a = a_first + stage * a_stage_step, b = b_first;
#pragma unroll 1
        for (int c = 0; c < layout.chunks; ++c) {
#pragma unroll
            for (int k = 0; k < kChunk / 32; ++k)
                wgmma_128(acc, descriptor(a + 2 * k), descriptor(b + 2 * k), (c | k) != 0);
            a += kAChunkStep;
            b += kBChunkStep;
        }
        asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
        asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
        pin_accumulators(acc);
        if (lane == 0) barrier_arrive(&empty[stage]);  // the stage's keys (and scales) are no longer read
        if (++stage == layout.stages) {
            stage = 0;
            phase ^= 1;
        }

        // x[2 r + h]: query row r of the group, token + 8 h, over this thread's heads.
        float x[kValues];
#pragma unroll
        for (int r = 0; r < kQueries; ++r) {
            x[2 * r] = x[2 * r + 1] = 0.0f;
            if (!row_written[r]) continue;  // e.g. the second row slot of n_next = 1
#pragma unroll
            for (int i = r * kHeadTiles; i < (r + 1) * kHeadTiles; ++i) {
                const float2 w = *reinterpret_cast<const float2*>(group_weights + 8 * i + pair);
                x[2 * r] = fmaf(w.x, relu_keep_nan(acc[4 * i + 0]), x[2 * r]);
                x[2 * r] = fmaf(w.y, relu_keep_nan(acc[4 * i + 1]), x[2 * r]);
                x[2 * r + 1] = fmaf(w.x, relu_keep_nan(acc[4 * i + 2]), x[2 * r + 1]);
                x[2 * r + 1] = fmaf(w.y, relu_keep_nan(acc[4 * i + 3]), x[2 * r + 1]);
            }
        }
        // Quad reduction into owners: each round a lane keeps the half of the values its bit
        // of the quad index selects and adds its partner's share of them.
        float y[kValues / 2];
#pragma unroll
        for (int j = 0; j < kValues / 2; ++j) {
            const float keep = half ? x[2 * j + 1] : x[2 * j], send = half ? x[2 * j] : x[2 * j + 1];
            y[j] = keep + __shfl_xor_sync(0xffffffffu, send, 1);
        }
        float z[kOwned];
        if constexpr (kValues >= 4) {
            const bool high = (lane & 2) != 0;
#pragma unroll
            for (int m = 0; m < kOwned; ++m) {
                const float keep = high ? y[2 * m + 1] : y[2 * m], send = high ? y[2 * m] : y[2 * m + 1];
                z[m] = keep + __shfl_xor_sync(0xffffffffu, send, 2);
            }
        } else {
            z[0] = y[0] + __shfl_xor_sync(0xffffffffu, y[0], 2);
        }
#pragma unroll
        for (int m = 0; m < kOwned; ++m) {
            if (owned_row[m] == nullptr || token >= last_column) continue;
            const bool visible = page_valid && token >= owned_begin[m] && token < owned_end[m];
            owned_row[m][token] = visible ? scale * z[m] : minus_inf;
        }
    }
#endif
}

using Sm90Kernel = void (*)(LogitsLaunch, CUtensorMap, CUtensorMap, Sm90Layout);

template <bool kPaged>
Sm90Kernel kernel_for(int64_t heads) {
    switch (heads) {
        case 16: return sm90_logits_kernel<16, kPaged>;
        case 32: return sm90_logits_kernel<32, kPaged>;
        case 64: return sm90_logits_kernel<64, kPaged>;
        case 128: return sm90_logits_kernel<128, kPaged>;
        default: return nullptr;
    }
}

using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                 const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                 CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

// cuTensorMapEncodeTiled from the driver, through the runtime (libdsa links no libcuda).
EncodeTiled tensor_map_encoder() {
    static const EncodeTiled encoder = [] {
        void* function = nullptr;
        cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &function, 12000, cudaEnableDefault, &found) !=
                cudaSuccess ||
            found != cudaDriverEntryPointSuccess) {
            cudaGetLastError();
            return static_cast<EncodeTiled>(nullptr);
        }
        return reinterpret_cast<EncodeTiled>(function);
    }();
    return encoder;
}

// A u8 tensor map whose innermost box is one 128-byte chunk, 128-byte swizzled. strides[i] is
// the byte stride of dimension i + 1. False when the driver refuses it.
bool encode_map(CUtensorMap* map, const void* address, int rank, const uint64_t* dims, const uint64_t* strides,
                const uint32_t* box) {
    const EncodeTiled encode = tensor_map_encoder();
    if (encode == nullptr || reinterpret_cast<uintptr_t>(address) % 16 != 0) return false;
    for (int i = 0; i + 1 < rank; ++i)
        if (strides[i] % 16 != 0 || strides[i] == 0 || strides[i] >= (uint64_t{1} << 40)) return false;
    for (int i = 0; i < rank; ++i)
        if (dims[i] == 0 || dims[i] > (uint64_t{1} << 32)) return false;
    const cuuint32_t element_strides[5] = {1, 1, 1, 1, 1};
    return encode(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, static_cast<cuuint32_t>(rank), const_cast<void*>(address),
                  reinterpret_cast<const cuuint64_t*>(dims), reinterpret_cast<const cuuint64_t*>(strides), box,
                  element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                  CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                  CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

}  // namespace

Status launch_sm90(Context& context, const IndexerProblem& p, int64_t row_begin, int64_t row_end, float* out,
                   int64_t out_row_stride, bool outside_windows, Stream stream, bool* launched) {
    *launched = false;
    const DeviceProperties& device = context.properties();
    const bool paged = p.keys == IndexerKeys::paged;
    const Sm90Kernel kernel = paged ? kernel_for<true>(p.heads) : kernel_for<false>(p.heads);
    if (device.compute_major != 9 || device.compute_minor != 0 || kernel == nullptr) return Status::success();
    if (p.dim % kChunk != 0 || p.dim > kMaxDim || p.columns > 0x7fffffff - 256 || p.num_pages > 0x7fffffff)
        return Status::success();
    cudaFuncAttributes attributes{};
    if (cudaFuncGetAttributes(&attributes, kernel) != cudaSuccess) {
        cudaGetLastError();
        return Status::success();
    }
    if (attributes.binaryVersion != 90) return Status::success();  // no sm_90a code in this build

    const int64_t heads = p.heads, dim = p.dim, queries = kN / heads;
    const int groups = paged ? 1 : 2;
    const int64_t tile = kMathWarpgroups / groups * 64;
    Sm90Layout layout{};
    layout.chunks = static_cast<int>(dim / kChunk);
    const uint32_t box_chunk = kChunk;
    CUtensorMap q_map, key_map;
    if (paged) {
        const int64_t batch = p.q.shape[0], next_n = p.q.shape[1];
        const uint64_t position_stride = next_n > 1 ? p.q.strides[1] : heads * dim;
        const uint64_t sequence_stride = batch > 1 ? p.q.strides[0] : next_n * position_stride;
        const uint64_t q_dims[4] = {uint64_t(dim), uint64_t(heads), uint64_t(next_n), uint64_t(batch)};
        const uint64_t q_strides[3] = {uint64_t(dim), position_stride, sequence_stride};
        const uint32_t q_box[4] = {box_chunk, uint32_t(heads), uint32_t(queries), 1};
        const uint64_t page_stride = p.num_pages > 1 ? p.k_cache.strides[0] : kIndexerPageTokens * (dim + 4);
        const uint64_t key_dims[3] = {uint64_t(dim), uint64_t(kIndexerPageTokens), uint64_t(p.num_pages)};
        const uint64_t key_strides[2] = {uint64_t(dim), page_stride};
        const uint32_t key_box[3] = {box_chunk, uint32_t(kIndexerPageTokens), 1};
        // The bulk copies of page scales need 16-byte aligned pages too (the map checks the base).
        if (p.k_cache.strides[0] % 16 != 0 || !encode_map(&q_map, p.q.data, 4, q_dims, q_strides, q_box) ||
            !encode_map(&key_map, p.k_cache.data, 3, key_dims, key_strides, key_box))
            return Status::success();
    } else {
        const int64_t s_q = p.q.shape[0], s_kv = p.k.shape[0];
        const uint64_t q_dims[3] = {uint64_t(dim), uint64_t(heads), uint64_t(s_q)};
        const uint64_t q_strides[2] = {uint64_t(dim), s_q > 1 ? uint64_t(p.q.strides[0]) : uint64_t(heads * dim)};
        const uint32_t q_box[3] = {box_chunk, uint32_t(heads), uint32_t(queries)};
        const uint64_t key_dims[2] = {uint64_t(dim), uint64_t(s_kv)};
        const uint64_t key_strides[1] = {s_kv > 1 ? uint64_t(p.k.strides[0]) : uint64_t(dim)};
        const uint32_t key_box[2] = {box_chunk, uint32_t(tile)};
        if (s_q > 0x7fffffff || !encode_map(&q_map, p.q.data, 3, q_dims, q_strides, q_box) ||
            !encode_map(&key_map, p.k.data, 2, key_dims, key_strides, key_box))
            return Status::success();
    }
    const int64_t q_bytes = groups * kN * dim;
    const int64_t stage_bytes = tile * dim + (paged ? tile * 4 : 0);
    const int64_t available = device.shared_memory_per_block_optin - static_cast<int64_t>(attributes.sharedSizeBytes) -
                              1024 - q_bytes;
    const int64_t stages = available / stage_bytes < kMaxStages ? available / stage_bytes : kMaxStages;
    if (stages < 2) return Status::success();
    layout.stages = static_cast<int>(stages);
    layout.keys_offset = static_cast<int>(q_bytes);
    layout.scales_offset = static_cast<int>(q_bytes + stages * tile * dim);
    const int shared_bytes = static_cast<int>(1024 + q_bytes + stages * stage_bytes);

    const LogitsLaunch launch = plan_launch(p, row_begin, row_end, out, out_row_stride, outside_windows,
                                            groups * queries, tile, device.multiprocessor_count);
    const int64_t blocks = launch.row_blocks * launch.splits;
    if (blocks > 0x7fffffff) return Status::success();
    DSA_TRY(runtime_status(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, shared_bytes),
                           "cudaFuncSetAttribute(indexer logits, sm90 kernel)"));
    kernel<<<static_cast<unsigned>(blocks), kThreads, shared_bytes, stream>>>(launch, q_map, key_map, layout);
    *launched = true;
    return launch_status("indexer logits (sm90 FP8 kernel) launch");
}

}  // namespace dsa::cuda::indexer
