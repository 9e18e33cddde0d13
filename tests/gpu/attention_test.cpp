// The one-call DSA layer on CUDA equals its parts run on CUDA (indexer_topk then sparse
// attention), with the selection in the caller's workspace or in stream-ordered scratch. While
// dsa_indexer_topk has no CUDA backend the pipeline answers DSA_STATUS_UNSUPPORTED and these
// cases report themselves skipped.
#include <string>

#include "../pipeline_problems.hpp"
#include "gpu_support.hpp"

using namespace dsa_test;

namespace {

// True (and a message) when the call answered that the indexer + top-k has no CUDA kernel yet.
bool indexer_topk_missing(dsa_status_t status) {
    if (status != DSA_STATUS_UNSUPPORTED) return false;
    MESSAGE("skipped: dsa_indexer_topk has no CUDA backend yet (" << dsa_last_error_message() << ")");
    return true;
}

template <typename T>
dsa_tensor_t device_view(DeviceBuffer<T>& buffer, std::initializer_list<int64_t> shape, dsa_dtype_t dtype) {
    return on_device(view(buffer.data, shape, dtype), buffer.data);
}

}  // namespace

TEST_CASE("CUDA dsa_attention (prefill) equals indexer_topk + sparse_attention on CUDA") {
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    IndexerPrefill indexer(40, 3000, 4, 64, 31);
    const int64_t heads = 64, d_qk = 576, d_v = 512, rows = indexer.s_q;
    const dsa_topk_params_t topk = topk_params(256, DSA_TOPK_ORDER_UNSPECIFIED, 1, 4);
    const dsa_sparse_attention_params_t attention = attention_params(static_cast<int32_t>(d_v));
    DeviceBuffer<uint8_t> index_q(indexer.q), index_k(indexer.k);
    DeviceBuffer<float> weights(indexer.weights), k_scale(indexer.k_scale);
    DeviceBuffer<int32_t> ks(indexer.ks), ke(indexer.ke);
    DeviceBuffer<uint16_t> q(to_bf16(random_floats(rows * heads * d_qk, 32)));
    DeviceBuffer<uint16_t> kv(to_bf16(random_floats(indexer.s_kv * d_qk, 33)));
    DeviceBuffer<float> sink(random_floats(heads, 34));
    const dsa_tensor_t q_i = on_device(indexer.q_t, index_q.data), k_i = on_device(indexer.k_t, index_k.data),
                       w_i = on_device(indexer.weights_t, weights.data), s_i = on_device(indexer.scale_t, k_scale.data),
                       ks_i = on_device(indexer.ks_t, ks.data), ke_i = on_device(indexer.ke_t, ke.data);
    const dsa_tensor_t q_t = device_view(q, {rows, heads, d_qk}, DSA_DTYPE_BF16);
    const dsa_tensor_t kv_t = device_view(kv, {indexer.s_kv, d_qk}, DSA_DTYPE_BF16);
    const dsa_tensor_t sink_t = device_view(sink, {heads}, DSA_DTYPE_F32);

    DeviceBuffer<uint16_t> out(std::vector<uint16_t>(rows * heads * d_v, 0x7fc1));
    DeviceBuffer<float> lse(std::vector<float>(rows * heads, NAN));
    DeviceBuffer<int32_t> selected(std::vector<int32_t>(rows * topk.k, -2));
    const dsa_tensor_t out_t = device_view(out, {rows, heads, d_v}, DSA_DTYPE_BF16);
    const dsa_tensor_t lse_t = device_view(lse, {rows, heads}, DSA_DTYPE_F32);
    const dsa_tensor_t selected_t = device_view(selected, {rows, topk.k}, DSA_DTYPE_I32);
    const dsa_status_t status = dsa_attention(gpu, nullptr, &topk, &attention, &q_i, &w_i, &k_i, &s_i, &ks_i, &ke_i,
                                              &q_t, &kv_t, &sink_t, &out_t, &lse_t, &selected_t, nullptr, 0, nullptr);
    if (indexer_topk_missing(status)) return;
    REQUIRE_MESSAGE(status == DSA_STATUS_SUCCESS, dsa_last_error_message());

    DeviceBuffer<int32_t> indices(std::vector<int32_t>(rows * topk.k, -3));
    const dsa_tensor_t indices_t = device_view(indices, {rows, topk.k}, DSA_DTYPE_I32);
    REQUIRE(dsa_indexer_topk(gpu, nullptr, &topk, &q_i, &w_i, &k_i, &s_i, &ks_i, &ke_i, &indices_t, nullptr, 0,
                             nullptr) == DSA_STATUS_SUCCESS);
    DeviceBuffer<uint16_t> parts_out(std::vector<uint16_t>(rows * heads * d_v, 0x7fc1));
    DeviceBuffer<float> parts_lse(std::vector<float>(rows * heads, NAN));
    const dsa_tensor_t parts_out_t = device_view(parts_out, {rows, heads, d_v}, DSA_DTYPE_BF16);
    const dsa_tensor_t parts_lse_t = device_view(parts_lse, {rows, heads}, DSA_DTYPE_F32);
    REQUIRE(dsa_sparse_attention(gpu, &attention, &q_t, &kv_t, &indices_t, &sink_t, nullptr, &parts_out_t,
                                 &parts_lse_t, nullptr, nullptr) == DSA_STATUS_SUCCESS);
    CHECK(selected.download() == indices.download());
    CHECK(out.download() == parts_out.download());
    CHECK(lse.download() == parts_lse.download());

    // With the caller's device workspace: nothing allocated, same result.
    size_t bytes = 0;
    REQUIRE(dsa_attention_workspace_size(gpu, &topk, rows, indexer.s_kv, &bytes) == DSA_STATUS_SUCCESS);
    DeviceBuffer<uint8_t> workspace(std::vector<uint8_t>(bytes, 0));
    DeviceBuffer<uint16_t> out2(std::vector<uint16_t>(rows * heads * d_v, 0x7fc1));
    const dsa_tensor_t out2_t = device_view(out2, {rows, heads, d_v}, DSA_DTYPE_BF16);
    REQUIRE_MESSAGE(dsa_attention(gpu, nullptr, &topk, &attention, &q_i, &w_i, &k_i, &s_i, &ks_i, &ke_i, &q_t, &kv_t,
                                  &sink_t, &out2_t, &lse_t, nullptr, workspace.data, bytes, nullptr) == DSA_STATUS_SUCCESS,
                    dsa_last_error_message());
    CHECK(out2.download() == parts_out.download());
}

TEST_CASE("CUDA dsa_attention_paged (FP8 cache) equals indexer_topk_paged + sparse_attention_paged on CUDA") {
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    PagedDecode problem(41);
    const dsa_topk_params_t topk = topk_params(64, DSA_TOPK_ORDER_UNSPECIFIED);
    const dsa_sparse_attention_params_t attention = attention_params(512);
    DeviceBuffer<uint8_t> index_q(problem.q), k_cache(problem.k_cache), kv_cache(problem.kv_cache);
    DeviceBuffer<float> weights(problem.weights);
    DeviceBuffer<int32_t> table(problem.block_table), lens(problem.context_lens);
    DeviceBuffer<uint16_t> q(problem.attention_q);
    const dsa_tensor_t q_i = on_device(problem.q_t, index_q.data), w_i = on_device(problem.weights_t, weights.data),
                       cache_i = on_device(problem.cache_t, k_cache.data), table_i = on_device(problem.table_t, table.data),
                       lens_i = on_device(problem.lens_t, lens.data), q_t = on_device(problem.attention_q_t, q.data),
                       kv_t = on_device(problem.kv_cache_t, kv_cache.data);
    const int64_t rows = problem.rows(), heads = problem.q_heads;
    DeviceBuffer<uint16_t> out(std::vector<uint16_t>(rows * heads * 512, 0x7fc1));
    DeviceBuffer<float> lse(std::vector<float>(rows * heads, NAN));
    DeviceBuffer<int32_t> selected(std::vector<int32_t>(rows * topk.k, -2));
    const dsa_tensor_t out_t = device_view(out, {problem.batch, problem.next_n, heads, 512}, DSA_DTYPE_BF16);
    const dsa_tensor_t lse_t = device_view(lse, {problem.batch, problem.next_n, heads}, DSA_DTYPE_F32);
    const dsa_tensor_t selected_t = device_view(selected, {rows, topk.k}, DSA_DTYPE_I32);
    const dsa_status_t status =
        dsa_attention_paged(gpu, nullptr, &topk, &attention, &q_i, &w_i, &cache_i, &table_i, &lens_i, &q_t, &kv_t,
                            nullptr, &out_t, &lse_t, &selected_t, nullptr, 0, nullptr);
    if (indexer_topk_missing(status)) return;
    REQUIRE_MESSAGE(status == DSA_STATUS_SUCCESS, dsa_last_error_message());

    DeviceBuffer<int32_t> slots(std::vector<int32_t>(rows * topk.k, -3));
    const dsa_tensor_t slots_t = device_view(slots, {rows, topk.k}, DSA_DTYPE_I32);
    REQUIRE(dsa_indexer_topk_paged(gpu, nullptr, &topk, &q_i, &w_i, &cache_i, &table_i, &lens_i, nullptr, &slots_t,
                                   nullptr, 0, nullptr) == DSA_STATUS_SUCCESS);
    const dsa_tensor_t slots_3d = device_view(slots, {problem.batch, problem.next_n, topk.k}, DSA_DTYPE_I32);
    DeviceBuffer<uint16_t> parts_out(std::vector<uint16_t>(rows * heads * 512, 0x7fc1));
    DeviceBuffer<float> parts_lse(std::vector<float>(rows * heads, NAN));
    const dsa_tensor_t parts_out_t = device_view(parts_out, {problem.batch, problem.next_n, heads, 512}, DSA_DTYPE_BF16);
    const dsa_tensor_t parts_lse_t = device_view(parts_lse, {problem.batch, problem.next_n, heads}, DSA_DTYPE_F32);
    REQUIRE(dsa_sparse_attention_paged(gpu, &attention, &q_t, &kv_t, &slots_3d, nullptr, nullptr, &parts_out_t,
                                       &parts_lse_t, nullptr) == DSA_STATUS_SUCCESS);
    CHECK(selected.download() == slots.download());
    CHECK(out.download() == parts_out.download());
    CHECK(lse.download() == parts_lse.download());
}
