// Lightning-indexer test fixtures shared by the CPU tests (tests/indexer_test.cpp) and the GPU
// parity tests (tests/gpu/indexer_test.cpp): random problems in host memory, their scalar
// reference, and the element-by-element checks.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "../core/ops/indexer.hpp"
#include "support.hpp"

namespace dsa_test {

inline constexpr float kInf = std::numeric_limits<float>::infinity();
inline constexpr float kPadding = 12345.0f;  // what row padding of an output holds before and after a call
inline constexpr int64_t kPage = 64;

// Random e4m3 codes over the whole finite range (subnormals and 448 included), never NaN.
inline std::vector<uint8_t> random_codes(size_t count, uint32_t seed) {
    std::mt19937 engine(seed);
    std::uniform_int_distribution<int> byte(0, 255);
    std::vector<uint8_t> codes(count);
    for (uint8_t& code : codes) {
        do code = static_cast<uint8_t>(byte(engine));
        while ((code & 0x7f) == 0x7f);
    }
    return codes;
}

inline bool is_nan_float(float value) { return value != value; }

// How far an f32 result may be from the f64 reference. The CPU sums D_I exact products in f32
// (each partial sum rounded once), then H_I weighted ReLU terms in f32, then multiplies by the
// scale: the classic bound for recursive summation gives |error| <= (D_I + H_I + 1) * 2^-24 *
// k_scale * sum_h |w_h| * sum_d |q_hd * k_d| to first order (ReLU does not increase an error).
// One more unit covers the final rounding of the f64 reference to f32.
struct Tolerance {
    int64_t heads, dim;
    double operator()(double magnitude) const {
        return static_cast<double>(dim + heads + 2) * std::ldexp(1.0, -24) * magnitude + 1e-30;
    }
};

// sum_h |w_h| * sum_d |q_hd k_d| for one query row (codes at q_row, w at w(h)) and one key.
template <typename Weight>
double magnitude(const uint8_t* q_row, const Weight& w, const uint8_t* k_row, int64_t heads, int64_t dim) {
    double total = 0.0;
    for (int64_t h = 0; h < heads; ++h) {
        double dot = 0.0;
        for (int64_t d = 0; d < dim; ++d)
            dot += std::fabs(static_cast<double>(dsa::decode_e4m3(q_row[h * dim + d])) * dsa::decode_e4m3(k_row[d]));
        total += std::fabs(w(h)) * dot;
    }
    return total;
}

// ---- Ragged prefill -----------------------------------------------------------------------

struct Prefill {
    int64_t s_q, s_kv, heads, dim;
    int64_t q_row_stride, logits_row_stride;
    bool weights_transposed;  // weights [S_q, H_I] stored column-major
    std::vector<uint8_t> q, k;
    std::vector<float> weights, k_scale;
    std::vector<int32_t> ks, ke;

    Prefill(int64_t s_q_, int64_t s_kv_, int64_t heads_, int64_t dim_, uint32_t seed, int64_t q_padding = 0,
            int64_t logits_padding = 0, bool transposed = false)
        : s_q(s_q_), s_kv(s_kv_), heads(heads_), dim(dim_), q_row_stride(heads_ * dim_ + q_padding),
          logits_row_stride(s_kv_ + logits_padding), weights_transposed(transposed),
          q(random_codes(static_cast<size_t>(s_q_ * (heads_ * dim_ + q_padding)), seed)),
          k(random_codes(static_cast<size_t>(s_kv_ * dim_), seed + 1)),
          weights(random_floats(static_cast<size_t>(s_q_ * heads_), seed + 2)),
          k_scale(random_floats(static_cast<size_t>(s_kv_), seed + 3, 0.01f, 2.0f)), ks(s_q_, 0), ke(s_q_, 0) {
        causal(0);
    }

    // ks = 0, ke = offset + t + 1 (chunked prefill at `offset`).
    void causal(int64_t offset) {
        for (int64_t t = 0; t < s_q; ++t) {
            ks[t] = 0;
            ke[t] = static_cast<int32_t>(offset + t + 1);
        }
    }

    // Random windows, out-of-range and inverted ones included.
    void ragged(uint32_t seed) {
        std::mt19937 engine(seed);
        std::uniform_int_distribution<int32_t> position(-40, static_cast<int32_t>(s_kv) + 40);
        for (int64_t t = 0; t < s_q; ++t) {
            ks[t] = position(engine);
            ke[t] = position(engine);
            if (t % 3 == 0 && ks[t] > ke[t]) std::swap(ks[t], ke[t]);  // mostly non-empty windows
        }
        ks[0] = std::numeric_limits<int32_t>::min();
        ke[0] = std::numeric_limits<int32_t>::max();  // the whole row
        if (s_q > 1) ks[1] = ke[1] = 3;               // empty
        if (s_q > 2) {
            ks[2] = static_cast<int32_t>(s_kv) - 1;   // the last token only
            ke[2] = static_cast<int32_t>(s_kv) + 100;
        }
    }

    float w(int64_t t, int64_t h) const { return weights[weights_index(t, h)]; }
    size_t weights_index(int64_t t, int64_t h) const {
        return static_cast<size_t>(weights_transposed ? h * s_q + t : t * heads + h);
    }

    dsa_tensor_t q_view() { return strided(q.data(), {s_q, heads, dim}, {q_row_stride, dim, 1}, DSA_DTYPE_FP8_E4M3); }
    dsa_tensor_t weights_view() {
        return weights_transposed ? strided(weights.data(), {s_q, heads}, {1, s_q}, DSA_DTYPE_F32)
                                  : view(weights.data(), {s_q, heads}, DSA_DTYPE_F32);
    }
    dsa_tensor_t k_view() { return view(k.data(), {s_kv, dim}, DSA_DTYPE_U8); }
    dsa_tensor_t k_scale_view() { return view(k_scale.data(), {s_kv}, DSA_DTYPE_F32); }
    dsa_tensor_t ks_view() { return view(ks.data(), {s_q}, DSA_DTYPE_I32); }
    dsa_tensor_t ke_view() { return view(ke.data(), {s_q}, DSA_DTYPE_I32); }
    dsa_tensor_t logits_view(std::vector<float>& out) {
        return strided(out.data(), {s_q, s_kv}, {logits_row_stride, 1}, DSA_DTYPE_F32);
    }
    std::vector<float> poisoned_output() const {
        std::vector<float> out(static_cast<size_t>(s_q * logits_row_stride), kPadding);
        for (int64_t t = 0; t < s_q; ++t)
            std::fill_n(out.begin() + t * logits_row_stride, s_kv, std::numeric_limits<float>::quiet_NaN());
        return out;
    }

    std::vector<float> run(dsa_context_t* context) {
        std::vector<float> out = poisoned_output();
        dsa_tensor_t qt = q_view(), wt = weights_view(), kt = k_view(), st = k_scale_view(), kst = ks_view(),
                     ket = ke_view(), lt = logits_view(out);
        const dsa_status_t status = dsa_indexer_logits(context, nullptr, &qt, &wt, &kt, &st, &kst, &ket, &lt, nullptr);
        REQUIRE_MESSAGE(status == DSA_STATUS_SUCCESS, dsa_last_error_message());
        return out;
    }

    std::vector<float> reference() {
        std::vector<float> out = poisoned_output();
        dsa::IndexerProblem p;
        p.keys = dsa::IndexerKeys::contiguous;
        p.q = core_view(q_view());
        p.weights = core_view(weights_view());
        p.k = core_view(k_view());
        p.k_scale = core_view(k_scale_view());
        p.ks = core_view(ks_view());
        p.ke = core_view(ke_view());
        p.logits = core_view(logits_view(out));
        p.rows = s_q;
        p.heads = heads;
        p.dim = dim;
        p.columns = s_kv;
        dsa::reference::indexer_logits(p);
        return out;
    }

    // Every element checked: inside the clamped window within tolerance of the reference (NaN
    // where the reference is NaN), -inf outside, padding untouched.
    void check(const std::vector<float>& got, const std::vector<float>& want) const {
        const Tolerance tolerance{heads, dim};
        int64_t bad = 0, visible = 0;
        for (int64_t t = 0; t < s_q; ++t) {
            const int64_t first = std::clamp<int64_t>(ks[t], 0, s_kv), last = std::clamp<int64_t>(ke[t], 0, s_kv);
            for (int64_t s = 0; s < logits_row_stride; ++s) {
                const float g = got[t * logits_row_stride + s], r = want[t * logits_row_stride + s];
                bool ok;
                if (s >= s_kv) {
                    ok = g == kPadding;
                } else if (s < first || s >= last) {
                    ok = g == -kInf && r == -kInf;
                } else {
                    ++visible;
                    const double allowed =
                        tolerance(k_scale[s] * magnitude(q.data() + t * q_row_stride, [&](int64_t h) { return w(t, h); },
                                                         k.data() + s * dim, heads, dim));
                    ok = is_nan_float(r) ? is_nan_float(g) : std::fabs(static_cast<double>(g) - r) <= allowed;
                }
                if (!ok && ++bad <= 5) FAIL_CHECK("row ", t, " column ", s, ": got ", g, ", reference ", r);
            }
        }
        CHECK(bad == 0);
        CHECK(visible > 0);
    }
};

// ---- Paged decode -------------------------------------------------------------------------

struct Paged {
    int64_t batch, next_n, heads, dim, num_pages, max_pages, max_context, page_stride;
    std::vector<uint8_t> q, cache;
    std::vector<float> weights;
    std::vector<int32_t> block_table, context_lens;

    // Pages are handed out shuffled, page_padding bytes apart; every byte the visible tokens do
    // not own is 0xFF: NaN codes and NaN scales, so anything read that should not be shows up.
    Paged(int64_t batch_, int64_t next_n_, int64_t heads_, int64_t dim_, int64_t max_pages_, int64_t max_context_,
          std::vector<int32_t> lengths, uint32_t seed, int64_t page_padding = 24)
        : batch(batch_), next_n(next_n_), heads(heads_), dim(dim_), num_pages(batch_ * max_pages_ + 3),
          max_pages(max_pages_), max_context(max_context_), page_stride(kPage * (dim_ + 4) + page_padding),
          q(random_codes(static_cast<size_t>(batch_ * next_n_ * heads_ * dim_), seed)),
          cache(static_cast<size_t>(num_pages * page_stride), 0xff),
          weights(random_floats(static_cast<size_t>(batch_ * next_n_ * heads_), seed + 1)),
          block_table(static_cast<size_t>(batch_ * max_pages_)), context_lens(std::move(lengths)) {
        std::vector<int32_t> pages(static_cast<size_t>(num_pages));
        std::iota(pages.begin(), pages.end(), 0);
        std::mt19937 engine(seed + 2);
        std::shuffle(pages.begin(), pages.end(), engine);
        std::copy_n(pages.begin(), block_table.size(), block_table.begin());
        const std::vector<uint8_t> codes = random_codes(static_cast<size_t>(batch * max_pages * kPage * dim), seed + 3);
        std::uniform_real_distribution<float> scale(0.01f, 2.0f);
        for (int64_t b = 0; b < batch; ++b) {
            for (int64_t s = 0; s < visible_length(b); ++s) {
                uint8_t* page = cache.data() + block_table[b * max_pages + s / kPage] * page_stride;
                const int64_t row = s % kPage;
                std::copy_n(codes.begin() + (b * max_pages * kPage + s) * dim, dim, page + row * dim);
                const float value = scale(engine);
                std::memcpy(page + kPage * dim + 4 * row, &value, 4);
            }
        }
    }

    // Tokens of sequence b that some query may see (the clamped context length).
    int64_t visible_length(int64_t b) const {
        return std::clamp<int64_t>(context_lens[b], 0, std::min(max_context, max_pages * kPage));
    }
    int64_t rows() const { return batch * next_n; }

    dsa_tensor_t q_view() { return view(q.data(), {batch, next_n, heads, dim}, DSA_DTYPE_FP8_E4M3); }
    dsa_tensor_t weights_view() { return view(weights.data(), {rows(), heads}, DSA_DTYPE_F32); }
    dsa_tensor_t cache_view() { return strided(cache.data(), {num_pages, kPage * (dim + 4)}, {page_stride, 1}, DSA_DTYPE_U8); }
    dsa_tensor_t table_view() { return view(block_table.data(), {batch, max_pages}, DSA_DTYPE_I32); }
    dsa_tensor_t lens_view() { return view(context_lens.data(), {batch}, DSA_DTYPE_I32); }
    int64_t logits_row_stride() const { return max_context + 5; }
    dsa_tensor_t logits_view(std::vector<float>& out) {
        return strided(out.data(), {rows(), max_context}, {logits_row_stride(), 1}, DSA_DTYPE_F32);
    }
    std::vector<float> poisoned_output() const {
        std::vector<float> out(static_cast<size_t>(rows() * logits_row_stride()), kPadding);
        for (int64_t r = 0; r < rows(); ++r)
            std::fill_n(out.begin() + r * logits_row_stride(), max_context, std::numeric_limits<float>::quiet_NaN());
        return out;
    }

    std::vector<float> run(dsa_context_t* context) {
        std::vector<float> out = poisoned_output();
        dsa_tensor_t qt = q_view(), wt = weights_view(), ct = cache_view(), tt = table_view(), lt = lens_view(),
                     ot = logits_view(out);
        const dsa_status_t status = dsa_indexer_logits_paged(context, nullptr, &qt, &wt, &ct, &tt, &lt, &ot, nullptr);
        REQUIRE_MESSAGE(status == DSA_STATUS_SUCCESS, dsa_last_error_message());
        return out;
    }

    std::vector<float> reference() {
        std::vector<float> out = poisoned_output();
        dsa::IndexerProblem p;
        p.keys = dsa::IndexerKeys::paged;
        p.q = core_view(q_view());
        p.weights = core_view(weights_view());
        p.k_cache = core_view(cache_view());
        p.block_table = core_view(table_view());
        p.context_lens = core_view(lens_view());
        p.logits = core_view(logits_view(out));
        p.rows = rows();
        p.heads = heads;
        p.dim = dim;
        p.columns = max_context;
        p.next_n = next_n;
        p.num_pages = num_pages;
        p.max_pages = max_pages;
        dsa::reference::indexer_logits(p);
        return out;
    }

    void check(const std::vector<float>& got, const std::vector<float>& want) const {
        const Tolerance tolerance{heads, dim};
        int64_t bad = 0, visible = 0;
        for (int64_t r = 0; r < rows(); ++r) {
            const int64_t b = r / next_n, j = r % next_n;
            const int64_t last = visible_length(b) - next_n + j + 1;
            for (int64_t s = 0; s < logits_row_stride(); ++s) {
                const float g = got[r * logits_row_stride() + s], want_value = want[r * logits_row_stride() + s];
                bool ok;
                if (s >= max_context) {
                    ok = g == kPadding;
                } else if (s >= last) {
                    ok = g == -kInf && want_value == -kInf;
                } else {
                    const int32_t entry = block_table[b * max_pages + s / kPage];
                    if (entry < 0 || entry >= num_pages) {
                        ok = g == -kInf && want_value == -kInf;
                    } else {
                        ++visible;
                        const uint8_t* page = cache.data() + entry * page_stride;
                        float scale;
                        std::memcpy(&scale, page + kPage * dim + 4 * (s % kPage), 4);
                        const double allowed = tolerance(
                            scale * magnitude(q.data() + r * heads * dim,
                                              [&](int64_t h) { return weights[r * heads + h]; },
                                              page + (s % kPage) * dim, heads, dim));
                        ok = std::isfinite(g) && std::fabs(static_cast<double>(g) - want_value) <= allowed;
                    }
                }
                if (!ok && ++bad <= 5) FAIL_CHECK("row ", r, " token ", s, ": got ", g, ", reference ", want_value);
            }
        }
        CHECK(bad == 0);
        CHECK(visible > 0);
    }
};

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace dsa_test
