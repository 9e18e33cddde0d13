#include "hadamard.hpp"

#include <cmath>
#include <string>

namespace dsa {

Status hadamard(Context& context, float scale, const TensorView* x, const TensorView* y, Stream stream) {
    if (!std::isfinite(scale))
        return {StatusCode::invalid_argument, "params.scale: must be finite, got " + std::to_string(scale)};
    DSA_TRY(check_tensor(x, "x"));
    DSA_TRY(check_tensor(y, "y"));
    DSA_TRY(context.require_device(*x, "x"));
    DSA_TRY(context.require_device(*y, "y"));
    DSA_TRY(require_dtype(*x, "x", {DType::f32, DType::bf16}));
    DSA_TRY(require_dtype(*y, "y", {x->dtype}));
    DSA_TRY(require_min_rank(*x, "x", 1));
    DSA_TRY(require_same_shape(*y, "y", *x, "x"));
    const int64_t n = x->size(-1);
    if (n < 1 || n > kHadamardMaxLength || (n & (n - 1)) != 0)
        return {StatusCode::shape_mismatch,
                "x: the last dimension must be a power of two in [1, 1024], got " + std::to_string(n)};
    DSA_TRY(require_unit_last_stride(*x, "x"));
    DSA_TRY(require_unit_last_stride(*y, "y"));
    DSA_TRY(require_non_self_overlapping(*y, "y"));
    if (!same_view(*x, *y)) DSA_TRY(require_disjoint(*y, "y", *x, "x"));

    HadamardProblem problem;
    problem.x = *x;
    problem.y = *y;
    problem.scale = scale != 0.0f ? scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(n)));
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
