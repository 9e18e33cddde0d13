// extern "C" entry points of FP8 quantisation.
#include "../../core/ops/quantize.hpp"
#include "api.hpp"
#include "configs.hpp"

using namespace dsa;

namespace dsa::capi {

Status read_quantize_fp8_config(const dsa_quantize_fp8_params_t* params, const char* name, QuantizeFp8Config* config) {
    dsa_quantize_fp8_params_t resolved;
    dsa_quantize_fp8_params_init(&resolved);
    DSA_TRY(read_params(params, &resolved, name));
    config->group_size = resolved.group_size;
    config->scale_format = static_cast<ScaleFormat>(resolved.scale_format);
    config->amax_floor = resolved.amax_floor;
    return Status::success();
}

}  // namespace dsa::capi

extern "C" {

dsa_status_t dsa_quantize_fp8_params_init(dsa_quantize_fp8_params_t* params) {
    return capi::guarded([&]() -> Status {
        if (params == nullptr) return {StatusCode::invalid_argument, "params: is NULL"};
        std::memset(params, 0, sizeof *params);
        params->struct_size = sizeof *params;
        params->group_size = 128;
        params->scale_format = DSA_SCALE_FORMAT_F32;
        params->amax_floor = 1e-4f;
        return Status::success();
    });
}

dsa_status_t dsa_quantize_fp8(dsa_context_t* context, const dsa_quantize_fp8_params_t* params,
                              const dsa_tensor_t* x, const dsa_tensor_t* q, const dsa_tensor_t* scales,
                              dsa_stream_t stream) {
    return capi::guarded([&]() -> Status {
        Context* ctx = nullptr;
        DSA_TRY(capi::require_context(context, &ctx));
        QuantizeFp8Config config;
        DSA_TRY(capi::read_quantize_fp8_config(params, "params", &config));
        TensorView x_view, q_view, scales_view;
        return quantize_fp8(*ctx, config, capi::view_of(x, x_view), capi::view_of(q, q_view),
                            capi::view_of(scales, scales_view), stream);
    });
}

dsa_status_t dsa_dequantize_fp8(dsa_context_t* context, const dsa_quantize_fp8_params_t* params,
                                const dsa_tensor_t* q, const dsa_tensor_t* scales, const dsa_tensor_t* y,
                                dsa_stream_t stream) {
    return capi::guarded([&]() -> Status {
        Context* ctx = nullptr;
        DSA_TRY(capi::require_context(context, &ctx));
        QuantizeFp8Config config;
        DSA_TRY(capi::read_quantize_fp8_config(params, "params", &config));
        TensorView q_view, scales_view, y_view;
        return dequantize_fp8(*ctx, config, capi::view_of(q, q_view), capi::view_of(scales, scales_view),
                              capi::view_of(y, y_view), stream);
    });
}

}  // extern "C"
