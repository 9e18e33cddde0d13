#include "quantize.hpp"

#include <cmath>
#include <string>

namespace dsa {
namespace {

Status validate_config(const QuantizeFp8Config& config, const std::string& params_name) {
    if (config.group_size <= 0)
        return {StatusCode::invalid_argument,
                params_name + ".group_size: must be > 0, got " + std::to_string(config.group_size)};
    if (config.scale_format != ScaleFormat::f32 && config.scale_format != ScaleFormat::ue8m0)
        return {StatusCode::invalid_argument, params_name + ".scale_format: must be 0 (f32) or 1 (ue8m0), got " +
                                                  std::to_string(static_cast<int>(config.scale_format))};
    if (!(config.amax_floor > 0.0f) || !std::isfinite(config.amax_floor))
        return {StatusCode::invalid_argument,
                params_name + ".amax_floor: must be a finite value > 0, got " + std::to_string(config.amax_floor)};
    return Status::success();
}

// Shared by both directions: `values` is x (quantize) or y (dequantize).
Status describe(Context& context, const QuantizeFp8Config& config, const std::string& params_name,
                const TensorView* values, const char* values_name, const TensorView* codes, const char* codes_name,
                const TensorView* scales, QuantizeFp8Problem* problem) {
    DSA_TRY(validate_config(config, params_name));
    DSA_TRY(check_tensor(values, values_name));
    DSA_TRY(check_tensor(codes, codes_name));
    DSA_TRY(check_tensor(scales, "scales"));
    DSA_TRY(context.require_device(*values, values_name));
    DSA_TRY(context.require_device(*codes, codes_name));
    DSA_TRY(context.require_device(*scales, "scales"));
    DSA_TRY(require_dtype(*codes, codes_name, {DType::fp8_e4m3, DType::u8}));
    DSA_TRY(require_dtype(*scales, "scales", {DType::f32}));
    DSA_TRY(require_min_rank(*values, values_name, 1));
    DSA_TRY(require_same_shape(*codes, codes_name, *values, values_name));
    DSA_TRY(require_same_leading_shape(*scales, "scales", *values, values_name));
    const int64_t n = values->size(-1);
    if (n % config.group_size != 0)
        return {StatusCode::invalid_argument, params_name + ".group_size: " + std::to_string(config.group_size) +
                                                  " does not divide the last dimension N = " + std::to_string(n)};
    DSA_TRY(require_extent(*scales, "scales", -1, n / config.group_size, "N / group_size"));
    DSA_TRY(require_unit_last_stride(*values, values_name));
    DSA_TRY(require_unit_last_stride(*codes, codes_name));
    problem->values = *values;
    problem->codes = *codes;
    problem->scales = *scales;
    problem->config = config;
    problem->rows = leading_row_count(*values);
    problem->n = n;
    return Status::success();
}

}  // namespace

Status describe_quantize_fp8(Context& context, const QuantizeFp8Config& config, const char* params_name,
                             const TensorView* x, const TensorView* q, const TensorView* scales,
                             QuantizeFp8Problem* problem) {
    DSA_TRY(describe(context, config, params_name, x, "x", q, "q", scales, problem));
    DSA_TRY(require_dtype(*x, "x", {DType::f32, DType::bf16, DType::f16}));
    DSA_TRY(require_non_self_overlapping(*q, "q"));
    DSA_TRY(require_non_self_overlapping(*scales, "scales"));
    DSA_TRY(require_disjoint(*q, "q", *x, "x"));
    DSA_TRY(require_disjoint(*scales, "scales", *x, "x"));
    DSA_TRY(require_disjoint(*scales, "scales", *q, "q"));
    return Status::success();
}

Status quantize_fp8(Context& context, const QuantizeFp8Config& config, const TensorView* x, const TensorView* q,
                    const TensorView* scales, Stream stream) {
    QuantizeFp8Problem problem;
    DSA_TRY(describe_quantize_fp8(context, config, "params", x, q, scales, &problem));
    if (problem.rows * problem.n == 0) return Status::success();
    if (context.device() == DeviceType::cpu) {
        cpu::quantize_fp8(context, problem);
        return Status::success();
    }
#ifdef DSA_HAVE_CUDA
    return cuda::quantize_fp8(context, problem, stream);
#else
    (void)stream;
    return cuda_not_built();
#endif
}

Status dequantize_fp8(Context& context, const QuantizeFp8Config& config, const TensorView* q,
                      const TensorView* scales, const TensorView* y, Stream stream) {
    QuantizeFp8Problem problem;
    DSA_TRY(describe(context, config, "params", y, "y", q, "q", scales, &problem));
    DSA_TRY(require_dtype(*y, "y", {DType::f32, DType::bf16}));
    DSA_TRY(require_non_self_overlapping(*y, "y"));
    DSA_TRY(require_disjoint(*y, "y", *q, "q"));
    DSA_TRY(require_disjoint(*y, "y", *scales, "scales"));
    if (problem.rows * problem.n == 0) return Status::success();
    if (context.device() == DeviceType::cpu) {
        cpu::dequantize_fp8(context, problem);
        return Status::success();
    }
#ifdef DSA_HAVE_CUDA
    return cuda::dequantize_fp8(context, problem, stream);
#else
    (void)stream;
    return cuda_not_built();
#endif
}

}  // namespace dsa
