// extern "C" entry points of the one-call DSA layer step.
#include "../../core/ops/attention.hpp"
#include "api.hpp"
#include "configs.hpp"

using namespace dsa;

extern "C" {

dsa_status_t dsa_attention_workspace_size(const dsa_context_t* context, const dsa_topk_params_t* topk_params,
                                          int64_t num_queries, int64_t num_tokens, size_t* bytes) {
    return capi::guarded([&]() -> Status {
        DSA_TRY(capi::check_size_query(context, num_queries, num_tokens, bytes));
        TopkConfig topk;
        DSA_TRY(capi::read_topk_config(topk_params, "topk_params", &topk));
        DSA_TRY(validate_topk_config(topk));
        const int64_t needed = attention_workspace_bytes(*context->impl, num_queries, num_tokens, topk.k);
        if (needed < 0) return capi::size_overflow();
        *bytes = static_cast<size_t>(needed);
        return Status::success();
    });
}

dsa_status_t dsa_attention(dsa_context_t* context, const dsa_indexer_params_t* indexer_params,
                           const dsa_topk_params_t* topk_params, const dsa_sparse_attention_params_t* attention_params,
                           const dsa_tensor_t* index_q, const dsa_tensor_t* index_weights, const dsa_tensor_t* index_k,
                           const dsa_tensor_t* index_k_scale, const dsa_tensor_t* ks, const dsa_tensor_t* ke,
                           const dsa_tensor_t* q, const dsa_tensor_t* kv, const dsa_tensor_t* attn_sink,
                           const dsa_tensor_t* out, const dsa_tensor_t* lse, const dsa_tensor_t* selected,
                           void* workspace, size_t workspace_bytes, dsa_stream_t stream) {
    return capi::guarded([&]() -> Status {
        capi::FusedCall call;
        DSA_TRY(capi::open_fused_call(context, indexer_params, topk_params, workspace, workspace_bytes, &call));
        SparseAttentionConfig config;
        DSA_TRY(capi::read_sparse_attention_config(attention_params, "attention_params", &config));
        TensorView views[13];
        IndexerInputs indexer{capi::view_of(index_q, views[0]), capi::view_of(index_weights, views[1]),
                              capi::view_of(index_k, views[2]), capi::view_of(index_k_scale, views[3]),
                              capi::view_of(ks, views[4]), capi::view_of(ke, views[5]), nullptr, nullptr, nullptr};
        AttentionInputs attention{capi::view_of(q, views[6]), capi::view_of(kv, views[7]),
                                  capi::view_of(attn_sink, views[8]), capi::view_of(out, views[9]),
                                  capi::view_of(lse, views[10])};
        return dsa::attention(*call.context, call.topk, config, indexer, attention, capi::view_of(selected, views[11]), call.workspace,
                              stream);
    });
}

dsa_status_t dsa_attention_paged(dsa_context_t* context, const dsa_indexer_params_t* indexer_params,
                                 const dsa_topk_params_t* topk_params,
                                 const dsa_sparse_attention_params_t* attention_params, const dsa_tensor_t* index_q,
                                 const dsa_tensor_t* index_weights, const dsa_tensor_t* index_k_cache,
                                 const dsa_tensor_t* block_table, const dsa_tensor_t* context_lens,
                                 const dsa_tensor_t* q, const dsa_tensor_t* kv_cache, const dsa_tensor_t* attn_sink,
                                 const dsa_tensor_t* out, const dsa_tensor_t* lse, const dsa_tensor_t* selected,
                                 void* workspace, size_t workspace_bytes, dsa_stream_t stream) {
    return capi::guarded([&]() -> Status {
        capi::FusedCall call;
        DSA_TRY(capi::open_fused_call(context, indexer_params, topk_params, workspace, workspace_bytes, &call));
        SparseAttentionConfig config;
        DSA_TRY(capi::read_sparse_attention_config(attention_params, "attention_params", &config));
        TensorView views[12];
        IndexerInputs indexer{capi::view_of(index_q, views[0]), capi::view_of(index_weights, views[1]),
                              nullptr, nullptr, nullptr, nullptr, capi::view_of(index_k_cache, views[2]),
                              capi::view_of(block_table, views[3]), capi::view_of(context_lens, views[4])};
        AttentionInputs attention{capi::view_of(q, views[5]), capi::view_of(kv_cache, views[6]),
                                  capi::view_of(attn_sink, views[7]), capi::view_of(out, views[8]),
                                  capi::view_of(lse, views[9])};
        return attention_paged(*call.context, call.topk, config, indexer, attention, capi::view_of(selected, views[10]), call.workspace,
                               stream);
    });
}

}  // extern "C"
