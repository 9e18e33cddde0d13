#include "sparse_attention_backward.hpp"

#include <cmath>
#include <cstdint>
#include <string>

#include "arguments.hpp"

namespace dsa {
namespace {

Status check_config(const SparseAttentionBackwardConfig& config) {
    if (!std::isfinite(config.scale) || config.scale == 0.0f)
        return {StatusCode::invalid_argument,
                "params.scale: is required and must be finite and non-zero (the forward's scale), got " +
                    std::to_string(config.scale)};
    return check_sparse_attention_backward_mode(config.mode);
}

// Whether every size the CPU derives from these counts fits int64: at most rows * topk entries
// of round_up(d_qk, 8) floats, a token and an order slot each, (tokens + 1) offsets, and the
// alignment of the four parts.
bool scratch_fits_int64(int64_t rows, int64_t topk, int64_t tokens, int64_t d_qk) {
    constexpr int64_t kAlignmentSlack = 4 * 64;
    int64_t entries = 0, bytes = 0;
    if (__builtin_mul_overflow(rows, topk, &entries) || d_qk > (INT64_MAX - 12) / 4 - 8) return false;
    const int64_t entry_bytes = (d_qk + 7) / 8 * 8 * 4 + 12;
    return !__builtin_mul_overflow(entries, entry_bytes, &bytes) && tokens < (INT64_MAX - kAlignmentSlack - bytes) / 8;
}

// The size is checked whether or not a workspace is passed: the CPU derives its own scratch from it.
Status check_workspace(const Context& context, const SparseAttentionBackwardProblem& p, Workspace workspace) {
    int64_t needed = 0;
    DSA_TRY(sparse_attention_backward_workspace_bytes(context, p.config, p.rows, p.topk, p.tokens, p.d_qk, &needed));
    if (needed < 0)
        return {StatusCode::shape_mismatch, "indices: " + std::to_string(p.rows) + " rows of k = " +
                                                std::to_string(p.topk) + " entries over " + std::to_string(p.tokens) +
                                                " tokens of d_qk = " + std::to_string(p.d_qk) +
                                                " need more scratch than int64 bytes count"};
    if (workspace.data == nullptr) return Status::success();
    if (reinterpret_cast<uintptr_t>(workspace.data) % 16 != 0)
        return {StatusCode::layout_unsupported, "workspace: must be aligned to 16 bytes"};
    if (workspace.bytes >= needed) return Status::success();
    return {StatusCode::workspace_too_small,
            "workspace: " + std::to_string(workspace.bytes) + " bytes given, " + std::to_string(needed) +
                " needed (ask dsa_sparse_attention_backward_workspace_size)"};
}

}  // namespace

Status check_sparse_attention_backward_mode(SparseAttentionBackwardMode mode) {
    if (mode == SparseAttentionBackwardMode::deterministic || mode == SparseAttentionBackwardMode::fast)
        return Status::success();
    return {StatusCode::invalid_argument, "params.mode: must be DSA_SPARSE_ATTENTION_BACKWARD_DETERMINISTIC (0) or _FAST "
                                          "(1), got " +
                                              std::to_string(static_cast<uint32_t>(mode))};
}

void SparseAttentionBackwardProblem::entries(int64_t row, std::vector<int32_t>& entries) const {
    int64_t limit = topk;
    if (has_topk_length) {
        const int64_t length = topk_length.as<const int32_t>()[row * topk_length.strides[0]];
        limit = length < 0 ? 0 : (length > topk ? topk : length);
    }
    const int32_t* list = indices.as<const int32_t>() + row * indices.strides[0];
    entries.clear();
    for (int64_t j = 0; j < limit; ++j)
        if (list[j] >= 0 && list[j] < tokens) entries.push_back(list[j]);
}

Status sparse_attention_backward_workspace_bytes(const Context& context, const SparseAttentionBackwardConfig& config,
                                                 int64_t rows, int64_t topk, int64_t tokens, int64_t d_qk,
                                                 int64_t* bytes) {
    *bytes = -1;
    if (!scratch_fits_int64(rows, topk, tokens, d_qk)) return Status::success();
    if (context.device() == DeviceType::cpu) {  // both modes reduce the same way on the CPU
        *bytes = cpu::sparse_attention_backward_workspace_bytes(context, rows, topk, tokens, d_qk);
        return Status::success();
    }
#ifdef DSA_HAVE_CUDA
    return cuda::sparse_attention_backward_workspace_bytes(context, config, rows, topk, tokens, d_qk, bytes);
#else
    (void)config;
    return cuda_not_built();  // a CUDA context cannot exist in this build
#endif
}

Status sparse_attention_backward(Context& context, const SparseAttentionBackwardConfig& config, const TensorView* q,
                                 const TensorView* kv, const TensorView* indices, const TensorView* attn_sink,
                                 const TensorView* topk_length, const TensorView* out, const TensorView* lse,
                                 const TensorView* dout, const TensorView* dq, const TensorView* dkv,
                                 const TensorView* d_attn_sink, Workspace workspace, Stream stream) {
    DSA_TRY(check_config(config));
    if (d_attn_sink != nullptr && attn_sink == nullptr)
        return {StatusCode::invalid_argument, "d_attn_sink: is given but attn_sink is NULL (no sink, no gradient)"};
    DSA_TRY(check_arguments(context,
                            {{q, "q"}, {kv, "kv"}, {indices, "indices"}, {out, "out"}, {lse, "lse"}, {dout, "dout"},
                             {dq, "dq"}, {dkv, "dkv"}},
                            {{attn_sink, "attn_sink"}, {topk_length, "topk_length"}, {d_attn_sink, "d_attn_sink"}}));
    SparseAttentionBackwardProblem p;
    p.config = config;
    DSA_TRY(require_dtype(*q, "q", {DType::bf16, DType::f32}));
    DSA_TRY(require_rank(*q, "q", 3));
    p.rows = q->size(0);
    p.heads = q->size(1);
    p.d_qk = q->size(2);
    p.d_v = config.d_v;
    if (p.d_v < 1 || p.d_v > p.d_qk)
        return {StatusCode::invalid_argument, "params.d_v: must be in [1, d_qk = " + std::to_string(p.d_qk) +
                                                  "], got " + std::to_string(p.d_v)};
    DSA_TRY(require_dtype(*kv, "kv", {DType::bf16, DType::f32}));
    DSA_TRY(require_rank(*kv, "kv", 2));
    DSA_TRY(require_extent(*kv, "kv", 1, p.d_qk, "d_qk, q's last dimension"));
    p.tokens = kv->size(0);
    DSA_TRY(require_dtype(*indices, "indices", {DType::i32}));
    DSA_TRY(require_rank(*indices, "indices", 2));
    DSA_TRY(require_extent(*indices, "indices", 0, p.rows, "S_q, q's first dimension"));
    p.topk = indices->size(1);
    if (attn_sink) {
        DSA_TRY(require_dtype(*attn_sink, "attn_sink", {DType::f32}));
        DSA_TRY(require_shape(*attn_sink, "attn_sink", {p.heads}, "H_q"));
    }
    if (topk_length) {
        DSA_TRY(require_dtype(*topk_length, "topk_length", {DType::i32}));
        DSA_TRY(require_shape(*topk_length, "topk_length", {p.rows}, "S_q"));
    }
    DSA_TRY(require_dtype(*out, "out", {DType::bf16, DType::f32}));
    DSA_TRY(require_shape(*out, "out", {p.rows, p.heads, p.d_v}, "q's S_q, H_q and d_v"));
    DSA_TRY(require_dtype(*lse, "lse", {DType::f32}));
    DSA_TRY(require_shape(*lse, "lse", {p.rows, p.heads}, "q's S_q, H_q"));
    DSA_TRY(require_dtype(*dout, "dout", {DType::bf16, DType::f32}));
    DSA_TRY(require_shape(*dout, "dout", {p.rows, p.heads, p.d_v}, "q's S_q, H_q and d_v"));
    DSA_TRY(require_dtype(*dq, "dq", {DType::f32, DType::bf16}));
    DSA_TRY(require_shape(*dq, "dq", {p.rows, p.heads, p.d_qk}, "q's shape"));
    DSA_TRY(require_dtype(*dkv, "dkv", {DType::f32}));
    DSA_TRY(require_shape(*dkv, "dkv", {p.tokens, p.d_qk}, "kv's shape"));
    if (d_attn_sink) {
        DSA_TRY(require_dtype(*d_attn_sink, "d_attn_sink", {DType::f32}));
        DSA_TRY(require_shape(*d_attn_sink, "d_attn_sink", {p.heads}, "H_q"));
    }
    for (const NamedTensor& tensor : {NamedTensor{q, "q"}, {kv, "kv"}, {indices, "indices"}, {out, "out"},
                                      {dout, "dout"}, {dq, "dq"}, {dkv, "dkv"}})
        DSA_TRY(require_unit_last_stride(*tensor.view, tensor.name));
    DSA_TRY(require_separate_outputs({{dq, "dq"}, {dkv, "dkv"}, {d_attn_sink, "d_attn_sink"}},
                                     {{q, "q"}, {kv, "kv"}, {indices, "indices"}, {attn_sink, "attn_sink"},
                                      {topk_length, "topk_length"}, {out, "out"}, {lse, "lse"}, {dout, "dout"}}));
    p.q = *q;
    p.kv = *kv;
    p.indices = *indices;
    p.out = *out;
    p.lse = *lse;
    p.dout = *dout;
    p.dq = *dq;
    p.dkv = *dkv;
    p.has_attn_sink = attn_sink != nullptr;
    p.has_topk_length = topk_length != nullptr;
    p.has_d_attn_sink = d_attn_sink != nullptr;
    if (attn_sink) p.attn_sink = *attn_sink;
    if (topk_length) p.topk_length = *topk_length;
    if (d_attn_sink) p.d_attn_sink = *d_attn_sink;
    DSA_TRY(check_workspace(context, p, workspace));

    if (context.device() != DeviceType::cpu) {
#ifdef DSA_HAVE_CUDA
        return cuda::sparse_attention_backward(context, p, workspace, stream);
#else
        (void)stream;
        return cuda_not_built();
#endif
    }
    cpu::sparse_attention_backward(context, p, workspace.data);
    return Status::success();
}

}  // namespace dsa
