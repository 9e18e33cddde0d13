// CPU writer of the MLA FP8 cache: each token's entry is quantised and written by one chunk.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "../ops/mla_cache.hpp"
#include "isa.hpp"

namespace dsa::cpu {
namespace {

template <typename T>
inline __attribute__((always_inline)) void write_entry_impl(const T* c_kv, const T* k_pe, uint8_t* entry) {
    for (int64_t group = 0; group < kMlaGroups; ++group) {
        const T* x = c_kv + group * kMlaGroupSize;
        float amax = 0.0f;
        for (int64_t i = 0; i < kMlaGroupSize; ++i) {
            const float magnitude = std::fabs(to_float(x[i]));
            amax = magnitude <= FLT_MAX && magnitude > amax ? magnitude : amax;  // skips NaN and Inf
        }
        const float scale = fp8_group_scale(amax > kMlaAmaxFloor ? amax : kMlaAmaxFloor, true);
        for (int64_t i = 0; i < kMlaGroupSize; ++i) entry[group * kMlaGroupSize + i] = quantize_e4m3(to_float(x[i]), scale);
        std::memcpy(entry + kMlaScaleOffset + 4 * group, &scale, 4);
    }
    uint16_t rope[kMlaRopeDim];
    for (int64_t i = 0; i < kMlaRopeDim; ++i) {
        if constexpr (sizeof(T) == 4) {
            rope[i] = float_to_bf16(k_pe[i]);
        } else {
            rope[i] = k_pe[i].bits;
        }
    }
    std::memcpy(entry + kMlaRopeOffset, rope, sizeof rope);
}

DSA_CPU_MULTIVERSION void write_entry(const float* c_kv, const float* k_pe, uint8_t* entry) {
    write_entry_impl(c_kv, k_pe, entry);
}
DSA_CPU_MULTIVERSION void write_entry(const bf16_t* c_kv, const bf16_t* k_pe, uint8_t* entry) {
    write_entry_impl(c_kv, k_pe, entry);
}

template <typename T>
void write_tokens(Context& context, const MlaCacheWriteProblem& p, const std::vector<int64_t>& tokens,
                  const std::vector<int64_t>& slots) {
    context.pool().parallel_for(static_cast<int64_t>(tokens.size()), 64, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
            const int64_t t = tokens[i];
            write_entry(p.c_kv.as<const T>() + t * p.c_kv.strides[0], p.k_pe.as<const T>() + t * p.k_pe.strides[0],
                        p.entry(slots[i]));
        }
    });
}

}  // namespace

void mla_cache_write(Context& context, const MlaCacheWriteProblem& p) {
    // The tokens that reach the cache: valid slots, and of several tokens sharing a slot only the
    // last, so no two chunks write one entry and the result is that of writing in token order.
    std::vector<std::pair<int64_t, int64_t>> by_slot;  // (slot, token)
    by_slot.reserve(static_cast<size_t>(p.tokens));
    const int64_t* mapping = p.slot_mapping.as<const int64_t>();
    for (int64_t t = 0; t < p.tokens; ++t) {
        const int64_t slot = mapping[t * p.slot_mapping.strides[0]];
        if (slot >= 0 && slot < p.num_slots) by_slot.emplace_back(slot, t);
    }
    std::sort(by_slot.begin(), by_slot.end());
    std::vector<int64_t> tokens, slots;
    tokens.reserve(by_slot.size());
    slots.reserve(by_slot.size());
    for (size_t i = 0; i < by_slot.size(); ++i) {
        if (i + 1 < by_slot.size() && by_slot[i + 1].first == by_slot[i].first) continue;
        slots.push_back(by_slot[i].first);
        tokens.push_back(by_slot[i].second);
    }
    if (p.c_kv.dtype == DType::bf16) return write_tokens<bf16_t>(context, p, tokens, slots);
    write_tokens<float>(context, p, tokens, slots);
}

}  // namespace dsa::cpu
