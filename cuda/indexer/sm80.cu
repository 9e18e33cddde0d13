// The f16 tensor-core indexer kernel (sm_80 and later, the Ampere path; on Hopper it serves the
// shapes the FP8 wgmma kernel does not take). e4m3 -> f16 is exact, mma.sync m16n8k16 multiplies
// exactly and accumulates in f32, so only the summation order differs from the CPU.
//
// One CUDA block of 4 warps scores one query row against a column range, 64 tokens at a time:
// the row's q is decoded once into shared memory as f16 [H padded to 8][D padded to 16] (zeros in
// the padding), each key tile as f16 [64][D padded], and warp w computes tokens 16w..16w+15
// against 8 heads per mma column tile; the ReLU * weight epilogue runs on the accumulators and
// the head sum finishes with two quad shuffles.
#include <cuda_fp16.h>

#include "logits.cuh"

namespace dsa::cuda::indexer {
namespace {

constexpr int kThreads = 128;
constexpr int kTile = 64;  // tokens per key tile: 4 warps x 16
constexpr int kRowPad = 8;  // f16 padding per shared row: rows shift 4 banks, fragment loads hit 32 banks

// Shared-memory geometry for a problem.
struct Sm80Layout {
    int heads_padded;  // multiple of 8
    int dim_padded;    // multiple of 16
    int row_halves;    // dim_padded + kRowPad
    DSA_HOST_DEVICE int64_t bytes() const {
        return static_cast<int64_t>(heads_padded + kTile) * row_halves * 2 + heads_padded * 4 +
               kTile * (4 + 8 + 4);
    }
};

Sm80Layout layout_for(const IndexerProblem& p) {
    Sm80Layout layout;
    layout.heads_padded = static_cast<int>((p.heads + 7) / 8 * 8);
    layout.dim_padded = static_cast<int>((p.dim + 15) / 16 * 16);
    layout.row_halves = layout.dim_padded + kRowPad;
    return layout;
}

__device__ __forceinline__ uint16_t half_bits(uint8_t code) {
    return __half_as_ushort(__float2half_rn(decode_e4m3(code)));  // exact: every e4m3 value is an f16
}

__device__ __forceinline__ void mma_16x8x16(float (&acc)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__global__ void __launch_bounds__(kThreads) sm80_logits_kernel(const __grid_constant__ LogitsLaunch launch,
                                                               const Sm80Layout layout) {
    const IndexerProblem& p = launch.problem;
    const SingleRow single = single_row(launch);
    if (single.row < 0) return;
    const int64_t row = single.row, column_begin = single.columns.begin, column_end = single.columns.end;
    const int64_t begin = single.window_begin > column_begin ? single.window_begin : column_begin;
    const int64_t end = single.window_end < column_end ? single.window_end : column_end;
    // Key tiles [tiles_begin, tiles_end) meet the window; every other column is -inf.
    int64_t tiles_begin = column_begin, tiles_end = column_begin;
    if (begin < end) {
        tiles_begin = begin / kTile * kTile;
        tiles_end = ceil_div(end, kTile) * kTile;
        if (tiles_end > column_end) tiles_end = column_end;
    }
    float* out = output_row(launch, row);
    if (launch.outside_windows) {
        fill_minus_inf(out, column_begin, tiles_begin, threadIdx.x, kThreads);
        fill_minus_inf(out, tiles_end, column_end, threadIdx.x, kThreads);
    }
    if (tiles_begin >= tiles_end) return;

    extern __shared__ __align__(16) uint8_t shared[];
    uint16_t* q_half = reinterpret_cast<uint16_t*>(shared);
    uint16_t* key_half = q_half + layout.heads_padded * layout.row_halves;
    float* weights = reinterpret_cast<float*>(key_half + kTile * layout.row_halves);
    float* scales = weights + layout.heads_padded;
    const uint8_t** key_rows = reinterpret_cast<const uint8_t**>(scales + kTile);  // NULL: not visible

    const uint8_t* q = p.q.as<const uint8_t>() + p.q_offset(row);
    for (int64_t i = threadIdx.x; i < static_cast<int64_t>(layout.heads_padded) * layout.dim_padded; i += kThreads) {
        const int64_t h = i / layout.dim_padded, d = i % layout.dim_padded;
        q_half[h * layout.row_halves + d] = h < p.heads && d < p.dim ? half_bits(q[h * p.dim + d]) : 0;
    }
    for (int h = threadIdx.x; h < layout.heads_padded; h += kThreads)
        weights[h] = h < p.heads ? p.weights.as<const float>()[row * p.weights.strides[0] + h * p.weights.strides[1]]
                                 : 0.0f;

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int group = lane / 4, pair = 2 * (lane % 4);
    const float minus_inf = -__int_as_float(0x7f800000);
    for (int64_t tile = tiles_begin; tile < tiles_end; tile += kTile) {
        __syncthreads();  // the previous tile's keys are no longer read
        if (threadIdx.x < kTile) {
            const int64_t token = tile + threadIdx.x;
            float scale = 0.0f;
            const uint8_t* codes = token >= begin && token < end ? key_codes(p, row, token, &scale) : nullptr;
            key_rows[threadIdx.x] = codes;
            scales[threadIdx.x] = scale;
        }
        __syncthreads();
        for (int64_t i = threadIdx.x; i < static_cast<int64_t>(kTile) * layout.dim_padded; i += kThreads) {
            const int64_t t = i / layout.dim_padded, d = i % layout.dim_padded;
            const uint8_t* codes = key_rows[t];
            key_half[t * layout.row_halves + d] = codes != nullptr && d < p.dim ? half_bits(codes[d]) : 0;
        }
        __syncthreads();
        const uint16_t* a_rows = key_half + (warp * 16 + group) * layout.row_halves + pair;
        float low = 0.0f, high = 0.0f;  // tokens 16 warp + group and + 8
        for (int n0 = 0; n0 < layout.heads_padded; n0 += 8) {
            float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            const uint16_t* b_row = q_half + (n0 + group) * layout.row_halves + pair;
            for (int k0 = 0; k0 < layout.dim_padded; k0 += 16) {
                const uint32_t a[4] = {*reinterpret_cast<const uint32_t*>(a_rows + k0),
                                       *reinterpret_cast<const uint32_t*>(a_rows + 8 * layout.row_halves + k0),
                                       *reinterpret_cast<const uint32_t*>(a_rows + k0 + 8),
                                       *reinterpret_cast<const uint32_t*>(a_rows + 8 * layout.row_halves + k0 + 8)};
                const uint32_t b[2] = {*reinterpret_cast<const uint32_t*>(b_row + k0),
                                       *reinterpret_cast<const uint32_t*>(b_row + k0 + 8)};
                mma_16x8x16(acc, a, b);
            }
            const float w0 = weights[n0 + pair], w1 = weights[n0 + pair + 1];
            low = fmaf(w0, relu_keep_nan(acc[0]), low);
            low = fmaf(w1, relu_keep_nan(acc[1]), low);
            high = fmaf(w0, relu_keep_nan(acc[2]), high);
            high = fmaf(w1, relu_keep_nan(acc[3]), high);
        }
        for (int offset = 1; offset <= 2; offset *= 2) {
            low += __shfl_xor_sync(0xffffffffu, low, offset);
            high += __shfl_xor_sync(0xffffffffu, high, offset);
        }
        if (lane % 4 < 2) {
            const int t = warp * 16 + group + 8 * (lane % 4);
            const int64_t token = tile + t;
            if (token < tiles_end)
                out[token] = key_rows[t] != nullptr ? scales[t] * (lane % 4 == 0 ? low : high) : minus_inf;
        }
    }
}

}  // namespace

bool sm80_fits(const Context& context, const IndexerProblem& problem) {
    const DeviceProperties& device = context.properties();
    if (device.compute_major < 8 || problem.heads > (1 << 20) || problem.dim > (1 << 20)) return false;
    return layout_for(problem).bytes() <= device.shared_memory_per_block_optin;
}

Status launch_sm80(Context& context, const IndexerProblem& problem, int64_t row_begin, int64_t row_end, float* out,
                   int64_t out_row_stride, bool outside_windows, Stream stream) {
    const Sm80Layout layout = layout_for(problem);
    const LogitsLaunch launch = plan_launch(problem, row_begin, row_end, out, out_row_stride, outside_windows, 1, kTile,
                                            8 * static_cast<int64_t>(context.properties().multiprocessor_count));
    const int64_t blocks = launch.row_blocks * launch.splits;
    if (blocks > 0x7fffffff) return {StatusCode::shape_mismatch, "q: too many query rows for one CUDA grid"};
    const int bytes = static_cast<int>(layout.bytes());
    DSA_TRY(runtime_status(cudaFuncSetAttribute(sm80_logits_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes),
                           "cudaFuncSetAttribute(indexer logits, f16 kernel)"));
    sm80_logits_kernel<<<static_cast<unsigned>(blocks), kThreads, bytes, stream>>>(launch, layout);
    return launch_status("indexer logits (f16 tensor-core kernel) launch");
}

}  // namespace dsa::cuda::indexer
