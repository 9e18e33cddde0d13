#include "hadamard_quantize.hpp"

namespace dsa {

Status hadamard_quantize_fp8(Context& context, float scale, const QuantizeFp8Config& config, const TensorView* x,
                             const TensorView* q, const TensorView* scales, Stream stream) {
    DSA_TRY(check_hadamard_scale(scale, "hadamard_params"));
    HadamardQuantizeFp8Problem problem;
    DSA_TRY(describe_quantize_fp8(context, config, "quantize_params", x, q, scales, &problem.quantization));
    DSA_TRY(check_hadamard_length(*x, "x"));
    problem.scale = resolved_hadamard_scale(scale, problem.quantization.n);
    if (problem.quantization.rows * problem.quantization.n == 0) return Status::success();
    if (context.device() == DeviceType::cpu) {
        cpu::hadamard_quantize_fp8(context, problem);
        return Status::success();
    }
#ifdef DSA_HAVE_CUDA
    return cuda::hadamard_quantize_fp8(context, problem, stream);
#else
    (void)stream;
    return cuda_not_built();
#endif
}

}  // namespace dsa
