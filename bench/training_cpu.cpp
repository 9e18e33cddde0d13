// CPU training ops at DeepSeek-like shapes, with the f32 FMA peak of the same thread count
// measured in the same run:
// - dsa_indexer_loss, T = 256 query rows at the end of a 4K causal context (H_I = 64, D_I = 128):
//   DENSE with teacher_probs, DENSE with the teacher rebuilt from MQA q/k (H_q = 128, d = 576),
//   SPARSE (k = 2048) with teacher_probs. Executed FLOP per (row, entry): 8 H_I D_I (u twice,
//   d_q, the d_k contributions) + 4 H_q d for a rebuilt teacher (z twice).
// - dsa_sparse_attention_backward, S_q = 64, k = 2048, H_q = 128, d 576/512, S_kv = 4K. Executed
//   FLOP per (row, entry): 2 H_q (3 d_qk + 2 d_v) (Z, dP, dq, the dkv contributions); the
//   forward is 2 H_q (d_qk + d_v).
// One row of each is checked against the float64 reference before timing.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "bench/timing.hpp"
#include "core/ops/indexer_loss.hpp"
#include "core/ops/sparse_attention_backward.hpp"
#include "dsa.h"

namespace {

std::vector<float> uniform(size_t count, uint32_t seed, float low = -1.0f, float high = 1.0f) {
    std::mt19937 engine(seed);
    std::uniform_real_distribution<float> dist(low, high);
    std::vector<float> values(count);
    for (float& v : values) v = dist(engine);
    return values;
}

std::vector<uint16_t> bf16_of(const std::vector<float>& values) {
    std::vector<uint16_t> result(values.size());
    for (size_t i = 0; i < values.size(); ++i) result[i] = dsa::float_to_bf16(values[i]);
    return result;
}

dsa_tensor_t make(void* data, std::vector<int64_t> shape, dsa_dtype_t dtype) {
    dsa_tensor_t t;
    dsa_tensor_init_contiguous(&t, data, static_cast<int32_t>(shape.size()), shape.data(), dtype, DSA_DEVICE_CPU, 0);
    return t;
}

void require(dsa_status_t status) {
    if (status == DSA_STATUS_SUCCESS) return;
    std::fprintf(stderr, "failed: %s\n", dsa_last_error_message());
    std::exit(1);
}

void require_close(double got, double want, const char* what) {
    if (std::fabs(got - want) <= 1e-4 * std::fmax(1.0, std::fabs(want))) return;
    std::fprintf(stderr, "%s: %.7g, the reference says %.7g\n", what, got, want);
    std::exit(1);
}

// k distinct tokens of [0, range) per row.
std::vector<int32_t> distinct_tokens(int64_t rows, int64_t k, int64_t range, uint32_t seed) {
    std::mt19937 engine(seed);
    std::vector<int32_t> all(range), chosen;
    for (int64_t i = 0; i < range; ++i) all[i] = static_cast<int32_t>(i);
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t j = 0; j < k; ++j) std::swap(all[j], all[j + engine() % (range - j)]);
        chosen.insert(chosen.end(), all.begin(), all.begin() + k);
    }
    return chosen;
}

void indexer_loss_case(dsa_context_t* context, double peak, const char* name, bool sparse, bool rebuilt) {
    const int64_t T = 256, S = 4096, H = 64, D = 128, Hq = 128, d = 576, k = 2048;
    std::vector<float> q = uniform(T * H * D, 1), keys = uniform(S * D, 2), w = uniform(T * H, 3, -0.2f, 0.2f);
    std::vector<uint16_t> teacher_q = bf16_of(uniform(T * Hq * d, 4)), teacher_k = bf16_of(uniform(S * d, 5));
    std::vector<float> probs = uniform(T * S, 6, 0.0f, 1.0f);
    std::vector<int32_t> ks(T, 0), ke(T), indices;
    for (int64_t t = 0; t < T; ++t) ke[t] = static_cast<int32_t>(S - T + t + 1);
    if (sparse) indices = distinct_tokens(T, k, S - T + 1, 7);  // inside every row's window
    std::vector<float> loss(1), row_loss(T), dq(T * H * D), dk(S * D), dw(T * H);
    dsa_tensor_t qt = make(q.data(), {T, H, D}, DSA_DTYPE_F32), kt = make(keys.data(), {S, D}, DSA_DTYPE_F32),
                 wt = make(w.data(), {T, H}, DSA_DTYPE_F32), kst = make(ks.data(), {T}, DSA_DTYPE_I32),
                 ket = make(ke.data(), {T}, DSA_DTYPE_I32), it = make(indices.data(), {T, k}, DSA_DTYPE_I32),
                 tqt = make(teacher_q.data(), {T, Hq, d}, DSA_DTYPE_BF16),
                 tkt = make(teacher_k.data(), {S, d}, DSA_DTYPE_BF16), tpt = make(probs.data(), {T, S}, DSA_DTYPE_F32),
                 lt = make(loss.data(), {}, DSA_DTYPE_F32), rlt = make(row_loss.data(), {T}, DSA_DTYPE_F32),
                 dqt = make(dq.data(), {T, H, D}, DSA_DTYPE_F32), dkt = make(dk.data(), {S, D}, DSA_DTYPE_F32),
                 dwt = make(dw.data(), {T, H}, DSA_DTYPE_F32);
    dsa_indexer_loss_params_t params;
    dsa_indexer_loss_params_init(&params);
    params.mode = sparse ? DSA_INDEXER_LOSS_SPARSE : DSA_INDEXER_LOSS_DENSE;
    params.teacher_scale = 0.13523378f;
    auto run = [&] {
        require(dsa_indexer_loss(context, &params, &qt, &kt, &wt, &kst, &ket, sparse ? &it : nullptr,
                                 rebuilt ? &tqt : nullptr, rebuilt ? &tkt : nullptr, rebuilt ? nullptr : &tpt, &lt,
                                 &rlt, &dqt, &dkt, &dwt, nullptr));
    };
    run();
    // Row T - 1 alone through the reference: its row loss depends on that row only.
    dsa::reference::IndexerLossInputs in;
    in.mode = sparse ? dsa::IndexerLossMode::sparse : dsa::IndexerLossMode::dense;
    in.teacher_scale = params.teacher_scale;
    in.rows = 1, in.tokens = S, in.heads = H, in.dim = D, in.topk = sparse ? k : 0;
    in.teacher_heads = Hq, in.teacher_dim = d, in.has_teacher_probs = !rebuilt;
    in.index_q.assign(q.end() - H * D, q.end());
    in.index_k.assign(keys.begin(), keys.end());
    in.weights.assign(w.end() - H, w.end());
    if (rebuilt) {
        for (int64_t i = (T - 1) * Hq * d; i < T * Hq * d; ++i) in.teacher_q.push_back(dsa::bf16_to_float(teacher_q[i]));
        for (uint16_t bits : teacher_k) in.teacher_k.push_back(dsa::bf16_to_float(bits));
    } else {
        in.teacher_probs.assign(probs.end() - S, probs.end());
    }
    in.ks = {0};
    in.ke = {ke[T - 1]};
    if (sparse) in.indices.assign(indices.end() - k, indices.end());
    require_close(row_loss[T - 1], dsa::reference::indexer_loss(in).row_loss[0], name);

    const double seconds = dsa_bench::median_seconds(run, 3, 0);
    double pairs = 0;
    for (int64_t t = 0; t < T; ++t) pairs += sparse ? k : ke[t];
    const double flop = pairs * (8.0 * H * D + (rebuilt ? 4.0 * Hq * d : 0.0));
    std::printf("indexer_loss %s T=%lld S=%lld H_I=%lld D_I=%lld: %.1f ms, %.1f GFLOP/s executed (%.2f of FMA peak), "
                "%.1f M entries/s\n",
                name, (long long)T, (long long)S, (long long)H, (long long)D, seconds * 1e3, flop / seconds / 1e9,
                flop / seconds / 1e9 / peak, pairs / seconds / 1e6);
}

void backward_case(dsa_context_t* context, double peak) {
    const int64_t rows = 64, heads = 128, d_qk = 576, d_v = 512, k = 2048, tokens = 4096;
    const float scale = 0.13523378f;
    std::vector<uint16_t> q = bf16_of(uniform(rows * heads * d_qk, 11)), kv = bf16_of(uniform(tokens * d_qk, 12));
    std::vector<uint16_t> dout = bf16_of(uniform(rows * heads * d_v, 13));
    std::vector<int32_t> indices = distinct_tokens(rows, k, tokens, 14);
    std::vector<uint16_t> out(rows * heads * d_v);
    std::vector<float> lse(rows * heads), dq(rows * heads * d_qk), dkv(tokens * d_qk);
    dsa_tensor_t qt = make(q.data(), {rows, heads, d_qk}, DSA_DTYPE_BF16), kvt = make(kv.data(), {tokens, d_qk}, DSA_DTYPE_BF16),
                 it = make(indices.data(), {rows, k}, DSA_DTYPE_I32),
                 ot = make(out.data(), {rows, heads, d_v}, DSA_DTYPE_BF16), lt = make(lse.data(), {rows, heads}, DSA_DTYPE_F32),
                 dot = make(dout.data(), {rows, heads, d_v}, DSA_DTYPE_BF16),
                 dqt = make(dq.data(), {rows, heads, d_qk}, DSA_DTYPE_F32), dkvt = make(dkv.data(), {tokens, d_qk}, DSA_DTYPE_F32);
    dsa_sparse_attention_params_t forward;
    dsa_sparse_attention_params_init(&forward);
    forward.scale = scale;
    require(dsa_sparse_attention(context, &forward, &qt, &kvt, &it, nullptr, nullptr, &ot, &lt, nullptr, nullptr));
    dsa_sparse_attention_backward_params_t params;
    dsa_sparse_attention_backward_params_init(&params);
    params.scale = scale;
    size_t bytes = 0;
    require(dsa_sparse_attention_backward_workspace_size(context, &params, rows, k, tokens, d_qk, &bytes));
    std::vector<uint64_t> workspace(bytes / 8 + 1);
    auto run = [&] {
        require(dsa_sparse_attention_backward(context, &params, &qt, &kvt, &it, nullptr, nullptr, &ot, &lt, &dot, &dqt,
                                              &dkvt, nullptr, workspace.data(), bytes, nullptr));
    };
    run();
    // dq of row 0 through the reference (it depends on that row only).
    dsa::reference::SparseAttentionBackwardInputs in;
    in.scale = scale;
    in.rows = 1, in.heads = heads, in.d_qk = d_qk, in.d_v = d_v, in.topk = k, in.tokens = tokens;
    for (int64_t i = 0; i < heads * d_qk; ++i) in.q.push_back(dsa::bf16_to_float(q[i]));
    for (uint16_t bits : kv) in.kv.push_back(dsa::bf16_to_float(bits));
    for (int64_t i = 0; i < heads * d_v; ++i) {
        in.out.push_back(dsa::bf16_to_float(out[i]));
        in.dout.push_back(dsa::bf16_to_float(dout[i]));
    }
    in.lse.assign(lse.begin(), lse.begin() + heads);
    in.indices.assign(indices.begin(), indices.begin() + k);
    const std::vector<double> want = dsa::reference::sparse_attention_backward(in).dq;
    double error = 0, norm = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        error = std::fmax(error, std::fabs(dq[i] - want[i]));
        norm = std::fmax(norm, std::fabs(want[i]));
    }
    require_close(error / norm, 0.0, "sparse_attention_backward dq (max error / max value)");

    const double seconds = dsa_bench::median_seconds(run, 3, 0);
    const double entries = static_cast<double>(rows) * k;
    const double flop = entries * 2.0 * heads * (3 * d_qk + 2 * d_v);
    std::printf("sparse_attention_backward S_q=%lld S_kv=%lld H_q=%lld k=%lld d=%lld/%lld: %.1f ms, %.1f GFLOP/s "
                "executed (%.2f of FMA peak); %.2fx the forward's FLOP\n",
                (long long)rows, (long long)tokens, (long long)heads, (long long)k, (long long)d_qk, (long long)d_v,
                seconds * 1e3, flop / seconds / 1e9, flop / seconds / 1e9 / peak,
                (3.0 * d_qk + 2 * d_v) / (d_qk + d_v));
}

}  // namespace

int main() {
    dsa_context_t* context = nullptr;
    require(dsa_context_create(&context, nullptr));
    int32_t threads = 0;
    dsa_context_num_threads(context, &threads);
    const double peak = dsa_bench::measure_fma_peak_gflops(threads);
    std::printf("%s\nthreads %d, f32 FMA peak %.1f GFLOP/s\n", dsa_build_info(), threads, peak);
    indexer_loss_case(context, peak, "DENSE teacher_probs", false, false);
    indexer_loss_case(context, peak, "SPARSE k=2048 teacher_probs", true, false);
    indexer_loss_case(context, peak, "DENSE teacher q/k H_q=128 d=576", false, true);
    backward_case(context, peak);
    dsa_context_destroy(context);
    return 0;
}
