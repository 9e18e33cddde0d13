// CUDA top-k: one block per row. Radix select on the preference key (4 passes of 8 bits, shared
// histograms) finds the k-th best key T exactly; a final pass in index order keeps every key above
// T and the first (in index order) keys equal to T, so the set follows the tie rule with no
// dependence on timing or atomics. Output is then in ascending index order (what
// DSA_TOPK_ORDER_UNSPECIFIED and DSA_TOPK_ORDER_INDEX return), sorted by score on request.
#include <cub/block/block_scan.cuh>

#include "../../core/ops/topk.hpp"
#include "../common/runtime.cuh"

namespace dsa::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kItemsPerThread = 8;
constexpr int kLoadsInFlight = 8;  // per thread in the histogram passes  // a scan tile covers kThreads * kItemsPerThread tokens
constexpr int64_t kSortCapacity = 16384;  // DSA_TOPK_ORDER_SCORE sorts up to this many in shared memory

struct TopkRows {
    const float* scores;
    int64_t score_row_stride;
    int64_t n;
    const int32_t* row_starts;  // NULL: 0
    int64_t row_starts_stride;
    const int32_t* row_ends;    // NULL: n
    int64_t row_ends_stride;
    const int32_t* block_table;  // NULL: no translation
    int64_t table_row_stride;
    int64_t table_page_stride;
    int64_t max_pages;
    int64_t rows_per_table_row;
    int32_t* indices;
    int64_t index_row_stride;
    int64_t k;
    int64_t n_sink;
    int64_t n_local;
    int64_t page_size;
    TopkOrder order;
};

// The tokens of the window that are kept whatever their score: [begin, sink_end) and
// [local_begin, end).
struct ForcedTokens {
    int64_t sink_end;
    int64_t local_begin;
    __device__ bool contains(int64_t token) const { return token < sink_end || token >= local_begin; }
    __device__ int64_t count(const TopkWindow& window) const {
        return (sink_end - window.begin) + (window.end - (local_begin > sink_end ? local_begin : sink_end));
    }
};

// The block's shared state for one row.
struct SelectState {
    unsigned int histogram[256];
    unsigned long long prefix;  // the key bits fixed so far
    long long remaining;        // how many of the keys matching the prefix are still needed
    bool select_all;            // every selectable key fits in k: no threshold
};

__device__ uint32_t key_at(const float* row, int64_t token) { return topk_preference_key(__ldg(row + token)); }

__global__ void __launch_bounds__(kThreads) topk_kernel(TopkRows p) {
    using BlockScan = cub::BlockScan<int, kThreads>;
    __shared__ typename BlockScan::TempStorage scan_storage;
    __shared__ SelectState state;
    __shared__ unsigned int warp_histograms[kWarps][256];
    __shared__ long long running[2];  // equal keys taken so far, outputs written so far

    const int64_t row = blockIdx.x;
    const float* scores = p.scores + row * p.score_row_stride;
    const int64_t start = p.row_starts ? p.row_starts[row * p.row_starts_stride] : 0;
    const int64_t end = p.row_ends ? p.row_ends[row * p.row_ends_stride] : p.n;
    const TopkWindow window = clamp_topk_window(start, end, p.n);
    const int64_t length = window.end - window.begin;
    ForcedTokens forced;
    forced.sink_end = window.begin + (p.n_sink < length ? p.n_sink : length);
    forced.local_begin = window.end - (p.n_local < length ? p.n_local : length);
    const int64_t need = p.k - forced.count(window);  // >= 0: n_sink + n_local <= k

    // Radix select on the non-forced, non-NaN keys, 8 bits a pass from the top. Each warp
    // counts into its own histogram (keys of similar magnitude share their top bits, and one
    // shared histogram would serialise on a few bins), then the warps' counts are summed.
    // The first pass also counts every selectable key: if they all fit, no threshold is needed.
    if (threadIdx.x == 0) {
        state.prefix = 0;
        state.remaining = need;
    }
    const int warp = threadIdx.x / 32;
    bool radix_select = true;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = threadIdx.x; i < kWarps * 256; i += kThreads) (&warp_histograms[0][0])[i] = 0;
        __syncthreads();
        const uint32_t prefix = static_cast<uint32_t>(state.prefix);
        const uint32_t high_mask = shift == 24 ? 0u : ~0u << (shift + 8);
        // kLoadsInFlight independent loads per thread before any is used: one SM reads the
        // whole row, so the pass is bound by how many loads are outstanding.
        for (int64_t base = window.begin; base < window.end; base += kThreads * kLoadsInFlight) {
            uint32_t keys[kLoadsInFlight];
#pragma unroll
            for (int i = 0; i < kLoadsInFlight; ++i) {
                const int64_t token = base + i * kThreads + threadIdx.x;
                keys[i] = token < window.end && !forced.contains(token) ? key_at(scores, token) : 0u;
            }
#pragma unroll
            for (int i = 0; i < kLoadsInFlight; ++i)
                if (keys[i] != 0 && (keys[i] & high_mask) == prefix)
                    atomicAdd(&warp_histograms[warp][(keys[i] >> shift) & 255u], 1u);
        }
        __syncthreads();
        for (int bin = threadIdx.x; bin < 256; bin += kThreads) {
            unsigned int total = 0;
            for (int w = 0; w < kWarps; ++w) total += warp_histograms[w][bin];
            state.histogram[bin] = total;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            if (shift == 24) {
                long long valid = 0;
                for (int bin = 0; bin < 256; ++bin) valid += state.histogram[bin];
                state.select_all = valid <= need;
            }
            // From the top bin down: the bin where the remaining count is reached.
            long long remaining = state.remaining;
            int bin = 255;
            for (; bin > 0 && static_cast<long long>(state.histogram[bin]) < remaining; --bin)
                remaining -= state.histogram[bin];
            state.remaining = remaining;
            state.prefix = prefix | (static_cast<uint32_t>(bin) << shift);
        }
        __syncthreads();
        if (state.select_all) {
            radix_select = false;
            break;
        }
    }
    const uint32_t threshold = static_cast<uint32_t>(state.prefix);  // ties at it are taken by index
    // Equal-to-threshold keys to take (in index order); with no radix select, every valid key.
    const long long equal_quota = radix_select ? state.remaining : 0;
    const uint32_t strict_threshold = radix_select ? threshold : 0;  // keys above this are always kept

    if (threadIdx.x == 0) running[0] = running[1] = 0;
    __syncthreads();
    int32_t* out = p.indices + row * p.index_row_stride;
    constexpr int64_t tile = static_cast<int64_t>(kThreads) * kItemsPerThread;
    for (int64_t tile_begin = window.begin; tile_begin < window.end; tile_begin += tile) {
        int equal[kItemsPerThread], chosen[kItemsPerThread];
        uint32_t keys[kItemsPerThread];
        const int64_t first = tile_begin + static_cast<int64_t>(threadIdx.x) * kItemsPerThread;
#pragma unroll
        for (int i = 0; i < kItemsPerThread; ++i) {
            const int64_t token = first + i;
            const bool inside = token < window.end;
            keys[i] = inside ? key_at(scores, token) : 0u;
            equal[i] = inside && !forced.contains(token) && equal_quota > 0 && keys[i] == threshold;
        }
        int equal_total = 0;
        BlockScan(scan_storage).ExclusiveSum(equal, equal, equal_total);
        __syncthreads();
        const long long equal_before = running[0];
#pragma unroll
        for (int i = 0; i < kItemsPerThread; ++i) {
            const int64_t token = first + i;
            const bool inside = token < window.end;
            const bool is_forced = inside && forced.contains(token);
            const bool is_equal = inside && !is_forced && equal_quota > 0 && keys[i] == threshold;
            chosen[i] = is_forced || (inside && keys[i] > strict_threshold) ||
                        (is_equal && equal_before + equal[i] < equal_quota);
        }
        int chosen_total = 0;
        int positions[kItemsPerThread];
        BlockScan(scan_storage).ExclusiveSum(chosen, positions, chosen_total);
        const long long written = running[1];
#pragma unroll
        for (int i = 0; i < kItemsPerThread; ++i)
            if (chosen[i]) out[written + positions[i]] = static_cast<int32_t>(first + i);
        __syncthreads();
        if (threadIdx.x == 0) {
            running[0] += equal_total;
            running[1] += chosen_total;
        }
        __syncthreads();
    }
    const int64_t selected = running[1];
    for (int64_t i = selected + threadIdx.x; i < p.k; i += kThreads) out[i] = -1;
    __syncthreads();

    if (p.order == TopkOrder::score && selected > 1) {
        // Rank sort in shared memory: composite key (preference desc, index asc) as one u64,
        // larger is better; bitonic sort on the next power of two.
        extern __shared__ unsigned long long sort_keys[];
        {
            int64_t size = 1;  // the launcher sized shared memory for this (<= kSortCapacity)
            while (size < selected) size *= 2;
            for (int64_t i = threadIdx.x; i < size; i += kThreads)
                sort_keys[i] = i < selected ? (static_cast<unsigned long long>(key_at(scores, out[i])) << 32) |
                                                  (0xffffffffu - static_cast<uint32_t>(out[i]))
                                            : 0ull;
            __syncthreads();
            for (int64_t width = 2; width <= size; width *= 2)
                for (int64_t stride = width / 2; stride > 0; stride /= 2) {
                    for (int64_t i = threadIdx.x; i < size; i += kThreads) {
                        const int64_t partner = i ^ stride;
                        if (partner > i) {
                            const bool descending = (i & width) == 0;
                            const unsigned long long a = sort_keys[i], b = sort_keys[partner];
                            if ((a < b) == descending) {
                                sort_keys[i] = b;
                                sort_keys[partner] = a;
                            }
                        }
                    }
                    __syncthreads();
                }
            for (int64_t i = threadIdx.x; i < selected; i += kThreads)
                out[i] = static_cast<int32_t>(0xffffffffu - static_cast<uint32_t>(sort_keys[i]));
        }
        __syncthreads();
    }
    if (p.block_table != nullptr) {
        const int32_t* table_row = p.block_table + (row / p.rows_per_table_row) * p.table_row_stride;
        for (int64_t i = threadIdx.x; i < selected; i += kThreads)
            out[i] = translate_topk_slot(out[i], table_row, p.table_page_stride, p.max_pages, p.page_size);
    }
}

}  // namespace

Status topk(Context& context, const TopkProblem& problem, Stream stream) {
    const TopkConfig& config = problem.config;
    // Score order sorts the selected tokens in shared memory: the next power of two of
    // min(k, N) composite keys.
    size_t sort_bytes = 0;
    if (config.order == TopkOrder::score) {
        const int64_t sorted = config.k < problem.n ? config.k : problem.n;
        if (sorted > kSortCapacity)
            return {StatusCode::unsupported, "params.order: score order on CUDA sorts at most " +
                                                 std::to_string(kSortCapacity) + " tokens per row (min(k, N) = " +
                                                 std::to_string(sorted) + "); use DSA_TOPK_ORDER_INDEX"};
        int64_t size = 1;
        while (size < sorted) size *= 2;
        sort_bytes = static_cast<size_t>(size) * sizeof(unsigned long long);
    }
    if (problem.rows > 0x7fffffff) return {StatusCode::shape_mismatch, "scores: more than 2^31 - 1 rows"};
    if (problem.n > 0x7fffffff)
        return {StatusCode::shape_mismatch, "scores: rows longer than 2^31 - 1 tokens cannot be indexed by int32"};
    DeviceScope scope(context.device_id());
    DSA_TRY(scope.status());
    DSA_TRY(runtime_status(cudaFuncSetAttribute(topk_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                static_cast<int>(sort_bytes)),
                           "cudaFuncSetAttribute(topk)"));
    TopkRows rows{};
    rows.scores = problem.scores.as<const float>();
    rows.score_row_stride = problem.scores.strides[0];
    rows.n = problem.n;
    if (problem.has_row_starts) {
        rows.row_starts = problem.row_starts.as<const int32_t>();
        rows.row_starts_stride = problem.row_starts.strides[0];
    }
    if (problem.has_row_ends) {
        rows.row_ends = problem.row_ends.as<const int32_t>();
        rows.row_ends_stride = problem.row_ends.strides[0];
    }
    if (problem.has_block_table) {
        rows.block_table = problem.block_table.as<const int32_t>();
        rows.table_row_stride = problem.block_table.strides[0];
        rows.table_page_stride = problem.block_table.strides[1];
        rows.max_pages = problem.max_pages;
        rows.rows_per_table_row = problem.rows / problem.block_rows;
    }
    rows.indices = problem.indices.as<int32_t>();
    rows.index_row_stride = problem.indices.strides[0];
    rows.k = config.k;
    rows.n_sink = config.n_sink;
    rows.n_local = config.n_local;
    rows.page_size = config.page_size;
    rows.order = config.order;
    topk_kernel<<<static_cast<unsigned>(problem.rows), kThreads, sort_bytes, stream>>>(rows);
    return launch_status("topk kernel launch");
}

}  // namespace dsa::cuda
