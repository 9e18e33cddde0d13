// A small counter-based random source (SplitMix64): the same seed and stream give the same
// numbers on every machine, and streams are independent, so work can be split over threads.
#pragma once

#include <cmath>
#include <cstdint>

namespace stories {

class Random {
public:
    Random(uint64_t seed, uint64_t stream) : state_(mix(seed) ^ mix(stream + 0x632be59bd9b4e019ull)) {}

    uint64_t next() {
        state_ += 0x9e3779b97f4a7c15ull;
        return mix(state_);
    }
    // Uniform in [0, 1) with 53 random bits.
    double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
    // Standard normal (Box-Muller).
    double normal() {
        const double u = 1.0 - uniform(), v = uniform();
        return std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * v);
    }
    // Uniform integer in [0, n), n >= 1.
    uint64_t below(uint64_t n) { return static_cast<uint64_t>(uniform() * static_cast<double>(n)) % n; }

private:
    static uint64_t mix(uint64_t z) {
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    uint64_t state_;
};

}  // namespace stories
