// extern "C" entry points of sparse MLA attention and the MLA FP8 cache writer.
#include "../../core/ops/sparse_attention.hpp"
#include "api.hpp"
#include "configs.hpp"

using namespace dsa;

Status capi::read_sparse_attention_config(const dsa_sparse_attention_params_t* params, const char* name,
                                          SparseAttentionConfig* config) {
    if (params == nullptr)
        return {StatusCode::invalid_argument,
                std::string(name) + ": is NULL, but scale has no default; fill the struct with "
                                    "dsa_sparse_attention_params_init and set scale"};
    dsa_sparse_attention_params_t resolved;
    dsa_sparse_attention_params_init(&resolved);
    DSA_TRY(capi::read_params(params, &resolved, name));
    config->scale = resolved.scale;
    config->d_v = resolved.d_v;
    return Status::success();
}

extern "C" {

dsa_status_t dsa_sparse_attention_params_init(dsa_sparse_attention_params_t* params) {
    return capi::guarded([&]() -> Status {
        if (params == nullptr) return {StatusCode::invalid_argument, "params: is NULL"};
        std::memset(params, 0, sizeof *params);
        params->struct_size = sizeof *params;
        params->scale = 0.0f;  // required: the caller must set it
        params->d_v = 512;
        return Status::success();
    });
}

dsa_status_t dsa_sparse_attention(dsa_context_t* context, const dsa_sparse_attention_params_t* params,
                                  const dsa_tensor_t* q, const dsa_tensor_t* kv, const dsa_tensor_t* indices,
                                  const dsa_tensor_t* attn_sink, const dsa_tensor_t* topk_length,
                                  const dsa_tensor_t* out, const dsa_tensor_t* lse, const dsa_tensor_t* max_logits,
                                  dsa_stream_t stream) {
    return capi::guarded([&]() -> Status {
        Context* ctx = nullptr;
        DSA_TRY(capi::require_context(context, &ctx));
        SparseAttentionConfig config;
        DSA_TRY(capi::read_sparse_attention_config(params, "params", &config));
        TensorView q_view, kv_view, indices_view, sink_view, length_view, out_view, lse_view, max_view;
        return sparse_attention(*ctx, config, capi::view_of(q, q_view), capi::view_of(kv, kv_view),
                                capi::view_of(indices, indices_view), capi::view_of(attn_sink, sink_view),
                                capi::view_of(topk_length, length_view), capi::view_of(out, out_view),
                                capi::view_of(lse, lse_view), capi::view_of(max_logits, max_view), stream);
    });
}

dsa_status_t dsa_sparse_attention_paged(dsa_context_t* context, const dsa_sparse_attention_params_t* params,
                                        const dsa_tensor_t* q, const dsa_tensor_t* kv_cache,
                                        const dsa_tensor_t* indices, const dsa_tensor_t* attn_sink,
                                        const dsa_tensor_t* topk_length, const dsa_tensor_t* out,
                                        const dsa_tensor_t* lse, dsa_stream_t stream) {
    return capi::guarded([&]() -> Status {
        Context* ctx = nullptr;
        DSA_TRY(capi::require_context(context, &ctx));
        SparseAttentionConfig config;
        DSA_TRY(capi::read_sparse_attention_config(params, "params", &config));
        TensorView q_view, cache_view, indices_view, sink_view, length_view, out_view, lse_view;
        return sparse_attention_paged(*ctx, config, capi::view_of(q, q_view), capi::view_of(kv_cache, cache_view),
                                      capi::view_of(indices, indices_view), capi::view_of(attn_sink, sink_view),
                                      capi::view_of(topk_length, length_view), capi::view_of(out, out_view),
                                      capi::view_of(lse, lse_view), stream);
    });
}

dsa_status_t dsa_mla_cache_write(dsa_context_t* context, const dsa_tensor_t* c_kv, const dsa_tensor_t* k_pe,
                                 const dsa_tensor_t* slot_mapping, const dsa_tensor_t* kv_cache,
                                 dsa_stream_t stream) {
    return capi::guarded([&]() -> Status {
        Context* ctx = nullptr;
        DSA_TRY(capi::require_context(context, &ctx));
        TensorView c_kv_view, k_pe_view, mapping_view, cache_view;
        return mla_cache_write(*ctx, capi::view_of(c_kv, c_kv_view), capi::view_of(k_pe, k_pe_view),
                               capi::view_of(slot_mapping, mapping_view), capi::view_of(kv_cache, cache_view),
                               stream);
    });
}

}  // extern "C"
