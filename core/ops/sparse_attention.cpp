#include "sparse_attention.hpp"

#include <cmath>
#include <initializer_list>
#include <string>
#include <vector>

namespace dsa {
namespace {

struct Named {
    const TensorView* view;  // NULL: an optional tensor that was not passed
    const char* name;
};

std::string shape_text(const std::vector<int64_t>& shape) {
    std::string text = "[";
    for (size_t axis = 0; axis < shape.size(); ++axis) text += (axis ? ", " : "") + std::to_string(shape[axis]);
    return text + "]";
}

Status require_shape(const TensorView& tensor, const char* name, const std::vector<int64_t>& expected,
                     const char* what) {
    bool same = tensor.ndim == static_cast<int32_t>(expected.size());
    for (int axis = 0; same && axis < tensor.ndim; ++axis) same = tensor.shape[axis] == expected[axis];
    if (same) return Status::success();
    return {StatusCode::shape_mismatch,
            std::string(name) + ": shape must be " + shape_text(expected) + " (" + what + "), got " +
                shape_text(std::vector<int64_t>(tensor.shape, tensor.shape + tensor.ndim))};
}

// The leading `count` extents of q followed by `tail`.
std::vector<int64_t> q_prefix(const TensorView& q, int count, std::initializer_list<int64_t> tail) {
    std::vector<int64_t> shape(q.shape, q.shape + count);
    shape.insert(shape.end(), tail);
    return shape;
}

// Everything both forms share. `kv_name` is "kv" or "kv_cache"; the caller has checked kv's own
// rank, dtype and width and filled format, page_size and num_slots.
Status describe(const SparseAttentionConfig& config, const TensorView* q, const TensorView* kv,
                const char* kv_name, const TensorView* indices, const TensorView* attn_sink,
                const TensorView* topk_length, const TensorView* out, const TensorView* lse,
                const TensorView* max_logits, SparseAttentionProblem* problem) {
    const int rank = q->ndim;  // 3 (prefill) or 4 (paged), checked by the caller
    const int row_dims = rank - 2;
    const int64_t d_qk = q->size(-1), heads = q->size(-2);
    if (config.d_v < 1 || config.d_v > d_qk)
        return {StatusCode::invalid_argument, "params.d_v: must be in [1, d_qk = " + std::to_string(d_qk) +
                                                  "], got " + std::to_string(config.d_v)};
    DSA_TRY(require_dtype(*indices, "indices", {DType::i32}));
    DSA_TRY(require_dtype(*out, "out", {DType::bf16}));
    DSA_TRY(require_dtype(*lse, "lse", {DType::f32}));
    if (attn_sink) DSA_TRY(require_dtype(*attn_sink, "attn_sink", {DType::f32}));
    if (topk_length) DSA_TRY(require_dtype(*topk_length, "topk_length", {DType::i32}));
    if (max_logits) DSA_TRY(require_dtype(*max_logits, "max_logits", {DType::f32}));

    if (indices->ndim != rank - 1)
        return {StatusCode::shape_mismatch, "indices: must have rank " + std::to_string(rank - 1) + ", got rank " +
                                                std::to_string(indices->ndim)};
    const int64_t topk = indices->size(-1);
    DSA_TRY(require_shape(*indices, "indices", q_prefix(*q, row_dims, {topk}), "q's query rows, k"));
    if (attn_sink) DSA_TRY(require_shape(*attn_sink, "attn_sink", {heads}, "H_q"));
    if (topk_length) DSA_TRY(require_shape(*topk_length, "topk_length", q_prefix(*q, row_dims, {}), "q's query rows"));
    DSA_TRY(require_shape(*out, "out", q_prefix(*q, row_dims, {heads, config.d_v}), "q's rows and heads, d_v"));
    DSA_TRY(require_shape(*lse, "lse", q_prefix(*q, row_dims, {heads}), "q's rows and heads"));
    if (max_logits) DSA_TRY(require_shape(*max_logits, "max_logits", q_prefix(*q, row_dims, {heads}), "q's rows and heads"));

    DSA_TRY(require_unit_last_stride(*q, "q"));
    DSA_TRY(require_unit_last_stride(*kv, kv_name));
    DSA_TRY(require_unit_last_stride(*out, "out"));
    const Named inputs[] = {{q, "q"}, {kv, kv_name}, {indices, "indices"}, {attn_sink, "attn_sink"},
                            {topk_length, "topk_length"}};
    const Named outputs[] = {{out, "out"}, {lse, "lse"}, {max_logits, "max_logits"}};
    for (const Named& output : outputs) {
        if (!output.view) continue;
        DSA_TRY(require_non_self_overlapping(*output.view, output.name));
        for (const Named& input : inputs)
            if (input.view) DSA_TRY(require_disjoint(*output.view, output.name, *input.view, input.name));
    }
    for (const Named& output : outputs)
        for (const Named& other : outputs)
            if (output.view && other.view && &output < &other)
                DSA_TRY(require_disjoint(*output.view, output.name, *other.view, other.name));

    problem->q = *q;
    problem->kv = *kv;
    problem->indices = *indices;
    problem->out = *out;
    problem->lse = *lse;
    problem->has_attn_sink = attn_sink != nullptr;
    problem->has_topk_length = topk_length != nullptr;
    problem->has_max_logits = max_logits != nullptr;
    if (attn_sink) problem->attn_sink = *attn_sink;
    if (topk_length) problem->topk_length = *topk_length;
    if (max_logits) problem->max_logits = *max_logits;
    problem->scale = config.scale;
    problem->d_qk = d_qk;
    problem->d_v = config.d_v;
    problem->heads = heads;
    problem->rows = 1;
    for (int axis = 0; axis < row_dims; ++axis) problem->rows *= q->shape[axis];
    problem->topk = topk;
    return Status::success();
}

// Validation that runs before the shapes are known: the scale, NULLs, tensor sanity, devices.
// Optional tensors may be NULL.
Status check_arguments(Context& context, const SparseAttentionConfig& config,
                       std::initializer_list<Named> required, std::initializer_list<Named> optional) {
    if (!std::isfinite(config.scale) || config.scale == 0.0f)
        return {StatusCode::invalid_argument,
                "params.scale: is required and must be finite and non-zero (DeepSeek-V3.2 uses 0.13523378), got " +
                    std::to_string(config.scale)};
    for (const Named& tensor : required) {
        DSA_TRY(check_tensor(tensor.view, tensor.name));
        DSA_TRY(context.require_device(*tensor.view, tensor.name));
    }
    for (const Named& tensor : optional) {
        if (tensor.view == nullptr) continue;
        DSA_TRY(check_tensor(tensor.view, tensor.name));
        DSA_TRY(context.require_device(*tensor.view, tensor.name));
    }
    return Status::success();
}

}  // namespace

Status run_sparse_attention(Context& context, const SparseAttentionProblem& problem, Stream stream) {
    if (problem.rows * problem.heads == 0) return Status::success();
    if (context.device() == DeviceType::cpu) {
        cpu::sparse_attention(context, problem);
        return Status::success();
    }
#ifdef DSA_HAVE_CUDA
    return cuda::sparse_attention(context, problem, stream);
#else
    (void)stream;
    return cuda_not_built();
#endif
}

Status describe_sparse_attention(Context& context, const SparseAttentionConfig& config, const TensorView* q,
                                 const TensorView* kv, const TensorView* indices, const TensorView* attn_sink,
                                 const TensorView* topk_length, const TensorView* out, const TensorView* lse,
                                 const TensorView* max_logits, SparseAttentionProblem* result) {
    DSA_TRY(check_arguments(context, config, {{q, "q"}, {kv, "kv"}, {indices, "indices"}, {out, "out"}, {lse, "lse"}},
                            {{attn_sink, "attn_sink"}, {topk_length, "topk_length"}, {max_logits, "max_logits"}}));
    DSA_TRY(require_dtype(*q, "q", {DType::bf16}));
    DSA_TRY(require_dtype(*kv, "kv", {DType::bf16}));
    DSA_TRY(require_rank(*q, "q", 3));
    DSA_TRY(require_rank(*kv, "kv", 2));
    DSA_TRY(require_extent(*kv, "kv", 1, q->size(-1), "d_qk, q's last dimension"));
    SparseAttentionProblem problem;
    DSA_TRY(describe(config, q, kv, "kv", indices, attn_sink, topk_length, out, lse, max_logits, &problem));
    problem.format = KvFormat::bf16;
    problem.paged = false;
    problem.num_slots = kv->size(0);
    *result = problem;
    return Status::success();
}

Status describe_sparse_attention_paged(Context& context, const SparseAttentionConfig& config, const TensorView* q,
                                       const TensorView* kv_cache, const TensorView* indices,
                                       const TensorView* attn_sink, const TensorView* topk_length,
                                       const TensorView* out, const TensorView* lse, SparseAttentionProblem* result) {
    DSA_TRY(check_arguments(context, config,
                            {{q, "q"}, {kv_cache, "kv_cache"}, {indices, "indices"}, {out, "out"}, {lse, "lse"}},
                            {{attn_sink, "attn_sink"}, {topk_length, "topk_length"}}));
    DSA_TRY(require_dtype(*q, "q", {DType::bf16}));
    DSA_TRY(require_dtype(*kv_cache, "kv_cache", {DType::bf16, DType::u8}));
    DSA_TRY(require_rank(*q, "q", 4));
    DSA_TRY(require_rank(*kv_cache, "kv_cache", 3));
    const bool fp8 = kv_cache->dtype == DType::u8;
    if (fp8) {
        DSA_TRY(require_extent(*kv_cache, "kv_cache", 2, kMlaEntryBytes, "bytes of an FP8 MLA entry"));
        if (q->size(-1) != kMlaLatentDim + kMlaRopeDim)
            return {StatusCode::shape_mismatch, "q: d_qk must be 576 with the FP8 MLA cache (kv_cache uint8), got " +
                                                    std::to_string(q->size(-1))};
        if (config.d_v != kMlaLatentDim)
            return {StatusCode::invalid_argument,
                    "params.d_v: must be 512 with the FP8 MLA cache, got " + std::to_string(config.d_v)};
    } else {
        DSA_TRY(require_extent(*kv_cache, "kv_cache", 2, q->size(-1), "d_qk, q's last dimension"));
    }
    SparseAttentionProblem problem;
    DSA_TRY(describe(config, q, kv_cache, "kv_cache", indices, attn_sink, topk_length, out, lse, nullptr,
                     &problem));
    problem.format = fp8 ? KvFormat::fp8_mla : KvFormat::bf16;
    problem.paged = true;
    problem.page_size = kv_cache->size(1);
    problem.num_slots = kv_cache->size(0) * kv_cache->size(1);
    *result = problem;
    return Status::success();
}

Status sparse_attention(Context& context, const SparseAttentionConfig& config, const TensorView* q,
                        const TensorView* kv, const TensorView* indices, const TensorView* attn_sink,
                        const TensorView* topk_length, const TensorView* out, const TensorView* lse,
                        const TensorView* max_logits, Stream stream) {
    SparseAttentionProblem problem;
    DSA_TRY(describe_sparse_attention(context, config, q, kv, indices, attn_sink, topk_length, out, lse, max_logits,
                                      &problem));
    return run_sparse_attention(context, problem, stream);
}

Status sparse_attention_paged(Context& context, const SparseAttentionConfig& config, const TensorView* q,
                              const TensorView* kv_cache, const TensorView* indices, const TensorView* attn_sink,
                              const TensorView* topk_length, const TensorView* out, const TensorView* lse,
                              Stream stream) {
    SparseAttentionProblem problem;
    DSA_TRY(describe_sparse_attention_paged(context, config, q, kv_cache, indices, attn_sink, topk_length, out, lse,
                                            &problem));
    return run_sparse_attention(context, problem, stream);
}

}  // namespace dsa
