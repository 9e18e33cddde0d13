#include "hadamard.hpp"

#include <cmath>
#include <string>

namespace dsa {

Status check_hadamard_scale(float scale, const char* params_name) {
    if (!std::isfinite(scale))
        return {StatusCode::invalid_argument,
                std::string(params_name) + ".scale: must be finite, got " + std::to_string(scale)};
    return Status::success();
}

Status check_hadamard_length(const TensorView& x, const char* x_name) {
    const int64_t n = x.size(-1);
    if (n < 1 || n > kHadamardMaxLength || (n & (n - 1)) != 0)
        return {StatusCode::shape_mismatch, std::string(x_name) +
                                                ": the last dimension must be a power of two in [1, 1024], got " +
                                                std::to_string(n)};
    return Status::success();
}

float resolved_hadamard_scale(float scale, int64_t n) {
    return scale != 0.0f ? scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(n)));
}

Status hadamard(Context& context, float scale, const TensorView* x, const TensorView* y, Stream stream) {
    DSA_TRY(check_hadamard_scale(scale, "params"));
    DSA_TRY(check_tensor(x, "x"));
    DSA_TRY(check_tensor(y, "y"));
    DSA_TRY(context.require_device(*x, "x"));
    DSA_TRY(context.require_device(*y, "y"));
    DSA_TRY(require_dtype(*x, "x", {DType::f32, DType::bf16}));
    DSA_TRY(require_dtype(*y, "y", {x->dtype}));
    DSA_TRY(require_min_rank(*x, "x", 1));
    DSA_TRY(require_same_shape(*y, "y", *x, "x"));
    DSA_TRY(check_hadamard_length(*x, "x"));
    const int64_t n = x->size(-1);
    DSA_TRY(require_unit_last_stride(*x, "x"));
    DSA_TRY(require_unit_last_stride(*y, "y"));
    DSA_TRY(require_non_self_overlapping(*y, "y"));
    if (!same_view(*x, *y)) DSA_TRY(require_disjoint(*y, "y", *x, "x"));

    HadamardProblem problem;
    problem.x = *x;
    problem.y = *y;
    problem.scale = resolved_hadamard_scale(scale, n);
    problem.rows = leading_row_count(*x);
    problem.n = n;
    if (problem.rows * n == 0) return Status::success();
    if (context.device() == DeviceType::cpu) {
        cpu::hadamard(context, problem);
        return Status::success();
    }
#ifdef DSA_HAVE_CUDA
    return cuda::hadamard(context, problem, stream);
#else
    (void)stream;
    return cuda_not_built();
#endif
}

}  // namespace dsa
