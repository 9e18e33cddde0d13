// Test helpers of the training ops: inputs kept in f32 with their bf16 rounding, comparisons
// against float64 references, and central finite differences.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "support.hpp"

namespace dsa_test {

// Values of one f32 or bf16 input tensor: f32 holds them, bf16 their rounding, `dtype` says
// which one the library reads (and decoded() what it sees).
struct Values {
    dsa_dtype_t dtype = DSA_DTYPE_F32;
    std::vector<float> f32;
    std::vector<uint16_t> bf16;

    void assign(const std::vector<float>& values, dsa_dtype_t type) {
        dtype = type;
        f32 = values;
        bf16 = to_bf16(values);
    }
    void* data() { return dtype == DSA_DTYPE_BF16 ? static_cast<void*>(bf16.data()) : f32.data(); }
    std::vector<double> decoded() const {
        std::vector<double> result(f32.size());
        for (size_t i = 0; i < f32.size(); ++i)
            result[i] = dtype == DSA_DTYPE_BF16 ? dsa::bf16_to_float(bf16[i]) : f32[i];
        return result;
    }
};

// Every element within `tolerance` of the reference, relative to the largest reference value
// (at least 1e-3).
inline void check_close(const std::vector<float>& got, const std::vector<double>& want, double tolerance,
                        const char* what) {
    REQUIRE(got.size() == want.size());
    double scale = 1e-3, error = 0.0;
    size_t worst = 0;
    for (double value : want) scale = std::max(scale, std::fabs(value));
    for (size_t i = 0; i < got.size(); ++i) {
        const double e = std::fabs(got[i] - want[i]);
        if (!(e <= error)) error = e, worst = i;
    }
    CHECK_MESSAGE(error <= tolerance * scale, std::string(what), ": element ", worst, " is ", got.empty() ? 0.0f : got[worst],
                  ", expected ", want.empty() ? 0.0 : want[worst], " (scale ", scale, ")");
}

inline bool same_floats(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

inline std::vector<float> as_floats(const std::vector<double>& values) { return {values.begin(), values.end()}; }

// d f / d x[i] for every i by central differences (x is perturbed in place and restored).
inline std::vector<double> central_differences(std::vector<double>& x, const std::function<double()>& f) {
    std::vector<double> result(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        const double value = x[i], h = 1e-6 * std::max(1.0, std::fabs(value));
        x[i] = value + h;
        const double up = f();
        x[i] = value - h;
        const double down = f();
        x[i] = value;
        result[i] = (up - down) / (2 * h);
    }
    return result;
}

// The gradient is not trivially zero, the library agrees with the finite differences to
// `tolerance` and the float64 reference's analytic gradient to 1e-6.
inline void check_gradient(const char* what, const std::vector<float>& library, const std::vector<double>& analytic,
                           const std::vector<double>& numeric, double tolerance = 1e-4) {
    CAPTURE(what);
    double largest = 0.0;
    for (double value : numeric) largest = std::max(largest, std::fabs(value));
    CHECK(largest > 1e-3);
    check_close(library, numeric, tolerance, "library vs finite differences");
    check_close(as_floats(analytic), numeric, 1e-6, "reference vs finite differences");
}

}  // namespace dsa_test
