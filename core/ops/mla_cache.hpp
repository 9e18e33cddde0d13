// The MLA FP8 KV cache (DSA_SPEC section 7.2): the 656-byte entry layout shared by the cache
// writer and the attention that reads it, and the writer op itself.
#pragma once

#include "../context.hpp"

namespace dsa {

// One entry: 512 e4m3 codes of c_kv (4 groups of 128), 4 f32 group scales, 64 bf16 of k_pe.
inline constexpr int64_t kMlaLatentDim = 512;
inline constexpr int64_t kMlaRopeDim = 64;
inline constexpr int64_t kMlaGroupSize = 128;
inline constexpr int64_t kMlaGroups = kMlaLatentDim / kMlaGroupSize;
inline constexpr int64_t kMlaScaleOffset = kMlaLatentDim;                     // bytes 512..527
inline constexpr int64_t kMlaRopeOffset = kMlaScaleOffset + 4 * kMlaGroups;  // bytes 528..655
inline constexpr int64_t kMlaEntryBytes = kMlaRopeOffset + 2 * kMlaRopeDim;  // 656
inline constexpr float kMlaAmaxFloor = 1e-4f;

// c_kv [T, 512] and k_pe [T, 64] (both f32 or both bf16), slot_mapping i64 [T], the cache
// U8 [num_pages, page_size, 656].
struct MlaCacheWriteProblem {
    TensorView c_kv;
    TensorView k_pe;
    TensorView slot_mapping;
    TensorView cache;
    int64_t tokens = 0;
    int64_t page_size = 0;
    int64_t num_slots = 0;  // num_pages * page_size: valid slots are [0, num_slots)

    // The entry a valid slot addresses.
    DSA_HOST_DEVICE uint8_t* entry(int64_t slot) const {
        return cache.as<uint8_t>() + (slot / page_size) * cache.strides[0] + (slot % page_size) * cache.strides[1];
    }
};

Status mla_cache_write(Context& context, const TensorView* c_kv, const TensorView* k_pe,
                       const TensorView* slot_mapping, const TensorView* kv_cache, Stream stream);

namespace cpu {
void mla_cache_write(Context& context, const MlaCacheWriteProblem& problem);
}
namespace cuda {
Status mla_cache_write(Context& context, const MlaCacheWriteProblem& problem, Stream stream);
}
namespace reference {
// Scalar oracle for tests: token by token in order, byte by byte from DSA_SPEC 2 and 7.2.
void mla_cache_write(const MlaCacheWriteProblem& problem);
}

}  // namespace dsa
