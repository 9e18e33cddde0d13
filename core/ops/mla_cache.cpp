#include "mla_cache.hpp"

namespace dsa {

Status mla_cache_write(Context& context, const TensorView* c_kv, const TensorView* k_pe,
                       const TensorView* slot_mapping, const TensorView* kv_cache, Stream stream) {
    const struct {
        const TensorView* view;
        const char* name;
    } tensors[] = {{c_kv, "c_kv"}, {k_pe, "k_pe"}, {slot_mapping, "slot_mapping"}, {kv_cache, "kv_cache"}};
    for (const auto& tensor : tensors) {
        DSA_TRY(check_tensor(tensor.view, tensor.name));
        DSA_TRY(context.require_device(*tensor.view, tensor.name));
    }
    DSA_TRY(require_dtype(*c_kv, "c_kv", {DType::f32, DType::bf16}));
    DSA_TRY(require_dtype(*k_pe, "k_pe", {c_kv->dtype}));
    DSA_TRY(require_dtype(*slot_mapping, "slot_mapping", {DType::i64}));
    DSA_TRY(require_dtype(*kv_cache, "kv_cache", {DType::u8}));
    DSA_TRY(require_rank(*c_kv, "c_kv", 2));
    DSA_TRY(require_extent(*c_kv, "c_kv", 1, kMlaLatentDim, "the MLA latent width"));
    const int64_t tokens = c_kv->size(0);
    DSA_TRY(require_rank(*k_pe, "k_pe", 2));
    DSA_TRY(require_extent(*k_pe, "k_pe", 0, tokens, "T, c_kv's tokens"));
    DSA_TRY(require_extent(*k_pe, "k_pe", 1, kMlaRopeDim, "the MLA rope width"));
    DSA_TRY(require_rank(*slot_mapping, "slot_mapping", 1));
    DSA_TRY(require_extent(*slot_mapping, "slot_mapping", 0, tokens, "T, c_kv's tokens"));
    DSA_TRY(require_rank(*kv_cache, "kv_cache", 3));
    DSA_TRY(require_extent(*kv_cache, "kv_cache", 2, kMlaEntryBytes, "bytes of an FP8 MLA entry"));
    DSA_TRY(require_unit_last_stride(*c_kv, "c_kv"));
    DSA_TRY(require_unit_last_stride(*k_pe, "k_pe"));
    DSA_TRY(require_unit_last_stride(*kv_cache, "kv_cache"));
    DSA_TRY(require_non_self_overlapping(*kv_cache, "kv_cache"));
    DSA_TRY(require_disjoint(*kv_cache, "kv_cache", *c_kv, "c_kv"));
    DSA_TRY(require_disjoint(*kv_cache, "kv_cache", *k_pe, "k_pe"));
    DSA_TRY(require_disjoint(*kv_cache, "kv_cache", *slot_mapping, "slot_mapping"));

    MlaCacheWriteProblem problem;
    problem.c_kv = *c_kv;
    problem.k_pe = *k_pe;
    problem.slot_mapping = *slot_mapping;
    problem.cache = *kv_cache;
    problem.tokens = tokens;
    problem.page_size = kv_cache->size(1);
    problem.num_slots = kv_cache->size(0) * kv_cache->size(1);
    if (tokens == 0 || problem.num_slots == 0) return Status::success();
    if (context.device() == DeviceType::cpu) {
        cpu::mla_cache_write(context, problem);
        return Status::success();
    }
#ifdef DSA_HAVE_CUDA
    return cuda::mla_cache_write(context, problem, stream);
#else
    (void)stream;
    return cuda_not_built();
#endif
}

}  // namespace dsa
