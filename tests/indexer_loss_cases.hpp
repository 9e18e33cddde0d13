// Problems of the indexer loss tests (CPU and GPU): random inputs with clamped and empty windows
// and bad sparse entries, both teacher forms, and the call on host tensors.
#pragma once

#include <algorithm>
#include <climits>
#include <cmath>
#include <functional>
#include <limits>

#include "../core/ops/indexer_loss.hpp"
#include "training_support.hpp"

namespace dsa_test::indexer_loss_cases {

using dsa::reference::IndexerLossInputs;
using dsa::reference::IndexerLossResult;

// One problem: contiguous host arrays; teacher_kv_heads 0 means a rank-2 (MQA) teacher_k.
struct Case {
    dsa_indexer_loss_mode_t mode = DSA_INDEXER_LOSS_DENSE;
    bool probs = false;
    int64_t rows = 0, tokens = 0, heads = 1, dim = 1, topk = 0;
    int64_t teacher_heads = 1, teacher_kv_heads = 0, teacher_dim = 1;
    float coeff = 1.0f, teacher_scale = 0.6f;
    Values index_q, index_k, weights, teacher_q, teacher_k;
    std::vector<float> teacher_probs;
    std::vector<int32_t> ks, ke, indices;

    dsa_indexer_loss_params_t params() const {
        dsa_indexer_loss_params_t result;
        REQUIRE(dsa_indexer_loss_params_init(&result) == DSA_STATUS_SUCCESS);
        result.mode = mode;
        result.coeff = coeff;
        result.teacher_scale = probs ? 0.0f : teacher_scale;
        return result;
    }
    dsa_tensor_t q_tensor() { return view(index_q.data(), {rows, heads, dim}, index_q.dtype); }
    dsa_tensor_t k_tensor() { return view(index_k.data(), {tokens, dim}, index_k.dtype); }
    dsa_tensor_t w_tensor() { return view(weights.data(), {rows, heads}, weights.dtype); }
    dsa_tensor_t ks_tensor() { return view(ks.data(), {rows}, DSA_DTYPE_I32); }
    dsa_tensor_t ke_tensor() { return view(ke.data(), {rows}, DSA_DTYPE_I32); }
    dsa_tensor_t indices_tensor() { return view(indices.data(), {rows, topk}, DSA_DTYPE_I32); }
    dsa_tensor_t teacher_q_tensor() {
        return view(teacher_q.data(), {rows, teacher_heads, teacher_dim}, teacher_q.dtype);
    }
    dsa_tensor_t teacher_k_tensor() {
        if (teacher_kv_heads == 0) return view(teacher_k.data(), {tokens, teacher_dim}, teacher_k.dtype);
        return view(teacher_k.data(), {tokens, teacher_kv_heads, teacher_dim}, teacher_k.dtype);
    }
    dsa_tensor_t probs_tensor() { return view(teacher_probs.data(), {rows, tokens}, DSA_DTYPE_F32); }

    IndexerLossInputs reference_inputs() const {
        IndexerLossInputs in;
        in.mode = static_cast<dsa::IndexerLossMode>(mode);
        in.coeff = coeff;
        in.teacher_scale = teacher_scale;
        in.rows = rows;
        in.tokens = tokens;
        in.heads = heads;
        in.dim = dim;
        in.topk = topk;
        in.teacher_heads = teacher_heads;
        in.teacher_kv_heads = teacher_kv_heads == 0 ? 1 : teacher_kv_heads;
        in.teacher_dim = teacher_dim;
        in.has_teacher_probs = probs;
        in.index_q = index_q.decoded();
        in.index_k = index_k.decoded();
        in.weights = weights.decoded();
        if (probs) {
            in.teacher_probs.assign(teacher_probs.begin(), teacher_probs.end());
        } else {
            in.teacher_q = teacher_q.decoded();
            in.teacher_k = teacher_k.decoded();
        }
        in.ks = ks;
        in.ke = ke;
        in.indices = indices;
        return in;
    }
};

struct Shape {
    int64_t rows, tokens, heads, dim;
    int64_t teacher_heads, teacher_kv_heads, teacher_dim;
    int64_t topk = 0;
};

// Random inputs. Windows mix full rows, clamped ones (negative starts, ends past S), one empty
// row (row 1) and, in SPARSE mode, selections with -1, INT32_MIN, out-of-range, out-of-window
// and repeated tokens. teacher_probs is positive but unnormalised, with some zeros.
Case make_case(dsa_indexer_loss_mode_t mode, bool probs, const Shape& shape, uint32_t seed,
               dsa_dtype_t dtype = DSA_DTYPE_F32) {
    Case c;
    c.mode = mode;
    c.probs = probs;
    c.rows = shape.rows;
    c.tokens = shape.tokens;
    c.heads = shape.heads;
    c.dim = shape.dim;
    c.topk = mode == DSA_INDEXER_LOSS_SPARSE ? shape.topk : 0;
    c.teacher_heads = shape.teacher_heads;
    c.teacher_kv_heads = shape.teacher_kv_heads;
    c.teacher_dim = shape.teacher_dim;
    const int64_t kv_heads = std::max<int64_t>(shape.teacher_kv_heads, 1);
    c.index_q.assign(random_floats(c.rows * c.heads * c.dim, seed), dtype);
    c.index_k.assign(random_floats(c.tokens * c.dim, seed + 1), dtype);
    c.weights.assign(random_floats(c.rows * c.heads, seed + 2, -1.0f, 1.5f), dtype);
    c.teacher_q.assign(random_floats(c.rows * c.teacher_heads * c.teacher_dim, seed + 3, -2.0f, 2.0f), dtype);
    c.teacher_k.assign(random_floats(c.tokens * kv_heads * c.teacher_dim, seed + 4, -2.0f, 2.0f), dtype);
    c.teacher_probs = random_floats(c.rows * c.tokens, seed + 5, 0.0f, 1.0f);
    for (size_t i = 0; i < c.teacher_probs.size(); i += 7) c.teacher_probs[i] = 0.0f;
    std::mt19937 engine(seed + 6);
    const int32_t S = static_cast<int32_t>(c.tokens);
    for (int64_t t = 0; t < c.rows; ++t) {
        int32_t start = 0, end = S;
        switch (t % 5) {
            case 0: break;
            case 1: start = S, end = 0; break;  // empty
            case 2: start = -4, end = static_cast<int32_t>(engine() % (S + 1)); break;
            case 3: start = static_cast<int32_t>(engine() % (S + 1)), end = S + 9; break;
            default: start = static_cast<int32_t>(engine() % (S / 2 + 1)), end = start + 1 + static_cast<int32_t>(engine() % S);
        }
        c.ks.push_back(start);
        c.ke.push_back(end);
    }
    const int32_t invalid[] = {-1, INT32_MIN, S, S + 5, INT32_MAX};
    for (int64_t t = 0; t < c.rows; ++t)
        for (int64_t j = 0; j < c.topk; ++j) {
            int32_t token = static_cast<int32_t>(engine() % std::max(S, 1));
            if (engine() % 6 == 0) token = invalid[engine() % 5];
            if (j > 0 && engine() % 7 == 0) token = c.indices.back();  // a repeat
            c.indices.push_back(token);
        }
    return c;
}

constexpr float kPoison = std::numeric_limits<float>::quiet_NaN();

struct Outputs {
    float loss = kPoison;
    std::vector<float> row_loss, d_index_q, d_index_k, d_weights;
    bool want_loss = true, want_row_loss = true, want_d_index_q = true, want_d_index_k = true, want_d_weights = true;

    explicit Outputs(const Case& c)
        : row_loss(c.rows, kPoison),
          d_index_q(c.rows * c.heads * c.dim, kPoison),
          d_index_k(c.tokens * c.dim, kPoison),
          d_weights(c.rows * c.heads, kPoison) {}
};

dsa_status_t call(dsa_context_t* context, Case& c, Outputs& o) {
    const dsa_indexer_loss_params_t params = c.params();
    const dsa_tensor_t q = c.q_tensor(), k = c.k_tensor(), w = c.w_tensor(), ks = c.ks_tensor(), ke = c.ke_tensor();
    const dsa_tensor_t indices = c.indices_tensor(), tq = c.teacher_q_tensor(), tk = c.teacher_k_tensor(),
                       tp = c.probs_tensor();
    const dsa_tensor_t loss = view(&o.loss, {}, DSA_DTYPE_F32), row_loss = view(o.row_loss.data(), {c.rows}, DSA_DTYPE_F32);
    const dsa_tensor_t dq = view(o.d_index_q.data(), {c.rows, c.heads, c.dim}, DSA_DTYPE_F32);
    const dsa_tensor_t dk = view(o.d_index_k.data(), {c.tokens, c.dim}, DSA_DTYPE_F32);
    const dsa_tensor_t dw = view(o.d_weights.data(), {c.rows, c.heads}, DSA_DTYPE_F32);
    return dsa_indexer_loss(context, &params, &q, &k, &w, &ks, &ke, c.mode == DSA_INDEXER_LOSS_SPARSE ? &indices : nullptr,
                            c.probs ? nullptr : &tq, c.probs ? nullptr : &tk, c.probs ? &tp : nullptr,
                            o.want_loss ? &loss : nullptr, o.want_row_loss ? &row_loss : nullptr,
                            o.want_d_index_q ? &dq : nullptr, o.want_d_index_k ? &dk : nullptr,
                            o.want_d_weights ? &dw : nullptr, nullptr);
}

// The library's result with every output written (no poison left).
Outputs run_library(Case& c, int threads = 2) {
    Context context(threads);
    Outputs o(c);
    REQUIRE_MESSAGE(call(context, c, o) == DSA_STATUS_SUCCESS, dsa_last_error_message());
    REQUIRE(!std::isnan(o.loss));
    for (const auto* values : {&o.row_loss, &o.d_index_q, &o.d_index_k, &o.d_weights})
        for (float value : *values) REQUIRE(!std::isnan(value));
    return o;
}

void check_against_reference(const Outputs& got, const IndexerLossResult& want, double tolerance = 2e-5) {
    CHECK(std::fabs(got.loss - want.loss) <= tolerance * std::max(1.0, std::fabs(want.loss)));
    check_close(got.row_loss, want.row_loss, tolerance, "row_loss");
    check_close(got.d_index_q, want.d_index_q, tolerance, "d_index_q");
    check_close(got.d_index_k, want.d_index_k, tolerance, "d_index_k");
    check_close(got.d_weights, want.d_weights, tolerance, "d_weights");
}

bool same_bits(const Outputs& a, const Outputs& b) {
    return std::memcmp(&a.loss, &b.loss, sizeof(float)) == 0 && same_floats(a.row_loss, b.row_loss) &&
           same_floats(a.d_index_q, b.d_index_q) && same_floats(a.d_index_k, b.d_index_k) &&
           same_floats(a.d_weights, b.d_weights);
}

void check_gradients_by_finite_differences(Case c) {
    IndexerLossInputs in = c.reference_inputs();
    const IndexerLossResult analytic = dsa::reference::indexer_loss(in);
    const Outputs got = run_library(c);
    const auto loss = [&] { return dsa::reference::indexer_loss(in).loss; };
    check_gradient("index_q", got.d_index_q, analytic.d_index_q, central_differences(in.index_q, loss));
    check_gradient("index_k", got.d_index_k, analytic.d_index_k, central_differences(in.index_k, loss));
    check_gradient("weights", got.d_weights, analytic.d_weights, central_differences(in.weights, loss));
    check_against_reference(got, analytic);
}

}  // namespace dsa_test::indexer_loss_cases
