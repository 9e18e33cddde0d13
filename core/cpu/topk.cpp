// CPU top-k: rows over the pool; per row a radix select on the preference key (11 + 11 + 10
// bits). Equal keys are resolved by position: candidates stay in index order through every
// pass, so the last digit's ties go to the smallest indices and the set is exact.
#include <algorithm>
#include <functional>

#include "../ops/topk.hpp"
#include "isa.hpp"

namespace dsa::cpu {
namespace {

constexpr int kDigitBits = 11;
constexpr int kBins = 1 << kDigitBits;
constexpr int kTopShift = 32 - kDigitBits;  // the first digit: key bits 31..21
// Windows up to this length select with nth_element on composite keys instead: the radix
// passes' fixed cost (clearing and scanning histograms) would dominate.
constexpr int64_t kSmallWindow = 4096;

// (key, position) as one integer: larger is preferred, and no two tokens compare equal.
uint64_t composite_key(uint32_t key, int64_t token) {
    return (static_cast<uint64_t>(key) << 32) | (0xffffffffu - static_cast<uint32_t>(token));
}
int32_t composite_token(uint64_t composite) {
    return static_cast<int32_t>(0xffffffffu - static_cast<uint32_t>(composite));
}

// Rows are processed in blocks: the keys of a block are computed in one vectorised loop, then
// consumed by the scalar counting or splitting loop from L1.
constexpr int64_t kBlock = 512;

// Keys of scores[0, count), count <= kBlock; returns the largest. Two loops, because GCC does not
// vectorise the maximum when it is fused into the first.
DSA_CPU_MULTIVERSION uint32_t block_keys(const float* scores, int64_t count, uint32_t* keys) {
    for (int64_t i = 0; i < count; ++i) keys[i] = topk_preference_key(scores[i]);
    uint32_t largest = 0;
    for (int64_t i = 0; i < count; ++i) largest = largest > keys[i] ? largest : keys[i];
    return largest;
}

// Histogram of the first digit of scores[begin, end). Four interleaved tables keep runs of equal
// keys (ReLU plateaus of exact 0.0) from serialising on one counter.
void histogram_first_digit(const float* scores, int64_t begin, int64_t end, uint32_t* histogram) {
    uint32_t tables[4][kBins] = {};
    alignas(64) uint32_t keys[kBlock];
    for (int64_t block = begin; block < end; block += kBlock) {
        const int64_t count = std::min(kBlock, end - block);
        block_keys(scores + block, count, keys);
        int64_t i = 0;
        for (; i + 4 <= count; i += 4)
            for (int lane = 0; lane < 4; ++lane) ++tables[lane][keys[i + lane] >> kTopShift];
        for (; i < count; ++i) ++tables[0][keys[i] >> kTopShift];
    }
    for (int bin = 0; bin < kBins; ++bin)
        histogram[bin] = tables[0][bin] + tables[1][bin] + tables[2][bin] + tables[3][bin];
}

// The bin holding the needed-th best element (histogram[bin] > 0), walking from the top;
// *above receives how many elements lie in better bins (< needed).
int threshold_bin(const uint32_t* histogram, int64_t needed, int64_t* above) {
    int bin = kBins - 1;
    int64_t count = 0;
    while (count + histogram[bin] < needed) count += histogram[bin--];
    *above = count;
    return bin;
}

uint64_t candidate(uint32_t key, int64_t token) { return (static_cast<uint64_t>(key) << 32) | static_cast<uint32_t>(token); }
uint32_t candidate_key(uint64_t packed) { return static_cast<uint32_t>(packed >> 32); }
int32_t candidate_token(uint64_t packed) { return static_cast<int32_t>(static_cast<uint32_t>(packed)); }

// One pass over scores[begin, end): tokens whose first digit beats `threshold` go to `out` (in
// index order), those equal to it become candidates (in index order). Blocks whose best key is
// below the threshold bin are skipped whole. Writes are unconditional and the cursors advance by
// the comparison, so the inner loop has no data-dependent branch: `out` has room for one more
// than it receives and `candidates` for one more than the threshold bin holds.
void split_first_digit(const float* scores, int64_t begin, int64_t end, uint32_t threshold, int32_t* out,
                       uint64_t* candidates) {
    alignas(64) uint32_t keys[kBlock];
    int64_t taken = 0, count = 0;
    for (int64_t block = begin; block < end; block += kBlock) {
        const int64_t length = std::min(kBlock, end - block);
        if ((block_keys(scores + block, length, keys) >> kTopShift) < threshold) continue;
        for (int64_t i = 0; i < length; ++i) {
            const uint32_t digit = keys[i] >> kTopShift;
            out[taken] = static_cast<int32_t>(block + i);
            taken += digit > threshold;
            candidates[count] = candidate(keys[i], block + i);
            count += digit == threshold;
        }
    }
}

// Narrows `count` candidates (all with equal higher digits) on the digit (key >> shift) & mask:
// candidates in better bins go to `out`, those in the threshold bin are kept, in order, at the
// front of the buffer. Returns how many went to `out`; *count becomes the kept number.
int64_t narrow_candidates(uint64_t* candidates, int64_t* count, int64_t needed, int shift, uint32_t mask,
                          int32_t* out) {
    uint32_t histogram[kBins] = {};
    for (int64_t i = 0; i < *count; ++i) ++histogram[(candidate_key(candidates[i]) >> shift) & mask];
    int64_t above = 0;
    const uint32_t threshold = static_cast<uint32_t>(threshold_bin(histogram, needed, &above));
    int64_t taken = 0, kept = 0;
    for (int64_t i = 0; i < *count; ++i) {
        const uint32_t digit = (candidate_key(candidates[i]) >> shift) & mask;
        if (digit > threshold)
            out[taken++] = candidate_token(candidates[i]);
        else if (digit == threshold)
            candidates[kept++] = candidates[i];
    }
    *count = kept;
    return taken;
}

// Small windows: nth_element on unique composite keys of the non-NaN tokens.
int64_t select_small(const float* scores, int64_t begin, int64_t end, int64_t needed, int32_t* out,
                     TopkScratch& scratch) {
    std::vector<uint64_t>& keys = scratch.sort_keys;
    keys.clear();
    for (int64_t j = begin; j < end; ++j) {
        const uint32_t key = topk_preference_key(scores[j]);
        if (key != 0) keys.push_back(composite_key(key, j));
    }
    const int64_t taken = std::min<int64_t>(needed, static_cast<int64_t>(keys.size()));
    if (taken < static_cast<int64_t>(keys.size()))
        std::nth_element(keys.begin(), keys.begin() + taken, keys.end(), std::greater<uint64_t>());
    for (int64_t i = 0; i < taken; ++i) out[i] = composite_token(keys[i]);
    return taken;
}

// The best `needed` non-NaN tokens of scores[begin, end) into out; returns how many (fewer when
// the range has fewer non-NaN tokens).
int64_t select_best(const float* scores, int64_t begin, int64_t end, int64_t needed, int32_t* out,
                    TopkScratch& scratch) {
    if (needed == 0 || end <= begin) return 0;
    const int64_t length = end - begin;
    if (length <= kSmallWindow) return select_small(scores, begin, end, needed, out, scratch);

    uint32_t histogram[kBins];
    histogram_first_digit(scores, begin, end, histogram);
    const int64_t selectable = length - histogram[0];  // bin 0 holds exactly the NaNs (key 0)
    if (selectable <= needed) {
        int64_t taken = 0;
        for (int64_t j = begin; j < end; ++j)
            if (topk_preference_key(scores[j]) != 0) out[taken++] = static_cast<int32_t>(j);
        return taken;
    }
    int64_t taken = 0;
    const uint32_t threshold = static_cast<uint32_t>(threshold_bin(histogram, needed, &taken));
    int64_t count = histogram[threshold];
    // The split's unconditional store may land one past the last candidate.
    const int64_t capacity = count + 1;
    if (scratch.candidate_capacity < capacity) {
        scratch.candidates = std::make_unique_for_overwrite<uint64_t[]>(static_cast<size_t>(capacity));
        scratch.candidate_capacity = capacity;
    }
    uint64_t* candidates = scratch.candidates.get();
    // taken < needed elements beat the threshold, so out has the spare slot the split writes.
    split_first_digit(scores, begin, end, threshold, out, candidates);
    // The remaining bits: 11 (bits 20..10), then 10 (bits 9..0).
    const int shifts[2] = {32 - 2 * kDigitBits, 0};
    const uint32_t masks[2] = {kBins - 1, (1u << (32 - 2 * kDigitBits)) - 1};
    for (int level = 0; level < 2 && count > needed - taken; ++level)
        taken += narrow_candidates(candidates, &count, needed - taken, shifts[level], masks[level], out + taken);
    // Every remaining candidate has the same key (or all are needed): the first are the smallest
    // indices.
    for (int64_t i = 0; taken < needed; ++i) out[taken++] = candidate_token(candidates[i]);
    return taken;
}

void sort_by_score(const float* scores, int32_t* tokens, int64_t count, TopkScratch& scratch) {
    std::vector<uint64_t>& keys = scratch.sort_keys;
    keys.resize(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) keys[i] = composite_key(topk_preference_key(scores[tokens[i]]), tokens[i]);
    std::sort(keys.begin(), keys.end(), std::greater<uint64_t>());
    for (int64_t i = 0; i < count; ++i) tokens[i] = composite_token(keys[i]);
}

}  // namespace

void select_topk_row(const float* row_scores, int64_t window_begin, int64_t window_end, const TopkConfig& config,
                     int32_t* out_indices, TopkScratch& scratch) {
    const int64_t length = window_end > window_begin ? window_end - window_begin : 0;
    const int64_t sink = std::min(config.n_sink, length), local = std::min(config.n_local, length);
    const int64_t middle_begin = window_begin + sink;
    const int64_t middle_end = std::max(middle_begin, window_end - local);
    int64_t written = 0;
    for (int64_t j = window_begin; j < middle_begin; ++j) out_indices[written++] = static_cast<int32_t>(j);
    for (int64_t j = middle_end; j < window_end; ++j) out_indices[written++] = static_cast<int32_t>(j);
    written += select_best(row_scores, middle_begin, middle_end, config.k - written, out_indices + written, scratch);
    if (config.order == TopkOrder::score) sort_by_score(row_scores, out_indices, written, scratch);
    if (config.order == TopkOrder::index) std::sort(out_indices, out_indices + written);
    std::fill(out_indices + written, out_indices + config.k, -1);
}

void topk(Context& context, const TopkProblem& p) {
    const int64_t row_cost = std::max(p.n, p.config.k);
    const int64_t rows_per_chunk = row_cost >= 65536 ? 1 : 65536 / row_cost;
    context.pool().parallel_for(p.rows, rows_per_chunk, [&](int64_t begin, int64_t end) {
        TopkScratch scratch;
        for (int64_t row = begin; row < end; ++row) {
            const TopkWindow window = topk_row_window(p, row);
            // With N == 0 scores may have no storage; the window is empty then and nothing is read.
            const float* scores = p.n > 0 ? p.scores.as<const float>() + row * p.scores.strides[0] : nullptr;
            int32_t* out = p.indices.as<int32_t>() + row * p.indices.strides[0];
            select_topk_row(scores, window.begin, window.end, p.config, out, scratch);
            translate_topk_row(p, row, out);
        }
    });
}

}  // namespace dsa::cpu
