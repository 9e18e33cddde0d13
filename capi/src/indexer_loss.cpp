// extern "C" entry points of the indexer distillation loss.
#include "../../core/ops/indexer_loss.hpp"
#include "api.hpp"

using namespace dsa;

static_assert(static_cast<uint32_t>(IndexerLossMode::dense) == DSA_INDEXER_LOSS_DENSE);
static_assert(static_cast<uint32_t>(IndexerLossMode::sparse) == DSA_INDEXER_LOSS_SPARSE);

extern "C" {

dsa_status_t dsa_indexer_loss_params_init(dsa_indexer_loss_params_t* params) {
    return capi::guarded([&]() -> Status {
        if (params == nullptr) return {StatusCode::invalid_argument, "params: is NULL"};
        std::memset(params, 0, sizeof *params);
        params->struct_size = sizeof *params;
        params->mode = DSA_INDEXER_LOSS_DENSE;
        params->coeff = 1.0f;
        params->teacher_scale = 0.0f;  // required with teacher_q: the caller must set it
        return Status::success();
    });
}

dsa_status_t dsa_indexer_loss(dsa_context_t* context, const dsa_indexer_loss_params_t* params,
                              const dsa_tensor_t* index_q, const dsa_tensor_t* index_k, const dsa_tensor_t* weights,
                              const dsa_tensor_t* ks, const dsa_tensor_t* ke, const dsa_tensor_t* indices,
                              const dsa_tensor_t* teacher_q, const dsa_tensor_t* teacher_k,
                              const dsa_tensor_t* teacher_probs, const dsa_tensor_t* loss,
                              const dsa_tensor_t* row_loss, const dsa_tensor_t* d_index_q,
                              const dsa_tensor_t* d_index_k, const dsa_tensor_t* d_weights, dsa_stream_t stream) {
    return capi::guarded([&]() -> Status {
        Context* ctx = nullptr;
        DSA_TRY(capi::require_context(context, &ctx));
        dsa_indexer_loss_params_t resolved;
        dsa_indexer_loss_params_init(&resolved);
        DSA_TRY(capi::read_params(params, &resolved, "params"));
        IndexerLossConfig config;
        config.mode = static_cast<IndexerLossMode>(resolved.mode);
        config.coeff = resolved.coeff;
        config.teacher_scale = resolved.teacher_scale;
        TensorView index_q_view, index_k_view, weights_view, ks_view, ke_view, indices_view, teacher_q_view,
            teacher_k_view, teacher_probs_view, loss_view, row_loss_view, d_index_q_view, d_index_k_view,
            d_weights_view;
        return indexer_loss(*ctx, config, capi::view_of(index_q, index_q_view), capi::view_of(index_k, index_k_view),
                            capi::view_of(weights, weights_view), capi::view_of(ks, ks_view),
                            capi::view_of(ke, ke_view), capi::view_of(indices, indices_view),
                            capi::view_of(teacher_q, teacher_q_view), capi::view_of(teacher_k, teacher_k_view),
                            capi::view_of(teacher_probs, teacher_probs_view), capi::view_of(loss, loss_view),
                            capi::view_of(row_loss, row_loss_view), capi::view_of(d_index_q, d_index_q_view),
                            capi::view_of(d_index_k, d_index_k_view), capi::view_of(d_weights, d_weights_view),
                            stream);
    });
}

}  // extern "C"
