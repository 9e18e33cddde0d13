// extern "C" entry points of the lightning indexer and its key-cache writer.
#include "../../core/ops/indexer.hpp"
#include "api.hpp"
#include "configs.hpp"

using namespace dsa;

// The struct has no options yet; reading it still enforces the struct_size rules.
Status capi::read_indexer_params(const dsa_indexer_params_t* params, const char* name) {
    dsa_indexer_params_t resolved;
    dsa_indexer_params_init(&resolved);
    return capi::read_params(params, &resolved, name);
}

extern "C" {

dsa_status_t dsa_indexer_params_init(dsa_indexer_params_t* params) {
    return capi::guarded([&]() -> Status {
        if (params == nullptr) return {StatusCode::invalid_argument, "params: is NULL"};
        std::memset(params, 0, sizeof *params);
        params->struct_size = sizeof *params;
        return Status::success();
    });
}

dsa_status_t dsa_indexer_logits(dsa_context_t* context, const dsa_indexer_params_t* params, const dsa_tensor_t* q,
                                const dsa_tensor_t* weights, const dsa_tensor_t* k, const dsa_tensor_t* k_scale,
                                const dsa_tensor_t* ks, const dsa_tensor_t* ke, const dsa_tensor_t* logits,
                                dsa_stream_t stream) {
    return capi::guarded([&]() -> Status {
        Context* ctx = nullptr;
        DSA_TRY(capi::require_context(context, &ctx));
        DSA_TRY(capi::read_indexer_params(params, "params"));
        TensorView q_view, weights_view, k_view, k_scale_view, ks_view, ke_view, logits_view;
        return indexer_logits(*ctx, capi::view_of(q, q_view), capi::view_of(weights, weights_view),
                              capi::view_of(k, k_view), capi::view_of(k_scale, k_scale_view),
                              capi::view_of(ks, ks_view), capi::view_of(ke, ke_view),
                              capi::view_of(logits, logits_view), stream);
    });
}

dsa_status_t dsa_indexer_logits_paged(dsa_context_t* context, const dsa_indexer_params_t* params,
                                      const dsa_tensor_t* q, const dsa_tensor_t* weights,
                                      const dsa_tensor_t* k_cache, const dsa_tensor_t* block_table,
                                      const dsa_tensor_t* context_lens, const dsa_tensor_t* logits,
                                      dsa_stream_t stream) {
    return capi::guarded([&]() -> Status {
        Context* ctx = nullptr;
        DSA_TRY(capi::require_context(context, &ctx));
        DSA_TRY(capi::read_indexer_params(params, "params"));
        TensorView q_view, weights_view, cache_view, table_view, lens_view, logits_view;
        return indexer_logits_paged(*ctx, capi::view_of(q, q_view), capi::view_of(weights, weights_view),
                                    capi::view_of(k_cache, cache_view), capi::view_of(block_table, table_view),
                                    capi::view_of(context_lens, lens_view), capi::view_of(logits, logits_view),
                                    stream);
    });
}

dsa_status_t dsa_indexer_cache_write(dsa_context_t* context, const dsa_tensor_t* k, const dsa_tensor_t* slot_mapping,
                                     const dsa_tensor_t* k_cache, dsa_stream_t stream) {
    return capi::guarded([&]() -> Status {
        Context* ctx = nullptr;
        DSA_TRY(capi::require_context(context, &ctx));
        TensorView k_view, slots_view, cache_view;
        return indexer_cache_write(*ctx, capi::view_of(k, k_view), capi::view_of(slot_mapping, slots_view),
                                   capi::view_of(k_cache, cache_view), stream);
    });
}

}  // extern "C"
