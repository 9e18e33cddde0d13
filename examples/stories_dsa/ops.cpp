#include "ops.hpp"

#include <optional>
#include <vector>

namespace stories {
namespace {

// ks = 0, ke = t + 1 for every query row t of a sequence.
struct CausalWindows {
    explicit CausalWindows(int64_t rows) : starts(static_cast<size_t>(rows), 0), ends(static_cast<size_t>(rows)) {
        for (int64_t t = 0; t < rows; ++t) ends[t] = static_cast<int32_t>(t + 1);
    }
    std::vector<int32_t> starts, ends;
};

dsa_topk_params_t topk_params(const TopkChoice& choice) {
    dsa_topk_params_t params;
    check(dsa_topk_params_init(&params), "dsa_topk_params_init");
    params.k = choice.k;
    params.n_sink = choice.n_sink;
    params.n_local = choice.n_local;
    return params;
}

}  // namespace

void quantize_fp8(const Device& device, const float* x, int64_t rows, int64_t width, int64_t group, bool rotate,
                  uint8_t* codes, float* scales) {
    dsa_quantize_fp8_params_t params;
    check(dsa_quantize_fp8_params_init(&params), "dsa_quantize_fp8_params_init");
    params.group_size = static_cast<int32_t>(group);
    params.scale_format = DSA_SCALE_FORMAT_UE8M0;
    const DeviceTensor input = device.input(x, {rows, width}, DSA_DTYPE_F32);
    DeviceTensor code_output = device.output(codes, {rows, width}, DSA_DTYPE_FP8_E4M3);
    DeviceTensor scale_output = device.output(scales, {rows, width / group}, DSA_DTYPE_F32);
    if (rotate)
        check(dsa_hadamard_quantize_fp8(device.context(), nullptr, &params, input.get(), code_output.get(),
                                        scale_output.get(), nullptr),
              "dsa_hadamard_quantize_fp8");
    else
        check(dsa_quantize_fp8(device.context(), &params, input.get(), code_output.get(), scale_output.get(), nullptr),
              "dsa_quantize_fp8");
    code_output.fetch();
    scale_output.fetch();
}

void indexer_topk(const Device& device, const uint8_t* q, const float* weights, const uint8_t* k,
                  const float* k_scale, int64_t rows, int64_t heads, int64_t dim, const TopkChoice& choice,
                  int32_t* indices) {
    const CausalWindows windows(rows);
    const dsa_topk_params_t params = topk_params(choice);
    const DeviceTensor q_tensor = device.input(q, {rows, heads, dim}, DSA_DTYPE_FP8_E4M3);
    const DeviceTensor weight_tensor = device.input(weights, {rows, heads}, DSA_DTYPE_F32);
    const DeviceTensor k_tensor = device.input(k, {rows, dim}, DSA_DTYPE_FP8_E4M3);
    const DeviceTensor scale_tensor = device.input(k_scale, {rows}, DSA_DTYPE_F32);
    const DeviceTensor starts = device.input(windows.starts.data(), {rows}, DSA_DTYPE_I32);
    const DeviceTensor ends = device.input(windows.ends.data(), {rows}, DSA_DTYPE_I32);
    DeviceTensor selected = device.output(indices, {rows, choice.k}, DSA_DTYPE_I32);
    check(dsa_indexer_topk(device.context(), nullptr, &params, q_tensor.get(), weight_tensor.get(), k_tensor.get(),
                           scale_tensor.get(), starts.get(), ends.get(), selected.get(), nullptr, 0, nullptr),
          "dsa_indexer_topk");
    selected.fetch();
}

void topk(const Device& device, const float* scores, int64_t rows, const TopkChoice& choice, int32_t* indices) {
    const CausalWindows windows(rows);
    const dsa_topk_params_t params = topk_params(choice);
    const DeviceTensor score_tensor = device.input(scores, {rows, rows}, DSA_DTYPE_F32);
    const DeviceTensor starts = device.input(windows.starts.data(), {rows}, DSA_DTYPE_I32);
    const DeviceTensor ends = device.input(windows.ends.data(), {rows}, DSA_DTYPE_I32);
    DeviceTensor selected = device.output(indices, {rows, choice.k}, DSA_DTYPE_I32);
    check(dsa_topk(device.context(), &params, score_tensor.get(), starts.get(), ends.get(), nullptr, selected.get(),
                   nullptr),
          "dsa_topk");
    selected.fetch();
}

void sparse_attention(const Device& device, const uint16_t* q, const uint16_t* kv, const int32_t* indices,
                      int64_t rows, int64_t heads, int64_t d_qk, int64_t d_v, int64_t k, float scale, uint16_t* out) {
    dsa_sparse_attention_params_t params;
    check(dsa_sparse_attention_params_init(&params), "dsa_sparse_attention_params_init");
    params.scale = scale;
    params.d_v = static_cast<int32_t>(d_v);
    std::vector<float> lse(static_cast<size_t>(rows * heads));
    const DeviceTensor q_tensor = device.input(q, {rows, heads, d_qk}, DSA_DTYPE_BF16);
    const DeviceTensor kv_tensor = device.input(kv, {rows, d_qk}, DSA_DTYPE_BF16);
    const DeviceTensor index_tensor = device.input(indices, {rows, k}, DSA_DTYPE_I32);
    DeviceTensor out_tensor = device.output(out, {rows, heads, d_v}, DSA_DTYPE_BF16);
    DeviceTensor lse_tensor = device.output(lse.data(), {rows, heads}, DSA_DTYPE_F32);
    check(dsa_sparse_attention(device.context(), &params, q_tensor.get(), kv_tensor.get(), index_tensor.get(), nullptr,
                               nullptr, out_tensor.get(), lse_tensor.get(), nullptr, nullptr),
          "dsa_sparse_attention");
    out_tensor.fetch();
}

float indexer_loss(const Device& device, const IndexerLossInputs& in, float* d_q, float* d_k, float* d_weights) {
    dsa_indexer_loss_params_t params;
    check(dsa_indexer_loss_params_init(&params), "dsa_indexer_loss_params_init");
    params.mode = in.indices == nullptr ? DSA_INDEXER_LOSS_DENSE : DSA_INDEXER_LOSS_SPARSE;
    params.coeff = in.coeff;
    params.teacher_scale = in.teacher_scale;
    const int64_t rows = in.rows;
    const CausalWindows windows(rows);
    const DeviceTensor q = device.input(in.q, {rows, in.heads, in.dim}, DSA_DTYPE_F32);
    const DeviceTensor k = device.input(in.k, {rows, in.dim}, DSA_DTYPE_F32);
    const DeviceTensor weights = device.input(in.weights, {rows, in.heads}, DSA_DTYPE_F32);
    const DeviceTensor starts = device.input(windows.starts.data(), {rows}, DSA_DTYPE_I32);
    const DeviceTensor ends = device.input(windows.ends.data(), {rows}, DSA_DTYPE_I32);
    const DeviceTensor teacher_q = device.input(in.teacher_q, {rows, in.teacher_heads, in.teacher_dim}, DSA_DTYPE_F32);
    const DeviceTensor teacher_k = device.input(in.teacher_k, {rows, in.teacher_kv_heads, in.teacher_dim}, DSA_DTYPE_F32);
    std::optional<DeviceTensor> selected;
    if (in.indices != nullptr) selected.emplace(device.input(in.indices, {rows, in.k_selected}, DSA_DTYPE_I32));
    float loss = 0.0f;
    DeviceTensor loss_tensor = device.output(&loss, {1}, DSA_DTYPE_F32);
    DeviceTensor dq = device.output(d_q, {rows, in.heads, in.dim}, DSA_DTYPE_F32);
    DeviceTensor dk = device.output(d_k, {rows, in.dim}, DSA_DTYPE_F32);
    DeviceTensor dw = device.output(d_weights, {rows, in.heads}, DSA_DTYPE_F32);
    check(dsa_indexer_loss(device.context(), &params, q.get(), k.get(), weights.get(), starts.get(), ends.get(),
                           selected ? selected->get() : nullptr, teacher_q.get(), teacher_k.get(), nullptr,
                           loss_tensor.get(), nullptr, dq.get(), dk.get(), dw.get(), nullptr),
          "dsa_indexer_loss");
    loss_tensor.fetch();
    dq.fetch();
    dk.fetch();
    dw.fetch();
    return loss;
}

}  // namespace stories
