// extern "C" entry points of top-k selection.
#include "../../core/ops/topk.hpp"
#include "api.hpp"
#include "configs.hpp"

using namespace dsa;

static_assert(static_cast<uint32_t>(TopkOrder::unspecified) == DSA_TOPK_ORDER_UNSPECIFIED);
static_assert(static_cast<uint32_t>(TopkOrder::score) == DSA_TOPK_ORDER_SCORE);
static_assert(static_cast<uint32_t>(TopkOrder::index) == DSA_TOPK_ORDER_INDEX);

Status capi::read_topk_config(const dsa_topk_params_t* params, const char* name, TopkConfig* config) {
    dsa_topk_params_t resolved;
    dsa_topk_params_init(&resolved);
    DSA_TRY(capi::read_params(params, &resolved, name));
    config->k = resolved.k;
    config->order = static_cast<TopkOrder>(resolved.order);
    config->n_sink = resolved.n_sink;
    config->n_local = resolved.n_local;
    config->page_size = resolved.page_size;
    return Status::success();
}

extern "C" {

dsa_status_t dsa_topk_params_init(dsa_topk_params_t* params) {
    return capi::guarded([&]() -> Status {
        if (params == nullptr) return {StatusCode::invalid_argument, "params: is NULL"};
        std::memset(params, 0, sizeof *params);
        params->struct_size = sizeof *params;
        params->k = 2048;
        params->order = DSA_TOPK_ORDER_UNSPECIFIED;
        params->n_sink = 0;
        params->n_local = 0;
        params->page_size = 64;
        return Status::success();
    });
}

dsa_status_t dsa_topk(dsa_context_t* context, const dsa_topk_params_t* params, const dsa_tensor_t* scores,
                      const dsa_tensor_t* row_starts, const dsa_tensor_t* row_ends, const dsa_tensor_t* block_table,
                      const dsa_tensor_t* indices, dsa_stream_t stream) {
    return capi::guarded([&]() -> Status {
        Context* ctx = nullptr;
        DSA_TRY(capi::require_context(context, &ctx));
        TopkConfig config;
        DSA_TRY(capi::read_topk_config(params, "params", &config));
        TensorView scores_view, starts_view, ends_view, table_view, indices_view;
        return topk(*ctx, config, capi::view_of(scores, scores_view), capi::view_of(row_starts, starts_view),
                    capi::view_of(row_ends, ends_view), capi::view_of(block_table, table_view),
                    capi::view_of(indices, indices_view), stream);
    });
}

}  // extern "C"
