// Comparisons of a case's sampled outputs with the oracle's. Each returns "" when they agree,
// else a one-line description of the first disagreement (prefixed with `what`).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsa_bench {

// Byte for byte.
std::string compare_bytes(const void* got, const void* want, size_t bytes, const std::string& what);

// ||got - want|| / ||want|| <= relative; any NaN in got (an unwritten, poisoned element) fails.
std::string compare_norm(const std::vector<float>& got, const std::vector<float>& want, double relative,
                         const std::string& what);

// bf16 arrays: ||got - want|| / ||want|| <= relative (bf16 rounding of independently summed
// results); any NaN in got (an unwritten, poisoned element) fails.
std::string compare_bf16(const std::vector<uint16_t>& got, const std::vector<uint16_t>& want, double relative,
                         const std::string& what);

// Element by element: |got - want| <= absolute + relative * |want|; infinities must be equal and
// NaN never passes.
std::string compare_floats(const std::vector<float>& got, const std::vector<float>& want, double absolute,
                           double relative, const std::string& what);

// One row of a top-k selection: the reference scores of the row's columns (-inf or anything
// outside the window [begin, end) is ignored), how far the benchmarked device's own scores may
// be from them (per column; empty: exactly the same scores), and the k indices it selected.
struct SelectionRow {
    const float* scores = nullptr;
    const std::vector<double>* tolerance = nullptr;
    int64_t columns = 0;
    int64_t begin = 0;
    int64_t end = 0;
    const int32_t* selected = nullptr;
    int64_t k = 0;
};

// The selection is a top-k of scores that differ from the reference ones by at most the
// tolerance: min(k, window) distinct in-window indices first, then -1 padding, and no unselected
// column scores more than a selected one beyond the two tolerances. (The exact-score case uses
// the oracle's top-k instead: compare the sets.)
std::string check_selection(const SelectionRow& row, const std::string& what);

// The sets of two index rows (order ignored) are equal.
std::string compare_index_sets(const int32_t* got, const int32_t* want, int64_t k, const std::string& what);

}  // namespace dsa_bench
