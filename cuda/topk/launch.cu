// CUDA top-k. On Hopper, one cluster of blocks per row with the row resident in shared memory
// (sm90.cuh); before Hopper, for score order and for rows too long for that, one block per row
// (below). Both: radix select on the preference key (4 passes of 8 bits) finds the k-th best key
// T exactly; a final pass in index order keeps every key above T and the first (in index order)
// keys equal to T, so the set follows the tie rule with no dependence on timing or atomics.
// Output is then in ascending index order (what DSA_TOPK_ORDER_UNSPECIFIED and
// DSA_TOPK_ORDER_INDEX return), sorted by score on request.
#include <cub/block/block_scan.cuh>

#include "../common/runtime.cuh"
#include "rows.cuh"
#include "sm90.cuh"

namespace dsa::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kItemsPerThread = 8;
constexpr int kLoadsInFlight = 8;  // per thread in the histogram passes  // a scan tile covers kThreads * kItemsPerThread tokens
constexpr int64_t kSortCapacity = 16384;  // DSA_TOPK_ORDER_SCORE sorts up to this many in shared memory

// The block's shared state for one row.
struct SelectState {
    unsigned int histogram[256];
    unsigned long long prefix;  // the key bits fixed so far
    long long remaining;        // how many of the keys matching the prefix are still needed
    bool select_all;            // every selectable key fits in k: no threshold
};

__global__ void __launch_bounds__(kThreads) topk_kernel(TopkRows p) {
    using BlockScan = cub::BlockScan<int, kThreads>;
    __shared__ typename BlockScan::TempStorage scan_storage;
    __shared__ SelectState state;
    __shared__ unsigned int warp_histograms[kWarps][256];
    __shared__ long long running[2];  // equal keys taken so far, outputs written so far

    const int64_t row = blockIdx.x;
    const float* scores = p.scores + row * p.score_row_stride;
    const TopkRow described = describe_topk_row(p, row);
    const TopkWindow window = described.window;
    const ForcedTokens forced = described.forced;
    const int64_t need = described.need;

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
                keys[i] = token < window.end && !forced.contains(token) ? topk_key_at(scores, token) : 0u;
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
            keys[i] = inside ? topk_key_at(scores, token) : 0u;
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
                sort_keys[i] = i < selected ? (static_cast<unsigned long long>(topk_key_at(scores, out[i])) << 32) |
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
    if (p.block_table != nullptr)
        for (int64_t i = threadIdx.x; i < selected; i += kThreads) out[i] = topk_output(p, row, out[i]);
}

constexpr int64_t kPreferredChunkKeys = 16384;  // 64 KB of keys: two or three blocks per SM
constexpr int64_t kMinChunkKeys = 2048;         // below this, more blocks per row only add barriers

// Dynamic shared memory of topk_cluster_kernel for rows of n tokens over `blocks` blocks.
size_t cluster_chunk_bytes(int64_t n, int blocks) {
    return static_cast<size_t>(ceil_div(n, blocks)) * sizeof(uint32_t);
}

// The launch of topk_cluster_kernel: `rows` clusters of `blocks` blocks.
void describe_cluster_launch(int64_t rows, int blocks, size_t chunk_bytes, Stream stream, cudaLaunchConfig_t* launch,
                             cudaLaunchAttribute* cluster) {
    cluster->id = cudaLaunchAttributeClusterDimension;
    cluster->val.clusterDim.x = static_cast<unsigned>(blocks);
    cluster->val.clusterDim.y = 1;
    cluster->val.clusterDim.z = 1;
    launch->gridDim = dim3(static_cast<unsigned>(rows * blocks));
    launch->blockDim = dim3(kClusterTopkThreads);
    launch->dynamicSmemBytes = chunk_bytes;
    launch->stream = stream;
    launch->attrs = cluster;
    launch->numAttrs = 1;
}

Status prepare_cluster_kernel(int blocks, size_t chunk_bytes) {
    DSA_TRY(runtime_status(cudaFuncSetAttribute(topk_cluster_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                static_cast<int>(chunk_bytes)),
                           "cudaFuncSetAttribute(topk cluster)"));
    if (blocks > 8)
        DSA_TRY(runtime_status(
            cudaFuncSetAttribute(topk_cluster_kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1),
            "cudaFuncSetAttribute(topk cluster size)"));
    return Status::success();
}

// Blocks per row for topk_cluster_kernel, or 0 where topk_kernel runs instead: before Hopper,
// for score order (which sorts in one block), and for rows whose chunks fit no cluster the GPU
// can co-schedule. Long rows, or too few rows to fill the GPU, get more blocks.
Status choose_cluster_blocks(const Context& context, const TopkProblem& problem, int* blocks) {
    *blocks = 0;
    if (problem.config.order == TopkOrder::score || context.properties().compute_major < 9) return Status::success();
    cudaFuncAttributes attributes{};
    DSA_TRY(runtime_status(cudaFuncGetAttributes(&attributes, topk_cluster_kernel), "cudaFuncGetAttributes(topk)"));
    if (attributes.binaryVersion < 90) return Status::success();  // built without Hopper code: an empty kernel
    const int64_t wanted_blocks = 2 * static_cast<int64_t>(context.properties().multiprocessor_count);
    int count = 1;
    while (count < kMaxTopkClusterBlocks &&
           (ceil_div(problem.n, count) > kPreferredChunkKeys ||
            (problem.rows * count < wanted_blocks && ceil_div(problem.n, 2 * count) >= kMinChunkKeys)))
        count *= 2;
    const int64_t shared_limit = context.properties().shared_memory_per_block_optin - attributes.sharedSizeBytes;
    // Portable cluster sizes (<= 8) always fit a GPC of a Hopper GPU; a larger one is halved
    // while the GPU cannot co-schedule it (and the halves' chunks still fit).
    for (; count >= 1 && static_cast<int64_t>(cluster_chunk_bytes(problem.n, count)) <= shared_limit &&
           problem.rows <= 0x7fffffff / count;
         count /= 2) {
        if (count <= 8) {
            *blocks = count;
            break;
        }
        cudaLaunchConfig_t launch{};
        cudaLaunchAttribute cluster{};
        describe_cluster_launch(problem.rows, count, cluster_chunk_bytes(problem.n, count), nullptr, &launch, &cluster);
        DSA_TRY(prepare_cluster_kernel(count, launch.dynamicSmemBytes));
        int clusters = 0;
        DSA_TRY(runtime_status(cudaOccupancyMaxActiveClusters(&clusters, topk_cluster_kernel, &launch),
                               "cudaOccupancyMaxActiveClusters(topk)"));
        if (clusters > 0) {
            *blocks = count;
            break;
        }
    }
    return Status::success();
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
    int cluster_blocks = 0;
    DSA_TRY(choose_cluster_blocks(context, problem, &cluster_blocks));
    if (cluster_blocks > 0) {
        cudaLaunchConfig_t launch{};
        cudaLaunchAttribute cluster{};
        describe_cluster_launch(problem.rows, cluster_blocks, cluster_chunk_bytes(problem.n, cluster_blocks), stream,
                                &launch, &cluster);
        DSA_TRY(prepare_cluster_kernel(cluster_blocks, launch.dynamicSmemBytes));
        return runtime_status(cudaLaunchKernelEx(&launch, topk_cluster_kernel, rows), "topk cluster kernel launch");
    }
    topk_kernel<<<static_cast<unsigned>(problem.rows), kThreads, sort_bytes, stream>>>(rows);
    return launch_status("topk kernel launch");
}

}  // namespace dsa::cuda
