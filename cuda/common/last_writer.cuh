// The cache writers' rule for a slot named by several tokens: the last token (largest index)
// is what the slot holds, as on the CPU. The writers get no scratch memory, so each token asks
// whether any later token names its slot: T^2 / 2 comparisons of int64 slots, read in chunks
// through shared memory (about 0.1 ms for 64K tokens on an H100-class GPU; decode writes a few
// hundred tokens).
#pragma once

#include <cstdint>

#include "runtime.cuh"

namespace dsa::cuda {

// Threads (= tokens) per block of a cache writer.
inline constexpr int kWriterThreads = 256;

// For token first + threadIdx.x of a block of kThreads threads: keep[threadIdx.x] is whether
// its slot lies in [0, num_slots) and no later token of [0, tokens) names that slot. chunk and
// keep are shared arrays of kThreads entries. Every thread of the block must call it.
template <int kThreads>
__device__ void mark_last_writers(const int64_t* slot_mapping, int64_t stride, int64_t tokens, int64_t num_slots,
                                  int64_t first, int64_t* chunk, bool* keep) {
    const int64_t token = first + threadIdx.x;
    const int64_t slot = token < tokens ? slot_mapping[token * stride] : -1;
    bool alive = slot >= 0 && slot < num_slots;
    for (int64_t base = first + 1; base < tokens; base += kThreads) {
        if (!__syncthreads_or(alive)) break;  // every token of the block is settled
        const int64_t later = base + threadIdx.x;
        chunk[threadIdx.x] = later < tokens ? slot_mapping[later * stride] : -1;
        __syncthreads();
        if (alive) {
            const int64_t count = tokens - base < kThreads ? tokens - base : kThreads;
            for (int64_t i = token >= base ? token - base + 1 : 0; i < count; ++i)
                if (chunk[i] == slot) {
                    alive = false;
                    break;
                }
        }
        __syncthreads();  // the chunk is overwritten next
    }
    keep[threadIdx.x] = alive;
    __syncthreads();
}

// Stores `count` bytes at a destination of any alignment (cache entries have free strides).
__device__ inline void store_bytes(uint8_t* destination, const void* source, int count) {
    const uint8_t* bytes = static_cast<const uint8_t*>(source);
    for (int i = 0; i < count; ++i) destination[i] = bytes[i];
}

// Launches a cache writer's kernel over `tokens` tokens, kWriterThreads per block.
template <typename Problem>
Status launch_writer(Context& context, void (*kernel)(Problem), const Problem& problem, int64_t tokens,
                     Stream stream, const char* tokens_name, const char* what) {
    DeviceScope scope(context.device_id());
    DSA_TRY(scope.status());
    const int64_t blocks = ceil_div(tokens, kWriterThreads);
    if (blocks > 0x7fffffff)
        return {StatusCode::shape_mismatch, std::string(tokens_name) + ": more than 2^31 * 256 tokens"};
    kernel<<<static_cast<unsigned>(blocks), kWriterThreads, 0, stream>>>(problem);
    return launch_status(what);
}

}  // namespace dsa::cuda
