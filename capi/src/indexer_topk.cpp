// extern "C" entry points of the fused lightning indexer + top-k.
#include "../../core/ops/indexer_topk.hpp"
#include "api.hpp"
#include "configs.hpp"

using namespace dsa;

Status capi::read_workspace(void* data, size_t bytes, Workspace* workspace) {
    if (bytes > static_cast<size_t>(INT64_MAX))
        return {StatusCode::invalid_argument, "workspace_bytes: larger than int64 can count"};
    workspace->data = data;
    workspace->bytes = data == nullptr ? 0 : static_cast<int64_t>(bytes);
    return Status::success();
}

Status capi::open_fused_call(dsa_context_t* context, const dsa_indexer_params_t* indexer_params,
                             const dsa_topk_params_t* topk_params, void* workspace, size_t workspace_bytes,
                             FusedCall* call) {
    DSA_TRY(capi::require_context(context, &call->context));
    DSA_TRY(capi::read_indexer_params(indexer_params, "indexer_params"));
    DSA_TRY(capi::read_topk_config(topk_params, "topk_params", &call->topk));
    return capi::read_workspace(workspace, workspace_bytes, &call->workspace);
}

Status capi::check_size_query(const dsa_context_t* context, int64_t num_queries, int64_t num_tokens,
                              const size_t* bytes) {
    if (context == nullptr || !context->impl) return {StatusCode::invalid_argument, "context: is NULL"};
    if (bytes == nullptr) return {StatusCode::invalid_argument, "bytes: is NULL"};
    if (num_queries < 0 || num_tokens < 0)
        return {StatusCode::invalid_argument, "num_queries, num_tokens: must be >= 0"};
    return Status::success();
}

Status capi::size_overflow() {
    return {StatusCode::shape_mismatch, "num_queries, num_tokens: the workspace size does not fit int64 bytes"};
}

extern "C" {

dsa_status_t dsa_indexer_topk_workspace_size(const dsa_context_t* context, int64_t num_queries, int64_t num_tokens,
                                             size_t* bytes) {
    return capi::guarded([&]() -> Status {
        DSA_TRY(capi::check_size_query(context, num_queries, num_tokens, bytes));
        const int64_t needed = indexer_topk_workspace_bytes(*context->impl, num_queries, num_tokens);
        if (needed < 0) return capi::size_overflow();
        *bytes = static_cast<size_t>(needed);
        return Status::success();
    });
}

dsa_status_t dsa_indexer_topk(dsa_context_t* context, const dsa_indexer_params_t* indexer_params,
                              const dsa_topk_params_t* topk_params, const dsa_tensor_t* q, const dsa_tensor_t* weights,
                              const dsa_tensor_t* k, const dsa_tensor_t* k_scale, const dsa_tensor_t* ks,
                              const dsa_tensor_t* ke, const dsa_tensor_t* indices, void* workspace,
                              size_t workspace_bytes, dsa_stream_t stream) {
    return capi::guarded([&]() -> Status {
        capi::FusedCall call;
        DSA_TRY(capi::open_fused_call(context, indexer_params, topk_params, workspace, workspace_bytes, &call));
        TensorView q_view, weights_view, k_view, scale_view, ks_view, ke_view, indices_view;
        return indexer_topk(*call.context, call.topk, capi::view_of(q, q_view), capi::view_of(weights, weights_view),
                            capi::view_of(k, k_view), capi::view_of(k_scale, scale_view), capi::view_of(ks, ks_view),
                            capi::view_of(ke, ke_view), capi::view_of(indices, indices_view), call.workspace, stream);
    });
}

dsa_status_t dsa_indexer_topk_paged(dsa_context_t* context, const dsa_indexer_params_t* indexer_params,
                                    const dsa_topk_params_t* topk_params, const dsa_tensor_t* q,
                                    const dsa_tensor_t* weights, const dsa_tensor_t* k_cache,
                                    const dsa_tensor_t* block_table, const dsa_tensor_t* context_lens,
                                    const dsa_tensor_t* indices, const dsa_tensor_t* slots, void* workspace,
                                    size_t workspace_bytes, dsa_stream_t stream) {
    return capi::guarded([&]() -> Status {
        capi::FusedCall call;
        DSA_TRY(capi::open_fused_call(context, indexer_params, topk_params, workspace, workspace_bytes, &call));
        TensorView q_view, weights_view, cache_view, table_view, lens_view, indices_view, slots_view;
        return indexer_topk_paged(*call.context, call.topk, capi::view_of(q, q_view), capi::view_of(weights, weights_view),
                                  capi::view_of(k_cache, cache_view), capi::view_of(block_table, table_view),
                                  capi::view_of(context_lens, lens_view), capi::view_of(indices, indices_view),
                                  capi::view_of(slots, slots_view), call.workspace, stream);
    });
}

}  // extern "C"
