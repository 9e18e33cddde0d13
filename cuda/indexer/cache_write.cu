// CUDA writer of the paged indexer key cache (DSA_SPEC 7.1): byte for byte what the CPU writer
// stores. A block settles which of its 256 tokens reach the cache (valid slot, last token of
// its slot), then one warp per kept token quantises it with the shared codec of
// core/numeric.hpp (one group of D_I, ue8m0 scale, floor 1e-4) and scatters codes and scale.
#include "../../core/ops/indexer.hpp"
#include "../common/last_writer.cuh"
#include "../common/runtime.cuh"

namespace dsa::cuda {
namespace {

constexpr float kAmaxFloor = 1e-4f;  // dsa_indexer_cache_write's floor (dsa.h)

template <typename T>
__global__ void __launch_bounds__(kWriterThreads) indexer_cache_write_kernel(IndexerCacheWriteProblem p) {
    __shared__ int64_t chunk[kWriterThreads];
    __shared__ bool keep[kWriterThreads];
    const int64_t first = static_cast<int64_t>(blockIdx.x) * kWriterThreads;
    const int64_t* slots = p.slot_mapping.as<const int64_t>();
    mark_last_writers<kWriterThreads>(slots, p.slot_mapping.strides[0], p.tokens, p.num_pages * kIndexerPageTokens,
                                      first, chunk, keep);
    const int lane = threadIdx.x % 32;
    for (int i = threadIdx.x / 32; i < kWriterThreads; i += kWriterThreads / 32) {
        if (!keep[i]) continue;
        const int64_t token = first + i;
        const T* x = p.k.as<const T>() + token * p.k.strides[0];
        float amax = 0.0f;
        for (int64_t d = lane; d < p.dim; d += 32) {
            const float magnitude = fabsf(to_float(x[d]));
            amax = magnitude <= 3.402823466e38f && magnitude > amax ? magnitude : amax;  // skips NaN and Inf
        }
        for (int offset = 16; offset > 0; offset /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
        const float scale = fp8_group_scale(amax > kAmaxFloor ? amax : kAmaxFloor, true);
        const int64_t slot = slots[token * p.slot_mapping.strides[0]];
        uint8_t* page = p.k_cache.as<uint8_t>() + (slot / kIndexerPageTokens) * p.k_cache.strides[0];
        const int64_t row = slot % kIndexerPageTokens;
        for (int64_t d = lane; d < p.dim; d += 32) page[row * p.dim + d] = quantize_e4m3(to_float(x[d]), scale);
        if (lane == 0) store_bytes(page + kIndexerPageTokens * p.dim + 4 * row, &scale, 4);
    }
}

}  // namespace

Status indexer_cache_write(Context& context, const IndexerCacheWriteProblem& problem, Stream stream) {
    const auto kernel =
        problem.k.dtype == DType::bf16 ? indexer_cache_write_kernel<bf16_t> : indexer_cache_write_kernel<float>;
    return launch_writer(context, kernel, problem, problem.tokens, stream, "k", "indexer_cache_write kernel launch");
}

}  // namespace dsa::cuda
