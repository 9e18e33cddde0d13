#include "indexer_loss.hpp"

#include <cmath>
#include <string>

#include "arguments.hpp"
#include "topk.hpp"

namespace dsa {
namespace {

Status require_positive(int64_t extent, const char* name, const char* what) {
    if (extent >= 1) return Status::success();
    return {StatusCode::shape_mismatch, std::string(name) + ": " + what + " must be >= 1, got " + std::to_string(extent)};
}

Status check_config(const IndexerLossConfig& config, bool rebuilt_teacher) {
    if (config.mode != IndexerLossMode::dense && config.mode != IndexerLossMode::sparse)
        return {StatusCode::invalid_argument,
                "params.mode: must be DSA_INDEXER_LOSS_DENSE (0) or DSA_INDEXER_LOSS_SPARSE (1), got " +
                    std::to_string(static_cast<uint32_t>(config.mode))};
    if (!std::isfinite(config.coeff))
        return {StatusCode::invalid_argument, "params.coeff: must be finite, got " + std::to_string(config.coeff)};
    if (rebuilt_teacher && (!std::isfinite(config.teacher_scale) || config.teacher_scale == 0.0f))
        return {StatusCode::invalid_argument,
                "params.teacher_scale: is required with teacher_q and must be finite and non-zero (the teacher "
                "attention's softmax scale), got " +
                    std::to_string(config.teacher_scale)};
    return Status::success();
}

// Which teacher form was passed: exactly one of (teacher_q and teacher_k) or teacher_probs.
Status check_teacher_form(const TensorView* teacher_q, const TensorView* teacher_k, const TensorView* teacher_probs) {
    if (teacher_probs != nullptr && (teacher_q != nullptr || teacher_k != nullptr))
        return {StatusCode::invalid_argument,
                std::string(teacher_q ? "teacher_q" : "teacher_k") +
                    ": the teacher is given twice; pass teacher_q and teacher_k, or teacher_probs, not both"};
    if (teacher_probs != nullptr) return Status::success();
    if (teacher_q == nullptr && teacher_k == nullptr)
        return {StatusCode::invalid_argument,
                "teacher_probs: the teacher is missing; pass teacher_q and teacher_k, or teacher_probs"};
    if (teacher_q == nullptr)
        return {StatusCode::invalid_argument, "teacher_q: is NULL but teacher_k is given; pass both"};
    if (teacher_k == nullptr)
        return {StatusCode::invalid_argument, "teacher_k: is NULL but teacher_q is given; pass both"};
    return Status::success();
}

Status describe_teacher(const TensorView* teacher_q, const TensorView* teacher_k, const TensorView* teacher_probs,
                        IndexerLossProblem* p) {
    if (teacher_probs != nullptr) {
        DSA_TRY(require_dtype(*teacher_probs, "teacher_probs", {DType::f32}));
        DSA_TRY(require_shape(*teacher_probs, "teacher_probs", {p->rows, p->tokens}, "T, S"));
        DSA_TRY(require_unit_last_stride(*teacher_probs, "teacher_probs"));
        p->teacher_probs = *teacher_probs;
        p->has_teacher_probs = true;
        return Status::success();
    }
    DSA_TRY(require_dtype(*teacher_q, "teacher_q", {DType::f32, DType::bf16}));
    DSA_TRY(require_dtype(*teacher_k, "teacher_k", {DType::f32, DType::bf16}));
    DSA_TRY(require_rank(*teacher_q, "teacher_q", 3));
    DSA_TRY(require_extent(*teacher_q, "teacher_q", 0, p->rows, "T, index_q's first dimension"));
    const int64_t heads = teacher_q->size(1), dim = teacher_q->size(2);
    DSA_TRY(require_positive(heads, "teacher_q", "H_q (dimension 1)"));
    DSA_TRY(require_positive(dim, "teacher_q", "d (the last dimension)"));
    int64_t kv_heads = 1;
    if (teacher_k->ndim == 3) {
        kv_heads = teacher_k->size(1);
        DSA_TRY(require_positive(kv_heads, "teacher_k", "H_kv (dimension 1)"));
        if (heads % kv_heads != 0)
            return {StatusCode::shape_mismatch, "teacher_k: H_kv = " + std::to_string(kv_heads) +
                                                    " must divide teacher_q's H_q = " + std::to_string(heads)};
        DSA_TRY(require_shape(*teacher_k, "teacher_k", {p->tokens, kv_heads, dim}, "S, H_kv, teacher_q's d"));
    } else {
        DSA_TRY(require_shape(*teacher_k, "teacher_k", {p->tokens, dim}, "S, teacher_q's d"));
    }
    DSA_TRY(require_unit_last_stride(*teacher_q, "teacher_q"));
    DSA_TRY(require_unit_last_stride(*teacher_k, "teacher_k"));
    p->teacher_q = *teacher_q;
    p->teacher_k = *teacher_k;
    p->teacher_heads = heads;
    p->teacher_kv_heads = kv_heads;
    p->teacher_dim = dim;
    return Status::success();
}

Status describe_outputs(const TensorView* loss, const TensorView* row_loss, const TensorView* d_index_q,
                        const TensorView* d_index_k, const TensorView* d_weights, IndexerLossProblem* p) {
    if (loss) {
        DSA_TRY(require_dtype(*loss, "loss", {DType::f32}));
        if (loss->ndim != 0) DSA_TRY(require_shape(*loss, "loss", {1}, "a scalar: rank 0 or [1]"));
        p->loss = *loss;
    }
    if (row_loss) {
        DSA_TRY(require_dtype(*row_loss, "row_loss", {DType::f32}));
        DSA_TRY(require_shape(*row_loss, "row_loss", {p->rows}, "T"));
        p->row_loss = *row_loss;
    }
    if (d_index_q) {
        DSA_TRY(require_dtype(*d_index_q, "d_index_q", {DType::f32}));
        DSA_TRY(require_shape(*d_index_q, "d_index_q", {p->rows, p->heads, p->dim}, "index_q's T, H_I, D_I"));
        DSA_TRY(require_unit_last_stride(*d_index_q, "d_index_q"));
        p->d_index_q = *d_index_q;
    }
    if (d_index_k) {
        DSA_TRY(require_dtype(*d_index_k, "d_index_k", {DType::f32}));
        DSA_TRY(require_shape(*d_index_k, "d_index_k", {p->tokens, p->dim}, "index_k's S, D_I"));
        DSA_TRY(require_unit_last_stride(*d_index_k, "d_index_k"));
        p->d_index_k = *d_index_k;
    }
    if (d_weights) {
        DSA_TRY(require_dtype(*d_weights, "d_weights", {DType::f32}));
        DSA_TRY(require_shape(*d_weights, "d_weights", {p->rows, p->heads}, "T, H_I"));
        DSA_TRY(require_unit_last_stride(*d_weights, "d_weights"));
        p->d_weights = *d_weights;
    }
    p->has_loss = loss != nullptr;
    p->has_row_loss = row_loss != nullptr;
    p->has_d_index_q = d_index_q != nullptr;
    p->has_d_index_k = d_index_k != nullptr;
    p->has_d_weights = d_weights != nullptr;
    return Status::success();
}

}  // namespace

void IndexerLossProblem::window(int64_t row, int64_t* begin, int64_t* end) const {
    const TopkWindow clamped = clamp_topk_window(ks.as<const int32_t>()[row * ks.strides[0]],
                                                 ke.as<const int32_t>()[row * ke.strides[0]], tokens);
    *begin = clamped.begin;
    *end = clamped.end;
}

void IndexerLossProblem::entries(int64_t row, std::vector<int32_t>& entries) const {
    int64_t begin, end;
    window(row, &begin, &end);
    entries.clear();
    if (config.mode == IndexerLossMode::dense) {
        for (int64_t s = begin; s < end; ++s) entries.push_back(static_cast<int32_t>(s));
        return;
    }
    const int32_t* list = indices.as<const int32_t>() + row * indices.strides[0];
    for (int64_t j = 0; j < topk; ++j)
        if (list[j] >= begin && list[j] < end) entries.push_back(list[j]);
}

Status indexer_loss(Context& context, const IndexerLossConfig& config, const TensorView* index_q,
                    const TensorView* index_k, const TensorView* weights, const TensorView* ks, const TensorView* ke,
                    const TensorView* indices, const TensorView* teacher_q, const TensorView* teacher_k,
                    const TensorView* teacher_probs, const TensorView* loss, const TensorView* row_loss,
                    const TensorView* d_index_q, const TensorView* d_index_k, const TensorView* d_weights,
                    Stream stream) {
    DSA_TRY(check_teacher_form(teacher_q, teacher_k, teacher_probs));
    DSA_TRY(check_config(config, teacher_q != nullptr));
    if (config.mode == IndexerLossMode::dense && indices != nullptr)
        return {StatusCode::invalid_argument,
                "indices: must be NULL in DSA_INDEXER_LOSS_DENSE mode (params.mode, also the mode of NULL params; "
                "the set is the whole window)"};
    if (config.mode == IndexerLossMode::sparse && indices == nullptr)
        return {StatusCode::invalid_argument, "indices: is required in DSA_INDEXER_LOSS_SPARSE mode (params.mode)"};
    DSA_TRY(check_arguments(context,
                            {{index_q, "index_q"}, {index_k, "index_k"}, {weights, "weights"}, {ks, "ks"}, {ke, "ke"}},
                            {{indices, "indices"}, {teacher_q, "teacher_q"}, {teacher_k, "teacher_k"},
                             {teacher_probs, "teacher_probs"}, {loss, "loss"}, {row_loss, "row_loss"},
                             {d_index_q, "d_index_q"}, {d_index_k, "d_index_k"}, {d_weights, "d_weights"}}));

    IndexerLossProblem p;
    p.config = config;
    DSA_TRY(require_dtype(*index_q, "index_q", {DType::f32, DType::bf16}));
    DSA_TRY(require_rank(*index_q, "index_q", 3));
    p.rows = index_q->size(0);
    p.heads = index_q->size(1);
    p.dim = index_q->size(2);
    DSA_TRY(require_positive(p.heads, "index_q", "H_I (dimension 1)"));
    DSA_TRY(require_positive(p.dim, "index_q", "D_I (the last dimension)"));
    DSA_TRY(require_unit_last_stride(*index_q, "index_q"));
    DSA_TRY(require_dtype(*index_k, "index_k", {DType::f32, DType::bf16}));
    DSA_TRY(require_rank(*index_k, "index_k", 2));
    DSA_TRY(require_extent(*index_k, "index_k", 1, p.dim, "D_I, index_q's last dimension"));
    DSA_TRY(require_unit_last_stride(*index_k, "index_k"));
    p.tokens = index_k->size(0);
    DSA_TRY(require_dtype(*weights, "weights", {DType::f32, DType::bf16}));
    DSA_TRY(require_shape(*weights, "weights", {p.rows, p.heads}, "index_q's T, H_I"));
    DSA_TRY(require_dtype(*ks, "ks", {DType::i32}));
    DSA_TRY(require_shape(*ks, "ks", {p.rows}, "T"));
    DSA_TRY(require_dtype(*ke, "ke", {DType::i32}));
    DSA_TRY(require_shape(*ke, "ke", {p.rows}, "T"));
    if (indices) {
        DSA_TRY(require_dtype(*indices, "indices", {DType::i32}));
        DSA_TRY(require_rank(*indices, "indices", 2));
        DSA_TRY(require_extent(*indices, "indices", 0, p.rows, "T, index_q's first dimension"));
        DSA_TRY(require_unit_last_stride(*indices, "indices"));
        p.topk = indices->size(1);
    }
    DSA_TRY(describe_teacher(teacher_q, teacher_k, teacher_probs, &p));
    DSA_TRY(describe_outputs(loss, row_loss, d_index_q, d_index_k, d_weights, &p));
    DSA_TRY(require_separate_outputs(
        {{loss, "loss"}, {row_loss, "row_loss"}, {d_index_q, "d_index_q"}, {d_index_k, "d_index_k"},
         {d_weights, "d_weights"}},
        {{index_q, "index_q"}, {index_k, "index_k"}, {weights, "weights"}, {ks, "ks"}, {ke, "ke"},
         {indices, "indices"}, {teacher_q, "teacher_q"}, {teacher_k, "teacher_k"}, {teacher_probs, "teacher_probs"}}));
    p.index_q = *index_q;
    p.index_k = *index_k;
    p.weights = *weights;
    p.ks = *ks;
    p.ke = *ke;
    if (indices) p.indices = *indices;

    if (context.device() != DeviceType::cpu) {
#ifdef DSA_HAVE_CUDA
        return cuda::indexer_loss(context, p, stream);
#else
        (void)stream;
        return cuda_not_built();
#endif
    }
    cpu::indexer_loss(context, p);
    return Status::success();
}

}  // namespace dsa
