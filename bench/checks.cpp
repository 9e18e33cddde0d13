#include "bench/checks.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>

#include "core/numeric.hpp"

namespace dsa_bench {

std::string compare_bytes(const void* got, const void* want, size_t bytes, const std::string& what) {
    const auto* a = static_cast<const uint8_t*>(got);
    const auto* b = static_cast<const uint8_t*>(want);
    for (size_t i = 0; i < bytes; ++i)
        if (a[i] != b[i]) {
            std::ostringstream out;
            out << what << ": byte " << i << " is " << int(a[i]) << ", expected " << int(b[i]);
            return out.str();
        }
    return "";
}

std::string compare_norm(const std::vector<float>& got, const std::vector<float>& want, double relative,
                         const std::string& what) {
    double error = 0, norm = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        const double a = got[i], b = want[i];
        if (std::isnan(a)) return what + ": element " + std::to_string(i) + " is NaN (not written?)";
        error += (a - b) * (a - b);
        norm += b * b;
    }
    if (std::sqrt(error) <= relative * std::sqrt(norm) + 1e-30) return "";
    std::ostringstream out;
    out << what << ": relative error " << std::sqrt(error / (norm + 1e-300)) << " > " << relative;
    return out.str();
}

std::string compare_bf16(const std::vector<uint16_t>& got, const std::vector<uint16_t>& want, double relative,
                         const std::string& what) {
    std::vector<float> a(got.size()), b(want.size());
    for (size_t i = 0; i < got.size(); ++i) {
        a[i] = dsa::bf16_to_float(got[i]);
        b[i] = dsa::bf16_to_float(want[i]);
    }
    return compare_norm(a, b, relative, what);
}

std::string compare_floats(const std::vector<float>& got, const std::vector<float>& want, double absolute,
                           double relative, const std::string& what) {
    for (size_t i = 0; i < got.size(); ++i) {
        const double a = got[i], b = want[i];
        const bool agree = std::isinf(b) ? a == b : std::fabs(a - b) <= absolute + relative * std::fabs(b);
        if (!agree) {  // NaN compares false: fails too
            std::ostringstream out;
            out << what << ": element " << i << " is " << a << ", expected " << b;
            return out.str();
        }
    }
    return "";
}

std::string check_selection(const SelectionRow& row, const std::string& what) {
    const auto tolerance = [&](int64_t column) {
        return row.tolerance && !row.tolerance->empty() ? (*row.tolerance)[static_cast<size_t>(column)] : 0.0;
    };
    std::vector<char> chosen(static_cast<size_t>(row.columns), 0);
    int64_t count = 0;
    for (; count < row.k && row.selected[count] != -1; ++count) {
        const int32_t column = row.selected[count];
        if (column < row.begin || column >= row.end)
            return what + ": index " + std::to_string(column) + " outside the window";
        if (chosen[static_cast<size_t>(column)]++) return what + ": index " + std::to_string(column) + " twice";
    }
    for (int64_t j = count; j < row.k; ++j)
        if (row.selected[j] != -1) return what + ": entry " + std::to_string(j) + " after the -1 padding";
    int64_t selectable = 0;
    for (int64_t c = row.begin; c < row.end; ++c) selectable += !std::isnan(row.scores[c]);
    if (count != std::min(row.k, selectable))
        return what + ": " + std::to_string(count) + " indices, expected " + std::to_string(std::min(row.k, selectable));
    double lowest_selected = std::numeric_limits<double>::infinity();
    double highest_other = -std::numeric_limits<double>::infinity();
    for (int64_t c = row.begin; c < row.end; ++c) {
        if (std::isnan(row.scores[c])) continue;
        if (chosen[static_cast<size_t>(c)])
            lowest_selected = std::min(lowest_selected, row.scores[c] + tolerance(c));
        else
            highest_other = std::max(highest_other, row.scores[c] - tolerance(c));
    }
    if (lowest_selected >= highest_other) return "";
    std::ostringstream out;
    out << what << ": a column scoring " << highest_other << " was left out for one scoring " << lowest_selected;
    return out.str();
}

std::string compare_index_sets(const int32_t* got, const int32_t* want, int64_t k, const std::string& what) {
    std::vector<int32_t> a(got, got + k), b(want, want + k);
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    for (int64_t j = 0; j < k; ++j)
        if (a[j] != b[j]) return what + ": the selected sets differ";
    return "";
}

}  // namespace dsa_bench
