// The sparse attention backward (dsa_sparse_attention_backward) on the CPU: gradients against
// central finite differences of the float64 forward, the CPU against the float64 backward on
// the forward's own outputs, invalid and repeated indices, empty rows, the sink, topk_length,
// determinism, strides, the workspace and bad input.
#include "sparse_attention_backward_cases.hpp"

using namespace dsa_test;
using namespace dsa_test::attention_backward_cases;

TEST_CASE("every gradient matches central finite differences of the float64 forward") {
    for (bool use_sink : {false, true}) {
        CAPTURE(use_sink);
        Case c = make_case(5, 3, 6, 4, 9, 7, 10 + use_sink, DSA_DTYPE_F32, use_sink);
        const Gradients got = run_library(c);
        // loss = sum of dout * out over every output element, out from the float64 forward.
        SparseAttentionBackwardInputs in = c.reference_inputs();
        const SparseAttentionBackwardResult analytic = dsa::reference::sparse_attention_backward(in);
        const auto loss = [&] {
            const std::vector<double> out = dsa::reference::sparse_attention_forward(in).out;
            double total = 0.0;
            for (size_t i = 0; i < out.size(); ++i) total += in.dout[i] * out[i];
            return total;
        };
        check_gradient("q", got.dq, analytic.dq, central_differences(in.q, loss));
        check_gradient("kv", got.dkv, analytic.dkv, central_differences(in.kv, loss));
        if (use_sink) check_gradient("attn_sink", got.d_sink, analytic.d_attn_sink, central_differences(in.attn_sink, loss));
    }
}

TEST_CASE("the CPU matches the float64 backward: DeepSeek widths, odd widths, tiles, heads, dtypes") {
    struct Shape {
        int64_t rows, heads, d_qk, d_v, tokens, topk;
    };
    const Shape shapes[] = {{4, 16, 576, 512, 300, 150}, {6, 3, 13, 5, 50, 70}, {3, 128, 72, 64, 200, 65},
                            {5, 1, 1, 1, 20, 9},         {4, 5, 24, 24, 90, 130}};
    uint32_t seed = 100;
    for (const Shape& s : shapes)
        for (dsa_dtype_t dtype : {DSA_DTYPE_F32, DSA_DTYPE_BF16}) {
            CAPTURE(s.heads);
            CAPTURE(s.d_qk);
            CAPTURE(dtype);
            Case c = make_case(s.rows, s.heads, s.d_qk, s.d_v, s.tokens, s.topk, seed++, dtype);
            check_against_reference(c, run_library(c));
        }
}

TEST_CASE("the backward of the library's own forward: bf16 out and lse from dsa_sparse_attention") {
    Case c = make_case(6, 8, 72, 64, 120, 40, 200, DSA_DTYPE_BF16);
    Context context(2);
    dsa_sparse_attention_params_t forward;
    dsa_sparse_attention_params_init(&forward);
    forward.scale = c.scale;
    forward.d_v = static_cast<int32_t>(c.d_v);
    const dsa_tensor_t q = c.q_tensor(), kv = c.kv_tensor(), indices = c.indices_tensor(), sink = c.sink_tensor(),
                       lengths = c.lengths_tensor(), out = c.out_tensor(), lse = c.lse_tensor();
    REQUIRE(dsa_sparse_attention(context, &forward, &q, &kv, &indices, &sink, &lengths, &out, &lse, nullptr,
                                 nullptr) == DSA_STATUS_SUCCESS);
    const Gradients got = run_library(c);
    check_against_reference(c, got);
    // Row 1 has no valid index: lse +inf, zero dq, and nothing reaches dkv or the sink from it.
    for (int64_t h = 0; h < c.heads; ++h) CHECK(c.lse[1 * c.heads + h] == INFINITY);
    CHECK(std::all_of(got.dq.begin() + c.heads * c.d_qk, got.dq.begin() + 2 * c.heads * c.d_qk,
                      [](float v) { return v == 0.0f; }));
}

TEST_CASE("invalid, repeated and cut-off indices; rows without a valid index; tokens nobody selects") {
    Case c = make_case(4, 2, 8, 8, 12, 6, 300);
    const int32_t rows[4][6] = {{3, 3, -1, 7, 12, INT32_MIN},  // 3 twice
                                {-1, -5, 12, 13, INT32_MAX, INT32_MIN},  // nothing valid
                                {5, 6, 7, 8, 9, 10},                    // length 2 keeps 5, 6
                                {0, 0, 0, 0, 0, 0}};                    // one token six times
    for (int t = 0; t < 4; ++t) std::copy_n(rows[t], 6, c.indices.begin() + t * 6);
    c.lengths = {6, 6, 2, 6};
    const dsa::reference::SparseAttentionForwardResult forward = dsa::reference::sparse_attention_forward(c.reference_inputs());
    c.out.assign(as_floats(forward.out), DSA_DTYPE_F32);
    c.lse = as_floats(forward.lse);
    const Gradients got = run_library(c);
    check_against_reference(c, got);
    for (int64_t i = c.heads * c.d_qk; i < 2 * c.heads * c.d_qk; ++i) CHECK(got.dq[i] == 0.0f);
    for (int64_t s : {1, 2, 4, 11})  // never selected (8, 9, 10 are cut off by the length)
        for (int64_t d = 0; d < c.d_qk; ++d) CHECK(got.dkv[s * c.d_qk + d] == 0.0f);
    for (int64_t s : {8, 9, 10})
        for (int64_t d = 0; d < c.d_qk; ++d) CHECK(got.dkv[s * c.d_qk + d] == 0.0f);
    // Row 3 attends to token 0 alone: P = 1 for every head (no sink), so dZ = P (dP - D) = 0 and
    // dq is zero; dkv[0] gets sum_h dout[3, h] from it.
    Case single = c;
    single.use_sink = false;
    const dsa::reference::SparseAttentionForwardResult plain = dsa::reference::sparse_attention_forward(single.reference_inputs());
    single.out.assign(as_floats(plain.out), DSA_DTYPE_F32);
    single.lse = as_floats(plain.lse);
    const Gradients alone = run_library(single);
    for (int64_t i = 3 * c.heads * c.d_qk; i < 4 * c.heads * c.d_qk; ++i) CHECK(std::fabs(alone.dq[i]) < 1e-6f);
    // Replacing the ignored entries by other ignored values changes no bit.
    Case other = c;
    for (int32_t& index : other.indices)
        if (index < 0 || index >= 12) index = index < 0 ? -100 : 5000;
    other.indices[2 * 6 + 3] = 11;  // beyond row 2's length: ignored too
    CHECK(same_bits(got, run_library(other)));
}

TEST_CASE("k = 0, H_q = 0, S_q = 0 and S_kv = 0") {
    for (const auto& [rows, heads, tokens, topk] :
         std::vector<std::array<int64_t, 4>>{{3, 2, 10, 0}, {3, 0, 10, 4}, {0, 2, 10, 4}, {3, 2, 0, 4}}) {
        CAPTURE(rows);
        CAPTURE(heads);
        CAPTURE(tokens);
        CAPTURE(topk);
        Case c = make_case(rows, heads, 8, 8, tokens, topk, 400, DSA_DTYPE_F32, heads > 0);
        const Gradients got = run_library(c);
        CHECK(std::all_of(got.dq.begin(), got.dq.end(), [](float v) { return v == 0.0f; }));
        CHECK(std::all_of(got.dkv.begin(), got.dkv.end(), [](float v) { return v == 0.0f; }));
    }
}

TEST_CASE("bitwise identical across runs, thread counts, modes, workspaces; bf16 dq is the rounded f32 dq") {
    Case c = make_case(24, 16, 576, 512, 500, 100, 500, DSA_DTYPE_BF16);
    const Gradients one = run_library(c, 1);
    CHECK(same_bits(one, run_library(c, 2)));
    CHECK(same_bits(one, run_library(c, 3)));
    CHECK(same_bits(one, run_library(c, 2)));
    c.mode = DSA_SPARSE_ATTENTION_BACKWARD_FAST;
    CHECK(same_bits(one, run_library(c, 2)));
    Context context(2);
    const dsa_sparse_attention_backward_params_t params = c.params();
    size_t bytes = 0;
    REQUIRE(dsa_sparse_attention_backward_workspace_size(context, &params, c.rows, c.topk, c.tokens, c.d_qk, &bytes) ==
            DSA_STATUS_SUCCESS);
    CHECK(bytes > 0);
    std::vector<uint64_t> workspace(bytes / 8 + 2);
    Gradients with_workspace(c);
    REQUIRE(call(context, c, with_workspace, false, workspace.data(), bytes) == DSA_STATUS_SUCCESS);
    CHECK(same_bits(one, with_workspace));
    Gradients rounded(c);
    REQUIRE(call(context, c, rounded, true) == DSA_STATUS_SUCCESS);
    for (size_t i = 0; i < one.dq.size(); ++i) REQUIRE(rounded.dq_bf16[i] == dsa::float_to_bf16(one.dq[i]));
    CHECK(same_floats(rounded.dkv, one.dkv));
    // Too small or misaligned workspaces are refused before anything is written.
    Gradients refused(c);
    CHECK_FAILS_WITH(call(context, c, refused, false, workspace.data(), bytes - 1), DSA_STATUS_WORKSPACE_TOO_SMALL,
                     "workspace");
    CHECK_FAILS_WITH(call(context, c, refused, false, reinterpret_cast<unsigned char*>(workspace.data()) + 4, bytes),
                     DSA_STATUS_LAYOUT_UNSUPPORTED, "workspace");
    CHECK(std::all_of(refused.dkv.begin(), refused.dkv.end(), [](float v) { return std::isnan(v); }));
}

TEST_CASE("strided inputs and outputs give the contiguous results; padding is not written") {
    Case c = make_case(5, 4, 20, 12, 40, 30, 600);
    const Gradients want = run_library(c);
    const int64_t T = c.rows, H = c.heads, D = c.d_qk, V = c.d_v, S = c.tokens, K = c.topk;
    auto spread = [](const std::vector<float>& values, int64_t count, int64_t width, int64_t stride) {
        std::vector<float> result(count * stride, NAN);
        for (int64_t r = 0; r < count; ++r) std::copy_n(values.begin() + r * width, width, result.begin() + r * stride);
        return result;
    };
    std::vector<float> q = spread(c.q.f32, T * H, D, D + 3), kv = spread(c.kv.f32, S, D, D + 1);
    std::vector<float> out = spread(c.out.f32, T * H, V, V + 2), dout = spread(c.dout.f32, T * H, V, V + 5);
    std::vector<int32_t> indices(T * (K + 2), -1), lengths(3 * T);
    std::vector<float> lse(2 * T * H, NAN), sink(2 * H, NAN);
    for (int64_t t = 0; t < T; ++t) {
        std::copy_n(c.indices.begin() + t * K, K, indices.begin() + t * (K + 2));
        lengths[3 * t] = c.lengths[t];
        for (int64_t h = 0; h < H; ++h) lse[h * 2 * T + 2 * t] = c.lse[t * H + h];  // heads outer
    }
    for (int64_t h = 0; h < H; ++h) sink[2 * h] = c.sink[h];
    const dsa_tensor_t qv = strided(q.data(), {T, H, D}, {H * (D + 3), D + 3, 1}, DSA_DTYPE_F32);
    const dsa_tensor_t kvv = strided(kv.data(), {S, D}, {D + 1, 1}, DSA_DTYPE_F32);
    const dsa_tensor_t iv = strided(indices.data(), {T, K}, {K + 2, 1}, DSA_DTYPE_I32);
    const dsa_tensor_t lv = strided(lengths.data(), {T}, {3}, DSA_DTYPE_I32);
    const dsa_tensor_t sv = strided(sink.data(), {H}, {2}, DSA_DTYPE_F32);
    const dsa_tensor_t ov = strided(out.data(), {T, H, V}, {H * (V + 2), V + 2, 1}, DSA_DTYPE_F32);
    const dsa_tensor_t lsev = strided(lse.data(), {T, H}, {2, 2 * T}, DSA_DTYPE_F32);
    const dsa_tensor_t dov = strided(dout.data(), {T, H, V}, {H * (V + 5), V + 5, 1}, DSA_DTYPE_F32);
    constexpr float kPad = 12345.0f;
    std::vector<float> dq(T * H * (D + 1), kPad), dkv(S * (D + 4), kPad), d_sink(3 * H, kPad);
    const dsa_tensor_t dqv = strided(dq.data(), {T, H, D}, {H * (D + 1), D + 1, 1}, DSA_DTYPE_F32);
    const dsa_tensor_t dkvv = strided(dkv.data(), {S, D}, {D + 4, 1}, DSA_DTYPE_F32);
    const dsa_tensor_t dsv = strided(d_sink.data(), {H}, {3}, DSA_DTYPE_F32);
    const dsa_sparse_attention_backward_params_t params = c.params();
    Context context(2);
    REQUIRE_MESSAGE(dsa_sparse_attention_backward(context, &params, &qv, &kvv, &iv, &sv, &lv, &ov, &lsev, &dov, &dqv,
                                                  &dkvv, &dsv, nullptr, 0, nullptr) == DSA_STATUS_SUCCESS,
                    dsa_last_error_message());
    for (int64_t r = 0; r < T * H; ++r) {
        CHECK(std::memcmp(&dq[r * (D + 1)], &want.dq[r * D], 4 * D) == 0);
        CHECK(dq[r * (D + 1) + D] == kPad);
    }
    for (int64_t s = 0; s < S; ++s) {
        CHECK(std::memcmp(&dkv[s * (D + 4)], &want.dkv[s * D], 4 * D) == 0);
        CHECK(dkv[s * (D + 4) + D] == kPad);
    }
    for (int64_t h = 0; h < H; ++h) {
        CHECK(std::memcmp(&d_sink[3 * h], &want.d_sink[h], 4) == 0);
        CHECK(d_sink[3 * h + 1] == kPad);
    }
}

TEST_CASE("sparse_attention_backward rejects bad input with a status naming the argument; outputs untouched") {
    Context context(1);
    Case c = make_case(3, 2, 16, 8, 20, 5, 700);
    Gradients g(c);
    dsa_sparse_attention_backward_params_t params = c.params();
    dsa_tensor_t q = c.q_tensor(), kv = c.kv_tensor(), idx = c.indices_tensor(), sink = c.sink_tensor(),
                 len = c.lengths_tensor(), out = c.out_tensor(), lse = c.lse_tensor(), dout = c.dout_tensor();
    dsa_tensor_t dq = view(g.dq.data(), {c.rows, c.heads, c.d_qk}, DSA_DTYPE_F32),
                 dkv = view(g.dkv.data(), {c.tokens, c.d_qk}, DSA_DTYPE_F32),
                 ds = view(g.d_sink.data(), {c.heads}, DSA_DTYPE_F32);
    struct Arguments {
        const dsa_sparse_attention_backward_params_t* params;
        const dsa_tensor_t *q, *kv, *idx, *sink, *len, *out, *lse, *dout, *dq, *dkv, *ds;
    };
    const Arguments good{&params, &q, &kv, &idx, &sink, &len, &out, &lse, &dout, &dq, &dkv, &ds};
    auto run = [&](const Arguments& a) {
        return dsa_sparse_attention_backward(context, a.params, a.q, a.kv, a.idx, a.sink, a.len, a.out, a.lse, a.dout,
                                             a.dq, a.dkv, a.ds, nullptr, 0, nullptr);
    };
    auto with = [&](std::function<void(Arguments&)> change) {
        Arguments a = good;
        change(a);
        return run(a);
    };
    CHECK_FAILS_WITH(dsa_sparse_attention_backward(nullptr, &params, &q, &kv, &idx, &sink, &len, &out, &lse, &dout, &dq,
                                                   &dkv, &ds, nullptr, 0, nullptr),
                     DSA_STATUS_INVALID_ARGUMENT, "context");
    CHECK_FAILS_WITH(with([](Arguments& a) { a.params = nullptr; }), DSA_STATUS_INVALID_ARGUMENT, "params");
    dsa_sparse_attention_backward_params_t bad = params;
    bad.scale = 0.0f;
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.params = &bad; }), DSA_STATUS_INVALID_ARGUMENT, "scale");
    bad.scale = NAN;
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.params = &bad; }), DSA_STATUS_INVALID_ARGUMENT, "scale");
    bad = params;
    bad.d_v = 17;
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.params = &bad; }), DSA_STATUS_INVALID_ARGUMENT, "d_v");
    bad.d_v = 0;
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.params = &bad; }), DSA_STATUS_INVALID_ARGUMENT, "d_v");
    bad = params;
    bad.mode = 7;
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.params = &bad; }), DSA_STATUS_INVALID_ARGUMENT, "mode");
    bad = params;
    bad.struct_size = 4;
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.params = &bad; }), DSA_STATUS_INVALID_ARGUMENT, "struct_size");
    CHECK_FAILS_WITH(with([](Arguments& a) { a.sink = nullptr; }), DSA_STATUS_INVALID_ARGUMENT, "d_attn_sink");
    // Required tensors
    CHECK_FAILS_WITH(with([](Arguments& a) { a.q = nullptr; }), DSA_STATUS_INVALID_ARGUMENT, "q");
    CHECK_FAILS_WITH(with([](Arguments& a) { a.kv = nullptr; }), DSA_STATUS_INVALID_ARGUMENT, "kv");
    CHECK_FAILS_WITH(with([](Arguments& a) { a.idx = nullptr; }), DSA_STATUS_INVALID_ARGUMENT, "indices");
    CHECK_FAILS_WITH(with([](Arguments& a) { a.out = nullptr; }), DSA_STATUS_INVALID_ARGUMENT, "out");
    CHECK_FAILS_WITH(with([](Arguments& a) { a.lse = nullptr; }), DSA_STATUS_INVALID_ARGUMENT, "lse");
    CHECK_FAILS_WITH(with([](Arguments& a) { a.dout = nullptr; }), DSA_STATUS_INVALID_ARGUMENT, "dout");
    CHECK_FAILS_WITH(with([](Arguments& a) { a.dq = nullptr; }), DSA_STATUS_INVALID_ARGUMENT, "dq");
    CHECK_FAILS_WITH(with([](Arguments& a) { a.dkv = nullptr; }), DSA_STATUS_INVALID_ARGUMENT, "dkv");
    // dtypes
    auto retyped = [](dsa_tensor_t t, dsa_dtype_t dtype) {
        t.dtype = dtype;
        return t;
    };
    dsa_tensor_t t1;
    const std::pair<const dsa_tensor_t*, const char*> wrong_dtypes[] = {{&q, "q"}, {&kv, "kv"}, {&out, "out"},
                                                                        {&dout, "dout"}, {&dq, "dq"}};
    for (const auto& [tensor, name] : wrong_dtypes) {
        t1 = retyped(*tensor, DSA_DTYPE_F16);
        const dsa_tensor_t* replaced = tensor;
        CHECK_FAILS_WITH(with([&](Arguments& a) {
                             for (const dsa_tensor_t** slot : {&a.q, &a.kv, &a.out, &a.dout, &a.dq})
                                 if (*slot == replaced) *slot = &t1;
                         }),
                         DSA_STATUS_DTYPE_MISMATCH, name);
    }
    t1 = retyped(idx, DSA_DTYPE_I64);
    t1.shape[0] = 1;  // 8-byte elements: stay inside the buffer
    CHECK(with([&](Arguments& a) { a.idx = &t1; }) == DSA_STATUS_DTYPE_MISMATCH);
    t1 = retyped(sink, DSA_DTYPE_BF16);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.sink = &t1; }), DSA_STATUS_DTYPE_MISMATCH, "attn_sink");
    t1 = retyped(len, DSA_DTYPE_F32);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.len = &t1; }), DSA_STATUS_DTYPE_MISMATCH, "topk_length");
    t1 = retyped(lse, DSA_DTYPE_BF16);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.lse = &t1; }), DSA_STATUS_DTYPE_MISMATCH, "lse");
    t1 = retyped(dkv, DSA_DTYPE_BF16);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.dkv = &t1; }), DSA_STATUS_DTYPE_MISMATCH, "dkv");
    t1 = retyped(ds, DSA_DTYPE_I32);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.ds = &t1; }), DSA_STATUS_DTYPE_MISMATCH, "d_attn_sink");
    // shapes
    auto reshaped = [](dsa_tensor_t t, int axis, int64_t extent) {
        t.shape[axis] = extent;
        return t;
    };
    const struct {
        const dsa_tensor_t* tensor;
        int axis;
        int64_t extent;
        const char* name;
    } wrong_shapes[] = {{&kv, 1, 15, "kv"},  {&idx, 0, 2, "indices"},    {&sink, 0, 1, "attn_sink"},
                        {&len, 0, 2, "topk_length"}, {&out, 2, 7, "out"}, {&lse, 1, 1, "lse"},
                        {&dout, 1, 1, "dout"}, {&dq, 2, 15, "dq"},     {&dkv, 0, 19, "dkv"},
                        {&ds, 0, 1, "d_attn_sink"}};
    for (const auto& wrong : wrong_shapes) {
        CAPTURE(wrong.name);
        t1 = reshaped(*wrong.tensor, wrong.axis, wrong.extent);
        CHECK_FAILS_WITH(with([&](Arguments& a) {
                             for (const dsa_tensor_t** slot :
                                  {&a.q, &a.kv, &a.idx, &a.sink, &a.len, &a.out, &a.lse, &a.dout, &a.dq, &a.dkv, &a.ds})
                                 if (*slot == wrong.tensor) *slot = &t1;
                         }),
                         DSA_STATUS_SHAPE_MISMATCH, wrong.name);
    }
    t1 = q;
    t1.ndim = 2;
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.q = &t1; }), DSA_STATUS_SHAPE_MISMATCH, "q");
    // layouts
    const std::pair<const dsa_tensor_t*, const char*> contiguous[] = {{&q, "q"},     {&kv, "kv"},     {&idx, "indices"},
                                                                      {&out, "out"}, {&dout, "dout"}, {&dq, "dq"},
                                                                      {&dkv, "dkv"}};
    for (const auto& [tensor, name] : contiguous) {
        CAPTURE(name);
        t1 = *tensor;
        t1.strides[t1.ndim - 1] = 2;
        const dsa_tensor_t* replaced = tensor;
        CHECK_FAILS_WITH(with([&](Arguments& a) {
                             for (const dsa_tensor_t** slot : {&a.q, &a.kv, &a.idx, &a.out, &a.dout, &a.dq, &a.dkv})
                                 if (*slot == replaced) *slot = &t1;
                         }),
                         DSA_STATUS_LAYOUT_UNSUPPORTED, name);
    }
    t1 = dkv;
    t1.strides[0] = 1;
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.dkv = &t1; }), DSA_STATUS_LAYOUT_UNSUPPORTED, "dkv");
    t1 = ds;
    t1.data = g.dkv.data();
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.ds = &t1; }), DSA_STATUS_LAYOUT_UNSUPPORTED, "d_attn_sink");
    t1 = dq;
    t1.data = c.q.data();
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.dq = &t1; }), DSA_STATUS_LAYOUT_UNSUPPORTED, "dq");
    // devices
    t1 = kv;
    t1.device_type = DSA_DEVICE_CUDA;
    CHECK(with([&](Arguments& a) { a.kv = &t1; }) != DSA_STATUS_SUCCESS);
    CHECK(std::string(dsa_last_error_message()).find("kv") == 0);
    t1 = len;
    t1.device_type = 9;
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.len = &t1; }), DSA_STATUS_DEVICE_MISMATCH, "topk_length");
    // The size query
    size_t bytes = 0;
    CHECK_FAILS_WITH(dsa_sparse_attention_backward_workspace_size(nullptr, &params, 1, 1, 1, 1, &bytes),
                     DSA_STATUS_INVALID_ARGUMENT, "context");
    CHECK_FAILS_WITH(dsa_sparse_attention_backward_workspace_size(context, &params, 1, -1, 1, 1, &bytes),
                     DSA_STATUS_INVALID_ARGUMENT, "topk");
    CHECK_FAILS_WITH(dsa_sparse_attention_backward_workspace_size(context, &params, 1, 1, 1, 1, nullptr),
                     DSA_STATUS_INVALID_ARGUMENT, "bytes");
    CHECK_FAILS_WITH(dsa_sparse_attention_backward_params_init(nullptr), DSA_STATUS_INVALID_ARGUMENT, "params");

    for (const auto* values : {&g.dq, &g.dkv, &g.d_sink})
        CHECK(std::all_of(values->begin(), values->end(), [](float v) { return std::isnan(v); }));
    CHECK(run(good) == DSA_STATUS_SUCCESS);
    // Without a sink, d_attn_sink must be NULL; then the call succeeds.
    CHECK(with([](Arguments& a) { a.sink = a.ds = nullptr; }) == DSA_STATUS_SUCCESS);
}
