#include "attention.hpp"

#include <climits>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#ifdef DSA_HAVE_CUDA
#include "../stream_buffer.hpp"
#endif

namespace dsa {
namespace {

// The one-call layer names its parts' arguments differently (the indexer's "q" is "index_q",
// top-k's "indices" is "selected"): a part's message names the argument first and, for an
// overlap, last, so those two places are renamed.
Status renamed(Status status, std::initializer_list<std::pair<const char*, const char*>> names) {
    if (status.ok()) return status;
    std::string message = status.message();
    for (const auto& [from, to] : names) {
        const std::string lead = std::string(from) + ":";
        if (message.compare(0, lead.size(), lead) == 0) message = to + message.substr(std::string(from).size());
        const std::string overlap = std::string("overlaps ") + from + ";";
        const size_t at = message.find(overlap);
        if (at != std::string::npos) message.replace(at, overlap.size(), std::string("overlaps ") + to + ";");
    }
    return {status.code(), message};
}

const std::initializer_list<std::pair<const char*, const char*>> kIndexerNames = {
    {"q", "index_q"}, {"weights", "index_weights"}, {"k", "index_k"}, {"k_scale", "index_k_scale"},
    {"k_cache", "index_k_cache"}, {"indices", "selected"}, {"slots", "selected"}};

// The layer writes `selected` before the attention reads its inputs and `out`/`lse` after the
// indexer read its own, so no output may overlap any input of either part.
Status require_outputs_apart(const IndexerInputs& indexer, const AttentionInputs& attention,
                             const TensorView* selected, const char* kv_name) {
    const std::pair<const TensorView*, const char*> outputs[] = {
        {attention.out, "out"}, {attention.lse, "lse"}, {selected, "selected"}};
    const std::pair<const TensorView*, const char*> inputs[] = {
        {indexer.q, "index_q"},         {indexer.weights, "index_weights"},   {indexer.k, "index_k"},
        {indexer.k_scale, "index_k_scale"}, {indexer.ks, "ks"},              {indexer.ke, "ke"},
        {indexer.k_cache, "index_k_cache"}, {indexer.block_table, "block_table"},
        {indexer.context_lens, "context_lens"}, {attention.q, "q"},          {attention.kv, kv_name},
        {attention.attn_sink, "attn_sink"}};
    for (const auto& [output, output_name] : outputs)
        for (const auto& [input, input_name] : inputs)
            if (output != nullptr && input != nullptr) DSA_TRY(require_disjoint(*output, output_name, *input, input_name));
    return Status::success();
}

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
    // Checked even without a workspace: the call then allocates the indices itself.
    const int64_t needed = attention_workspace_bytes(context, rows, columns, topk.k);
    if (needed < 0)
        return {StatusCode::shape_mismatch, "index_q: " + std::to_string(rows) + " rows of k = " + std::to_string(topk.k) +
                                                " selected indices and their scratch do not fit int64 bytes"};
    const int64_t index_bytes = rows * topk.k * static_cast<int64_t>(sizeof(int32_t));
    if (workspace.data != nullptr) {
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
    int64_t index_bytes = 0, total = 0;
    const int64_t scratch = indexer_topk_workspace_bytes(context, rows, columns);
    if (scratch < 0 || __builtin_mul_overflow(rows, k, &index_bytes) ||
        __builtin_mul_overflow(index_bytes, static_cast<int64_t>(sizeof(int32_t)), &index_bytes) ||
        index_bytes > INT64_MAX - 255 || __builtin_add_overflow((index_bytes + 255) / 256 * 256, scratch, &total))
        return -1;
    return total;
}

Status attention(Context& context, const TopkConfig& topk, const SparseAttentionConfig& config,
                 const IndexerInputs& indexer, const AttentionInputs& attention, const TensorView* selected,
                 Workspace workspace, Stream stream) {
    DSA_TRY(validate_topk_config(topk));
    IndexerProblem indexer_problem;
    DSA_TRY(renamed(describe_indexer(context, indexer.q, indexer.weights, indexer.k, indexer.k_scale, indexer.ks,
                                     indexer.ke, &indexer_problem),
                    kIndexerNames));
    SelectionBuffer buffer;
    DSA_TRY(place_selection(context, attention.q, false, indexer_problem.rows, indexer_problem.columns, topk, selected,
                            workspace, stream, &buffer));
    SparseAttentionProblem attention_problem;
    DSA_TRY(renamed(describe_sparse_attention(context, config, attention.q, attention.kv, &buffer.attended,
                                              attention.attn_sink, nullptr, attention.out, attention.lse, nullptr,
                                              &attention_problem),
                    {{"indices", "selected"}}));
    DSA_TRY(require_outputs_apart(indexer, attention, selected, "kv"));
    if (attention_problem.rows != indexer_problem.rows)
        return {StatusCode::shape_mismatch, "q: " + std::to_string(attention_problem.rows) +
                                                " query rows, but index_q has " + std::to_string(indexer_problem.rows)};
    if (attention.kv->size(0) != indexer_problem.columns)
        return {StatusCode::shape_mismatch, "kv: " + std::to_string(attention.kv->size(0)) +
                                                " tokens, but index_k has " + std::to_string(indexer_problem.columns)};
    DSA_TRY(renamed(indexer_topk(context, topk, indexer.q, indexer.weights, indexer.k, indexer.k_scale, indexer.ks,
                                 indexer.ke, &buffer.flat, buffer.rest, stream),
                    kIndexerNames));
    return run_sparse_attention(context, attention_problem, stream);
}

Status attention_paged(Context& context, const TopkConfig& topk, const SparseAttentionConfig& config,
                       const IndexerInputs& indexer, const AttentionInputs& attention, const TensorView* selected,
                       Workspace workspace, Stream stream) {
    DSA_TRY(validate_topk_config(topk));
    DSA_TRY(check_tensor(indexer.block_table, "block_table"));
    const int64_t max_pages = indexer.block_table->ndim == 2 ? indexer.block_table->shape[1] : 0;
    int64_t columns = 0;
    if (__builtin_mul_overflow(max_pages, kIndexerPageTokens, &columns) || columns > INT32_MAX)
        return {StatusCode::shape_mismatch, "block_table: max_pages * 64 tokens do not fit int32 indices"};
    IndexerProblem indexer_problem;
    DSA_TRY(renamed(describe_indexer_paged(context, indexer.q, indexer.weights, indexer.k_cache, indexer.block_table,
                                           indexer.context_lens, columns, &indexer_problem),
                    kIndexerNames));
    SelectionBuffer buffer;
    DSA_TRY(place_selection(context, indexer.q, true, indexer_problem.rows, indexer_problem.columns, topk, selected,
                            workspace, stream, &buffer));
    SparseAttentionProblem attention_problem;
    DSA_TRY(renamed(describe_sparse_attention_paged(context, config, attention.q, attention.kv, &buffer.attended,
                                                    attention.attn_sink, nullptr, attention.out, attention.lse,
                                                    &attention_problem),
                    {{"indices", "selected"}}));
    DSA_TRY(require_outputs_apart(indexer, attention, selected, "kv_cache"));
    if (attention.q->shape[0] != indexer.q->shape[0] || attention.q->shape[1] != indexer.q->shape[1])
        return {StatusCode::shape_mismatch, "q: [B, s_q] must equal index_q's [B, n_next]"};
    if (attention_problem.page_size != kIndexerPageTokens)
        return {StatusCode::shape_mismatch, "kv_cache: pages must hold 64 tokens (it shares the indexer's block "
                                            "table), got " + std::to_string(attention_problem.page_size)};
    TopkConfig slot_config = topk;
    slot_config.page_size = kIndexerPageTokens;
    DSA_TRY(renamed(indexer_topk_paged(context, slot_config, indexer.q, indexer.weights, indexer.k_cache,
                                       indexer.block_table, indexer.context_lens, nullptr, &buffer.flat, buffer.rest,
                                       stream),
                    kIndexerNames));
    return run_sparse_attention(context, attention_problem, stream);
}

}  // namespace dsa
