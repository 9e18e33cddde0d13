// The fused indexer + top-k equals indexer_logits followed by topk (bitwise: both stages are
// independent of tiling), and the one-call DSA layer equals its parts, for prefill and decode.
#include "pipeline_problems.hpp"

using namespace dsa_test;

TEST_CASE("indexer_topk equals indexer_logits + topk (several tiles, orders, hybrid, workspace)") {
    Context context(2);
    // 4M floats per tile / 70000 columns = 59 rows per tile: 150 rows take three tiles.
    IndexerPrefill problem(150, 70000, 3, 64, 1);
    for (dsa_topk_params_t params : {topk_params(64, DSA_TOPK_ORDER_UNSPECIFIED), topk_params(2048, DSA_TOPK_ORDER_SCORE),
                                     topk_params(100, DSA_TOPK_ORDER_INDEX, 4, 16)}) {
        CAPTURE(params.k);
        const std::vector<int32_t> expected = problem.unfused(context, params);
        std::vector<int32_t> fused(problem.s_q * params.k, -9);
        dsa_tensor_t fused_t = view(fused.data(), {problem.s_q, params.k}, DSA_DTYPE_I32);
        REQUIRE(dsa_indexer_topk(context, nullptr, &params, &problem.q_t, &problem.weights_t, &problem.k_t,
                                 &problem.scale_t, &problem.ks_t, &problem.ke_t, &fused_t, nullptr, 0,
                                 nullptr) == DSA_STATUS_SUCCESS);
        CHECK(fused == expected);

        size_t bytes = 0;
        REQUIRE(dsa_indexer_topk_workspace_size(context, problem.s_q, problem.s_kv, &bytes) == DSA_STATUS_SUCCESS);
        CHECK(bytes > 0);
        std::vector<float> workspace(bytes / sizeof(float) + 1);
        std::fill(fused.begin(), fused.end(), -9);
        REQUIRE(dsa_indexer_topk(context, nullptr, &params, &problem.q_t, &problem.weights_t, &problem.k_t,
                                 &problem.scale_t, &problem.ks_t, &problem.ke_t, &fused_t, workspace.data(), bytes,
                                 nullptr) == DSA_STATUS_SUCCESS);
        CHECK(fused == expected);
    }
}

TEST_CASE("indexer_topk: identical across thread counts; bad input answered, output untouched") {
    IndexerPrefill problem(40, 3000, 4, 128, 2);
    const dsa_topk_params_t params = topk_params(256, DSA_TOPK_ORDER_UNSPECIFIED);
    std::vector<int32_t> results[3];
    int threads[3] = {1, 2, 3};
    for (int i = 0; i < 3; ++i) {
        Context context(threads[i]);
        results[i].assign(problem.s_q * params.k, 0);
        dsa_tensor_t out = view(results[i].data(), {problem.s_q, params.k}, DSA_DTYPE_I32);
        REQUIRE(dsa_indexer_topk(context, nullptr, &params, &problem.q_t, &problem.weights_t, &problem.k_t,
                                 &problem.scale_t, &problem.ks_t, &problem.ke_t, &out, nullptr, 0,
                                 nullptr) == DSA_STATUS_SUCCESS);
    }
    CHECK(results[0] == results[1]);
    CHECK(results[0] == results[2]);

    Context context(1);
    std::vector<int32_t> indices(problem.s_q * params.k, 5);
    const std::vector<int32_t> before = indices;
    dsa_tensor_t out = view(indices.data(), {problem.s_q, params.k}, DSA_DTYPE_I32);
    dsa_tensor_t wrong_k = view(indices.data(), {problem.s_q, 128}, DSA_DTYPE_I32);
    CHECK_FAILS_WITH(dsa_indexer_topk(context, nullptr, &params, &problem.q_t, &problem.weights_t, &problem.k_t,
                                      &problem.scale_t, &problem.ks_t, &problem.ke_t, &wrong_k, nullptr, 0, nullptr),
                     DSA_STATUS_SHAPE_MISMATCH, "indices");
    size_t bytes = 0;
    REQUIRE(dsa_indexer_topk_workspace_size(context, problem.s_q, problem.s_kv, &bytes) == DSA_STATUS_SUCCESS);
    std::vector<float> workspace(bytes / sizeof(float) + 4);
    CHECK_FAILS_WITH(dsa_indexer_topk(context, nullptr, &params, &problem.q_t, &problem.weights_t, &problem.k_t,
                                      &problem.scale_t, &problem.ks_t, &problem.ke_t, &out, workspace.data(),
                                      bytes - 4, nullptr),
                     DSA_STATUS_WORKSPACE_TOO_SMALL, "workspace");
    CHECK_FAILS_WITH(dsa_indexer_topk(context, nullptr, &params, &problem.q_t, &problem.weights_t, &problem.k_t,
                                      &problem.scale_t, &problem.ks_t, &problem.ke_t, &out,
                                      reinterpret_cast<char*>(workspace.data()) + 4, bytes, nullptr),
                     DSA_STATUS_LAYOUT_UNSUPPORTED, "workspace");
    dsa_topk_params_t bad = params;
    bad.n_sink = 300;
    CHECK_FAILS_WITH(dsa_indexer_topk(context, nullptr, &bad, &problem.q_t, &problem.weights_t, &problem.k_t,
                                      &problem.scale_t, &problem.ks_t, &problem.ke_t, &out, nullptr, 0, nullptr),
                     DSA_STATUS_INVALID_ARGUMENT, "n_sink");
    dsa_tensor_t bad_weights = problem.weights_t;
    bad_weights.dtype = DSA_DTYPE_BF16;
    CHECK_FAILS_WITH(dsa_indexer_topk(context, nullptr, &params, &problem.q_t, &bad_weights, &problem.k_t,
                                      &problem.scale_t, &problem.ks_t, &problem.ke_t, &out, nullptr, 0, nullptr),
                     DSA_STATUS_DTYPE_MISMATCH, "weights");
    dsa_tensor_t overlapping = view(problem.k_scale.data(), {problem.s_q, params.k}, DSA_DTYPE_I32);
    overlapping.shape[1] = params.k;
    CHECK(dsa_indexer_topk(context, nullptr, &params, &problem.q_t, &problem.weights_t, &problem.k_t,
                           &problem.scale_t, &problem.ks_t, &problem.ke_t, &overlapping, nullptr, 0,
                           nullptr) != DSA_STATUS_SUCCESS);
    CHECK(indices == before);
}


TEST_CASE("indexer_topk_paged equals indexer_logits_paged + topk, as indices and as slots") {
    Context context(2);
    PagedDecode problem(7);
    const dsa_topk_params_t params = topk_params(48, DSA_TOPK_ORDER_SCORE, 2, 8);
    const int64_t columns = problem.max_pages * 64;
    std::vector<float> logits(problem.rows() * columns);
    dsa_tensor_t logits_t = view(logits.data(), {problem.rows(), columns}, DSA_DTYPE_F32);
    REQUIRE(dsa_indexer_logits_paged(context, nullptr, &problem.q_t, &problem.weights_t, &problem.cache_t,
                                     &problem.table_t, &problem.lens_t, &logits_t, nullptr) == DSA_STATUS_SUCCESS);
    // Visible window of query j of sequence b: [0, len - n_next + j + 1).
    std::vector<int32_t> ends(problem.rows());
    for (int64_t row = 0; row < problem.rows(); ++row)
        ends[row] = std::max<int32_t>(0, problem.context_lens[row / problem.next_n] -
                                             static_cast<int32_t>(problem.next_n) + static_cast<int32_t>(row % problem.next_n) + 1);
    dsa_tensor_t ends_t = view(ends.data(), {problem.rows()}, DSA_DTYPE_I32);
    std::vector<int32_t> expected_indices(problem.rows() * params.k), expected_slots(problem.rows() * params.k);
    dsa_tensor_t expected_indices_t = view(expected_indices.data(), {problem.rows(), params.k}, DSA_DTYPE_I32);
    dsa_tensor_t expected_slots_t = view(expected_slots.data(), {problem.rows(), params.k}, DSA_DTYPE_I32);
    REQUIRE(dsa_topk(context, &params, &logits_t, nullptr, &ends_t, nullptr, &expected_indices_t, nullptr) ==
            DSA_STATUS_SUCCESS);
    REQUIRE(dsa_topk(context, &params, &logits_t, nullptr, &ends_t, &problem.table_t, &expected_slots_t, nullptr) ==
            DSA_STATUS_SUCCESS);

    std::vector<int32_t> indices(expected_indices.size(), -5), slots(expected_slots.size(), -5);
    dsa_tensor_t indices_t = view(indices.data(), {problem.rows(), params.k}, DSA_DTYPE_I32);
    dsa_tensor_t slots_t = view(slots.data(), {problem.rows(), params.k}, DSA_DTYPE_I32);
    REQUIRE(dsa_indexer_topk_paged(context, nullptr, &params, &problem.q_t, &problem.weights_t, &problem.cache_t,
                                   &problem.table_t, &problem.lens_t, &indices_t, &slots_t, nullptr, 0,
                                   nullptr) == DSA_STATUS_SUCCESS);
    CHECK(indices == expected_indices);
    CHECK(slots == expected_slots);
    std::fill(slots.begin(), slots.end(), -5);
    REQUIRE(dsa_indexer_topk_paged(context, nullptr, &params, &problem.q_t, &problem.weights_t, &problem.cache_t,
                                   &problem.table_t, &problem.lens_t, nullptr, &slots_t, nullptr, 0,
                                   nullptr) == DSA_STATUS_SUCCESS);
    CHECK(slots == expected_slots);
    CHECK_FAILS_WITH(dsa_indexer_topk_paged(context, nullptr, &params, &problem.q_t, &problem.weights_t,
                                            &problem.cache_t, &problem.table_t, &problem.lens_t, nullptr, nullptr,
                                            nullptr, 0, nullptr),
                     DSA_STATUS_INVALID_ARGUMENT, "slots");
    dsa_topk_params_t other_pages = params;
    other_pages.page_size = 32;
    CHECK_FAILS_WITH(dsa_indexer_topk_paged(context, nullptr, &other_pages, &problem.q_t, &problem.weights_t,
                                            &problem.cache_t, &problem.table_t, &problem.lens_t, nullptr, &slots_t,
                                            nullptr, 0, nullptr),
                     DSA_STATUS_INVALID_ARGUMENT, "page_size");
}

TEST_CASE("dsa_attention (prefill) equals indexer_topk + sparse_attention bitwise") {
    Context context(2);
    IndexerPrefill indexer(33, 900, 4, 64, 11);
    const int64_t heads = 5, d_qk = 72, d_v = 64;
    std::vector<uint16_t> q = to_bf16(random_floats(indexer.s_q * heads * d_qk, 12));
    std::vector<uint16_t> kv = to_bf16(random_floats(indexer.s_kv * d_qk, 13));
    std::vector<float> sink = random_floats(heads, 14);
    dsa_tensor_t q_t = view(q.data(), {indexer.s_q, heads, d_qk}, DSA_DTYPE_BF16);
    dsa_tensor_t kv_t = view(kv.data(), {indexer.s_kv, d_qk}, DSA_DTYPE_BF16);
    dsa_tensor_t sink_t = view(sink.data(), {heads}, DSA_DTYPE_F32);
    const dsa_topk_params_t topk = topk_params(100, DSA_TOPK_ORDER_UNSPECIFIED, 1, 4);
    const dsa_sparse_attention_params_t attention = attention_params(d_v);

    std::vector<int32_t> indices(indexer.s_q * topk.k);
    dsa_tensor_t indices_t = view(indices.data(), {indexer.s_q, topk.k}, DSA_DTYPE_I32);
    REQUIRE(dsa_indexer_topk(context, nullptr, &topk, &indexer.q_t, &indexer.weights_t, &indexer.k_t, &indexer.scale_t,
                             &indexer.ks_t, &indexer.ke_t, &indices_t, nullptr, 0, nullptr) == DSA_STATUS_SUCCESS);
    std::vector<uint16_t> expected_out(indexer.s_q * heads * d_v);
    std::vector<float> expected_lse(indexer.s_q * heads);
    dsa_tensor_t expected_out_t = view(expected_out.data(), {indexer.s_q, heads, d_v}, DSA_DTYPE_BF16);
    dsa_tensor_t expected_lse_t = view(expected_lse.data(), {indexer.s_q, heads}, DSA_DTYPE_F32);
    REQUIRE(dsa_sparse_attention(context, &attention, &q_t, &kv_t, &indices_t, &sink_t, nullptr, &expected_out_t,
                                 &expected_lse_t, nullptr, nullptr) == DSA_STATUS_SUCCESS);

    for (bool with_workspace : {false, true}) {
        CAPTURE(with_workspace);
        std::vector<uint16_t> out(expected_out.size(), 0x7fc1);
        std::vector<float> lse(expected_lse.size(), NAN);
        std::vector<int32_t> selected(indices.size(), -3);
        dsa_tensor_t out_t = view(out.data(), {indexer.s_q, heads, d_v}, DSA_DTYPE_BF16);
        dsa_tensor_t lse_t = view(lse.data(), {indexer.s_q, heads}, DSA_DTYPE_F32);
        dsa_tensor_t selected_t = view(selected.data(), {indexer.s_q, topk.k}, DSA_DTYPE_I32);
        size_t bytes = 0;
        REQUIRE(dsa_attention_workspace_size(context, &topk, indexer.s_q, indexer.s_kv, &bytes) == DSA_STATUS_SUCCESS);
        std::vector<float> workspace(bytes / sizeof(float) + 1);
        REQUIRE_MESSAGE(dsa_attention(context, nullptr, &topk, &attention, &indexer.q_t, &indexer.weights_t,
                                      &indexer.k_t, &indexer.scale_t, &indexer.ks_t, &indexer.ke_t, &q_t, &kv_t,
                                      &sink_t, &out_t, &lse_t, &selected_t,
                                      with_workspace ? workspace.data() : nullptr, with_workspace ? bytes : 0,
                                      nullptr) == DSA_STATUS_SUCCESS,
                        dsa_last_error_message());
        CHECK(out == expected_out);
        CHECK(lse == expected_lse);
        CHECK(selected == indices);
    }

    // Errors are found before anything runs: outputs stay as they were.
    std::vector<uint16_t> out(expected_out.size(), 0x1234);
    std::vector<int32_t> selected(indices.size(), -3);
    const std::vector<uint16_t> out_before = out;
    const std::vector<int32_t> selected_before = selected;
    dsa_tensor_t out_t = view(out.data(), {indexer.s_q, heads, d_v}, DSA_DTYPE_BF16);
    dsa_tensor_t selected_t = view(selected.data(), {indexer.s_q, topk.k}, DSA_DTYPE_I32);
    std::vector<float> lse(expected_lse.size());
    dsa_tensor_t lse_t = view(lse.data(), {indexer.s_q, heads}, DSA_DTYPE_F32);
    dsa_tensor_t short_kv = view(kv.data(), {indexer.s_kv - 1, d_qk}, DSA_DTYPE_BF16);
    CHECK_FAILS_WITH(dsa_attention(context, nullptr, &topk, &attention, &indexer.q_t, &indexer.weights_t, &indexer.k_t,
                                   &indexer.scale_t, &indexer.ks_t, &indexer.ke_t, &q_t, &short_kv, &sink_t, &out_t,
                                   &lse_t, &selected_t, nullptr, 0, nullptr),
                     DSA_STATUS_SHAPE_MISMATCH, "kv");
    CHECK_FAILS_WITH(dsa_attention(context, nullptr, &topk, nullptr, &indexer.q_t, &indexer.weights_t, &indexer.k_t,
                                   &indexer.scale_t, &indexer.ks_t, &indexer.ke_t, &q_t, &kv_t, &sink_t, &out_t,
                                   &lse_t, &selected_t, nullptr, 0, nullptr),
                     DSA_STATUS_INVALID_ARGUMENT, "attention_params");
    dsa_tensor_t bad_out = out_t;
    bad_out.dtype = DSA_DTYPE_F32;
    bad_out.shape[2] = d_v / 2;
    CHECK_FAILS_WITH(dsa_attention(context, nullptr, &topk, &attention, &indexer.q_t, &indexer.weights_t, &indexer.k_t,
                                   &indexer.scale_t, &indexer.ks_t, &indexer.ke_t, &q_t, &kv_t, &sink_t, &bad_out,
                                   &lse_t, &selected_t, nullptr, 0, nullptr),
                     DSA_STATUS_DTYPE_MISMATCH, "out");
    size_t bytes = 0;
    REQUIRE(dsa_attention_workspace_size(context, &topk, indexer.s_q, indexer.s_kv, &bytes) == DSA_STATUS_SUCCESS);
    std::vector<float> workspace(bytes / sizeof(float));
    CHECK_FAILS_WITH(dsa_attention(context, nullptr, &topk, &attention, &indexer.q_t, &indexer.weights_t, &indexer.k_t,
                                   &indexer.scale_t, &indexer.ks_t, &indexer.ke_t, &q_t, &kv_t, &sink_t, &out_t,
                                   &lse_t, &selected_t, workspace.data(), bytes - 256, nullptr),
                     DSA_STATUS_WORKSPACE_TOO_SMALL, "workspace");
    CHECK(out == out_before);
    CHECK(selected == selected_before);
}

TEST_CASE("dsa_attention_paged over the FP8 MLA cache equals indexer_topk_paged + sparse_attention_paged") {
    Context context(2);
    PagedDecode problem(21);
    const dsa_topk_params_t topk = topk_params(64, DSA_TOPK_ORDER_UNSPECIFIED);
    const dsa_sparse_attention_params_t attention = attention_params(512);
    std::vector<int32_t> slots(problem.rows() * topk.k);
    dsa_tensor_t slots_t = view(slots.data(), {problem.rows(), topk.k}, DSA_DTYPE_I32);
    REQUIRE(dsa_indexer_topk_paged(context, nullptr, &topk, &problem.q_t, &problem.weights_t, &problem.cache_t,
                                   &problem.table_t, &problem.lens_t, nullptr, &slots_t, nullptr, 0,
                                   nullptr) == DSA_STATUS_SUCCESS);
    dsa_tensor_t slots_3d = view(slots.data(), {problem.batch, problem.next_n, topk.k}, DSA_DTYPE_I32);
    const int64_t out_count = problem.rows() * problem.q_heads * 512;
    std::vector<uint16_t> expected_out(out_count);
    std::vector<float> expected_lse(problem.rows() * problem.q_heads);
    dsa_tensor_t expected_out_t = view(expected_out.data(), {problem.batch, problem.next_n, problem.q_heads, 512}, DSA_DTYPE_BF16);
    dsa_tensor_t expected_lse_t = view(expected_lse.data(), {problem.batch, problem.next_n, problem.q_heads}, DSA_DTYPE_F32);
    REQUIRE(dsa_sparse_attention_paged(context, &attention, &problem.attention_q_t, &problem.kv_cache_t, &slots_3d,
                                       nullptr, nullptr, &expected_out_t, &expected_lse_t, nullptr) == DSA_STATUS_SUCCESS);
    // The cache was filled only where the block table points: NaN bytes elsewhere must not leak.
    for (float value : expected_lse) CHECK(std::isfinite(value));

    std::vector<uint16_t> out(out_count, 0x7fc1);
    std::vector<float> lse(expected_lse.size(), NAN);
    std::vector<int32_t> selected(slots.size(), -2);
    dsa_tensor_t out_t = view(out.data(), {problem.batch, problem.next_n, problem.q_heads, 512}, DSA_DTYPE_BF16);
    dsa_tensor_t lse_t = view(lse.data(), {problem.batch, problem.next_n, problem.q_heads}, DSA_DTYPE_F32);
    dsa_tensor_t selected_t = view(selected.data(), {problem.rows(), topk.k}, DSA_DTYPE_I32);
    REQUIRE_MESSAGE(dsa_attention_paged(context, nullptr, &topk, &attention, &problem.q_t, &problem.weights_t,
                                        &problem.cache_t, &problem.table_t, &problem.lens_t, &problem.attention_q_t,
                                        &problem.kv_cache_t, nullptr, &out_t, &lse_t, &selected_t, nullptr, 0,
                                        nullptr) == DSA_STATUS_SUCCESS,
                    dsa_last_error_message());
    CHECK(out == expected_out);
    CHECK(lse == expected_lse);
    CHECK(selected == slots);

    // A cache with pages of another size cannot share the indexer's block table.
    dsa_tensor_t other_pages = view(problem.kv_cache.data(), {problem.num_pages * 2, 32, 656}, DSA_DTYPE_U8);
    CHECK_FAILS_WITH(dsa_attention_paged(context, nullptr, &topk, &attention, &problem.q_t, &problem.weights_t,
                                         &problem.cache_t, &problem.table_t, &problem.lens_t, &problem.attention_q_t,
                                         &other_pages, nullptr, &out_t, &lse_t, nullptr, nullptr, 0, nullptr),
                     DSA_STATUS_SHAPE_MISMATCH, "kv_cache");
    CHECK_FAILS_WITH(dsa_attention_paged(context, nullptr, &topk, &attention, &problem.q_t, &problem.weights_t,
                                         &problem.cache_t, &problem.table_t, &problem.lens_t, nullptr,
                                         &problem.kv_cache_t, nullptr, &out_t, &lse_t, nullptr, nullptr, 0, nullptr),
                     DSA_STATUS_INVALID_ARGUMENT, "q");
}
