// Hadamard rotation (DSA_SPEC section 3): y = (x . H_n) * scale along the last dimension.
#pragma once

#include "../context.hpp"

namespace dsa {

inline constexpr int64_t kHadamardMaxLength = 1024;

struct HadamardProblem {
    TensorView x;
    TensorView y;  // may be the same view as x (in place)
    float scale = 0.0f;  // resolved: never 0 here
    int64_t rows = 0;
    int64_t n = 0;
};

// scale == 0 means n^-0.5.
Status hadamard(Context& context, float scale, const TensorView* x, const TensorView* y, Stream stream);

// The rotation's own rules, shared with the ops that rotate before doing more (messages name
// the params struct `params_name` and the input `x_name`).
Status check_hadamard_scale(float scale, const char* params_name);
Status check_hadamard_length(const TensorView& x, const char* x_name);
float resolved_hadamard_scale(float scale, int64_t n);

namespace cpu {
void hadamard(Context& context, const HadamardProblem& problem);
// v[0..n) = (v . H_n) * scale in place, n a power of two: the butterfly every CPU rotation uses.
void hadamard_butterfly(float* v, int64_t n, float scale);
}
namespace cuda {
Status hadamard(Context& context, const HadamardProblem& problem, Stream stream);
}
namespace reference {
// The explicit Sylvester matrix product, in f64 (tests only).
void hadamard(const HadamardProblem& problem);
}

}  // namespace dsa
