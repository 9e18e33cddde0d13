#include "indexer_topk.hpp"

#include <climits>
#include <string>
#include <vector>

namespace dsa {
namespace {

Status check_selection_output(Context& context, const TensorView* out, const char* name, int64_t rows,
                              const TopkConfig& config, const IndexerProblem& problem) {
    DSA_TRY(check_tensor(out, name));
    DSA_TRY(context.require_device(*out, name));
    DSA_TRY(require_dtype(*out, name, {DType::i32}));
    DSA_TRY(require_rank(*out, name, 2));
    DSA_TRY(require_extent(*out, name, 0, rows, "the query rows"));
    DSA_TRY(require_extent(*out, name, 1, config.k, "params.k"));
    DSA_TRY(require_unit_last_stride(*out, name));
    DSA_TRY(require_non_self_overlapping(*out, name));
    const TensorView* inputs[] = {&problem.q, &problem.weights, &problem.k, &problem.k_scale, &problem.ks,
                                  &problem.ke, &problem.k_cache, &problem.block_table, &problem.context_lens};
    const char* input_names[] = {"q", "weights", "k", "k_scale", "ks", "ke", "k_cache", "block_table", "context_lens"};
    for (int i = 0; i < 9; ++i)
        if (inputs[i]->data != nullptr) DSA_TRY(require_disjoint(*out, name, *inputs[i], input_names[i]));
    return Status::success();
}

Status check_workspace(const Context& context, const IndexerProblem& problem, Workspace workspace) {
    // Checked even without a workspace: the call then allocates this much itself.
    const int64_t needed = indexer_topk_workspace_bytes(context, problem.rows, problem.columns);
    if (needed < 0)
        return {StatusCode::shape_mismatch, "q: a tile of " + std::to_string(problem.columns) +
                                                "-token logit rows does not fit int64 bytes"};
    if (workspace.data == nullptr) return Status::success();
    if (reinterpret_cast<uintptr_t>(workspace.data) % 16 != 0)
        return {StatusCode::layout_unsupported, "workspace: must be aligned to 16 bytes"};
    if (workspace.bytes >= needed) return Status::success();
    return {StatusCode::workspace_too_small, "workspace: " + std::to_string(workspace.bytes) + " bytes given, " +
                                                 std::to_string(needed) +
                                                 " needed (ask dsa_indexer_topk_workspace_size)"};
}

Status run(Context& context, const IndexerProblem& problem, const TopkConfig& config, const TensorView* indices,
           const TensorView* slots, Workspace workspace, Stream stream) {
    DSA_TRY(check_workspace(context, problem, workspace));
    if (problem.rows == 0) return Status::success();
    if (context.device() != DeviceType::cpu) {
#ifdef DSA_HAVE_CUDA
        return cuda::indexer_topk(context, problem, config, workspace, indices ? indices->as<int32_t>() : nullptr,
                                  indices ? indices->strides[0] : 0, slots ? slots->as<int32_t>() : nullptr,
                                  slots ? slots->strides[0] : 0, stream);
#else
        (void)stream;
        return cuda_not_built();
#endif
    }
    const int64_t tile_rows = cpu::indexer_topk_tile_rows(context, problem.rows, problem.columns);
    std::vector<float> owned;
    float* tile = static_cast<float*>(workspace.data);
    if (tile == nullptr) {
        owned.resize(static_cast<size_t>(tile_rows * problem.columns));
        tile = owned.data();
    }
    cpu::indexer_topk(context, problem, config, tile, tile_rows, indices ? indices->as<int32_t>() : nullptr,
                      indices ? indices->strides[0] : 0, slots ? slots->as<int32_t>() : nullptr,
                      slots ? slots->strides[0] : 0);
    return Status::success();
}

}  // namespace

int64_t indexer_topk_workspace_bytes(const Context& context, int64_t rows, int64_t columns) {
    if (rows <= 0 || columns <= 0) return 0;
#ifdef DSA_HAVE_CUDA
    if (context.device() == DeviceType::cuda) return cuda::indexer_topk_workspace_bytes(rows, columns);
#endif
    int64_t bytes = 0;
    if (__builtin_mul_overflow(cpu::indexer_topk_tile_rows(context, rows, columns), columns, &bytes) ||
        __builtin_mul_overflow(bytes, static_cast<int64_t>(sizeof(float)), &bytes))
        return -1;
    return bytes;
}

Status indexer_topk(Context& context, const TopkConfig& config, const TensorView* q, const TensorView* weights,
                    const TensorView* k, const TensorView* k_scale, const TensorView* ks, const TensorView* ke,
                    const TensorView* indices, Workspace workspace, Stream stream) {
    DSA_TRY(validate_topk_config(config));
    IndexerProblem problem;
    DSA_TRY(describe_indexer(context, q, weights, k, k_scale, ks, ke, &problem));
    DSA_TRY(check_selection_output(context, indices, "indices", problem.rows, config, problem));
    return run(context, problem, config, indices, nullptr, workspace, stream);
}

Status indexer_topk_paged(Context& context, const TopkConfig& config, const TensorView* q,
                          const TensorView* weights, const TensorView* k_cache, const TensorView* block_table,
                          const TensorView* context_lens, const TensorView* indices, const TensorView* slots,
                          Workspace workspace, Stream stream) {
    DSA_TRY(validate_topk_config(config));
    if (indices == nullptr && slots == nullptr)
        return {StatusCode::invalid_argument, "indices, slots: at least one output must be given"};
    if (slots != nullptr && config.page_size != kIndexerPageTokens)
        return {StatusCode::invalid_argument, "params.page_size: slots come from the indexer's block table, whose "
                                              "pages hold 64 tokens; got " + std::to_string(config.page_size)};
    DSA_TRY(check_tensor(block_table, "block_table"));
    const int64_t max_pages = block_table->ndim == 2 ? block_table->shape[1] : 0;
    int64_t columns = 0;
    if (__builtin_mul_overflow(max_pages, kIndexerPageTokens, &columns) || columns > INT32_MAX)
        return {StatusCode::shape_mismatch, "block_table: max_pages * 64 tokens do not fit int32 indices"};
    IndexerProblem problem;
    DSA_TRY(describe_indexer_paged(context, q, weights, k_cache, block_table, context_lens, columns, &problem));
    if (indices != nullptr) DSA_TRY(check_selection_output(context, indices, "indices", problem.rows, config, problem));
    if (slots != nullptr) {
        DSA_TRY(check_selection_output(context, slots, "slots", problem.rows, config, problem));
        if (indices != nullptr) DSA_TRY(require_disjoint(*slots, "slots", *indices, "indices"));
    }
    return run(context, problem, config, indices, slots, workspace, stream);
}

}  // namespace dsa
