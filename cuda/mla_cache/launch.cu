// CUDA writer of the MLA FP8 cache (DSA_SPEC 7.2): byte for byte what the CPU writer stores.
// A block settles which of its 256 tokens reach the cache (valid slot, last token of its slot),
// then one warp per kept token writes its 656-byte entry: each lane quantises elements
// lane + 32 j of the four 128-wide groups (amax by warp shuffles), lane g < 4 stores group g's
// scale, and the lanes convert k_pe to bf16. Entries have free strides, so stores are bytes.
#include "../../core/ops/mla_cache.hpp"
#include "../common/last_writer.cuh"
#include "../common/runtime.cuh"

namespace dsa::cuda {
namespace {

constexpr int kPerLane = static_cast<int>(kMlaGroupSize / 32);
static_assert(kMlaGroupSize % 32 == 0 && kMlaRopeDim % 32 == 0, "lanes split groups and k_pe evenly");

DSA_HOST_DEVICE uint16_t rope_bits(float value) { return float_to_bf16(value); }
DSA_HOST_DEVICE uint16_t rope_bits(bf16_t value) { return value.bits; }

template <typename T>
__global__ void __launch_bounds__(kWriterThreads) mla_cache_write_kernel(MlaCacheWriteProblem p) {
    __shared__ int64_t chunk[kWriterThreads];
    __shared__ bool keep[kWriterThreads];
    const int64_t first = static_cast<int64_t>(blockIdx.x) * kWriterThreads;
    const int64_t* slots = p.slot_mapping.as<const int64_t>();
    mark_last_writers<kWriterThreads>(slots, p.slot_mapping.strides[0], p.tokens, p.num_slots, first, chunk, keep);
    const int lane = threadIdx.x % 32;
    for (int i = threadIdx.x / 32; i < kWriterThreads; i += kWriterThreads / 32) {
        if (!keep[i]) continue;
        const int64_t token = first + i;
        const int64_t slot = slots[token * p.slot_mapping.strides[0]];
        uint8_t* entry = p.entry(slot);
        const T* c_kv = p.c_kv.as<const T>() + token * p.c_kv.strides[0];
        for (int group = 0; group < kMlaGroups; ++group) {
            float x[kPerLane];
            float amax = 0.0f;
#pragma unroll
            for (int j = 0; j < kPerLane; ++j) {
                x[j] = to_float(c_kv[group * kMlaGroupSize + lane + 32 * j]);
                const float magnitude = fabsf(x[j]);
                amax = magnitude <= 3.402823466e38f && magnitude > amax ? magnitude : amax;  // skips NaN and Inf
            }
            for (int offset = 16; offset > 0; offset /= 2)
                amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
            const float scale = fp8_group_scale(amax > kMlaAmaxFloor ? amax : kMlaAmaxFloor, true);
#pragma unroll
            for (int j = 0; j < kPerLane; ++j)
                entry[group * kMlaGroupSize + lane + 32 * j] = quantize_e4m3(x[j], scale);
            if (lane == group) store_bytes(entry + kMlaScaleOffset + 4 * group, &scale, 4);
        }
        const T* k_pe = p.k_pe.as<const T>() + token * p.k_pe.strides[0];
        for (int i_rope = lane; i_rope < kMlaRopeDim; i_rope += 32) {
            const uint16_t bits = rope_bits(k_pe[i_rope]);
            store_bytes(entry + kMlaRopeOffset + 2 * i_rope, &bits, 2);
        }
    }
}

}  // namespace

Status mla_cache_write(Context& context, const MlaCacheWriteProblem& problem, Stream stream) {
    const auto kernel =
        problem.c_kv.dtype == DType::bf16 ? mla_cache_write_kernel<bf16_t> : mla_cache_write_kernel<float>;
    return launch_writer(context, kernel, problem, problem.tokens, stream, "c_kv", "mla_cache_write kernel launch");
}

}  // namespace dsa::cuda
