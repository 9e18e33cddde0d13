// What one launch of a CUDA indexer-logits kernel covers, shared by the three kernels (sm90.cu:
// FP8 wgmma; sm80.cu: e4m3 -> f16 mma.sync; simple.cu: scalar) and the launcher that picks one.
//
// A launch scores rows [row_begin, row_end) of a validated problem. Rows are grouped into row
// blocks of up to rows_per_block rows that read the same keys (prefill: consecutive rows; paged:
// consecutive rows of one sequence), and each row block is cut into `splits` column ranges of
// split_columns tokens (a multiple of the kernel's key tile), so few long rows still spread over
// the SMs. CUDA block x = row block * splits + split; each element is written by one block.
#pragma once

#include "../../core/ops/indexer.hpp"
#include "../common/runtime.cuh"

namespace dsa::cuda::indexer {

struct LogitsLaunch {
    IndexerProblem problem;  // its tensors point to device memory
    int64_t row_begin = 0;
    int64_t row_end = 0;
    float* out = nullptr;  // row row_begin's output row; row r at out + (r - row_begin) * out_row_stride
    int64_t out_row_stride = 0;
    bool outside_windows = true;     // also write -inf outside the windows (see cuda::indexer_logits_rows)
    int64_t rows_per_block = 1;
    int64_t blocks_per_sequence = 1;  // paged: row blocks per sequence
    int64_t first_sequence = 0;       // paged: the sequence of row_begin
    int64_t row_blocks = 0;
    int64_t splits = 1;
    int64_t split_columns = 0;
};

// The rows of one row block: local row i is global row first + i; rows [valid_begin,
// valid_end) are the ones to write (the others belong to another sequence or lie outside
// [row_begin, row_end)).
struct RowBlock {
    int64_t first;
    int64_t position;  // prefill: = first; paged: first's position within its sequence
    int64_t sequence;  // paged: the sequence (prefill: 0)
    int valid_begin;
    int valid_end;
};

DSA_HOST_DEVICE RowBlock row_block(const LogitsLaunch& launch, int64_t block) {
    const IndexerProblem& p = launch.problem;
    const int64_t per_block = launch.rows_per_block;
    RowBlock rows{};
    int64_t end = 0;
    if (p.keys == IndexerKeys::contiguous) {
        rows.first = launch.row_begin + block * per_block;
        rows.position = rows.first;
        rows.sequence = 0;
        rows.valid_begin = 0;
        end = launch.row_end - rows.first;
    } else {
        rows.sequence = launch.first_sequence + block / launch.blocks_per_sequence;
        rows.position = (block % launch.blocks_per_sequence) * per_block;
        rows.first = rows.sequence * p.next_n + rows.position;
        const int64_t begin = launch.row_begin - rows.first;
        rows.valid_begin = static_cast<int>(begin > 0 ? begin : 0);
        end = p.next_n - rows.position;
        if (launch.row_end - rows.first < end) end = launch.row_end - rows.first;
    }
    rows.valid_end = static_cast<int>(end < per_block ? end : per_block);
    if (rows.valid_end < rows.valid_begin) rows.valid_end = rows.valid_begin;
    return rows;
}

// Splits a launch for kernels that score `tile_tokens` keys at a time in blocks of
// rows_per_block rows; target_blocks is about how many CUDA blocks fill the GPU.
inline LogitsLaunch plan_launch(const IndexerProblem& problem, int64_t row_begin, int64_t row_end, float* out,
                                int64_t out_row_stride, bool outside_windows, int64_t rows_per_block,
                                int64_t tile_tokens, int64_t target_blocks) {
    LogitsLaunch launch;
    launch.problem = problem;
    launch.row_begin = row_begin;
    launch.row_end = row_end;
    launch.out = out;
    launch.out_row_stride = out_row_stride;
    launch.outside_windows = outside_windows;
    launch.rows_per_block = rows_per_block;
    if (problem.keys == IndexerKeys::contiguous) {
        launch.row_blocks = ceil_div(row_end - row_begin, rows_per_block);
    } else {
        launch.first_sequence = row_begin / problem.next_n;
        launch.blocks_per_sequence = ceil_div(problem.next_n, rows_per_block);
        launch.row_blocks = ((row_end - 1) / problem.next_n - launch.first_sequence + 1) * launch.blocks_per_sequence;
    }
    const int64_t tiles = ceil_div(problem.columns, tile_tokens);
    int64_t splits = launch.row_blocks >= target_blocks ? 1 : target_blocks / launch.row_blocks;
    splits = splits < 1 ? 1 : (splits > tiles ? tiles : splits);
    launch.split_columns = ceil_div(tiles, splits) * tile_tokens;
    launch.splits = ceil_div(problem.columns, launch.split_columns);
    return launch;
}

// Row r's output row.
DSA_HOST_DEVICE float* output_row(const LogitsLaunch& launch, int64_t row) {
    return launch.out + (row - launch.row_begin) * launch.out_row_stride;
}

// The columns [begin, end) of split `split`.
struct ColumnRange {
    int64_t begin;
    int64_t end;
};
DSA_HOST_DEVICE ColumnRange split_range(const LogitsLaunch& launch, int64_t split) {
    const int64_t begin = split * launch.split_columns, end = begin + launch.split_columns;
    return {begin, end < launch.problem.columns ? end : launch.problem.columns};
}

#ifdef __CUDACC__
// ReLU that keeps NaN (as the CPU's `u < 0 ? 0 : u`): max.NaN returns NaN if either input is.
__device__ __forceinline__ float relu_keep_nan(float x) {
    float y;
    asm("max.NaN.f32 %0, %1, 0f00000000;" : "=f"(y) : "f"(x));
    return y;
}

// An f32 at an address of any alignment (pages of the key cache have free strides).
__device__ __forceinline__ float load_float_bytes(const uint8_t* address) {
    if (reinterpret_cast<uintptr_t>(address) % 4 == 0) return *reinterpret_cast<const float*>(address);
    const uint32_t bits = static_cast<uint32_t>(address[0]) | (static_cast<uint32_t>(address[1]) << 8) |
                          (static_cast<uint32_t>(address[2]) << 16) | (static_cast<uint32_t>(address[3]) << 24);
    return __uint_as_float(bits);
}

// The e4m3 codes and scale of token `token` as row `row` sees it, or NULL when the token's
// paged block-table entry is outside the cache (the token is then -inf and never read).
__device__ __forceinline__ const uint8_t* key_codes(const IndexerProblem& p, int64_t row, int64_t token,
                                                    float* scale) {
    if (p.keys == IndexerKeys::contiguous) {
        *scale = p.k_scale.as<const float>()[token * p.k_scale.strides[0]];
        return p.k.as<const uint8_t>() + token * p.k.strides[0];
    }
    const int64_t page = p.page(row, token / kIndexerPageTokens);
    if (page < 0) return nullptr;
    const uint8_t* base = p.k_cache.as<const uint8_t>() + page * p.k_cache.strides[0];
    const int64_t slot = token % kIndexerPageTokens;
    *scale = load_float_bytes(base + kIndexerPageTokens * p.dim + 4 * slot);
    return base + slot * p.dim;
}

// What a CUDA block of a kernel with one row per row block (f16, scalar) works on: its row
// (-1: none to write), its columns, and the row's clamped window.
struct SingleRow {
    int64_t row;
    ColumnRange columns;
    int64_t window_begin;
    int64_t window_end;
};
__device__ inline SingleRow single_row(const LogitsLaunch& launch) {
    SingleRow single{};
    const RowBlock rows = row_block(launch, blockIdx.x / launch.splits);
    single.row = rows.valid_begin < rows.valid_end ? rows.first + rows.valid_begin : -1;
    single.columns = split_range(launch, blockIdx.x % launch.splits);
    if (single.row >= 0) launch.problem.window(single.row, &single.window_begin, &single.window_end);
    return single;
}

// Writes -inf to row[begin, end) with `lanes` threads (this one is `lane`), 16-byte stores in
// the aligned middle.
__device__ inline void fill_minus_inf(float* row, int64_t begin, int64_t end, int lane, int lanes) {
    if (begin >= end) return;
    const float minus_inf = -__int_as_float(0x7f800000);
    const int64_t misaligned = static_cast<int64_t>((reinterpret_cast<uintptr_t>(row + begin) / 4) % 4);
    int64_t body = begin + (misaligned == 0 ? 0 : 4 - misaligned);
    if (body > end) body = end;
    const int64_t body_end = body + (end - body) / 4 * 4;
    for (int64_t i = begin + lane; i < body; i += lanes) row[i] = minus_inf;
    const float4 four = make_float4(minus_inf, minus_inf, minus_inf, minus_inf);
    for (int64_t i = body + 4 * static_cast<int64_t>(lane); i < body_end; i += 4 * static_cast<int64_t>(lanes))
        *reinterpret_cast<float4*>(row + i) = four;
    for (int64_t i = body_end + lane; i < end; i += lanes) row[i] = minus_inf;
}
#endif

// The three kernels' launchers (each in its own file). launch_sm90 sets *launched = false,
// launching nothing, when the device, the build or the shape does not suit it.
Status launch_sm90(Context& context, const IndexerProblem& problem, int64_t row_begin, int64_t row_end, float* out,
                   int64_t out_row_stride, bool outside_windows, Stream stream, bool* launched);
// The f16 tensor-core kernel fits when its shared memory does (any H_I and D_I otherwise).
bool sm80_fits(const Context& context, const IndexerProblem& problem);
Status launch_sm80(Context& context, const IndexerProblem& problem, int64_t row_begin, int64_t row_end, float* out,
                   int64_t out_row_stride, bool outside_windows, Stream stream);
Status launch_simple(Context& context, const IndexerProblem& problem, int64_t row_begin, int64_t row_end, float* out,
                     int64_t out_row_stride, bool outside_windows, Stream stream);

}  // namespace dsa::cuda::indexer
