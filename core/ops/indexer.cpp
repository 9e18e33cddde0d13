#include "indexer.hpp"

#include <cstdint>
#include <string>
#include <utility>

namespace dsa {
namespace {

Status check_on_device(Context& context, const TensorView* tensor, const char* name) {
    DSA_TRY(check_tensor(tensor, name));
    return context.require_device(*tensor, name);
}

// q's last two dimensions must be one contiguous [heads, dim] block per query row.
Status require_contiguous_heads(const TensorView& q) {
    const int64_t heads = q.size(-2), dim = q.size(-1);
    if ((dim <= 1 || q.stride(-1) == 1) && (heads <= 1 || q.stride(-2) == dim)) return Status::success();
    return {StatusCode::layout_unsupported,
            "q: the last two dimensions [H_I, D_I] must be contiguous (strides " + std::to_string(dim) +
                ", 1), got strides " + std::to_string(q.stride(-2)) + ", " + std::to_string(q.stride(-1))};
}

Status require_positive_extent(const TensorView& tensor, const char* name, int axis, const char* what) {
    if (tensor.size(axis) >= 1) return Status::success();
    return {StatusCode::shape_mismatch, std::string(name) + ": " + what + " must be >= 1, got 0"};
}

// q and weights, common to both key forms; rows = query rows.
Status describe_queries(const TensorView& q, const TensorView& weights, int64_t rows, IndexerProblem* problem) {
    DSA_TRY(require_dtype(q, "q", {DType::fp8_e4m3, DType::u8}));
    DSA_TRY(require_positive_extent(q, "q", -2, "H_I (dimension -2)"));
    DSA_TRY(require_positive_extent(q, "q", -1, "D_I (the last dimension)"));
    DSA_TRY(require_contiguous_heads(q));
    DSA_TRY(require_dtype(weights, "weights", {DType::f32}));
    DSA_TRY(require_rank(weights, "weights", 2));
    DSA_TRY(require_extent(weights, "weights", 0, rows, "query rows"));
    DSA_TRY(require_extent(weights, "weights", 1, q.size(-2), "H_I"));
    problem->q = q;
    problem->weights = weights;
    problem->rows = rows;
    problem->heads = q.size(-2);
    problem->dim = q.size(-1);
    return Status::success();
}

// The output: f32 [rows, columns], unit last stride, no self-overlap, disjoint from every input.
Status check_logits(Context& context, const TensorView* logits, const IndexerProblem& problem,
                    std::initializer_list<std::pair<const TensorView*, const char*>> inputs) {
    DSA_TRY(check_on_device(context, logits, "logits"));
    DSA_TRY(require_dtype(*logits, "logits", {DType::f32}));
    DSA_TRY(require_rank(*logits, "logits", 2));
    DSA_TRY(require_extent(*logits, "logits", 0, problem.rows, "query rows"));
    DSA_TRY(require_extent(*logits, "logits", 1, problem.columns,
                           problem.keys == IndexerKeys::contiguous ? "S_kv" : "max_context"));
    DSA_TRY(require_unit_last_stride(*logits, "logits"));
    DSA_TRY(require_non_self_overlapping(*logits, "logits"));
    for (const auto& [input, name] : inputs) DSA_TRY(require_disjoint(*logits, "logits", *input, name));
    return Status::success();
}

// The k_cache width for D_I = dim, 64 * (dim + 4), checked against the cache's extent.
Status require_page_bytes(const TensorView& k_cache, int64_t dim, const char* dim_owner) {
    if (dim > INT64_MAX / kIndexerPageTokens - 4)
        return {StatusCode::shape_mismatch, std::string(dim_owner) + ": D_I = " + std::to_string(dim) + " is too large"};
    return require_extent(k_cache, "k_cache", 1, kIndexerPageTokens * (dim + 4),
                          "64 * (D_I + 4): 64 tokens of D_I codes, then their f32 scales");
}

// Logits of every row on the context's device.
Status run_logits(Context& context, const IndexerProblem& problem, const TensorView& logits, Stream stream) {
    if (context.device() == DeviceType::cpu) {
        cpu::indexer_logits_rows(context, problem, 0, problem.rows, logits.as<float>(), logits.stride(0));
        return Status::success();
    }
#ifdef DSA_HAVE_CUDA
    return cuda::indexer_logits_rows(context, problem, 0, problem.rows, logits.as<float>(), logits.stride(0), true,
                                     stream);
#else
    (void)stream;
    return cuda_not_built();
#endif
}

}  // namespace

Status describe_indexer(Context& context, const TensorView* q, const TensorView* weights, const TensorView* k,
                        const TensorView* k_scale, const TensorView* ks, const TensorView* ke,
                        IndexerProblem* problem) {
    DSA_TRY(check_on_device(context, q, "q"));
    DSA_TRY(check_on_device(context, weights, "weights"));
    DSA_TRY(check_on_device(context, k, "k"));
    DSA_TRY(check_on_device(context, k_scale, "k_scale"));
    DSA_TRY(check_on_device(context, ks, "ks"));
    DSA_TRY(check_on_device(context, ke, "ke"));
    DSA_TRY(require_rank(*q, "q", 3));
    DSA_TRY(describe_queries(*q, *weights, q->size(0), problem));
    DSA_TRY(require_dtype(*k, "k", {DType::fp8_e4m3, DType::u8}));
    DSA_TRY(require_rank(*k, "k", 2));
    DSA_TRY(require_extent(*k, "k", 1, problem->dim, "D_I, q's last dimension"));
    DSA_TRY(require_unit_last_stride(*k, "k"));
    const int64_t columns = k->size(0);
    DSA_TRY(require_dtype(*k_scale, "k_scale", {DType::f32}));
    DSA_TRY(require_rank(*k_scale, "k_scale", 1));
    DSA_TRY(require_extent(*k_scale, "k_scale", 0, columns, "S_kv, k's first dimension"));
    DSA_TRY(require_dtype(*ks, "ks", {DType::i32}));
    DSA_TRY(require_rank(*ks, "ks", 1));
    DSA_TRY(require_extent(*ks, "ks", 0, problem->rows, "S_q"));
    DSA_TRY(require_dtype(*ke, "ke", {DType::i32}));
    DSA_TRY(require_rank(*ke, "ke", 1));
    DSA_TRY(require_extent(*ke, "ke", 0, problem->rows, "S_q"));
    problem->keys = IndexerKeys::contiguous;
    problem->k = *k;
    problem->k_scale = *k_scale;
    problem->ks = *ks;
    problem->ke = *ke;
    problem->columns = columns;
    return Status::success();
}

Status describe_indexer_paged(Context& context, const TensorView* q, const TensorView* weights,
                              const TensorView* k_cache, const TensorView* block_table,
                              const TensorView* context_lens, int64_t max_context, IndexerProblem* problem) {
    DSA_TRY(check_on_device(context, q, "q"));
    DSA_TRY(check_on_device(context, weights, "weights"));
    DSA_TRY(check_on_device(context, k_cache, "k_cache"));
    DSA_TRY(check_on_device(context, block_table, "block_table"));
    DSA_TRY(check_on_device(context, context_lens, "context_lens"));
    DSA_TRY(require_rank(*q, "q", 4));
    DSA_TRY(require_positive_extent(*q, "q", 1, "n_next (dimension 1)"));
    const int64_t batch = q->size(0), next_n = q->size(1);
    DSA_TRY(describe_queries(*q, *weights, batch * next_n, problem));
    DSA_TRY(require_dtype(*k_cache, "k_cache", {DType::u8}));
    DSA_TRY(require_rank(*k_cache, "k_cache", 2));
    DSA_TRY(require_page_bytes(*k_cache, problem->dim, "q"));
    DSA_TRY(require_unit_last_stride(*k_cache, "k_cache"));
    DSA_TRY(require_dtype(*block_table, "block_table", {DType::i32}));
    DSA_TRY(require_rank(*block_table, "block_table", 2));
    DSA_TRY(require_extent(*block_table, "block_table", 0, batch, "B, q's first dimension"));
    DSA_TRY(require_dtype(*context_lens, "context_lens", {DType::i32}));
    DSA_TRY(require_rank(*context_lens, "context_lens", 1));
    DSA_TRY(require_extent(*context_lens, "context_lens", 0, batch, "B, q's first dimension"));
    if (max_context < 0)
        return {StatusCode::shape_mismatch, "max_context: must be >= 0, got " + std::to_string(max_context)};
    problem->keys = IndexerKeys::paged;
    problem->k_cache = *k_cache;
    problem->block_table = *block_table;
    problem->context_lens = *context_lens;
    problem->columns = max_context;
    problem->next_n = next_n;
    problem->num_pages = k_cache->size(0);
    problem->max_pages = block_table->size(1);
    return Status::success();
}

Status indexer_logits(Context& context, const TensorView* q, const TensorView* weights, const TensorView* k,
                      const TensorView* k_scale, const TensorView* ks, const TensorView* ke, const TensorView* logits,
                      Stream stream) {
    IndexerProblem problem;
    DSA_TRY(describe_indexer(context, q, weights, k, k_scale, ks, ke, &problem));
    DSA_TRY(check_logits(context, logits, problem,
                         {{q, "q"}, {weights, "weights"}, {k, "k"}, {k_scale, "k_scale"}, {ks, "ks"}, {ke, "ke"}}));
    problem.logits = *logits;
    if (problem.rows == 0 || problem.columns == 0) return Status::success();
    return run_logits(context, problem, *logits, stream);
}

Status indexer_logits_paged(Context& context, const TensorView* q, const TensorView* weights,
                            const TensorView* k_cache, const TensorView* block_table, const TensorView* context_lens,
                            const TensorView* logits, Stream stream) {
    DSA_TRY(check_on_device(context, logits, "logits"));
    DSA_TRY(require_rank(*logits, "logits", 2));
    IndexerProblem problem;
    DSA_TRY(describe_indexer_paged(context, q, weights, k_cache, block_table, context_lens, logits->size(1),
                                   &problem));
    DSA_TRY(check_logits(context, logits, problem,
                         {{q, "q"}, {weights, "weights"}, {k_cache, "k_cache"}, {block_table, "block_table"},
                          {context_lens, "context_lens"}}));
    problem.logits = *logits;
    if (problem.rows == 0 || problem.columns == 0) return Status::success();
    return run_logits(context, problem, *logits, stream);
}

Status indexer_cache_write(Context& context, const TensorView* k, const TensorView* slot_mapping,
                           const TensorView* k_cache, Stream stream) {
    DSA_TRY(check_on_device(context, k, "k"));
    DSA_TRY(check_on_device(context, slot_mapping, "slot_mapping"));
    DSA_TRY(check_on_device(context, k_cache, "k_cache"));
    DSA_TRY(require_dtype(*k, "k", {DType::f32, DType::bf16}));
    DSA_TRY(require_rank(*k, "k", 2));
    DSA_TRY(require_positive_extent(*k, "k", 1, "D_I (the last dimension)"));
    DSA_TRY(require_unit_last_stride(*k, "k"));
    DSA_TRY(require_dtype(*slot_mapping, "slot_mapping", {DType::i64}));
    DSA_TRY(require_rank(*slot_mapping, "slot_mapping", 1));
    DSA_TRY(require_extent(*slot_mapping, "slot_mapping", 0, k->size(0), "T, k's first dimension"));
    DSA_TRY(require_dtype(*k_cache, "k_cache", {DType::u8}));
    DSA_TRY(require_rank(*k_cache, "k_cache", 2));
    DSA_TRY(require_page_bytes(*k_cache, k->size(1), "k"));
    DSA_TRY(require_unit_last_stride(*k_cache, "k_cache"));
    DSA_TRY(require_non_self_overlapping(*k_cache, "k_cache"));
    DSA_TRY(require_disjoint(*k_cache, "k_cache", *k, "k"));
    DSA_TRY(require_disjoint(*k_cache, "k_cache", *slot_mapping, "slot_mapping"));
    IndexerCacheWriteProblem problem;
    problem.k = *k;
    problem.slot_mapping = *slot_mapping;
    problem.k_cache = *k_cache;
    problem.tokens = k->size(0);
    problem.dim = k->size(1);
    problem.num_pages = k_cache->size(0);
    if (problem.tokens == 0 || problem.num_pages == 0) return Status::success();
    if (context.device() == DeviceType::cpu) {
        cpu::indexer_cache_write(context, problem);
        return Status::success();
    }
#ifdef DSA_HAVE_CUDA
    return cuda::indexer_cache_write(context, problem, stream);
#else
    (void)stream;
    return cuda_not_built();
#endif
}

}  // namespace dsa
