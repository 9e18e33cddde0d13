// The two oracles: libdsa's CPU path through the C API (what CUDA results are checked against)
// and the scalar references of core/reference (what CPU results are checked against).
#include <cmath>
#include <cstring>

#include "bench/bench.hpp"
#include "core/ops/hadamard.hpp"
#include "core/ops/indexer.hpp"
#include "core/ops/indexer_loss.hpp"
#include "core/ops/mla_cache.hpp"
#include "core/ops/quantize.hpp"
#include "core/ops/sparse_attention.hpp"
#include "core/ops/sparse_attention_backward.hpp"
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
    void indexer_loss(const dsa_indexer_loss_params_t& params, const dsa_tensor_t& index_q, const dsa_tensor_t& index_k,
                      const dsa_tensor_t& weights, const dsa_tensor_t& ks, const dsa_tensor_t& ke,
                      const dsa_tensor_t* indices, const dsa_tensor_t* teacher_q, const dsa_tensor_t* teacher_k,
                      const dsa_tensor_t* teacher_probs, const dsa_tensor_t& row_loss, const dsa_tensor_t& d_index_q,
                      const dsa_tensor_t& d_weights) override {
        require_success(dsa_indexer_loss(context_, &params, &index_q, &index_k, &weights, &ks, &ke, indices, teacher_q,
                                         teacher_k, teacher_probs, nullptr, &row_loss, &d_index_q, nullptr, &d_weights,
                                         nullptr),
                        "oracle dsa_indexer_loss");
    }
    void sparse_attention_backward(const dsa_sparse_attention_backward_params_t& params, const dsa_tensor_t& q,
                                   const dsa_tensor_t& kv, const dsa_tensor_t& indices, const dsa_tensor_t& out,
                                   const dsa_tensor_t& lse, const dsa_tensor_t& dout, const dsa_tensor_t& dq) override {
        std::vector<float> dkv(static_cast<size_t>(kv.shape[0] * kv.shape[1]));  // not compared: all rows add to it
        const dsa_tensor_t dkv_tensor = host_tensor(dkv.data(), {kv.shape[0], kv.shape[1]}, DSA_DTYPE_F32);
        require_success(dsa_sparse_attention_backward(context_, &params, &q, &kv, &indices, nullptr, nullptr, &out, &lse,
                                                      &dout, &dq, &dkv_tensor, nullptr, nullptr, 0, nullptr),
                        "oracle dsa_sparse_attention_backward");
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

int64_t element_count(const dsa_tensor_t& tensor) {
    int64_t count = 1;
    for (int axis = 0; axis < tensor.ndim; ++axis) count *= tensor.shape[axis];
    return count;
}

// A contiguous f32 or bf16 host tensor as float64 values (the references' form).
std::vector<double> values_of(const dsa_tensor_t& tensor) {
    std::vector<double> values(static_cast<size_t>(element_count(tensor)));
    for (size_t i = 0; i < values.size(); ++i)
        values[i] = tensor.dtype == DSA_DTYPE_BF16 ? dsa::bf16_to_float(static_cast<const uint16_t*>(tensor.data)[i])
                                                   : static_cast<const float*>(tensor.data)[i];
    return values;
}

std::vector<int32_t> indices_of(const dsa_tensor_t& tensor) {
    const auto* data = static_cast<const int32_t*>(tensor.data);
    return std::vector<int32_t>(data, data + element_count(tensor));
}

// Writes float64 results into a contiguous f32 host tensor.
void store(const std::vector<double>& values, const dsa_tensor_t& tensor) {
    for (size_t i = 0; i < values.size(); ++i) static_cast<float*>(tensor.data)[i] = static_cast<float>(values[i]);
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
    void indexer_loss(const dsa_indexer_loss_params_t& params, const dsa_tensor_t& index_q, const dsa_tensor_t& index_k,
                      const dsa_tensor_t& weights, const dsa_tensor_t& ks, const dsa_tensor_t& ke,
                      const dsa_tensor_t* indices, const dsa_tensor_t* teacher_q, const dsa_tensor_t* teacher_k,
                      const dsa_tensor_t* teacher_probs, const dsa_tensor_t& row_loss, const dsa_tensor_t& d_index_q,
                      const dsa_tensor_t& d_weights) override {
        dsa::reference::IndexerLossInputs in;
        in.mode = params.mode == DSA_INDEXER_LOSS_SPARSE ? dsa::IndexerLossMode::sparse : dsa::IndexerLossMode::dense;
        in.coeff = params.coeff;
        in.teacher_scale = params.teacher_scale;
        in.rows = index_q.shape[0];
        in.heads = index_q.shape[1];
        in.dim = index_q.shape[2];
        in.tokens = index_k.shape[0];
        in.index_q = values_of(index_q);
        in.index_k = values_of(index_k);
        in.weights = values_of(weights);
        in.ks = indices_of(ks);
        in.ke = indices_of(ke);
        if (indices) {
            in.topk = indices->shape[1];
            in.indices = indices_of(*indices);
        }
        in.has_teacher_probs = teacher_probs != nullptr;
        if (teacher_probs) in.teacher_probs = values_of(*teacher_probs);
        if (teacher_q) {
            in.teacher_heads = teacher_q->shape[1];
            in.teacher_dim = teacher_q->shape[2];
            in.teacher_kv_heads = teacher_k->ndim == 3 ? teacher_k->shape[1] : 1;
            in.teacher_q = values_of(*teacher_q);
            in.teacher_k = values_of(*teacher_k);
        }
        const dsa::reference::IndexerLossResult result = dsa::reference::indexer_loss(in);
        store(result.row_loss, row_loss);
        store(result.d_index_q, d_index_q);
        store(result.d_weights, d_weights);
    }
    void sparse_attention_backward(const dsa_sparse_attention_backward_params_t& params, const dsa_tensor_t& q,
                                   const dsa_tensor_t& kv, const dsa_tensor_t& indices, const dsa_tensor_t& out,
                                   const dsa_tensor_t& lse, const dsa_tensor_t& dout, const dsa_tensor_t& dq) override {
        dsa::reference::SparseAttentionBackwardInputs in;
        in.scale = params.scale;
        in.rows = q.shape[0];
        in.heads = q.shape[1];
        in.d_qk = q.shape[2];
        in.d_v = params.d_v;
        in.topk = indices.shape[1];
        in.tokens = kv.shape[0];
        in.q = values_of(q);
        in.kv = values_of(kv);
        in.out = values_of(out);
        in.lse = values_of(lse);
        in.dout = values_of(dout);
        in.indices = indices_of(indices);
        store(dsa::reference::sparse_attention_backward(in).dq, dq);
    }
};

}  // namespace

std::unique_ptr<Oracle> make_reference_oracle() { return std::make_unique<ReferenceOracle>(); }
std::unique_ptr<Oracle> make_library_oracle(int threads) { return std::make_unique<LibraryOracle>(threads); }

}  // namespace dsa_bench
