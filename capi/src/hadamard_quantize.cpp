// extern "C" entry point of the fused Hadamard rotation + FP8 quantisation.
#include "../../core/ops/hadamard_quantize.hpp"
#include "api.hpp"
#include "configs.hpp"

using namespace dsa;

extern "C" {

dsa_status_t dsa_hadamard_quantize_fp8(dsa_context_t* context, const dsa_hadamard_params_t* hadamard_params,
                                       const dsa_quantize_fp8_params_t* quantize_params, const dsa_tensor_t* x,
                                       const dsa_tensor_t* q, const dsa_tensor_t* scales, dsa_stream_t stream) {
    return capi::guarded([&]() -> Status {
        Context* ctx = nullptr;
        DSA_TRY(capi::require_context(context, &ctx));
        dsa_hadamard_params_t rotation;
        dsa_hadamard_params_init(&rotation);
        DSA_TRY(capi::read_params(hadamard_params, &rotation, "hadamard_params"));
        QuantizeFp8Config config;
        DSA_TRY(capi::read_quantize_fp8_config(quantize_params, "quantize_params", &config));
        TensorView x_view, q_view, scales_view;
        return hadamard_quantize_fp8(*ctx, rotation.scale, config, capi::view_of(x, x_view), capi::view_of(q, q_view),
                                     capi::view_of(scales, scales_view), stream);
    });
}

}  // extern "C"
