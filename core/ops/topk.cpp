#include "topk.hpp"

#include <string>

namespace dsa {
namespace {

// An optional int32 [R] window bound: absent is fine, present must be exactly [R].
Status check_row_bounds(Context& context, const TensorView* bounds, const char* name, const TensorView& scores) {
    if (bounds == nullptr) return Status::success();
    DSA_TRY(check_tensor(bounds, name));
    DSA_TRY(context.require_device(*bounds, name));
    DSA_TRY(require_dtype(*bounds, name, {DType::i32}));
    DSA_TRY(require_rank(*bounds, name, 1));
    return require_extent(*bounds, name, 0, scores.shape[0], "R, the rows of scores");
}

}  // namespace

Status validate_topk_config(const TopkConfig& config) {
    if (config.k < 1)
        return {StatusCode::invalid_argument, "params.k: must be >= 1, got " + std::to_string(config.k)};
    if (config.n_sink < 0)
        return {StatusCode::invalid_argument, "params.n_sink: must be >= 0, got " + std::to_string(config.n_sink)};
    if (config.n_local < 0)
        return {StatusCode::invalid_argument,
                "params.n_local: must be >= 0, got " + std::to_string(config.n_local)};
    if (config.n_sink + config.n_local > config.k)
        return {StatusCode::invalid_argument,
                "params.n_sink + params.n_local: the always-kept tokens (" + std::to_string(config.n_sink) + " + " +
                    std::to_string(config.n_local) + ") must fit in k = " + std::to_string(config.k)};
    if (config.order != TopkOrder::unspecified && config.order != TopkOrder::score &&
        config.order != TopkOrder::index)
        return {StatusCode::invalid_argument,
                "params.order: must be 0 (unspecified), 1 (score) or 2 (index), got " +
                    std::to_string(static_cast<uint32_t>(config.order))};
    if (config.page_size < 1)
        return {StatusCode::invalid_argument,
                "params.page_size: must be >= 1, got " + std::to_string(config.page_size)};
    return Status::success();
}

Status topk(Context& context, const TopkConfig& config, const TensorView* scores, const TensorView* row_starts,
            const TensorView* row_ends, const TensorView* block_table, const TensorView* indices, Stream stream) {
    DSA_TRY(validate_topk_config(config));
    DSA_TRY(check_tensor(scores, "scores"));
    DSA_TRY(check_tensor(indices, "indices"));
    DSA_TRY(context.require_device(*scores, "scores"));
    DSA_TRY(context.require_device(*indices, "indices"));
    DSA_TRY(require_dtype(*scores, "scores", {DType::f32}));
    DSA_TRY(require_dtype(*indices, "indices", {DType::i32}));
    DSA_TRY(require_rank(*scores, "scores", 2));
    DSA_TRY(require_rank(*indices, "indices", 2));
    const int64_t rows = scores->shape[0];
    DSA_TRY(require_extent(*indices, "indices", 0, rows, "R, the rows of scores"));
    DSA_TRY(require_extent(*indices, "indices", 1, config.k, "params.k"));
    DSA_TRY(check_row_bounds(context, row_starts, "row_starts", *scores));
    DSA_TRY(check_row_bounds(context, row_ends, "row_ends", *scores));
    int64_t block_rows = 1, max_pages = 0;
    if (block_table != nullptr) {
        DSA_TRY(check_tensor(block_table, "block_table"));
        DSA_TRY(context.require_device(*block_table, "block_table"));
        DSA_TRY(require_dtype(*block_table, "block_table", {DType::i32}));
        DSA_TRY(require_rank(*block_table, "block_table", 2));
        block_rows = block_table->shape[0];
        max_pages = block_table->shape[1];
        if (block_rows == 0 ? rows != 0 : rows % block_rows != 0)
            return {StatusCode::shape_mismatch, "block_table: dimension 0 (B = " + std::to_string(block_rows) +
                                                    ") must divide R = " + std::to_string(rows) +
                                                    ", the rows of scores"};
    }
    DSA_TRY(require_unit_last_stride(*scores, "scores"));
    DSA_TRY(require_unit_last_stride(*indices, "indices"));
    DSA_TRY(require_non_self_overlapping(*indices, "indices"));
    DSA_TRY(require_disjoint(*indices, "indices", *scores, "scores"));
    if (row_starts != nullptr) DSA_TRY(require_disjoint(*indices, "indices", *row_starts, "row_starts"));
    if (row_ends != nullptr) DSA_TRY(require_disjoint(*indices, "indices", *row_ends, "row_ends"));
    if (block_table != nullptr) DSA_TRY(require_disjoint(*indices, "indices", *block_table, "block_table"));

    TopkProblem problem;
    problem.scores = *scores;
    problem.indices = *indices;
    problem.has_row_starts = row_starts != nullptr;
    problem.has_row_ends = row_ends != nullptr;
    problem.has_block_table = block_table != nullptr;
    if (problem.has_row_starts) problem.row_starts = *row_starts;
    if (problem.has_row_ends) problem.row_ends = *row_ends;
    if (problem.has_block_table) problem.block_table = *block_table;
    problem.config = config;
    problem.rows = rows;
    problem.n = scores->shape[1];
    problem.block_rows = block_rows;
    problem.max_pages = max_pages;
    if (rows == 0) return Status::success();
    if (context.device() == DeviceType::cpu) {
        cpu::topk(context, problem);
        return Status::success();
    }
#ifdef DSA_HAVE_CUDA
    return cuda::topk(context, problem, stream);
#else
    (void)stream;
    return cuda_not_built();
#endif
}

}  // namespace dsa
