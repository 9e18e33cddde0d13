// The Hopper sparse attention kernel (sm_90a: wgmma, setmaxnreg, mbarrier), for the DeepSeek
// widths d_qk = 576, d_v = 512 and H_q a multiple of 64, bf16 or FP8 MLA entries.
//
// A CTA takes one query row, 64 heads (the wgmma M) and a range of index positions, with three
// warpgroups:
// - a producer gathers 64 selected entries per block into one of two buffers (cp.async for
//   bf16; FP8 codes dequantised through registers, rope by cp.async) and publishes the block's
//   validity mask;
// - two consumers split each block by TOKENS for S = Q.K^T (wgmma m64n32k16, both operands in
//   shared memory, 36 k-steps over 576), exchange their row maxima, run the online softmax (log2
//   units) on identical statistics, and split O by COLUMNS for P.V (m64n256k16, 256 columns
//   each): a consumer's own P comes from registers, its peer's P from shared memory, where each
//   wrote it over the rope part of its own tokens (no longer needed once its S is done).
// Shared memory: Q and the two buffers are 9 panels of 64 rows x 128 bytes (64 dims), each
// row's 16-byte chunks swizzled (chunk c of row r at c ^ (r % 8)): the canonical 128-byte
// swizzle, read K-major for Q.K^T and MN-major (transposed) for P.V.
#pragma once

#include "common.cuh"

namespace dsa::cuda::attention {

inline constexpr int kSm90Heads = 64;
inline constexpr int kSm90Block = 64;      // entries per pipeline block
inline constexpr int kSm90Threads = 384;   // consumer warpgroups 0 and 1, producer 2
inline constexpr int kPanelBytes = 64 * 128;
inline constexpr int kTileBytes = 9 * kPanelBytes;  // 64 rows x 576 bf16
inline constexpr int kRopePanel = 8;
// Shared memory: Q, buffer 0, buffer 1, then barriers and exchange arrays.
inline constexpr int kSm90Misc = 3 * kTileBytes;
inline constexpr int kSm90FullBarriers = kSm90Misc;          // 2 x u64
inline constexpr int kSm90EmptyBarriers = kSm90Misc + 16;    // 2 x u64
inline constexpr int kSm90Masks = kSm90Misc + 32;            // 2 x u64
inline constexpr int kSm90RowMax = kSm90Misc + 64;           // [2 parity][2 consumer][64] f32
inline constexpr int kSm90RowSum = kSm90RowMax + 2 * 2 * 64 * 4;  // [2 consumer][64] f32
inline constexpr int kSm90SmemBytes = kSm90RowSum + 2 * 64 * 4 + 1024;  // + alignment slack
// Register split (setmaxnreg): the pool is per CTA, so what the consumers take must equal what
// the producer gives back from the launch allocation of kSm90Registers per thread:
// 2 x 128 x (200 - 168) == 128 x (168 - 104). The launcher checks the kernel was compiled to 168.
// The producer's 104 hold four FP8 entries a lane in flight (kFp8PassesInFlight).
inline constexpr int kSm90Registers = 168;
inline constexpr int kSm90ProducerRegisters = 104;
inline constexpr int kSm90ConsumerRegisters = 200;
static_assert(2 * kSm90ConsumerRegisters + kSm90ProducerRegisters == 3 * kSm90Registers,
              "setmaxnreg must not ask for more registers than the CTA holds");
// FP8 producer: of a block's 4 passes (16 entries each), how many have their loads in flight
// before the first is dequantised (the block's gather is latency-bound, not bandwidth-bound).
inline constexpr int kFp8PassesInFlight = 4;
// Arrivals that complete a full barrier: each producer thread's copies (+ for FP8 its stores),
// and one for the mask. cp.async.mbarrier.arrive rather than cp.async.wait_group + arrive lets
// the barrier itself order the copies with the consumers' later writes over the rope rows.
__host__ __device__ constexpr int full_arrivals(bool fp8) { return 128 * (fp8 ? 2 : 1) + 1; }
// Every consumer thread arrives on an empty barrier: mbarrier.arrive releases only the arriving
// thread's own accesses (its P stores, its wgmma reads), so one arrival per warp would leave the
// producer's refill of that buffer unordered with the other lanes' (compute-sanitizer racecheck
// reports it).
inline constexpr int kEmptyArrivals = 256;

// Named barriers (0 is __syncthreads).
inline constexpr int kBarrierRowMax = 1;
inline constexpr int kBarrierProbs = 2;  // + consumer index: that consumer's P is in shared memory
inline constexpr int kBarrierRowSum = 4;

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)

__device__ __forceinline__ void barrier_init(uint32_t barrier, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(barrier), "r"(count) : "memory");
}
__device__ __forceinline__ void barrier_arrive(uint32_t barrier) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(barrier) : "memory");
}
// Arrives once this thread's earlier cp.async copies have landed.
__device__ __forceinline__ void barrier_arrive_copies(uint32_t barrier) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(barrier) : "memory");
}
__device__ __forceinline__ void barrier_wait(uint32_t barrier, uint32_t parity) {
    uint32_t done = 0;
    while (!done) {
        asm volatile(
            "{\n"
            ".reg .pred complete;\n"
            "mbarrier.try_wait.parity.shared::cta.b64 complete, [%1], %2;\n"
            "selp.u32 %0, 1, 0, complete;\n"
            "}\n"
            : "=r"(done)
            : "r"(barrier), "r"(parity)
            : "memory");
    }
}
__device__ __forceinline__ void named_sync(int id, int threads) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_arrive(int id, int threads) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
// Orders this thread's generic-proxy shared memory accesses with the async proxy (wgmma).
__device__ __forceinline__ void fence_async_shared() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }

// Shared memory matrix descriptor: start address, leading and stride byte offsets (16-byte
// units), layout (1: 128-byte swizzle, 0: none).
__device__ __forceinline__ uint64_t matrix_descriptor(uint32_t address, uint32_t leading, uint32_t stride,
                                                      uint32_t layout) {
    return static_cast<uint64_t>((address & 0x3ffffu) >> 4) | (static_cast<uint64_t>(leading >> 4) << 16) |
           (static_cast<uint64_t>(stride >> 4) << 32) | (static_cast<uint64_t>(layout) << 62);
}

// s (64 heads x 32 tokens, f32) (+)= A (64x16 from shared) * B (16x32 from shared, K-major).
__device__ __forceinline__ void wgmma_scores(float (&s)[16], uint64_t a, uint64_t b, int accumulate) {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %18, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, p, 1, 1, 0, 0;\n"
        "}\n"
        : "+f"(s[0]), "+f"(s[1]), "+f"(s[2]), "+f"(s[3]), "+f"(s[4]), "+f"(s[5]), "+f"(s[6]), "+f"(s[7]),
          "+f"(s[8]), "+f"(s[9]), "+f"(s[10]), "+f"(s[11]), "+f"(s[12]), "+f"(s[13]), "+f"(s[14]), "+f"(s[15])
        : "l"(a), "l"(b), "r"(accumulate));
}

#define DSA_O_OPERANDS_0_63                                                                                   \
    "+f"(o[0]), "+f"(o[1]), "+f"(o[2]), "+f"(o[3]), "+f"(o[4]), "+f"(o[5]), "+f"(o[6]), "+f"(o[7]), "+f"(o[8]), \
        "+f"(o[9]), "+f"(o[10]), "+f"(o[11]), "+f"(o[12]), "+f"(o[13]), "+f"(o[14]), "+f"(o[15]), "+f"(o[16]),  \
        "+f"(o[17]), "+f"(o[18]), "+f"(o[19]), "+f"(o[20]), "+f"(o[21]), "+f"(o[22]), "+f"(o[23]), "+f"(o[24]), \
        "+f"(o[25]), "+f"(o[26]), "+f"(o[27]), "+f"(o[28]), "+f"(o[29]), "+f"(o[30]), "+f"(o[31]), "+f"(o[32]), \
        "+f"(o[33]), "+f"(o[34]), "+f"(o[35]), "+f"(o[36]), "+f"(o[37]), "+f"(o[38]), "+f"(o[39]), "+f"(o[40]), \
        "+f"(o[41]), "+f"(o[42]), "+f"(o[43]), "+f"(o[44]), "+f"(o[45]), "+f"(o[46]), "+f"(o[47]), "+f"(o[48]), \
        "+f"(o[49]), "+f"(o[50]), "+f"(o[51]), "+f"(o[52]), "+f"(o[53]), "+f"(o[54]), "+f"(o[55]), "+f"(o[56]), \
        "+f"(o[57]), "+f"(o[58]), "+f"(o[59]), "+f"(o[60]), "+f"(o[61]), "+f"(o[62]), "+f"(o[63])
#define DSA_O_OPERANDS_64_127                                                                                   \
    "+f"(o[64]), "+f"(o[65]), "+f"(o[66]), "+f"(o[67]), "+f"(o[68]), "+f"(o[69]), "+f"(o[70]), "+f"(o[71]),       \
        "+f"(o[72]), "+f"(o[73]), "+f"(o[74]), "+f"(o[75]), "+f"(o[76]), "+f"(o[77]), "+f"(o[78]), "+f"(o[79]),   \
        "+f"(o[80]), "+f"(o[81]), "+f"(o[82]), "+f"(o[83]), "+f"(o[84]), "+f"(o[85]), "+f"(o[86]), "+f"(o[87]),   \
        "+f"(o[88]), "+f"(o[89]), "+f"(o[90]), "+f"(o[91]), "+f"(o[92]), "+f"(o[93]), "+f"(o[94]), "+f"(o[95]),   \
        "+f"(o[96]), "+f"(o[97]), "+f"(o[98]), "+f"(o[99]), "+f"(o[100]), "+f"(o[101]), "+f"(o[102]),             \
        "+f"(o[103]), "+f"(o[104]), "+f"(o[105]), "+f"(o[106]), "+f"(o[107]), "+f"(o[108]), "+f"(o[109]),         \
        "+f"(o[110]), "+f"(o[111]), "+f"(o[112]), "+f"(o[113]), "+f"(o[114]), "+f"(o[115]), "+f"(o[116]),         \
        "+f"(o[117]), "+f"(o[118]), "+f"(o[119]), "+f"(o[120]), "+f"(o[121]), "+f"(o[122]), "+f"(o[123]),         \
        "+f"(o[124]), "+f"(o[125]), "+f"(o[126]), "+f"(o[127])
#define DSA_O_REGISTERS                                                                                         \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, " \
    "%23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, "   \
    "%44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, "   \
    "%65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, "   \
    "%86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, " \
    "%106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, "     \
    "%123, %124, %125, %126, %127}"

// o (64 heads x 256 columns) += P (64x16, registers) * V (16 tokens x 256, MN-major in shared).
__device__ __forceinline__ void wgmma_values_from_registers(float (&o)[128], const uint32_t (&p)[4], uint64_t v) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 " DSA_O_REGISTERS
                 ", {%128, %129, %130, %131}, %132, 1, 1, 1, 1;\n"
                 : DSA_O_OPERANDS_0_63, DSA_O_OPERANDS_64_127
                 : "r"(p[0]), "r"(p[1]), "r"(p[2]), "r"(p[3]), "l"(v));
}
// o += P (64x16 from shared, K-major) * V (MN-major).
__device__ __forceinline__ void wgmma_values_from_shared(float (&o)[128], uint64_t p, uint64_t v) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 " DSA_O_REGISTERS
                 ", %128, %129, 1, 1, 1, 0, 1;\n"
                 : DSA_O_OPERANDS_0_63, DSA_O_OPERANDS_64_127
                 : "l"(p), "l"(v));
}
#undef DSA_O_OPERANDS_0_63
#undef DSA_O_OPERANDS_64_127
#undef DSA_O_REGISTERS

// Keeps the compiler from moving accesses of these registers across the asynchronous wgmma
// (and keeps A fragments alive until the wgmma reading them has completed).
template <int N>
__device__ __forceinline__ void pin_registers(float (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
__device__ __forceinline__ void pin_registers(uint32_t (&r)[2][4]) {
#pragma unroll
    for (int i = 0; i < 8; ++i) asm volatile("" : "+r"(r[i / 4][i % 4])::"memory");
}

// Byte offset in a tile of 16-byte chunk `chunk` (0..71) of row `row` (0..63).
__device__ __forceinline__ uint32_t tile_chunk(int row, int chunk) {
    return static_cast<uint32_t>((chunk / 8) * kPanelBytes + (row / 8) * 1024 + (row % 8) * 128 +
                                 (((chunk % 8) ^ (row % 8)) << 4));
}

// Copies the 72 chunks of one bf16 row (chunks lane % 8 + 8 p) into a tile: 8 lanes per row.
__device__ __forceinline__ void copy_row_chunks(uint32_t tile, int row, int lane_in_row, const uint8_t* source,
                                                uint32_t bytes) {
#pragma unroll
    for (int panel = 0; panel < 9; ++panel) {
        const int chunk = panel * 8 + lane_in_row;
        copy_async_16(tile + tile_chunk(row, chunk), source + 16 * chunk, bytes);
    }
}

// Writes this lane's share of one FP8 entry's latent part, dequantised: 16 codes of each of the
// 4 groups (dims 128 g + 16 lane_in_row .. + 15), as two bf16 chunks per group.
__device__ __forceinline__ void store_dequantised(uint32_t tile, int row, int lane_in_row, const uint4 (&codes)[4],
                                                  const float4& scales) {
    const float group_scale[4] = {scales.x, scales.y, scales.z, scales.w};
#pragma unroll
    for (int group = 0; group < 4; ++group) {
        const float scale = group_scale[group];
        const uint32_t words[4] = {codes[group].x, codes[group].y, codes[group].z, codes[group].w};
        uint32_t out[8];
#pragma unroll
        for (int w = 0; w < 4; ++w) {
            out[2 * w] = dequantize_pair(words[w], scale);
            out[2 * w + 1] = dequantize_pair(words[w] >> 16, scale);
        }
        const int chunk = (128 * group + 16 * lane_in_row) / 8;  // first of two bf16 chunks
        asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(tile + tile_chunk(row, chunk)), "r"(out[0]),
                     "r"(out[1]), "r"(out[2]), "r"(out[3])
                     : "memory");
        asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(tile + tile_chunk(row, chunk + 1)),
                     "r"(out[4]), "r"(out[5]), "r"(out[6]), "r"(out[7])
                     : "memory");
    }
}

__device__ __forceinline__ uint4 load_streaming(const uint8_t* address) {
    uint4 value;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(value.x), "=r"(value.y), "=r"(value.z), "=r"(value.w)
                 : "l"(address));
    return value;
}

#endif  // sm_90a

template <bool Fp8>
__global__ void __launch_bounds__(kSm90Threads, 1) sm90_attention_kernel(const __grid_constant__ Arguments a) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ __align__(1024) uint8_t smem_raw[];
    const uint32_t raw_base = shared_address(smem_raw);
    const uint32_t base = (raw_base + 1023u) & ~1023u;
    uint8_t* const smem = smem_raw + (base - raw_base);
    const uint32_t q_tile = base;
    auto buffer = [&](int b) { return base + static_cast<uint32_t>((1 + b) * kTileBytes); };
    auto full = [&](int b) { return base + kSm90FullBarriers + 8u * b; };
    auto empty = [&](int b) { return base + kSm90EmptyBarriers + 8u * b; };
    uint64_t* const masks = reinterpret_cast<uint64_t*>(smem + kSm90Masks);
    float* const row_max = reinterpret_cast<float*>(smem + kSm90RowMax);
    float* const row_sum = reinterpret_cast<float*>(smem + kSm90RowSum);

    const int warpgroup = threadIdx.x / 128;
    const int thread = threadIdx.x % 128, warp = thread / 32, lane = threadIdx.x % 32;
    const WorkItem item = work_item(a);
    const int64_t head0 = static_cast<int64_t>(item.group) * kSm90Heads;
    const int64_t positions = item.end > item.begin ? item.end - item.begin : 0;
    const int blocks = static_cast<int>((positions + kSm90Block - 1) / kSm90Block);

    if (threadIdx.x == 0) {
        for (int b = 0; b < 2; ++b) {
            barrier_init(full(b), full_arrivals(Fp8));
            barrier_init(empty(b), kEmptyArrivals);
        }
    }
    __syncthreads();

    if (warpgroup == 2) {
        // ---- Producer ----
        asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kSm90ProducerRegisters));
        const int64_t index_base = a.index_rows.offset(item.row);
        const int lane_in_row = lane % 8;
        // Every producer warp resolves all 64 entries of a block: lane l holds entries l and
        // l + 32. The slots are read one block ahead, so their load latency hides behind the
        // current block's gather instead of opening every block's chain of dependent loads.
        int64_t slot_low = position_slot(a, index_base, item.begin + lane, item.end);
        int64_t slot_high = position_slot(a, index_base, item.begin + lane + 32, item.end);
        for (int block = 0; block < blocks; ++block) {
            const int b = block % 2;
            const int64_t offset_low = entry_offset(a, slot_low);
            const int64_t offset_high = entry_offset(a, slot_high);
            const int64_t next = item.begin + static_cast<int64_t>(block + 1) * kSm90Block + lane;
            slot_low = position_slot(a, index_base, next, item.end);
            slot_high = position_slot(a, index_base, next + 32, item.end);
            if (block >= 2) barrier_wait(empty(b), ((block / 2) - 1) & 1);
            const uint64_t mask = static_cast<uint64_t>(__ballot_sync(0xffffffffu, offset_low >= 0)) |
                                  (static_cast<uint64_t>(__ballot_sync(0xffffffffu, offset_high >= 0)) << 32);
            if (block == 0) {
                // Q: 64 head rows, 8 lanes a row, 4 passes of 16 rows over the warpgroup.
                for (int pass = 0; pass < 4; ++pass) {
                    const int head = pass * 16 + warp * 4 + lane / 8;
                    const uint16_t* source = a.q + a.q_rows.offset(item.row * a.heads + head0 + head);
                    copy_row_chunks(q_tile, head, lane_in_row, reinterpret_cast<const uint8_t*>(source), 16);
                }
            }
            const uint32_t tile = buffer(b);
            if (mask != 0) {
                if constexpr (!Fp8) {
#pragma unroll
                    for (int pass = 0; pass < 4; ++pass) {
                        const int row = pass * 16 + warp * 4 + lane / 8;
                        const int64_t offset =
                            __shfl_sync(0xffffffffu, row < 32 ? offset_low : offset_high, row % 32);
                        copy_row_chunks(tile, row, lane_in_row, a.kv + (offset >= 0 ? offset : 0), offset >= 0 ? 16 : 0);
                    }
                } else {
#pragma unroll
                    for (int round = 0; round < 4 / kFp8PassesInFlight; ++round) {
                        // kFp8PassesInFlight entries per lane in flight, each 4 code chunks + scales.
                        uint4 codes[kFp8PassesInFlight][4];
                        float4 scales[kFp8PassesInFlight];
                        int rows[kFp8PassesInFlight];
#pragma unroll
                        for (int k = 0; k < kFp8PassesInFlight; ++k) {
                            const int pass = kFp8PassesInFlight * round + k;
                            const int row = pass * 16 + warp * 4 + lane / 8;
                            rows[k] = row;
                            const int64_t offset =
                                __shfl_sync(0xffffffffu, row < 32 ? offset_low : offset_high, row % 32);
                            const uint8_t* entry = a.kv + (offset >= 0 ? offset : 0);
                            if (offset >= 0) {
                                const uint4 s = load_streaming(entry + kMlaScaleOffset);
                                scales[k] = make_float4(__uint_as_float(s.x), __uint_as_float(s.y), __uint_as_float(s.z),
                                                        __uint_as_float(s.w));
#pragma unroll
                                for (int group = 0; group < 4; ++group)
                                    codes[k][group] = load_streaming(entry + kMlaGroupSize * group + 16 * lane_in_row);
                            } else {
                                scales[k] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
                                for (int group = 0; group < 4; ++group) codes[k][group] = make_uint4(0, 0, 0, 0);
                            }
                            copy_async_16(tile + tile_chunk(row, kRopePanel * 8 + lane_in_row),
                                          entry + kMlaRopeOffset + 16 * lane_in_row, offset >= 0 ? 16 : 0);
                        }
#pragma unroll
                        for (int k = 0; k < kFp8PassesInFlight; ++k)
                            store_dequantised(tile, rows[k], lane_in_row, codes[k], scales[k]);
                    }
                }
            }
            if (warp == 0 && lane == 0) masks[b] = mask;
            // The barrier tracks this thread's copies (cp.async.mbarrier.arrive), and for FP8 also
            // its dequantised stores, made visible to wgmma (the async proxy) by the fence.
            barrier_arrive_copies(full(b));
            if constexpr (Fp8) {
                fence_async_shared();
                barrier_arrive(full(b));
            }
            if (warp == 0 && lane == 0) barrier_arrive(full(b));  // the mask
        }
        copy_async_wait<0>();
        return;
    }

    // ---- Consumers: warpgroup w owns tokens 32w..32w+31 of each block and O columns 256w.. ----
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kSm90ConsumerRegisters));
    const int w = warpgroup, peer = 1 - warpgroup;
    const int g = lane / 4, t = lane % 4;
    const int head_row = warp * 16 + g;  // and head_row + 8
    float o[128];
#pragma unroll
    for (int i = 0; i < 128; ++i) o[i] = 0.0f;
    float running_max[2] = {-INFINITY, -INFINITY};
    float running_sum[2] = {0.0f, 0.0f};  // this thread's columns only; reduced at the end

    for (int block = 0; block < blocks; ++block) {
        const int b = block % 2;
        barrier_wait(full(b), (block / 2) & 1);
        fence_async_shared();
        const uint64_t mask = masks[b];
        const uint32_t tile = buffer(b);
        if (mask == 0) {  // nothing valid: both consumers skip alike
            barrier_arrive(empty(b));
            continue;
        }
        const uint32_t mine = static_cast<uint32_t>(mask >> (32 * w));

        float s[16];
#pragma unroll
        for (int i = 0; i < 16; ++i) s[i] = 0.0f;
        wgmma_fence();
#pragma unroll
        for (int panel = 0; panel < 9; ++panel)
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const uint64_t qa = matrix_descriptor(q_tile + panel * kPanelBytes + 32 * k, 16, 1024, 1);
                const uint64_t kb = matrix_descriptor(tile + panel * kPanelBytes + w * 4096 + 32 * k, 16, 1024, 1);
                wgmma_scores(s, qa, kb, panel + k > 0);
            }
        wgmma_commit();
        wgmma_wait_all();
        pin_registers(s);

        // s[4j + 2h + c]: head row head_row + 8h, token 8j + 2t + c of this consumer's 32.
        float block_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int i = 0; i < 16; ++i) {
            const int token = 8 * (i / 4) + 2 * t + i % 2;
            s[i] = (mine >> token) & 1u ? s[i] * a.scale_log2 : -INFINITY;
            block_max[(i / 2) % 2] = fmaxf(block_max[(i / 2) % 2], s[i]);
        }
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            block_max[h] = fmaxf(block_max[h], __shfl_xor_sync(0xffffffffu, block_max[h], 1));
            block_max[h] = fmaxf(block_max[h], __shfl_xor_sync(0xffffffffu, block_max[h], 2));
        }
        float* const exchange = row_max + (block % 2) * 128;
        if (t == 0) {
            exchange[w * 64 + head_row] = block_max[0];
            exchange[w * 64 + head_row + 8] = block_max[1];
        }
        named_sync(kBarrierRowMax, 256);
        float correction[2], shift[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const float both = fmaxf(block_max[h], exchange[peer * 64 + head_row + 8 * h]);
            const float new_max = fmaxf(running_max[h], both);
            shift[h] = new_max == -INFINITY ? 0.0f : new_max;
            correction[h] = exp2f(running_max[h] - shift[h]);
            running_max[h] = new_max;
        }
        float block_sum[2] = {0.0f, 0.0f};
#pragma unroll
        for (int i = 0; i < 16; ++i) {
            s[i] = exp2f(s[i] - shift[(i / 2) % 2]);
            block_sum[(i / 2) % 2] += s[i];
        }
#pragma unroll
        for (int h = 0; h < 2; ++h) running_sum[h] = running_sum[h] * correction[h] + block_sum[h];

        // P as wgmma A fragments (k-step k: tokens 16k..16k+15 of this consumer) and, for the
        // peer, in shared memory over this consumer's rope rows: 64 x 32 bf16, no swizzle,
        // 8x8 core matrices (rows at 16 bytes, k-chunks at 128, row groups at 512).
        uint32_t p[2][4];
#pragma unroll
        for (int k = 0; k < 2; ++k)
#pragma unroll
            for (int r = 0; r < 4; ++r) p[k][r] = pack_bf16(s[8 * k + 2 * r], s[8 * k + 2 * r + 1]);
        const uint32_t my_probs = tile + kRopePanel * kPanelBytes + w * 4096;
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int row = head_row + 8 * h;
                const uint32_t address = my_probs + (row / 8) * 512 + j * 128 + (row % 8) * 16 + 4 * t;
                asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(address), "r"(p[j / 2][2 * (j % 2) + h]) : "memory");
            }
        fence_async_shared();
        named_arrive(kBarrierProbs + w, 256);

#pragma unroll
        for (int i = 0; i < 128; ++i) o[i] *= correction[(i / 2) % 2];
        // V: panels 4w..4w+3 (columns 256w..), token k-step at 2 row groups (2048 bytes);
        // MN-major: 64-column chunks at a panel (8192 bytes), 8-token groups at 1024.
        wgmma_fence();
#pragma unroll
        for (int k = 0; k < 2; ++k) {
            const int step = 2 * w + k;
            wgmma_values_from_registers(o, p[k], matrix_descriptor(tile + 4 * w * kPanelBytes + step * 2048, kPanelBytes, 1024, 1));
        }
        named_sync(kBarrierProbs + peer, 256);
        const uint32_t peer_probs = tile + kRopePanel * kPanelBytes + peer * 4096;
#pragma unroll
        for (int k = 0; k < 2; ++k) {
            const int step = 2 * peer + k;
            wgmma_values_from_shared(o, matrix_descriptor(peer_probs + 256 * k, 128, 512, 0),
                                     matrix_descriptor(tile + 4 * w * kPanelBytes + step * 2048, kPanelBytes, 1024, 1));
        }
        wgmma_commit();
        wgmma_wait_all();
        pin_registers(o);
        pin_registers(p);
        barrier_arrive(empty(b));
    }

    // Totals: this thread's columns -> the quad -> both consumers (same order in both).
    float sum[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        float v = running_sum[h];
        v += __shfl_xor_sync(0xffffffffu, v, 1);
        v += __shfl_xor_sync(0xffffffffu, v, 2);
        if (t == 0) row_sum[w * 64 + head_row + 8 * h] = v;
    }
    named_sync(kBarrierRowSum, 256);
#pragma unroll
    for (int h = 0; h < 2; ++h) sum[h] = row_sum[head_row + 8 * h] + row_sum[64 + head_row + 8 * h];

#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int64_t head = head0 + head_row + 8 * h;
        if (w == 0 && t == 0) write_row_statistics(a, item, head, running_max[h], sum[h]);
        if (a.partial_out != nullptr) {
            float* target = a.partial_out + ((item.split * a.rows + item.row) * a.heads + head) * kMlaLatentDim + 256 * w;
#pragma unroll
            for (int j = 0; j < 32; ++j)
                *reinterpret_cast<float2*>(target + 8 * j + 2 * t) = make_float2(o[4 * j + 2 * h], o[4 * j + 2 * h + 1]);
        } else {
            const float scale = finish_row(a, head, running_max[h], sum[h]).inverse_denominator;
            uint16_t* target = a.out + a.out_rows.offset(item.row * a.heads + head) + 256 * w;
#pragma unroll
            for (int j = 0; j < 32; ++j)
                *reinterpret_cast<uint32_t*>(target + 8 * j + 2 * t) =
                    pack_bf16(o[4 * j + 2 * h] * scale, o[4 * j + 2 * h + 1] * scale);
        }
    }
#endif  // sm_90a
}

}  // namespace dsa::cuda::attention
