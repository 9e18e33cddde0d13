// Problems of the sparse attention backward tests (CPU and GPU): random inputs with invalid,
// repeated and cut-off indices, out and lse from the float64 forward, and the call on host tensors.
#pragma once

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <functional>
#include <limits>

#include "../core/ops/sparse_attention_backward.hpp"
#include "training_support.hpp"

namespace dsa_test::attention_backward_cases {

using dsa::reference::SparseAttentionBackwardInputs;
using dsa::reference::SparseAttentionBackwardResult;

constexpr float kPoison = std::numeric_limits<float>::quiet_NaN();

struct Case {
    int64_t rows = 0, heads = 0, d_qk = 0, d_v = 0, topk = 0, tokens = 0;
    float scale = 0.3f;
    bool use_sink = false, use_lengths = false;
    dsa_sparse_attention_backward_mode_t mode = DSA_SPARSE_ATTENTION_BACKWARD_DETERMINISTIC;
    Values q, kv, out, dout;
    std::vector<float> lse, sink;
    std::vector<int32_t> indices, lengths;

    dsa_sparse_attention_backward_params_t params() const {
        dsa_sparse_attention_backward_params_t result;
        REQUIRE(dsa_sparse_attention_backward_params_init(&result) == DSA_STATUS_SUCCESS);
        result.scale = scale;
        result.d_v = static_cast<int32_t>(d_v);
        result.mode = mode;
        return result;
    }
    dsa_tensor_t q_tensor() { return view(q.data(), {rows, heads, d_qk}, q.dtype); }
    dsa_tensor_t kv_tensor() { return view(kv.data(), {tokens, d_qk}, kv.dtype); }
    dsa_tensor_t indices_tensor() { return view(indices.data(), {rows, topk}, DSA_DTYPE_I32); }
    dsa_tensor_t sink_tensor() { return view(sink.data(), {heads}, DSA_DTYPE_F32); }
    dsa_tensor_t lengths_tensor() { return view(lengths.data(), {rows}, DSA_DTYPE_I32); }
    dsa_tensor_t out_tensor() { return view(out.data(), {rows, heads, d_v}, out.dtype); }
    dsa_tensor_t lse_tensor() { return view(lse.data(), {rows, heads}, DSA_DTYPE_F32); }
    dsa_tensor_t dout_tensor() { return view(dout.data(), {rows, heads, d_v}, dout.dtype); }

    SparseAttentionBackwardInputs reference_inputs() const {
        SparseAttentionBackwardInputs in;
        in.scale = scale;
        in.rows = rows, in.heads = heads, in.d_qk = d_qk, in.d_v = d_v, in.topk = topk, in.tokens = tokens;
        in.has_attn_sink = use_sink;
        in.has_topk_length = use_lengths;
        in.q = q.decoded();
        in.kv = kv.decoded();
        in.attn_sink.assign(sink.begin(), sink.end());
        in.out = out.decoded();
        in.lse.assign(lse.begin(), lse.end());
        in.dout = dout.decoded();
        in.indices = indices;
        in.topk_length = lengths;
        return in;
    }
};

// Random inputs: valid indices with repeats, invalid ones (-1, INT32_MIN, S, ...), row 1 with no
// valid index, lengths cut rows short (0, negative, beyond k). out and lse come from the
// float64 forward, rounded to `out_dtype`; dout is random.
Case make_case(int64_t rows, int64_t heads, int64_t d_qk, int64_t d_v, int64_t tokens, int64_t topk, uint32_t seed,
               dsa_dtype_t dtype = DSA_DTYPE_F32, bool use_sink = true, bool use_lengths = true) {
    Case c;
    c.rows = rows, c.heads = heads, c.d_qk = d_qk, c.d_v = d_v, c.topk = topk, c.tokens = tokens;
    c.scale = static_cast<float>(1.3 / std::sqrt(static_cast<double>(d_qk)));
    c.use_sink = use_sink;
    c.use_lengths = use_lengths;
    c.q.assign(random_floats(rows * heads * d_qk, seed), dtype);
    c.kv.assign(random_floats(tokens * d_qk, seed + 1), dtype);
    c.dout.assign(random_floats(rows * heads * d_v, seed + 2), dtype);
    c.sink = random_floats(heads, seed + 3, -1.0f, 1.0f);
    std::mt19937 engine(seed + 4);
    const int32_t S = static_cast<int32_t>(tokens);
    const int32_t invalid[] = {-1, INT32_MIN, S, S + 3, INT32_MAX};
    for (int64_t t = 0; t < rows; ++t)
        for (int64_t j = 0; j < topk; ++j) {
            int32_t index = static_cast<int32_t>(engine() % std::max(S, 1));
            if (t == 1 || engine() % 8 == 0 || S == 0) index = invalid[engine() % 5];
            if (j > 0 && engine() % 6 == 0) index = c.indices.back();
            c.indices.push_back(index);
        }
    for (int64_t t = 0; t < rows; ++t) {
        const int32_t choices[] = {static_cast<int32_t>(topk), static_cast<int32_t>(engine() % (topk + 1)),
                                   static_cast<int32_t>(topk + 4), -2, 0};
        c.lengths.push_back(choices[t % 5]);
    }
    const dsa::reference::SparseAttentionForwardResult forward =
        dsa::reference::sparse_attention_forward(c.reference_inputs());
    c.out.assign(as_floats(forward.out), dtype);
    c.lse = as_floats(forward.lse);
    return c;
}

struct Gradients {
    std::vector<float> dq, dkv, d_sink;
    std::vector<uint16_t> dq_bf16;
    explicit Gradients(const Case& c)
        : dq(c.rows * c.heads * c.d_qk, kPoison), dkv(c.tokens * c.d_qk, kPoison), d_sink(c.heads, kPoison),
          dq_bf16(c.rows * c.heads * c.d_qk, 0x7fc1) {}
};

dsa_status_t call(dsa_context_t* context, Case& c, Gradients& g, bool bf16_dq = false, void* workspace = nullptr,
                  size_t workspace_bytes = 0) {
    const dsa_sparse_attention_backward_params_t params = c.params();
    const dsa_tensor_t q = c.q_tensor(), kv = c.kv_tensor(), indices = c.indices_tensor(), sink = c.sink_tensor(),
                       lengths = c.lengths_tensor(), out = c.out_tensor(), lse = c.lse_tensor(), dout = c.dout_tensor();
    const dsa_tensor_t dq = bf16_dq ? view(g.dq_bf16.data(), {c.rows, c.heads, c.d_qk}, DSA_DTYPE_BF16)
                                    : view(g.dq.data(), {c.rows, c.heads, c.d_qk}, DSA_DTYPE_F32);
    const dsa_tensor_t dkv = view(g.dkv.data(), {c.tokens, c.d_qk}, DSA_DTYPE_F32);
    const dsa_tensor_t d_sink = view(g.d_sink.data(), {c.heads}, DSA_DTYPE_F32);
    return dsa_sparse_attention_backward(context, &params, &q, &kv, &indices, c.use_sink ? &sink : nullptr,
                                         c.use_lengths ? &lengths : nullptr, &out, &lse, &dout, &dq, &dkv,
                                         c.use_sink ? &d_sink : nullptr, workspace, workspace_bytes, nullptr);
}

// The library's gradients, every element written (no poison left).
Gradients run_library(Case& c, int threads = 2) {
    Context context(threads);
    Gradients g(c);
    REQUIRE_MESSAGE(call(context, c, g) == DSA_STATUS_SUCCESS, dsa_last_error_message());
    for (const auto* values : {&g.dq, &g.dkv}) REQUIRE(std::none_of(values->begin(), values->end(), [](float v) { return std::isnan(v); }));
    if (c.use_sink) REQUIRE(std::none_of(g.d_sink.begin(), g.d_sink.end(), [](float v) { return std::isnan(v); }));
    return g;
}

void check_against_reference(Case& c, const Gradients& got, double tolerance = 2e-5) {
    const SparseAttentionBackwardResult want = dsa::reference::sparse_attention_backward(c.reference_inputs());
    check_close(got.dq, want.dq, tolerance, "dq");
    check_close(got.dkv, want.dkv, tolerance, "dkv");
    if (c.use_sink) check_close(got.d_sink, want.d_attn_sink, tolerance, "d_attn_sink");
}

bool same_bits(const Gradients& a, const Gradients& b) {
    return same_floats(a.dq, b.dq) && same_floats(a.dkv, b.dkv) && same_floats(a.d_sink, b.d_sink);
}

}  // namespace dsa_test::attention_backward_cases
