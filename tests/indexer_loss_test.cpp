// The indexer distillation loss (dsa_indexer_loss) on the CPU: gradients against central finite
// differences of the float64 reference, the CPU against the reference on larger problems, both
// teacher forms, both modes, inactive rows, dtypes, strides, determinism and bad input.
#include "indexer_loss_cases.hpp"

using namespace dsa_test;
using namespace dsa_test::indexer_loss_cases;

TEST_CASE("every gradient matches central finite differences of the float64 reference") {
    const Shape mqa{5, 11, 3, 4, 4, 0, 5, 9};
    const Shape gqa{4, 9, 2, 5, 6, 3, 3, 7};
    for (dsa_indexer_loss_mode_t mode : {DSA_INDEXER_LOSS_DENSE, DSA_INDEXER_LOSS_SPARSE}) {
        CAPTURE(mode);
        check_gradients_by_finite_differences(make_case(mode, false, mqa, 10 + mode));
        check_gradients_by_finite_differences(make_case(mode, false, gqa, 20 + mode));
        check_gradients_by_finite_differences(make_case(mode, true, mqa, 30 + mode));
        Case scaled = make_case(mode, false, gqa, 40 + mode);
        scaled.coeff = -2.5f;  // any finite weight, negative included
        scaled.teacher_scale = -0.8f;
        check_gradients_by_finite_differences(scaled);
    }
}

TEST_CASE("the CPU matches the reference: tiles, odd widths, GQA and MQA teachers, both modes") {
    const Shape shapes[] = {
        {9, 150, 5, 13, 4, 2, 9, 140},    // entries cross 64-entry tiles; widths not multiples of 8
        {6, 200, 64, 32, 8, 4, 16, 130},  // many indexer heads
        {3, 70, 1, 1, 1, 0, 1, 66},       // one head of one dimension everywhere
        {7, 90, 7, 24, 12, 12, 8, 100},   // H_kv = H_q (multi-head teacher)
    };
    uint32_t seed = 100;
    for (const Shape& shape : shapes)
        for (dsa_indexer_loss_mode_t mode : {DSA_INDEXER_LOSS_DENSE, DSA_INDEXER_LOSS_SPARSE})
            for (bool probs : {false, true}) {
                CAPTURE(shape.heads);
                CAPTURE(mode);
                CAPTURE(probs);
                Case c = make_case(mode, probs, shape, seed++);
                check_against_reference(run_library(c), dsa::reference::indexer_loss(c.reference_inputs()));
            }
}

TEST_CASE("a hand-computed loss: two tokens, one head, explicit teacher") {
    // I = w * ReLU(q k) = {2 * 1.5, 2 * 0} = {3, 0}; pi = softmax {3, 0}; p = {0.25, 0.75}.
    Case c = make_case(DSA_INDEXER_LOSS_DENSE, true, {1, 2, 1, 1, 1, 0, 1}, 1);
    c.index_q.assign({1.0f}, DSA_DTYPE_F32);
    c.index_k.assign({1.5f, -1.0f}, DSA_DTYPE_F32);
    c.weights.assign({2.0f}, DSA_DTYPE_F32);
    c.teacher_probs = {1.0f, 3.0f};  // renormalised to 1/4, 3/4
    c.ks = {0};
    c.ke = {2};
    c.coeff = 0.5f;
    const Outputs got = run_library(c, 1);
    const double pi0 = std::exp(3.0) / (std::exp(3.0) + 1.0), pi1 = 1.0 - pi0;
    const double kl = 0.25 * std::log(0.25 / pi0) + 0.75 * std::log(0.75 / pi1);
    CHECK(got.row_loss[0] == doctest::Approx(kl).epsilon(1e-6));
    CHECK(got.loss == doctest::Approx(0.5 * kl).epsilon(1e-6));
    // dL/dI = 0.5 * (pi - p); token 1 has u < 0, so only token 0 reaches q, k and w.
    const double g0 = 0.5 * (pi0 - 0.25);
    CHECK(got.d_weights[0] == doctest::Approx(g0 * 1.5).epsilon(1e-6));
    CHECK(got.d_index_q[0] == doctest::Approx(g0 * 2.0 * 1.5).epsilon(1e-6));
    CHECK(got.d_index_k[0] == doctest::Approx(g0 * 2.0 * 1.0).epsilon(1e-6));
    CHECK(got.d_index_k[1] == 0.0f);
}

TEST_CASE("the rebuilt teacher equals the explicit one built from the same q and k") {
    for (dsa_indexer_loss_mode_t mode : {DSA_INDEXER_LOSS_DENSE, DSA_INDEXER_LOSS_SPARSE}) {
        for (int64_t kv_heads : {0, 2}) {
            CAPTURE(mode);
            CAPTURE(kv_heads);
            Case rebuilt = make_case(mode, false, {8, 140, 4, 16, 6, kv_heads, 10, 120}, 200 + mode);
            const IndexerLossInputs in = rebuilt.reference_inputs();
            // p[t, s] = mean over heads of each head's softmax over the row's entries. A token
            // listed twice has one value (its two entries share it; the op's renormalisation over
            // the entries then counts it twice, as the softmax did).
            Case given = rebuilt;
            given.probs = true;
            given.teacher_probs.assign(rebuilt.rows * rebuilt.tokens, 0.25f);  // outside every set: ignored
            const int64_t kv = std::max<int64_t>(kv_heads, 1), group = rebuilt.teacher_heads / kv, d = rebuilt.teacher_dim;
            for (int64_t t = 0; t < rebuilt.rows; ++t) {
                const int64_t begin = std::clamp<int64_t>(rebuilt.ks[t], 0, rebuilt.tokens);
                const int64_t end = std::clamp<int64_t>(rebuilt.ke[t], begin, rebuilt.tokens);
                std::vector<int64_t> entries;
                if (mode == DSA_INDEXER_LOSS_DENSE) {
                    for (int64_t s = begin; s < end; ++s) entries.push_back(s);
                } else {
                    for (int64_t j = 0; j < rebuilt.topk; ++j) {
                        const int64_t s = rebuilt.indices[t * rebuilt.topk + j];
                        if (s >= begin && s < end) entries.push_back(s);
                    }
                }
                std::vector<double> p(rebuilt.tokens, 0.0);
                for (int64_t h = 0; h < rebuilt.teacher_heads; ++h) {
                    std::vector<double> z;
                    double max = -INFINITY, sum = 0.0;
                    for (int64_t s : entries) {
                        double dot = 0.0;
                        for (int64_t i = 0; i < d; ++i)
                            dot += in.teacher_q[(t * rebuilt.teacher_heads + h) * d + i] * in.teacher_k[(s * kv + h / group) * d + i];
                        z.push_back(rebuilt.teacher_scale * dot);
                        max = std::max(max, z.back());
                    }
                    for (double value : z) sum += std::exp(value - max);
                    std::vector<bool> seen(rebuilt.tokens, false);
                    for (size_t j = 0; j < entries.size(); ++j) {
                        if (seen[entries[j]]) continue;
                        seen[entries[j]] = true;
                        p[entries[j]] += std::exp(z[j] - max) / sum / static_cast<double>(rebuilt.teacher_heads);
                    }
                }
                for (int64_t s : entries) given.teacher_probs[t * rebuilt.tokens + s] = static_cast<float>(p[s]);
            }
            const IndexerLossResult want = dsa::reference::indexer_loss(in);
            check_against_reference(run_library(rebuilt), want);
            check_against_reference(run_library(given), want);
        }
    }
}

TEST_CASE("sparse mode: -1, out-of-range and out-of-window entries are ignored, repeats count") {
    Case c = make_case(DSA_INDEXER_LOSS_SPARSE, false, {6, 60, 3, 8, 4, 0, 8, 40}, 300);
    // Row 0 lists one token three times and another once; row 2 has nothing valid.
    c.ks[0] = 10, c.ke[0] = 50;
    const int32_t row0[] = {12, 12, -1, 30, 12, INT32_MIN, 5, 55, 60, INT32_MAX};
    for (int64_t j = 0; j < c.topk; ++j) c.indices[j] = row0[j % 10];
    c.ks[2] = 0, c.ke[2] = 60;
    for (int64_t j = 0; j < c.topk; ++j) c.indices[2 * c.topk + j] = j % 2 ? -1 : 60 + static_cast<int32_t>(j);
    const Outputs got = run_library(c);
    const IndexerLossResult want = dsa::reference::indexer_loss(c.reference_inputs());
    check_against_reference(got, want);
    CHECK(want.active[0]);
    CHECK(!want.active[2]);
    // Replacing every ignored entry by another ignored value changes no bit.
    Case other = c;
    for (int64_t t = 0; t < c.rows; ++t) {
        const int32_t begin = std::clamp<int32_t>(c.ks[t], 0, 60), end = std::clamp<int32_t>(c.ke[t], begin, 60);
        for (int64_t j = 0; j < c.topk; ++j) {
            int32_t& index = other.indices[t * c.topk + j];
            if (index < begin || index >= end) index = (j % 3 == 0) ? -7 : (j % 3 == 1 ? 1000 : (begin > 0 ? begin - 1 : -1));
        }
    }
    CHECK(same_bits(got, run_library(other)));
    // Row 0's entries are {12, 12, 30, 12}: the same as listing them in another order.
    Case reordered = c;
    const int32_t row0_reordered[] = {30, 12, 12, 12};
    for (int64_t j = 0; j < c.topk; ++j) reordered.indices[j] = j < 4 ? row0_reordered[j] : -1;
    const Outputs moved = run_library(reordered);
    CHECK(moved.row_loss[0] == doctest::Approx(got.row_loss[0]).epsilon(1e-5));
    for (int64_t h = 0; h < c.heads; ++h) CHECK(moved.d_weights[h] == doctest::Approx(got.d_weights[h]).epsilon(1e-4));
}

TEST_CASE("rows with an empty set, zero, negative or non-finite teacher mass are inactive") {
    Case c = make_case(DSA_INDEXER_LOSS_DENSE, true, {8, 30, 3, 8, 1, 0, 1}, 400);
    for (int64_t t = 0; t < c.rows; ++t) c.ks[t] = 0, c.ke[t] = 20;
    c.ks[1] = 25, c.ke[1] = 25;                                               // empty window
    for (int64_t s = 0; s < 20; ++s) c.teacher_probs[2 * 30 + s] = 0.0f;      // zero mass
    for (int64_t s = 20; s < 30; ++s) c.teacher_probs[2 * 30 + s] = 5.0f;     // (outside the set)
    c.teacher_probs[3 * 30 + 7] = -1e-3f;                                     // a negative entry
    c.teacher_probs[4 * 30 + 3] = NAN;
    c.teacher_probs[5 * 30 + 19] = INFINITY;
    c.teacher_probs[6 * 30 + 25] = NAN;                                       // outside the set: ignored
    const Outputs got = run_library(c);
    const IndexerLossResult want = dsa::reference::indexer_loss(c.reference_inputs());
    check_against_reference(got, want);
    for (int64_t t = 0; t < c.rows; ++t) {
        const bool active = t == 0 || t == 6 || t == 7;
        CAPTURE(t);
        CHECK(want.active[t] == active);
        if (active) continue;
        CHECK(got.row_loss[t] == 0.0f);
        for (int64_t i = 0; i < c.heads; ++i) CHECK(got.d_weights[t * c.heads + i] == 0.0f);
        for (int64_t i = 0; i < c.heads * c.dim; ++i) CHECK(got.d_index_q[t * c.heads * c.dim + i] == 0.0f);
    }
    // The mean runs over the 3 active rows.
    CHECK(got.loss == doctest::Approx((got.row_loss[0] + got.row_loss[6] + got.row_loss[7]) / 3.0).epsilon(1e-6));

    // A rebuilt teacher whose logits are not finite makes its row inactive too.
    Case rebuilt = make_case(DSA_INDEXER_LOSS_DENSE, false, {4, 30, 3, 8, 2, 0, 4}, 401);
    rebuilt.teacher_q.f32[1 * 8 + 2] = INFINITY;  // row 1, head 0
    rebuilt.teacher_q.bf16 = to_bf16(rebuilt.teacher_q.f32);
    const IndexerLossResult rebuilt_want = dsa::reference::indexer_loss(rebuilt.reference_inputs());
    CHECK(!rebuilt_want.active[1]);
    const Outputs rebuilt_got = run_library(rebuilt);
    check_against_reference(rebuilt_got, rebuilt_want);
    CHECK(rebuilt_got.row_loss[1] == 0.0f);

    // No active row at all: every output is zero.
    Case none = c;
    std::fill(none.teacher_probs.begin(), none.teacher_probs.end(), 0.0f);
    const Outputs zero = run_library(none);
    CHECK(zero.loss == 0.0f);
    for (const auto* values : {&zero.row_loss, &zero.d_index_q, &zero.d_index_k, &zero.d_weights})
        CHECK(std::all_of(values->begin(), values->end(), [](float v) { return v == 0.0f; }));
}

TEST_CASE("bf16 inputs, alone or mixed with f32, match the reference over their values") {
    for (int variant = 0; variant < 4; ++variant) {
        CAPTURE(variant);
        const bool probs = variant == 3;
        Case c = make_case(variant % 2 ? DSA_INDEXER_LOSS_SPARSE : DSA_INDEXER_LOSS_DENSE, probs,
                           {7, 100, 6, 20, 4, 2, 12, 90}, 500 + variant, DSA_DTYPE_BF16);
        if (variant == 1) c.index_k.assign(c.index_k.f32, DSA_DTYPE_F32);
        if (variant == 2) c.weights.assign(c.weights.f32, DSA_DTYPE_F32), c.teacher_k.assign(c.teacher_k.f32, DSA_DTYPE_F32);
        check_against_reference(run_library(c), dsa::reference::indexer_loss(c.reference_inputs()));
    }
}

TEST_CASE("results are bitwise identical for any thread count, across panels of the dk reduction") {
    // 40 full rows of 1800 tokens at D_I = 128: more dk contributions than one panel holds.
    Case big = make_case(DSA_INDEXER_LOSS_DENSE, true, {40, 1800, 2, 128, 1, 0, 1}, 600);
    for (int64_t t = 0; t < big.rows; ++t) big.ks[t] = t % 2 ? -3 : 0, big.ke[t] = 1800;
    const Outputs one = run_library(big, 1);
    CHECK(same_bits(one, run_library(big, 2)));
    CHECK(same_bits(one, run_library(big, 3)));
    check_against_reference(one, dsa::reference::indexer_loss(big.reference_inputs()));
    for (dsa_indexer_loss_mode_t mode : {DSA_INDEXER_LOSS_DENSE, DSA_INDEXER_LOSS_SPARSE}) {
        Case c = make_case(mode, false, {23, 300, 8, 32, 8, 2, 16, 200}, 610 + mode);
        const Outputs reference_run = run_library(c, 1);
        CHECK(same_bits(reference_run, run_library(c, 2)));
        CHECK(same_bits(reference_run, run_library(c, 5)));
        CHECK(same_bits(reference_run, run_library(c, 2)));  // and run to run
    }
}

TEST_CASE("strided inputs and outputs give the contiguous results; padding is not written") {
    for (dsa_indexer_loss_mode_t mode : {DSA_INDEXER_LOSS_DENSE, DSA_INDEXER_LOSS_SPARSE}) {
        for (bool probs : {false, true}) {
            CAPTURE(mode);
            CAPTURE(probs);
            Case c = make_case(mode, probs, {5, 70, 3, 10, 4, 2, 6, 50}, 700 + mode + 2 * probs);
            const Outputs want = run_library(c);
            const int64_t T = c.rows, S = c.tokens, H = c.heads, D = c.dim, Hq = c.teacher_heads, d = c.teacher_dim;
            // Inputs copied into padded buffers (pads hold NaN, which must not be read).
            auto spread = [](const std::vector<float>& values, int64_t count, int64_t width, int64_t stride) {
                std::vector<float> result(count * stride, NAN);
                for (int64_t r = 0; r < count; ++r) std::copy_n(values.begin() + r * width, width, result.begin() + r * stride);
                return result;
            };
            std::vector<float> q = spread(c.index_q.f32, T * H, D, D + 3), k = spread(c.index_k.f32, S, D, D + 2);
            std::vector<float> w(H * T);  // column-major
            for (int64_t t = 0; t < T; ++t)
                for (int64_t h = 0; h < H; ++h) w[h * T + t] = c.weights.f32[t * H + h];
            std::vector<int32_t> ks(2 * T), ke(2 * T), indices(T * (c.topk + 3), -1);
            for (int64_t t = 0; t < T; ++t) {
                ks[2 * t] = c.ks[t], ke[2 * t] = c.ke[t];
                std::copy_n(c.indices.begin() + t * c.topk, c.topk, indices.begin() + t * (c.topk + 3));
            }
            std::vector<float> tq = spread(c.teacher_q.f32, T * Hq, d, d + 1), tk = spread(c.teacher_k.f32, S * 2, d, d + 5);
            std::vector<float> tp = spread(c.teacher_probs, T, S, S + 4);
            const dsa_tensor_t qv = strided(q.data(), {T, H, D}, {H * (D + 3), D + 3, 1}, DSA_DTYPE_F32);
            const dsa_tensor_t kv = strided(k.data(), {S, D}, {D + 2, 1}, DSA_DTYPE_F32);
            const dsa_tensor_t wv = strided(w.data(), {T, H}, {1, T}, DSA_DTYPE_F32);
            const dsa_tensor_t ksv = strided(ks.data(), {T}, {2}, DSA_DTYPE_I32), kev = strided(ke.data(), {T}, {2}, DSA_DTYPE_I32);
            const dsa_tensor_t iv = strided(indices.data(), {T, c.topk}, {c.topk + 3, 1}, DSA_DTYPE_I32);
            const dsa_tensor_t tqv = strided(tq.data(), {T, Hq, d}, {Hq * (d + 1), d + 1, 1}, DSA_DTYPE_F32);
            const dsa_tensor_t tkv = strided(tk.data(), {S, 2, d}, {2 * (d + 5), d + 5, 1}, DSA_DTYPE_F32);
            const dsa_tensor_t tpv = strided(tp.data(), {T, S}, {S + 4, 1}, DSA_DTYPE_F32);
            constexpr float kPad = 12345.0f;
            std::vector<float> loss(2, kPad), row_loss(3 * T, kPad), dq(T * H * (D + 1), kPad), dk(S * (D + 4), kPad),
                dw(T * (H + 2), kPad);
            const dsa_tensor_t lossv = view(loss.data(), {1}, DSA_DTYPE_F32);
            const dsa_tensor_t rlv = strided(row_loss.data(), {T}, {3}, DSA_DTYPE_F32);
            const dsa_tensor_t dqv = strided(dq.data(), {T, H, D}, {H * (D + 1), D + 1, 1}, DSA_DTYPE_F32);
            const dsa_tensor_t dkv = strided(dk.data(), {S, D}, {D + 4, 1}, DSA_DTYPE_F32);
            const dsa_tensor_t dwv = strided(dw.data(), {T, H}, {H + 2, 1}, DSA_DTYPE_F32);
            const dsa_indexer_loss_params_t params = c.params();
            Context context(2);
            REQUIRE_MESSAGE(dsa_indexer_loss(context, &params, &qv, &kv, &wv, &ksv, &kev,
                                             mode == DSA_INDEXER_LOSS_SPARSE ? &iv : nullptr, probs ? nullptr : &tqv,
                                             probs ? nullptr : &tkv, probs ? &tpv : nullptr, &lossv, &rlv, &dqv, &dkv,
                                             &dwv, nullptr) == DSA_STATUS_SUCCESS,
                            dsa_last_error_message());
            // The teacher_k above is rank 3 with 2 kv heads: the contiguous run used the same.
            CHECK(std::memcmp(&loss[0], &want.loss, 4) == 0);
            CHECK(loss[1] == kPad);
            for (int64_t t = 0; t < T; ++t) {
                CHECK(std::memcmp(&row_loss[3 * t], &want.row_loss[t], 4) == 0);
                CHECK(row_loss[3 * t + 1] == kPad);
                CHECK(std::memcmp(&dw[t * (H + 2)], &want.d_weights[t * H], 4 * H) == 0);
                CHECK(dw[t * (H + 2) + H] == kPad);
                for (int64_t h = 0; h < H; ++h) {
                    CHECK(std::memcmp(&dq[(t * H + h) * (D + 1)], &want.d_index_q[(t * H + h) * D], 4 * D) == 0);
                    CHECK(dq[(t * H + h) * (D + 1) + D] == kPad);
                }
            }
            for (int64_t s = 0; s < S; ++s) {
                CHECK(std::memcmp(&dk[s * (D + 4)], &want.d_index_k[s * D], 4 * D) == 0);
                CHECK(dk[s * (D + 4) + D] == kPad);
            }
        }
    }
}

TEST_CASE("each output is optional; the others do not change") {
    for (bool probs : {false, true}) {
        Case c = make_case(DSA_INDEXER_LOSS_SPARSE, probs, {6, 80, 4, 12, 4, 0, 8, 60}, 800 + probs);
        const Outputs all = run_library(c);
        Context context(2);
        for (int mask = 0; mask < 32; ++mask) {
            CAPTURE(mask);
            Outputs o(c);
            o.want_loss = mask & 1, o.want_row_loss = mask & 2, o.want_d_index_q = mask & 4;
            o.want_d_index_k = mask & 8, o.want_d_weights = mask & 16;
            REQUIRE(call(context, c, o) == DSA_STATUS_SUCCESS);
            auto agrees = [](bool wanted, const std::vector<float>& got, const std::vector<float>& full) {
                if (wanted) return std::memcmp(got.data(), full.data(), got.size() * 4) == 0;
                return std::all_of(got.begin(), got.end(), [](float v) { return std::isnan(v); });
            };
            CHECK((o.want_loss ? std::memcmp(&o.loss, &all.loss, 4) == 0 : std::isnan(o.loss)));
            CHECK(agrees(o.want_row_loss, o.row_loss, all.row_loss));
            CHECK(agrees(o.want_d_index_q, o.d_index_q, all.d_index_q));
            CHECK(agrees(o.want_d_index_k, o.d_index_k, all.d_index_k));
            CHECK(agrees(o.want_d_weights, o.d_weights, all.d_weights));
        }
    }
}

TEST_CASE("empty problems: T = 0, S = 0, k = 0") {
    Case no_rows = make_case(DSA_INDEXER_LOSS_DENSE, false, {0, 10, 2, 4, 2, 0, 4}, 900);
    const Outputs a = run_library(no_rows);
    CHECK(a.loss == 0.0f);
    CHECK(std::all_of(a.d_index_k.begin(), a.d_index_k.end(), [](float v) { return v == 0.0f; }));
    Case no_tokens = make_case(DSA_INDEXER_LOSS_DENSE, true, {4, 0, 2, 4, 1, 0, 1}, 901);
    const Outputs b = run_library(no_tokens);
    CHECK(b.loss == 0.0f);
    CHECK(std::all_of(b.d_index_q.begin(), b.d_index_q.end(), [](float v) { return v == 0.0f; }));
    Case no_selection = make_case(DSA_INDEXER_LOSS_SPARSE, false, {4, 10, 2, 4, 2, 0, 4, 0}, 902);
    const Outputs e = run_library(no_selection);
    CHECK(e.loss == 0.0f);
    CHECK(std::all_of(e.row_loss.begin(), e.row_loss.end(), [](float v) { return v == 0.0f; }));
}

TEST_CASE("indexer_loss rejects bad input with a status naming the argument; outputs untouched") {
    Context context(1);
    Case c = make_case(DSA_INDEXER_LOSS_SPARSE, false, {3, 20, 2, 8, 4, 2, 6, 5}, 1000);
    Outputs o(c);
    dsa_indexer_loss_params_t params = c.params();
    dsa_tensor_t q = c.q_tensor(), k = c.k_tensor(), w = c.w_tensor(), ks = c.ks_tensor(), ke = c.ke_tensor(),
                 idx = c.indices_tensor(), tq = c.teacher_q_tensor(), tk = c.teacher_k_tensor(), tp = c.probs_tensor();
    dsa_tensor_t loss = view(&o.loss, {}, DSA_DTYPE_F32), rl = view(o.row_loss.data(), {c.rows}, DSA_DTYPE_F32),
                 dq = view(o.d_index_q.data(), {c.rows, c.heads, c.dim}, DSA_DTYPE_F32),
                 dk = view(o.d_index_k.data(), {c.tokens, c.dim}, DSA_DTYPE_F32),
                 dw = view(o.d_weights.data(), {c.rows, c.heads}, DSA_DTYPE_F32);
    // Every argument by position; a test replaces one of them.
    struct Arguments {
        const dsa_indexer_loss_params_t* params;
        const dsa_tensor_t *q, *k, *w, *ks, *ke, *idx, *tq, *tk, *tp, *loss, *rl, *dq, *dk, *dw;
    };
    const Arguments good{&params, &q, &k, &w, &ks, &ke, &idx, &tq, &tk, nullptr, &loss, &rl, &dq, &dk, &dw};
    auto run = [&](const Arguments& a) {
        return dsa_indexer_loss(context, a.params, a.q, a.k, a.w, a.ks, a.ke, a.idx, a.tq, a.tk, a.tp, a.loss, a.rl,
                                a.dq, a.dk, a.dw, nullptr);
    };
    auto with = [&](std::function<void(Arguments&)> change) {
        Arguments a = good;
        change(a);
        return run(a);
    };
    CHECK_FAILS_WITH(dsa_indexer_loss(nullptr, &params, &q, &k, &w, &ks, &ke, &idx, &tq, &tk, nullptr, &loss, &rl, &dq,
                                      &dk, &dw, nullptr),
                     DSA_STATUS_INVALID_ARGUMENT, "context");
    // params
    CHECK_FAILS_WITH(with([](Arguments& a) { a.params = nullptr; }), DSA_STATUS_INVALID_ARGUMENT, "teacher_scale");
    dsa_indexer_loss_params_t bad = params;
    bad.teacher_scale = 0.0f;
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.params = &bad; }), DSA_STATUS_INVALID_ARGUMENT, "teacher_scale");
    bad.teacher_scale = INFINITY;
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.params = &bad; }), DSA_STATUS_INVALID_ARGUMENT, "teacher_scale");
    bad = params;
    bad.coeff = NAN;
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.params = &bad; }), DSA_STATUS_INVALID_ARGUMENT, "coeff");
    bad = params;
    bad.mode = 2;
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.params = &bad; }), DSA_STATUS_INVALID_ARGUMENT, "mode");
    bad = params;
    bad.struct_size = 8;
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.params = &bad; }), DSA_STATUS_INVALID_ARGUMENT, "struct_size");
    bad = params;
    bad.mode = DSA_INDEXER_LOSS_DENSE;
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.params = &bad; }), DSA_STATUS_INVALID_ARGUMENT, "indices");
    CHECK_FAILS_WITH(with([](Arguments& a) { a.idx = nullptr; }), DSA_STATUS_INVALID_ARGUMENT, "indices");
    // The teacher form
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.tp = &tp; }), DSA_STATUS_INVALID_ARGUMENT, "teacher_q");
    CHECK_FAILS_WITH(with([](Arguments& a) { a.tq = a.tk = nullptr; }), DSA_STATUS_INVALID_ARGUMENT, "teacher");
    CHECK_FAILS_WITH(with([](Arguments& a) { a.tq = nullptr; }), DSA_STATUS_INVALID_ARGUMENT, "teacher_q");
    CHECK_FAILS_WITH(with([](Arguments& a) { a.tk = nullptr; }), DSA_STATUS_INVALID_ARGUMENT, "teacher_k");
    // Required tensors
    CHECK_FAILS_WITH(with([](Arguments& a) { a.q = nullptr; }), DSA_STATUS_INVALID_ARGUMENT, "index_q");
    CHECK_FAILS_WITH(with([](Arguments& a) { a.k = nullptr; }), DSA_STATUS_INVALID_ARGUMENT, "index_k");
    CHECK_FAILS_WITH(with([](Arguments& a) { a.w = nullptr; }), DSA_STATUS_INVALID_ARGUMENT, "weights");
    CHECK_FAILS_WITH(with([](Arguments& a) { a.ks = nullptr; }), DSA_STATUS_INVALID_ARGUMENT, "ks");
    CHECK_FAILS_WITH(with([](Arguments& a) { a.ke = nullptr; }), DSA_STATUS_INVALID_ARGUMENT, "ke");
    // dtypes
    auto retyped = [](dsa_tensor_t t, dsa_dtype_t dtype) {
        t.dtype = dtype;
        return t;
    };
    dsa_tensor_t t1;
    t1 = retyped(q, DSA_DTYPE_F16);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.q = &t1; }), DSA_STATUS_DTYPE_MISMATCH, "index_q");
    t1 = retyped(k, DSA_DTYPE_I32);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.k = &t1; }), DSA_STATUS_DTYPE_MISMATCH, "index_k");
    t1 = retyped(w, DSA_DTYPE_I32);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.w = &t1; }), DSA_STATUS_DTYPE_MISMATCH, "weights");
    t1 = retyped(ks, DSA_DTYPE_F32);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.ks = &t1; }), DSA_STATUS_DTYPE_MISMATCH, "ks");
    t1 = retyped(ke, DSA_DTYPE_I64);
    t1.data = nullptr;
    t1.shape[0] = 0;
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.ke = &t1; }), DSA_STATUS_DTYPE_MISMATCH, "ke");
    t1 = retyped(idx, DSA_DTYPE_F32);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.idx = &t1; }), DSA_STATUS_DTYPE_MISMATCH, "indices");
    t1 = retyped(tq, DSA_DTYPE_FP8_E4M3);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.tq = &t1; }), DSA_STATUS_DTYPE_MISMATCH, "teacher_q");
    t1 = retyped(tk, DSA_DTYPE_F16);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.tk = &t1; }), DSA_STATUS_DTYPE_MISMATCH, "teacher_k");
    t1 = retyped(tp, DSA_DTYPE_BF16);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.tq = a.tk = nullptr, a.tp = &t1; }), DSA_STATUS_DTYPE_MISMATCH,
                     "teacher_probs");
    t1 = retyped(loss, DSA_DTYPE_BF16);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.loss = &t1; }), DSA_STATUS_DTYPE_MISMATCH, "loss");
    t1 = retyped(rl, DSA_DTYPE_I32);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.rl = &t1; }), DSA_STATUS_DTYPE_MISMATCH, "row_loss");
    t1 = retyped(dq, DSA_DTYPE_BF16);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.dq = &t1; }), DSA_STATUS_DTYPE_MISMATCH, "d_index_q");
    t1 = retyped(dk, DSA_DTYPE_BF16);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.dk = &t1; }), DSA_STATUS_DTYPE_MISMATCH, "d_index_k");
    t1 = retyped(dw, DSA_DTYPE_I32);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.dw = &t1; }), DSA_STATUS_DTYPE_MISMATCH, "d_weights");
    // shapes
    auto reshaped = [](dsa_tensor_t t, int axis, int64_t extent) {
        t.shape[axis] = extent;
        return t;
    };
    t1 = reshaped(q, 1, 0);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.q = &t1; }), DSA_STATUS_SHAPE_MISMATCH, "index_q");
    t1 = reshaped(q, 2, 0);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.q = &t1; }), DSA_STATUS_SHAPE_MISMATCH, "index_q");
    t1 = q;
    t1.ndim = 2;
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.q = &t1; }), DSA_STATUS_SHAPE_MISMATCH, "index_q");
    t1 = reshaped(k, 1, 7);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.k = &t1; }), DSA_STATUS_SHAPE_MISMATCH, "index_k");
    t1 = reshaped(w, 1, 1);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.w = &t1; }), DSA_STATUS_SHAPE_MISMATCH, "weights");
    t1 = reshaped(ks, 0, 2);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.ks = &t1; }), DSA_STATUS_SHAPE_MISMATCH, "ks");
    t1 = reshaped(ke, 0, 1);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.ke = &t1; }), DSA_STATUS_SHAPE_MISMATCH, "ke");
    t1 = reshaped(idx, 0, 2);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.idx = &t1; }), DSA_STATUS_SHAPE_MISMATCH, "indices");
    t1 = reshaped(tq, 0, 2);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.tq = &t1; }), DSA_STATUS_SHAPE_MISMATCH, "teacher_q");
    t1 = reshaped(tq, 1, 0);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.tq = &t1; }), DSA_STATUS_SHAPE_MISMATCH, "teacher_q");
    t1 = reshaped(tk, 1, 3);  // H_kv = 3 does not divide H_q = 4
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.tk = &t1; }), DSA_STATUS_SHAPE_MISMATCH, "teacher_k");
    t1 = reshaped(tk, 0, 19);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.tk = &t1; }), DSA_STATUS_SHAPE_MISMATCH, "teacher_k");
    t1 = reshaped(tk, 2, 5);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.tk = &t1; }), DSA_STATUS_SHAPE_MISMATCH, "teacher_k");
    t1 = reshaped(tp, 1, 21);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.tq = a.tk = nullptr, a.tp = &t1; }), DSA_STATUS_SHAPE_MISMATCH,
                     "teacher_probs");
    t1 = view(o.row_loss.data(), {2}, DSA_DTYPE_F32);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.loss = &t1; }), DSA_STATUS_SHAPE_MISMATCH, "loss");
    t1 = reshaped(rl, 0, 2);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.rl = &t1; }), DSA_STATUS_SHAPE_MISMATCH, "row_loss");
    t1 = reshaped(dq, 2, 4);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.dq = &t1; }), DSA_STATUS_SHAPE_MISMATCH, "d_index_q");
    t1 = reshaped(dk, 0, 4);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.dk = &t1; }), DSA_STATUS_SHAPE_MISMATCH, "d_index_k");
    t1 = reshaped(dw, 1, 1);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.dw = &t1; }), DSA_STATUS_SHAPE_MISMATCH, "d_weights");
    // layouts: last strides, overlaps
    auto restrided = [](dsa_tensor_t t, int axis, int64_t stride) {
        t.strides[axis] = stride;
        return t;
    };
    t1 = restrided(q, 2, 2);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.q = &t1; }), DSA_STATUS_LAYOUT_UNSUPPORTED, "index_q");
    t1 = restrided(k, 1, 0);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.k = &t1; }), DSA_STATUS_LAYOUT_UNSUPPORTED, "index_k");
    t1 = restrided(idx, 1, 2);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.idx = &t1; }), DSA_STATUS_LAYOUT_UNSUPPORTED, "indices");
    t1 = restrided(tq, 2, 3);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.tq = &t1; }), DSA_STATUS_LAYOUT_UNSUPPORTED, "teacher_q");
    t1 = restrided(tk, 2, 2);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.tk = &t1; }), DSA_STATUS_LAYOUT_UNSUPPORTED, "teacher_k");
    t1 = restrided(tp, 1, 2);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.tq = a.tk = nullptr, a.tp = &t1; }), DSA_STATUS_LAYOUT_UNSUPPORTED,
                     "teacher_probs");
    t1 = restrided(dq, 2, 2);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.dq = &t1; }), DSA_STATUS_LAYOUT_UNSUPPORTED, "d_index_q");
    t1 = restrided(dw, 1, 3);
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.dw = &t1; }), DSA_STATUS_LAYOUT_UNSUPPORTED, "d_weights");
    t1 = restrided(dk, 0, 1);  // rows overlap
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.dk = &t1; }), DSA_STATUS_LAYOUT_UNSUPPORTED, "d_index_k");
    t1 = rl;
    t1.data = o.d_weights.data();
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.rl = &t1; }), DSA_STATUS_LAYOUT_UNSUPPORTED, "d_weights");
    t1 = dk;
    t1.data = c.index_k.data();
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.dk = &t1; }), DSA_STATUS_LAYOUT_UNSUPPORTED, "d_index_k");
    t1 = loss;
    t1.data = c.teacher_q.data();
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.loss = &t1; }), DSA_STATUS_LAYOUT_UNSUPPORTED, "loss");
    // devices
    t1 = k;
    t1.device_type = DSA_DEVICE_CUDA;
    CHECK(with([&](Arguments& a) { a.k = &t1; }) != DSA_STATUS_SUCCESS);
    CHECK(std::string(dsa_last_error_message()).find("index_k") == 0);
    t1 = dw;
    t1.device_type = 5;
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.dw = &t1; }), DSA_STATUS_DEVICE_MISMATCH, "d_weights");
    dsa_indexer_loss_params_t newer[2];
    std::memset(newer, 0, sizeof newer);
    newer[0] = params;
    newer[0].struct_size = sizeof newer;
    reinterpret_cast<unsigned char*>(newer)[sizeof params + 3] = 1;
    CHECK_FAILS_WITH(with([&](Arguments& a) { a.params = newer; }), DSA_STATUS_UNSUPPORTED, "params");
    CHECK_FAILS_WITH(dsa_indexer_loss_params_init(nullptr), DSA_STATUS_INVALID_ARGUMENT, "params");

    // Nothing was written by any failed call; the same arguments then succeed.
    CHECK(std::isnan(o.loss));
    for (const auto* values : {&o.row_loss, &o.d_index_q, &o.d_index_k, &o.d_weights})
        CHECK(std::all_of(values->begin(), values->end(), [](float v) { return std::isnan(v); }));
    CHECK(run(good) == DSA_STATUS_SUCCESS);
    // params NULL is fine with teacher_probs (teacher_scale is not used); DENSE is the default.
    CHECK(dsa_indexer_loss(context, nullptr, &q, &k, &w, &ks, &ke, nullptr, nullptr, nullptr, &tp, &loss, nullptr,
                           nullptr, nullptr, nullptr, nullptr) == DSA_STATUS_SUCCESS);
}
