// extern "C" entry points of the sparse attention backward pass.
#include "../../core/ops/sparse_attention_backward.hpp"
#include "api.hpp"
#include "configs.hpp"

using namespace dsa;

static_assert(static_cast<uint32_t>(SparseAttentionBackwardMode::deterministic) ==
              DSA_SPARSE_ATTENTION_BACKWARD_DETERMINISTIC);
static_assert(static_cast<uint32_t>(SparseAttentionBackwardMode::fast) == DSA_SPARSE_ATTENTION_BACKWARD_FAST);

namespace {

Status read_config(const dsa_sparse_attention_backward_params_t* params, SparseAttentionBackwardConfig* config) {
    dsa_sparse_attention_backward_params_t resolved;
    dsa_sparse_attention_backward_params_init(&resolved);
    DSA_TRY(capi::read_params(params, &resolved, "params"));
    config->scale = resolved.scale;
    config->d_v = resolved.d_v;
    config->mode = static_cast<SparseAttentionBackwardMode>(resolved.mode);
    return Status::success();
}

}  // namespace

extern "C" {

dsa_status_t dsa_sparse_attention_backward_params_init(dsa_sparse_attention_backward_params_t* params) {
    return capi::guarded([&]() -> Status {
        if (params == nullptr) return {StatusCode::invalid_argument, "params: is NULL"};
        std::memset(params, 0, sizeof *params);
        params->struct_size = sizeof *params;
        params->scale = 0.0f;  // required: the caller must set it
        params->d_v = 512;
        params->mode = DSA_SPARSE_ATTENTION_BACKWARD_DETERMINISTIC;
        return Status::success();
    });
}

dsa_status_t dsa_sparse_attention_backward_workspace_size(const dsa_context_t* context,
                                                          const dsa_sparse_attention_backward_params_t* params,
                                                          int64_t num_queries, int64_t topk, int64_t num_tokens,
                                                          int64_t d_qk, size_t* bytes) {
    return capi::guarded([&]() -> Status {
        DSA_TRY(capi::check_size_query(context, num_queries, num_tokens, bytes));
        if (topk < 0 || d_qk < 0) return {StatusCode::invalid_argument, "topk, d_qk: must be >= 0"};
        SparseAttentionBackwardConfig config;
        DSA_TRY(read_config(params, &config));
        DSA_TRY(check_sparse_attention_backward_mode(config.mode));
        int64_t needed = 0;
        DSA_TRY(sparse_attention_backward_workspace_bytes(*context->impl, config, num_queries, topk, num_tokens, d_qk,
                                                          &needed));
        if (needed < 0)
            return {StatusCode::shape_mismatch,
                    "num_queries, topk, num_tokens, d_qk: the workspace size does not fit int64 bytes"};
        *bytes = static_cast<size_t>(needed);
        return Status::success();
    });
}

dsa_status_t dsa_sparse_attention_backward(dsa_context_t* context, const dsa_sparse_attention_backward_params_t* params,
                                           const dsa_tensor_t* q, const dsa_tensor_t* kv, const dsa_tensor_t* indices,
                                           const dsa_tensor_t* attn_sink, const dsa_tensor_t* topk_length,
                                           const dsa_tensor_t* out, const dsa_tensor_t* lse, const dsa_tensor_t* dout,
                                           const dsa_tensor_t* dq, const dsa_tensor_t* dkv,
                                           const dsa_tensor_t* d_attn_sink, void* workspace, size_t workspace_bytes,
                                           dsa_stream_t stream) {
    return capi::guarded([&]() -> Status {
        Context* ctx = nullptr;
        DSA_TRY(capi::require_context(context, &ctx));
        if (params == nullptr)
            return {StatusCode::invalid_argument,
                    "params: is NULL, but scale has no default; fill the struct with "
                    "dsa_sparse_attention_backward_params_init and set scale"};
        SparseAttentionBackwardConfig config;
        DSA_TRY(read_config(params, &config));
        Workspace scratch;
        DSA_TRY(capi::read_workspace(workspace, workspace_bytes, &scratch));
        TensorView q_view, kv_view, indices_view, sink_view, length_view, out_view, lse_view, dout_view, dq_view,
            dkv_view, d_sink_view;
        return sparse_attention_backward(
            *ctx, config, capi::view_of(q, q_view), capi::view_of(kv, kv_view), capi::view_of(indices, indices_view),
            capi::view_of(attn_sink, sink_view), capi::view_of(topk_length, length_view), capi::view_of(out, out_view),
            capi::view_of(lse, lse_view), capi::view_of(dout, dout_view), capi::view_of(dq, dq_view),
            capi::view_of(dkv, dkv_view), capi::view_of(d_attn_sink, d_sink_view), scratch, stream);
    });
}

}  // extern "C"
