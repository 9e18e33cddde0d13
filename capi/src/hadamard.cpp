// extern "C" entry points of the Hadamard rotation.
#include "../../core/ops/hadamard.hpp"
#include "api.hpp"

using namespace dsa;

extern "C" {

dsa_status_t dsa_hadamard_params_init(dsa_hadamard_params_t* params) {
    return capi::guarded([&]() -> Status {
        if (params == nullptr) return {StatusCode::invalid_argument, "params: is NULL"};
        std::memset(params, 0, sizeof *params);
        params->struct_size = sizeof *params;
        params->scale = 0.0f;
        return Status::success();
    });
}

dsa_status_t dsa_hadamard(dsa_context_t* context, const dsa_hadamard_params_t* params, const dsa_tensor_t* x,
                          const dsa_tensor_t* y, dsa_stream_t stream) {
    return capi::guarded([&]() -> Status {
        Context* ctx = nullptr;
        DSA_TRY(capi::require_context(context, &ctx));
        dsa_hadamard_params_t resolved;
        dsa_hadamard_params_init(&resolved);
        DSA_TRY(capi::read_params(params, &resolved, "params"));
        TensorView x_view, y_view;
        return hadamard(*ctx, resolved.scale, capi::view_of(x, x_view), capi::view_of(y, y_view), stream);
    });
}

}  // extern "C"
