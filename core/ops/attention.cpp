#include "attention.hpp"

#include <string>
#include <vector>

#ifdef DSA_HAVE_CUDA
#include "../stream_buffer.hpp"
#endif

namespace dsa {
namespace {

// Where the selected indices live: the caller's `selected` tensor, the head of the workspace, or
// a buffer of our own (host memory for CPU contexts, stream-ordered device memory for CUDA
// ones); shaped [rows, k] (prefill) or [B, s_q, k] (paged, as attention wants).
struct SelectionBuffer {
    std::vector<int32_t> owned;
#ifdef DSA_HAVE_CUDA
    StreamBuffer device_owned;
#endif
    TensorView flat;      // [rows, k]
    TensorView attended;  // the view sparse attention reads
    Workspace rest;       // what is left of the workspace for the fused indexer + top-k
};

// q: the (validated) indexer queries, whose [B, n_next] shape the paged view takes.
Status place_selection(const Context& context, const TensorView* q, bool paged, int64_t rows, int64_t columns,
                       const TopkConfig& topk, const TensorView* selected, Workspace workspace, Stream stream,
                       SelectionBuffer* buffer) {
    const int64_t index_bytes = rows * topk.k * static_cast<int64_t>(sizeof(int32_t));
    if (workspace.data != nullptr) {
        const int64_t needed = attention_workspace_bytes(context, rows, columns, topk.k);
        if (workspace.bytes < needed)
            return {StatusCode::workspace_too_small, "workspace: " + std::to_string(workspace.bytes) + " bytes given, " +
                                                         std::to_string(needed) +
                                                         " needed (ask dsa_attention_workspace_size)"};
    }
    if (selected != nullptr) {
        DSA_TRY(check_tensor(selected, "selected"));
        DSA_TRY(require_dtype(*selected, "selected", {DType::i32}));
        DSA_TRY(require_rank(*selected, "selected", 2));
        DSA_TRY(require_extent(*selected, "selected", 0, rows, "the query rows"));
        DSA_TRY(require_extent(*selected, "selected", 1, topk.k, "params.k"));
        DSA_TRY(require_unit_last_stride(*selected, "selected"));
        buffer->flat = *selected;
    } else {
        buffer->flat = TensorView{};
        buffer->flat.dtype = DType::i32;
        buffer->flat.device = context.device();
        buffer->flat.device_id = context.device_id();
        buffer->flat.ndim = 2;
        buffer->flat.shape[0] = rows;
        buffer->flat.shape[1] = topk.k;
        buffer->flat.strides[0] = topk.k;
        buffer->flat.strides[1] = 1;
        if (workspace.data != nullptr) {
            buffer->flat.data = workspace.data;
        } else if (context.device() == DeviceType::cpu) {
            buffer->owned.resize(static_cast<size_t>(rows * topk.k));
            buffer->flat.data = buffer->owned.data();
        } else if (index_bytes > 0) {
#ifdef DSA_HAVE_CUDA
            DSA_TRY(buffer->device_owned.allocate(context, index_bytes, stream));
            buffer->flat.data = buffer->device_owned.data();
#else
            (void)stream;
            return cuda_not_built();
#endif
        }
    }
    buffer->rest = Workspace{};
    if (workspace.data != nullptr) {
        // The indices take the (256-byte aligned) head of the workspace even when the caller
        // gave `selected`, so the layout does not depend on that choice.
        const int64_t head = (index_bytes + 255) / 256 * 256;
        buffer->rest.data = static_cast<char*>(workspace.data) + head;
        buffer->rest.bytes = workspace.bytes - head;
    }
    buffer->attended = buffer->flat;
    if (paged) {
        // [B * s_q, k] seen as [B, s_q, k].
        buffer->attended.ndim = 3;
        buffer->attended.shape[0] = q->shape[0];
        buffer->attended.shape[1] = q->shape[1];
        buffer->attended.shape[2] = topk.k;
        buffer->attended.strides[0] = buffer->flat.strides[0] * q->shape[1];
        buffer->attended.strides[1] = buffer->flat.strides[0];
        buffer->attended.strides[2] = 1;
    }
    return Status::success();
}

}  // namespace

int64_t attention_workspace_bytes(const Context& context, int64_t rows, int64_t columns, int64_t k) {
    const int64_t index_bytes = rows * k * static_cast<int64_t>(sizeof(int32_t));
    return (index_bytes + 255) / 256 * 256 + indexer_topk_workspace_bytes(context, rows, columns);
}

Status attention(Context& context, const TopkConfig& topk, const SparseAttentionConfig& config,
                 const IndexerInputs& indexer, const AttentionInputs& attention, const TensorView* selected,
                 Workspace workspace, Stream stream) {
    DSA_TRY(validate_topk_config(topk));
    IndexerProblem indexer_problem;
    DSA_TRY(describe_indexer(context, indexer.q, indexer.weights, indexer.k, indexer.k_scale, indexer.ks, indexer.ke,
                             &indexer_problem));
    SelectionBuffer buffer;
    DSA_TRY(place_selection(context, attention.q, false, indexer_problem.rows, indexer_problem.columns, topk, selected,
                            workspace, stream, &buffer));
    SparseAttentionProblem attention_problem;
    DSA_TRY(describe_sparse_attention(context, config, attention.q, attention.kv, &buffer.attended, attention.attn_sink,
                                      nullptr, attention.out, attention.lse, nullptr, &attention_problem));
    if (attention_problem.rows != indexer_problem.rows)
        return {StatusCode::shape_mismatch, "q: " + std::to_string(attention_problem.rows) +
                                                " query rows, but index_q has " + std::to_string(indexer_problem.rows)};
    if (attention.kv->size(0) != indexer_problem.columns)
        return {StatusCode::shape_mismatch, "kv: " + std::to_string(attention.kv->size(0)) +
                                                " tokens, but index_k has " + std::to_string(indexer_problem.columns)};
    DSA_TRY(indexer_topk(context, topk, indexer.q, indexer.weights, indexer.k, indexer.k_scale, indexer.ks, indexer.ke,
                         &buffer.flat, buffer.rest, stream));
    return run_sparse_attention(context, attention_problem, stream);
}

Status attention_paged(Context& context, const TopkConfig& topk, const SparseAttentionConfig& config,
                       const IndexerInputs& indexer, const AttentionInputs& attention, const TensorView* selected,
                       Workspace workspace, Stream stream) {
    DSA_TRY(validate_topk_config(topk));
    DSA_TRY(check_tensor(indexer.block_table, "block_table"));
    const int64_t max_pages = indexer.block_table->ndim == 2 ? indexer.block_table->shape[1] : 0;
    IndexerProblem indexer_problem;
    DSA_TRY(describe_indexer_paged(context, indexer.q, indexer.weights, indexer.k_cache, indexer.block_table,
                                   indexer.context_lens, max_pages * kIndexerPageTokens, &indexer_problem));
    SelectionBuffer buffer;
    DSA_TRY(place_selection(context, indexer.q, true, indexer_problem.rows, indexer_problem.columns, topk, selected,
                            workspace, stream, &buffer));
    SparseAttentionProblem attention_problem;
    DSA_TRY(describe_sparse_attention_paged(context, config, attention.q, attention.kv, &buffer.attended,
                                            attention.attn_sink, nullptr, attention.out, attention.lse,
                                            &attention_problem));
    if (attention.q->shape[0] != indexer.q->shape[0] || attention.q->shape[1] != indexer.q->shape[1])
        return {StatusCode::shape_mismatch, "q: [B, s_q] must equal index_q's [B, n_next]"};
    if (attention_problem.page_size != kIndexerPageTokens)
        return {StatusCode::shape_mismatch, "kv_cache: pages must hold 64 tokens (it shares the indexer's block "
                                            "table), got " + std::to_string(attention_problem.page_size)};
    TopkConfig slot_config = topk;
    slot_config.page_size = kIndexerPageTokens;
    DSA_TRY(indexer_topk_paged(context, slot_config, indexer.q, indexer.weights, indexer.k_cache, indexer.block_table,
                               indexer.context_lens, nullptr, &buffer.flat, buffer.rest, stream));
    return run_sparse_attention(context, attention_problem, stream);
}

}  // namespace dsa
