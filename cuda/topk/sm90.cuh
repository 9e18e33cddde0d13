// CUDA top-k on Hopper: one thread-block cluster per row. The row's window is cut into one chunk
// per block and read from global memory ONCE, into shared memory as preference keys; each radix
// pass histograms the resident keys and sums the blocks' histograms through distributed shared
// memory, so every block derives the same threshold; the final pass ranks the ties at the
// threshold, and then the outputs, in index order across warps and blocks with two cluster-wide
// prefix counts. The set is exactly topk_kernel's (launch.cu): same keys, same tie rule; the
// output is in ascending index order.
#pragma once

#include <cooperative_groups.h>

#include "rows.cuh"

namespace dsa::cuda {

constexpr int kClusterTopkThreads = 512;
constexpr int kClusterTopkWarps = kClusterTopkThreads / 32;
constexpr int kClusterTopkLoads = 8;       // independent global loads in flight per thread
constexpr int kMaxTopkClusterBlocks = 16;  // Hopper's non-portable cluster size limit

struct ClusterTopkShared {
    unsigned int warp_histograms[kClusterTopkWarps][256];
    unsigned int block_histogram[2][256];      // this block's counts, read by the cluster (by pass parity)
    unsigned int histogram[256];               // the cluster's counts in the current pass
    long long warp_counts[kClusterTopkWarps];  // per-warp counts, then their exclusive prefix
    long long published[2];                    // this block's [ties at the threshold, selected tokens]
    long long block_before;                    // the published count of the blocks before this one
    long long cluster_total;                   // the published count of the whole cluster
    uint32_t prefix;                           // the key bits fixed so far
    long long remaining;                       // keys matching the prefix still needed
    bool select_all;                           // every competing key fits in k: no threshold
};

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900

// Warp 0: the bin of this pass's cluster histogram where the remaining count is reached,
// scanning from the top bin down (lane l owns bins 255 - 8l .. 248 - 8l). Equal to the serial
// scan of topk_kernel: the first bin whose inclusive count reaches `remaining`, else bin 0.
__device__ inline void choose_threshold_bin(ClusterTopkShared& s, int shift, uint32_t prefix, bool first_pass,
                                            long long need) {
    const int lane = threadIdx.x % 32;
    unsigned int counts[8];
    long long lane_total = 0;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
        counts[j] = s.histogram[255 - 8 * lane - j];
        lane_total += counts[j];
    }
    long long inclusive = lane_total;
#pragma unroll
    for (int offset = 1; offset < 32; offset *= 2) {
        const long long below = __shfl_up_sync(0xffffffffu, inclusive, offset);
        if (lane >= offset) inclusive += below;
    }
    const long long total = __shfl_sync(0xffffffffu, inclusive, 31);
    const long long remaining = s.remaining;
    const unsigned int reached = __ballot_sync(0xffffffffu, inclusive >= remaining);
    const int owner = reached != 0 ? __ffs(reached) - 1 : 31;
    if (lane == owner) {
        long long before = inclusive - lane_total;
        int j = 0;
        for (; j < 7 && before + counts[j] < remaining; ++j) before += counts[j];
        s.remaining = remaining - before;
        s.prefix = prefix | (static_cast<uint32_t>(255 - 8 * lane - j) << shift);
        if (first_pass) s.select_all = total <= need;
    }
}

// Every thread: after the cluster barrier that published s.published[slot] everywhere, warp 0
// sums the blocks' values (lane b reads block b) into s.block_before (blocks below this one) and
// s.cluster_total; a block barrier makes them visible.
__device__ inline void cluster_prefix(cooperative_groups::cluster_group& cluster, ClusterTopkShared& s, int slot) {
    if (threadIdx.x < 32) {
        const unsigned int lane = threadIdx.x;
        const long long value =
            lane < cluster.num_blocks() ? cluster.map_shared_rank(&s.published[slot], lane)[0] : 0;
        long long below = lane < cluster.block_rank() ? value : 0;
        long long total = value;
#pragma unroll
        for (int offset = 16; offset > 0; offset /= 2) {
            below += __shfl_xor_sync(0xffffffffu, below, offset);
            total += __shfl_xor_sync(0xffffffffu, total, offset);
        }
        if (lane == 0) {
            s.block_before = below;
            s.cluster_total = total;
        }
    }
    __syncthreads();
}

// Thread 0: s.warp_counts becomes its exclusive prefix and s.published[slot] the block's total.
__device__ inline void publish_warp_counts(ClusterTopkShared& s, int slot) {
    __syncthreads();
    if (threadIdx.x == 0) {
        long long running = 0;
        for (int w = 0; w < kClusterTopkWarps; ++w) {
            const long long count = s.warp_counts[w];
            s.warp_counts[w] = running;
            running += count;
        }
        s.published[slot] = running;
    }
}

#endif

// Grid: rows * cluster blocks in x, cluster (blocks, 1, 1); dynamic shared memory holds
// ceil(n / blocks) keys.
__global__ void __launch_bounds__(kClusterTopkThreads) topk_cluster_kernel(TopkRows p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    namespace cg = cooperative_groups;
    cg::cluster_group cluster = cg::this_cluster();
    const unsigned int blocks = cluster.num_blocks();
    const unsigned int rank = cluster.block_rank();
    extern __shared__ uint32_t keys[];  // the chunk's competing keys: 0 for forced and NaN tokens
    __shared__ ClusterTopkShared s;

    const int64_t row = blockIdx.x / blocks;
    const TopkRow described = describe_topk_row(p, row);
    const TopkWindow window = described.window;
    const int64_t chunk = (window.end - window.begin + blocks - 1) / blocks;
    const int64_t chunk_begin = min(window.begin + rank * chunk, window.end);
    const int length = static_cast<int>(min(chunk_begin + chunk, window.end) - chunk_begin);
    const float* scores = p.scores + row * p.score_row_stride;
    const int warp = threadIdx.x / 32;
    const int lane = threadIdx.x % 32;

    for (int base = 0; base < length; base += kClusterTopkThreads * kClusterTopkLoads) {
        uint32_t loaded[kClusterTopkLoads];
#pragma unroll
        for (int j = 0; j < kClusterTopkLoads; ++j) {
            const int i = base + j * kClusterTopkThreads + threadIdx.x;
            const int64_t token = chunk_begin + i;
            loaded[j] = i < length && !described.forced.contains(token) ? topk_key_at(scores, token) : 0u;
        }
#pragma unroll
        for (int j = 0; j < kClusterTopkLoads; ++j) {
            const int i = base + j * kClusterTopkThreads + threadIdx.x;
            if (i < length) keys[i] = loaded[j];
        }
    }
    if (threadIdx.x == 0) {
        s.prefix = 0;
        s.remaining = described.need;
        s.select_all = false;
    }

    // Radix select, 8 bits a pass from the top, over the cluster's resident keys.
    bool radix_select = true;
    for (int pass = 0, shift = 24; shift >= 0; ++pass, shift -= 8) {
        for (int i = threadIdx.x; i < kClusterTopkWarps * 256; i += kClusterTopkThreads)
            (&s.warp_histograms[0][0])[i] = 0;
        __syncthreads();
        const uint32_t prefix = s.prefix;
        const uint32_t high_mask = shift == 24 ? 0u : ~0u << (shift + 8);
        for (int i = threadIdx.x; i < length; i += kClusterTopkThreads) {
            const uint32_t key = keys[i];
            if (key != 0 && (key & high_mask) == prefix) atomicAdd(&s.warp_histograms[warp][(key >> shift) & 255u], 1u);
        }
        __syncthreads();
        // Double-buffered by pass: a block may still read this block's previous histogram
        // while this one is written (it cannot lag by two passes: each pass has a cluster barrier).
        unsigned int* published = s.block_histogram[pass & 1];
        for (int bin = threadIdx.x; bin < 256; bin += kClusterTopkThreads) {
            unsigned int total = 0;
            for (int w = 0; w < kClusterTopkWarps; ++w) total += s.warp_histograms[w][bin];
            published[bin] = total;
        }
        cluster.sync();
        for (int bin = threadIdx.x; bin < 256; bin += kClusterTopkThreads) {
            unsigned int total = 0;
            for (unsigned int b = 0; b < blocks; ++b) total += cluster.map_shared_rank(published, b)[bin];
            s.histogram[bin] = total;
        }
        __syncthreads();
        if (warp == 0) choose_threshold_bin(s, shift, prefix, pass == 0, described.need);
        __syncthreads();
        if (s.select_all) {  // the same in every block: they all leave after the same pass
            radix_select = false;
            break;
        }
    }
    const uint32_t threshold = s.prefix;
    const long long tie_quota = radix_select ? s.remaining : 0;  // keys equal to threshold to take
    const uint32_t strict_threshold = radix_select ? threshold : 0u;  // keys above it are kept

    // Each warp owns a contiguous 32-aligned segment of the chunk, so index-order ranks are
    // ballots inside a warp plus exclusive counts over warps and then over blocks.
    const int segment = (length + kClusterTopkWarps * 32 - 1) / (kClusterTopkWarps * 32) * 32;
    const int segment_begin = min(warp * segment, length);
    const int segment_end = min(segment_begin + segment, length);
    const unsigned int lanes_below = (1u << lane) - 1u;

    long long ties = 0;
    if (tie_quota > 0)
        for (int base = segment_begin; base < segment_end; base += 32) {
            const int i = base + lane;
            ties += __popc(__ballot_sync(0xffffffffu, i < segment_end && keys[i] == threshold));
        }
    if (lane == 0) s.warp_counts[warp] = ties;
    publish_warp_counts(s, 0);
    cluster.sync();
    cluster_prefix(cluster, s, 0);

    long long ties_before = s.block_before + s.warp_counts[warp];
    long long chosen_count = 0;
    for (int base = segment_begin; base < segment_end; base += 32) {
        const int i = base + lane;
        const bool inside = i < segment_end;
        const uint32_t key = inside ? keys[i] : 0u;
        const bool tie = inside && tie_quota > 0 && key == threshold;
        const unsigned int tie_mask = __ballot_sync(0xffffffffu, tie);
        const bool chosen = inside && (described.forced.contains(chunk_begin + i) || key > strict_threshold ||
                                       (tie && ties_before + __popc(tie_mask & lanes_below) < tie_quota));
        ties_before += __popc(tie_mask);
        chosen_count += __popc(__ballot_sync(0xffffffffu, chosen));
        if (inside) keys[i] = chosen;  // the keys are spent: keep the decision for the write pass
    }
    if (lane == 0) s.warp_counts[warp] = chosen_count;
    publish_warp_counts(s, 1);
    cluster.sync();
    cluster_prefix(cluster, s, 1);

    int32_t* out = p.indices + row * p.index_row_stride;
    long long position = s.block_before + s.warp_counts[warp];
    for (int base = segment_begin; base < segment_end; base += 32) {
        const int i = base + lane;
        const bool chosen = i < segment_end && keys[i] != 0;
        const unsigned int chosen_mask = __ballot_sync(0xffffffffu, chosen);
        if (chosen) out[position + __popc(chosen_mask & lanes_below)] = topk_output(p, row, chunk_begin + i);
        position += __popc(chosen_mask);
    }
    for (int64_t i = s.cluster_total + rank * kClusterTopkThreads + threadIdx.x; i < p.k;
         i += static_cast<int64_t>(blocks) * kClusterTopkThreads)
        out[i] = -1;
    cluster.sync();  // no block leaves while another may still read its shared memory
#else
    (void)p;
#endif
}

}  // namespace dsa::cuda
