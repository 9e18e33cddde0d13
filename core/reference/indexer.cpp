// Scalar oracles of the lightning indexer and its paged key cache, written from DSA_SPEC
// sections 4 and 7.1 and dsa.h's rules for out-of-range data, independently of the CPU kernels
// (own e4m3 decoding, own window clamping and byte addressing); tests only.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "../ops/indexer.hpp"

namespace dsa::reference {
namespace {

// The e4m3fn value of a code from the format's definition.
double e4m3_value(uint8_t code) {
    const double sign = (code & 0x80) ? -1.0 : 1.0;
    const int exponent = (code >> 3) & 15, mantissa = code & 7;
    if (exponent == 15 && mantissa == 7) return std::numeric_limits<double>::quiet_NaN();
    if (exponent == 0) return sign * std::ldexp(mantissa / 8.0, -6);
    return sign * std::ldexp(1.0 + mantissa / 8.0, exponent - 7);
}

int64_t clamp(int64_t value, int64_t low, int64_t high) { return value < low ? low : (value > high ? high : value); }

int32_t load_i32(const TensorView& t, int64_t i) { return t.as<const int32_t>()[i * t.strides[0]]; }

}  // namespace

void indexer_logits(const IndexerProblem& p) {
    const int64_t page_bytes_codes = kIndexerPageTokens * p.dim;  // codes of a page, then its scales
    std::vector<double> q(static_cast<size_t>(p.heads * p.dim)), k(static_cast<size_t>(p.dim));
    for (int64_t row = 0; row < p.rows; ++row) {
        const int64_t sequence = row / p.next_n, position = row % p.next_n;
        int64_t first, last;
        if (p.keys == IndexerKeys::contiguous) {
            first = clamp(load_i32(p.ks, row), 0, p.columns);
            last = clamp(load_i32(p.ke, row), 0, p.columns);
        } else {
            const int64_t table_tokens = p.max_pages > p.columns / kIndexerPageTokens ? p.columns
                                                                                      : p.max_pages * kIndexerPageTokens;
            const int64_t length = clamp(load_i32(p.context_lens, sequence), 0, table_tokens);
            first = 0;
            last = length - p.next_n + position + 1;
        }
        // q row: [heads, dim] codes, contiguous
        const uint8_t* q_codes =
            p.q.as<const uint8_t>() + (p.keys == IndexerKeys::contiguous
                                           ? row * p.q.strides[0]
                                           : sequence * p.q.strides[0] + position * p.q.strides[1]);
        for (int64_t i = 0; i < p.heads * p.dim; ++i) q[static_cast<size_t>(i)] = e4m3_value(q_codes[i]);
        float* out = p.logits.as<float>() + row * p.logits.strides[0];
        for (int64_t s = 0; s < p.columns; ++s) {
            float& result = out[s * p.logits.strides[1]];
            result = -std::numeric_limits<float>::infinity();
            if (s < first || s >= last) continue;
            const uint8_t* k_codes;
            float scale;
            if (p.keys == IndexerKeys::contiguous) {
                k_codes = p.k.as<const uint8_t>() + s * p.k.strides[0];
                scale = p.k_scale.as<const float>()[s * p.k_scale.strides[0]];
            } else {
                const int32_t entry = p.block_table.as<const int32_t>()[sequence * p.block_table.strides[0] +
                                                                         (s / kIndexerPageTokens) * p.block_table.strides[1]];
                if (entry < 0 || entry >= p.num_pages) continue;
                const uint8_t* page = p.k_cache.as<const uint8_t>() + entry * p.k_cache.strides[0];
                k_codes = page + (s % kIndexerPageTokens) * p.dim;
                std::memcpy(&scale, page + page_bytes_codes + 4 * (s % kIndexerPageTokens), 4);
            }
            for (int64_t d = 0; d < p.dim; ++d) k[static_cast<size_t>(d)] = e4m3_value(k_codes[d]);
            double total = 0.0;
            for (int64_t h = 0; h < p.heads; ++h) {
                double dot = 0.0;
                for (int64_t d = 0; d < p.dim; ++d) dot += q[static_cast<size_t>(h * p.dim + d)] * k[static_cast<size_t>(d)];
                const double relu = dot < 0.0 ? 0.0 : dot;  // NaN stays NaN
                total += static_cast<double>(p.weights.as<const float>()[row * p.weights.strides[0] +
                                                                          h * p.weights.strides[1]]) * relu;
            }
            result = static_cast<float>(static_cast<double>(scale) * total);
        }
    }
}

void indexer_cache_write(const IndexerCacheWriteProblem& p) {
    std::vector<float> x(static_cast<size_t>(p.dim));
    for (int64_t token = 0; token < p.tokens; ++token) {
        const int64_t slot = p.slot_mapping.as<const int64_t>()[token * p.slot_mapping.strides[0]];
        if (slot < 0 || slot >= p.num_pages * kIndexerPageTokens) continue;
        for (int64_t d = 0; d < p.dim; ++d) {
            const int64_t offset = token * p.k.strides[0] + d;
            if (p.k.dtype == DType::bf16) {
                const uint32_t bits = static_cast<uint32_t>(p.k.as<const uint16_t>()[offset]) << 16;
                std::memcpy(&x[static_cast<size_t>(d)], &bits, 4);
            } else {
                x[static_cast<size_t>(d)] = p.k.as<const float>()[offset];
            }
        }
        float amax = 0.0f;
        for (float v : x)
            if (std::isfinite(v)) amax = std::fmax(amax, std::fabs(v));
        amax = std::fmax(amax, 1e-4f);
        int exponent = 0;
        const float mantissa = std::frexp(amax / 448.0f, &exponent);  // ratio = mantissa * 2^exponent
        const float scale = std::ldexp(1.0f, mantissa == 0.5f ? exponent - 1 : exponent);

        uint8_t* page = p.k_cache.as<uint8_t>() + (slot / kIndexerPageTokens) * p.k_cache.strides[0];
        const int64_t row = slot % kIndexerPageTokens;
        for (int64_t d = 0; d < p.dim; ++d) {
            const float v = x[static_cast<size_t>(d)];
            page[row * p.dim + d] = encode_e4m3(std::isnan(v) ? v : std::fmin(std::fmax(v / scale, -448.0f), 448.0f));
        }
        std::memcpy(page + kIndexerPageTokens * p.dim + 4 * row, &scale, 4);
    }
}

}  // namespace dsa::reference
