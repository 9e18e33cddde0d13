// Params structs -> core configs, shared by each op's own entry points and the fused ones.
// `name` is how messages call the struct ("params", "topk_params", ...).
#pragma once

#include "../../core/ops/indexer_topk.hpp"
#include "../../core/ops/quantize.hpp"
#include "../../core/ops/sparse_attention.hpp"
#include "../../core/ops/topk.hpp"
#include "dsa.h"

namespace dsa::capi {

Status read_topk_config(const dsa_topk_params_t* params, const char* name, TopkConfig* config);
Status read_quantize_fp8_config(const dsa_quantize_fp8_params_t* params, const char* name, QuantizeFp8Config* config);
// Rejects NULL: the softmax scale has no default.
Status read_sparse_attention_config(const dsa_sparse_attention_params_t* params, const char* name,
                                    SparseAttentionConfig* config);
// No options yet; enforces the struct_size rules.
Status read_indexer_params(const dsa_indexer_params_t* params, const char* name);
// A caller's (workspace, workspace_bytes) pair; NULL data means "allocate for the call".
Status read_workspace(void* data, size_t bytes, Workspace* workspace);

// What every fused entry point (indexer + top-k, the one-call layer) reads first.
struct FusedCall {
    Context* context = nullptr;
    TopkConfig topk;
    Workspace workspace;
};
Status open_fused_call(dsa_context_t* context, const dsa_indexer_params_t* indexer_params,
                       const dsa_topk_params_t* topk_params, void* workspace, size_t workspace_bytes,
                       FusedCall* call);
// The arguments every *_workspace_size query checks.
Status check_size_query(const dsa_context_t* context, int64_t num_queries, int64_t num_tokens, const size_t* bytes);
// What a *_workspace_size query answers when the size does not fit int64.
Status size_overflow();

}  // namespace dsa::capi
