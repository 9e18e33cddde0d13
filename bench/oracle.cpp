// The two oracles: libdsa's CPU path through the C API (what CUDA results are checked against)
// and the scalar references of core/reference (what CPU results are checked against).
#include <cmath>

#include "bench/bench.hpp"
#include "core/ops/hadamard.hpp"
#include "core/ops/indexer.hpp"
#include "core/ops/mla_cache.hpp"
#include "core/ops/quantize.hpp"
#include "core/ops/sparse_attention.hpp"
#include "core/ops/topk.hpp"

namespace dsa_bench {
namespace {

// ---- libdsa's CPU path --------------------------------------------------------------------

class LibraryOracle final : public Oracle {
public:
    explicit LibraryOracle(int threads) {
        dsa_context_options_t options;
        dsa_context_options_init(&options);
        options.num_threads = threads;
        require_success(dsa_context_create(&context_, &options), "dsa_context_create (oracle)");
    }
    ~LibraryOracle() override { dsa_context_destroy(context_); }
    const char* name() const override { return "libdsa CPU path"; }

    void quantize_fp8(const dsa_quantize_fp8_params_t& params, const dsa_tensor_t& x, const dsa_tensor_t& q,
                      const dsa_tensor_t& scales) override {
        require_success(dsa_quantize_fp8(context_, &params, &x, &q, &scales, nullptr), "oracle dsa_quantize_fp8");
    }
    void dequantize_fp8(const dsa_quantize_fp8_params_t& params, const dsa_tensor_t& q, const dsa_tensor_t& scales,
                        const dsa_tensor_t& y) override {
        require_success(dsa_dequantize_fp8(context_, &params, &q, &scales, &y, nullptr), "oracle dsa_dequantize_fp8");
    }
    void hadamard(const dsa_tensor_t& x, const dsa_tensor_t& y) override {
        require_success(dsa_hadamard(context_, nullptr, &x, &y, nullptr), "oracle dsa_hadamard");
    }
    void topk(const dsa_topk_params_t& params, const dsa_tensor_t& scores, const dsa_tensor_t* row_starts,
              const dsa_tensor_t* row_ends, const dsa_tensor_t& indices) override {
        require_success(dsa_topk(context_, &params, &scores, row_starts, row_ends, nullptr, &indices, nullptr),
                        "oracle dsa_topk");
    }
    void indexer_logits(const dsa_tensor_t& q, const dsa_tensor_t& weights, const dsa_tensor_t& k,
                        const dsa_tensor_t& k_scale, const dsa_tensor_t& ks, const dsa_tensor_t& ke,
                        const dsa_tensor_t& logits) override {
        require_success(dsa_indexer_logits(context_, nullptr, &q, &weights, &k, &k_scale, &ks, &ke, &logits, nullptr),
                        "oracle dsa_indexer_logits");
    }
    void indexer_logits_paged(const dsa_tensor_t& q, const dsa_tensor_t& weights, const dsa_tensor_t& k_cache,
                              const dsa_tensor_t& block_table, const dsa_tensor_t& context_lens,
                              const dsa_tensor_t& logits) override {
        require_success(dsa_indexer_logits_paged(context_, nullptr, &q, &weights, &k_cache, &block_table, &context_lens,
                                                 &logits, nullptr),
                        "oracle dsa_indexer_logits_paged");
    }
    void indexer_cache_write(const dsa_tensor_t& k, const dsa_tensor_t& slot_mapping,
                             const dsa_tensor_t& k_cache) override {
        require_success(dsa_indexer_cache_write(context_, &k, &slot_mapping, &k_cache, nullptr),
                        "oracle dsa_indexer_cache_write");
    }
    void sparse_attention(const dsa_sparse_attention_params_t& params, bool paged, const dsa_tensor_t& q,
                          const dsa_tensor_t& kv, const dsa_tensor_t& indices, const dsa_tensor_t& out,
                          const dsa_tensor_t& lse) override {
        const dsa_status_t status =
            paged ? dsa_sparse_attention_paged(context_, &params, &q, &kv, &indices, nullptr, nullptr, &out, &lse, nullptr)
                  : dsa_sparse_attention(context_, &params, &q, &kv, &indices, nullptr, nullptr, &out, &lse, nullptr,
                                         nullptr);
        require_success(status, "oracle dsa_sparse_attention");
    }
    void mla_cache_write(const dsa_tensor_t& c_kv, const dsa_tensor_t& k_pe, const dsa_tensor_t& slot_mapping,
                         const dsa_tensor_t& kv_cache) override {
        require_success(dsa_mla_cache_write(context_, &c_kv, &k_pe, &slot_mapping, &kv_cache, nullptr),
                        "oracle dsa_mla_cache_write");
    }

private:
    dsa_context_t* context_ = nullptr;
};

// ---- The scalar references ----------------------------------------------------------------

// The core view of an ABI tensor (the same fields).
dsa::TensorView core(const dsa_tensor_t& tensor) {
    dsa::TensorView view;
    view.data = tensor.data;
    view.ndim = tensor.ndim;
    view.dtype = static_cast<dsa::DType>(tensor.dtype);
    view.device = static_cast<dsa::DeviceType>(tensor.device_type);
    view.device_id = tensor.device_id;
    for (int axis = 0; axis < DSA_MAX_DIMS; ++axis) {
        view.shape[axis] = tensor.shape[axis];
        view.strides[axis] = tensor.strides[axis];
    }
    return view;
}

dsa::QuantizeFp8Problem quantize_problem(const dsa_quantize_fp8_params_t& params, const dsa_tensor_t& values,
                                         const dsa_tensor_t& codes, const dsa_tensor_t& scales) {
    dsa::QuantizeFp8Problem problem;
    problem.values = core(values);
    problem.codes = core(codes);
    problem.scales = core(scales);
    problem.config.group_size = params.group_size;
    problem.config.scale_format = static_cast<dsa::ScaleFormat>(params.scale_format);
    problem.config.amax_floor = params.amax_floor;
    problem.n = values.shape[values.ndim - 1];
    problem.rows = dsa::leading_row_count(problem.values);
    return problem;
}

class ReferenceOracle final : public Oracle {
public:
    const char* name() const override { return "scalar reference"; }

    void quantize_fp8(const dsa_quantize_fp8_params_t& params, const dsa_tensor_t& x, const dsa_tensor_t& q,
                      const dsa_tensor_t& scales) override {
        dsa::reference::quantize_fp8(quantize_problem(params, x, q, scales));
    }
    void dequantize_fp8(const dsa_quantize_fp8_params_t& params, const dsa_tensor_t& q, const dsa_tensor_t& scales,
                        const dsa_tensor_t& y) override {
        dsa::reference::dequantize_fp8(quantize_problem(params, y, q, scales));
    }
    void hadamard(const dsa_tensor_t& x, const dsa_tensor_t& y) override {
        dsa::HadamardProblem problem;
        problem.x = core(x);
        problem.y = core(y);
        problem.n = x.shape[x.ndim - 1];
        problem.rows = dsa::leading_row_count(problem.x);
        problem.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(problem.n)));
        dsa::reference::hadamard(problem);
    }
    void topk(const dsa_topk_params_t& params, const dsa_tensor_t& scores, const dsa_tensor_t* row_starts,
              const dsa_tensor_t* row_ends, const dsa_tensor_t& indices) override {
        dsa::TopkProblem problem;
        problem.scores = core(scores);
        problem.indices = core(indices);
        problem.has_row_starts = row_starts != nullptr;
        problem.has_row_ends = row_ends != nullptr;
        if (row_starts) problem.row_starts = core(*row_starts);
        if (row_ends) problem.row_ends = core(*row_ends);
        problem.config.k = params.k;
        problem.config.order = static_cast<dsa::TopkOrder>(params.order);
        problem.config.n_sink = params.n_sink;
        problem.config.n_local = params.n_local;
        problem.config.page_size = params.page_size;
        problem.rows = scores.shape[0];
        problem.n = scores.shape[1];
        problem.block_rows = 1;
        dsa::reference::topk(problem);
    }
    void indexer_logits(const dsa_tensor_t& q, const dsa_tensor_t& weights, const dsa_tensor_t& k,
                        const dsa_tensor_t& k_scale, const dsa_tensor_t& ks, const dsa_tensor_t& ke,
                        const dsa_tensor_t& logits) override {
        dsa::IndexerProblem problem;
        problem.keys = dsa::IndexerKeys::contiguous;
        problem.q = core(q);
        problem.weights = core(weights);
        problem.k = core(k);
        problem.k_scale = core(k_scale);
        problem.ks = core(ks);
        problem.ke = core(ke);
        problem.logits = core(logits);
        problem.rows = q.shape[0];
        problem.heads = q.shape[1];
        problem.dim = q.shape[2];
        problem.columns = k.shape[0];
        dsa::reference::indexer_logits(problem);
    }
    void indexer_logits_paged(const dsa_tensor_t& q, const dsa_tensor_t& weights, const dsa_tensor_t& k_cache,
                              const dsa_tensor_t& block_table, const dsa_tensor_t& context_lens,
                              const dsa_tensor_t& logits) override {
        dsa::IndexerProblem problem;
        problem.keys = dsa::IndexerKeys::paged;
        problem.q = core(q);
        problem.weights = core(weights);
        problem.k_cache = core(k_cache);
        problem.block_table = core(block_table);
        problem.context_lens = core(context_lens);
        problem.logits = core(logits);
        problem.next_n = q.shape[1];
        problem.rows = q.shape[0] * q.shape[1];
        problem.heads = q.shape[2];
        problem.dim = q.shape[3];
        problem.columns = logits.shape[1];
        problem.num_pages = k_cache.shape[0];
        problem.max_pages = block_table.shape[1];
        dsa::reference::indexer_logits(problem);
    }
    void indexer_cache_write(const dsa_tensor_t& k, const dsa_tensor_t& slot_mapping,
                             const dsa_tensor_t& k_cache) override {
        dsa::IndexerCacheWriteProblem problem;
        problem.k = core(k);
        problem.slot_mapping = core(slot_mapping);
        problem.k_cache = core(k_cache);
        problem.tokens = k.shape[0];
        problem.dim = k.shape[1];
        problem.num_pages = k_cache.shape[0];
        dsa::reference::indexer_cache_write(problem);
    }
    void sparse_attention(const dsa_sparse_attention_params_t& params, bool paged, const dsa_tensor_t& q,
                          const dsa_tensor_t& kv, const dsa_tensor_t& indices, const dsa_tensor_t& out,
                          const dsa_tensor_t& lse) override {
        dsa::SparseAttentionProblem problem;
        problem.q = core(q);
        problem.kv = core(kv);
        problem.indices = core(indices);
        problem.out = core(out);
        problem.lse = core(lse);
        problem.format = kv.dtype == DSA_DTYPE_U8 ? dsa::KvFormat::fp8_mla : dsa::KvFormat::bf16;
        problem.scale = params.scale;
        problem.d_qk = q.shape[q.ndim - 1];
        problem.d_v = params.d_v;
        problem.heads = q.shape[q.ndim - 2];
        problem.rows = dsa::leading_row_count(problem.indices);
        problem.topk = indices.shape[indices.ndim - 1];
        problem.paged = paged;
        problem.page_size = paged ? kv.shape[1] : 0;
        problem.num_slots = paged ? kv.shape[0] * kv.shape[1] : kv.shape[0];
        dsa::reference::sparse_attention(problem);
    }
    void mla_cache_write(const dsa_tensor_t& c_kv, const dsa_tensor_t& k_pe, const dsa_tensor_t& slot_mapping,
                         const dsa_tensor_t& kv_cache) override {
        dsa::MlaCacheWriteProblem problem;
        problem.c_kv = core(c_kv);
        problem.k_pe = core(k_pe);
        problem.slot_mapping = core(slot_mapping);
        problem.cache = core(kv_cache);
        problem.tokens = c_kv.shape[0];
        problem.page_size = kv_cache.shape[1];
        problem.num_slots = kv_cache.shape[0] * kv_cache.shape[1];
        dsa::reference::mla_cache_write(problem);
    }
};

}  // namespace

std::unique_ptr<Oracle> make_reference_oracle() { return std::make_unique<ReferenceOracle>(); }
std::unique_ptr<Oracle> make_library_oracle(int threads) { return std::make_unique<LibraryOracle>(threads); }

}  // namespace dsa_bench
