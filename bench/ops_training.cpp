// Cases of the training ops: the indexer distillation loss and the sparse attention backward.
// FLOP are what the kernels execute per (query row, entry of its set), as bench/NOTES.md derives
// them: indexer loss 8 * H_I * D_I (u in both passes, d_q, the d_k contributions) plus
// 4 * H_q * d for a teacher rebuilt from q/k (z in both passes); attention backward
// 2 * H_q * (3 * d_qk + 2 * d_v) (Z, dP, dq, the dkv contributions), 2.53x the forward's.
// Only row-local outputs are compared on sampled rows (row_loss, d_weights, d_index_q; dq): the
// key gradients sum over every row.
#include <cmath>

#include "bench/bench.hpp"
#include "bench/checks.hpp"
#include "bench/inputs.hpp"

namespace dsa_bench {
namespace {

// CPU results against the float64 references, CUDA against the CPU path.
double training_tolerance(const Bench& bench) { return bench.device.type() == DSA_DEVICE_CUDA ? 2e-2 : 1e-3; }

// T query rows at the end of an S-token causal context (row t sees [0, S - T + t + 1)); f32
// index q [T, H_I, D_I], k [S, D_I], weights [T, H_I]. mode=1: k distinct tokens per row inside
// every window. teacher=0: teacher_probs f32 [T, S]; teacher=1: bf16 q [T, H_q, d] and MQA k [S, d].
Prepared indexer_loss(Bench& bench, const Shape& shape) {
    const int64_t rows = shape["T"], tokens = shape["S"], heads = shape["H_I"], dim = shape["D_I"], k = shape["k"];
    const int64_t teacher_heads = shape["H_q"], teacher_dim = shape["d"];
    const bool sparse = shape["mode"] != 0, rebuilt = shape["teacher"] != 0;
    if (rows > tokens) throw std::invalid_argument("needs T <= S");
    struct State {
        std::vector<float> q, keys, weights, probs;
        std::vector<uint16_t> teacher_q, teacher_k;
        std::vector<int32_t> ks, ke, indices;
        Buffer q_buffer, k_buffer, w_buffer, ks_buffer, ke_buffer, index_buffer, tq_buffer, tk_buffer, probs_buffer;
        Buffer loss_buffer, row_loss_buffer, dq_buffer, dk_buffer, dw_buffer;
        dsa_tensor_t q_tensor, k_tensor, w_tensor, ks_tensor, ke_tensor, index_tensor, tq_tensor, tk_tensor,
            probs_tensor, loss_tensor, row_loss_tensor, dq_tensor, dk_tensor, dw_tensor;
        dsa_indexer_loss_params_t params;
        bool sparse, rebuilt;
    };
    auto s = std::make_shared<State>();
    Device& device = bench.device;
    Random random(bench.seed);
    s->sparse = sparse;
    s->rebuilt = rebuilt;
    s->q = random_floats(random, static_cast<size_t>(rows * heads * dim), -1.0f, 1.0f);
    s->keys = random_floats(random, static_cast<size_t>(tokens * dim), -1.0f, 1.0f);
    s->weights = random_floats(random, static_cast<size_t>(rows * heads), -0.2f, 0.2f);
    s->ks.assign(static_cast<size_t>(rows), 0);
    for (int64_t t = 0; t < rows; ++t) s->ke.push_back(static_cast<int32_t>(tokens - rows + t + 1));
    if (sparse) s->indices = random_selections(random, rows, k, tokens - rows + 1);  // inside every window
    if (rebuilt) {
        s->teacher_q = random_bf16(random, static_cast<size_t>(rows * teacher_heads * teacher_dim), -1.0f, 1.0f);
        s->teacher_k = random_bf16(random, static_cast<size_t>(tokens * teacher_dim), -1.0f, 1.0f);
    } else {
        s->probs = random_floats(random, static_cast<size_t>(rows * tokens), 0.0f, 1.0f);
    }
    dsa_indexer_loss_params_init(&s->params);
    s->params.mode = sparse ? DSA_INDEXER_LOSS_SPARSE : DSA_INDEXER_LOSS_DENSE;
    s->params.teacher_scale = kSoftmaxScale;
    const auto input = [&](auto& values, Buffer& buffer, dsa_tensor_t& tensor, std::vector<int64_t> dims,
                           dsa_dtype_t dtype) {
        buffer = device.upload(values);
        tensor = device_tensor(device, buffer, dims, dtype);
    };
    input(s->q, s->q_buffer, s->q_tensor, {rows, heads, dim}, DSA_DTYPE_F32);
    input(s->keys, s->k_buffer, s->k_tensor, {tokens, dim}, DSA_DTYPE_F32);
    input(s->weights, s->w_buffer, s->w_tensor, {rows, heads}, DSA_DTYPE_F32);
    input(s->ks, s->ks_buffer, s->ks_tensor, {rows}, DSA_DTYPE_I32);
    input(s->ke, s->ke_buffer, s->ke_tensor, {rows}, DSA_DTYPE_I32);
    if (sparse) input(s->indices, s->index_buffer, s->index_tensor, {rows, k}, DSA_DTYPE_I32);
    if (rebuilt) {
        input(s->teacher_q, s->tq_buffer, s->tq_tensor, {rows, teacher_heads, teacher_dim}, DSA_DTYPE_BF16);
        input(s->teacher_k, s->tk_buffer, s->tk_tensor, {tokens, teacher_dim}, DSA_DTYPE_BF16);
    } else {
        input(s->probs, s->probs_buffer, s->probs_tensor, {rows, tokens}, DSA_DTYPE_F32);
    }
    const auto output = [&](Buffer& buffer, dsa_tensor_t& tensor, std::vector<int64_t> dims) {
        int64_t count = 1;
        for (int64_t extent : dims) count *= extent;
        buffer = device.output(static_cast<size_t>(count) * 4, kPoisonFloat);
        tensor = device_tensor(device, buffer, dims, DSA_DTYPE_F32);
    };
    output(s->loss_buffer, s->loss_tensor, {});
    output(s->row_loss_buffer, s->row_loss_tensor, {rows});
    output(s->dq_buffer, s->dq_tensor, {rows, heads, dim});
    output(s->dk_buffer, s->dk_tensor, {tokens, dim});
    output(s->dw_buffer, s->dw_tensor, {rows, heads});

    double entries = 0;
    for (int64_t t = 0; t < rows; ++t) entries += sparse ? k : s->ke[t];
    Prepared prepared;
    prepared.work.flop = entries * (8.0 * heads * dim + (rebuilt ? 4.0 * teacher_heads * teacher_dim : 0.0));
    prepared.work.bytes = 4.0 * (2 * rows * heads * dim + 2 * tokens * dim + 2 * rows * heads + rows) +
                          (rebuilt ? 2.0 * (rows * teacher_heads + tokens) * teacher_dim : 4.0 * rows * tokens) +
                          (sparse ? 4.0 * rows * k : 0.0);
    prepared.run = [s, &device] {
        return dsa_indexer_loss(device.context(), &s->params, &s->q_tensor, &s->k_tensor, &s->w_tensor, &s->ks_tensor,
                                &s->ke_tensor, s->sparse ? &s->index_tensor : nullptr,
                                s->rebuilt ? &s->tq_tensor : nullptr, s->rebuilt ? &s->tk_tensor : nullptr,
                                s->rebuilt ? nullptr : &s->probs_tensor, &s->loss_tensor, &s->row_loss_tensor,
                                &s->dq_tensor, &s->dk_tensor, &s->dw_tensor, device.stream());
    };
    prepared.check = [s, &bench, rows, tokens, heads, dim, k, teacher_heads, teacher_dim] {
        const std::vector<int64_t> sample = sample_rows(rows, bench.check_rows, bench.seed + 1);
        const auto count = static_cast<int64_t>(sample.size());
        const std::vector<float> q = gather_rows(s->q, heads * dim, sample), w = gather_rows(s->weights, heads, sample);
        const std::vector<int32_t> ks = gather_rows(s->ks, 1, sample), ke = gather_rows(s->ke, 1, sample);
        const std::vector<int32_t> indices = s->sparse ? gather_rows(s->indices, k, sample) : std::vector<int32_t>{};
        const std::vector<uint16_t> teacher_q =
            s->rebuilt ? gather_rows(s->teacher_q, teacher_heads * teacher_dim, sample) : std::vector<uint16_t>{};
        const std::vector<float> probs = s->rebuilt ? std::vector<float>{} : gather_rows(s->probs, tokens, sample);
        dsa_tensor_t index_tensor{}, tq_tensor{}, tk_tensor{}, probs_tensor{};  // the forms in use only
        if (s->sparse) index_tensor = host_tensor(indices.data(), {count, k}, DSA_DTYPE_I32);
        if (s->rebuilt) {
            tq_tensor = host_tensor(teacher_q.data(), {count, teacher_heads, teacher_dim}, DSA_DTYPE_BF16);
            tk_tensor = host_tensor(s->teacher_k.data(), {tokens, teacher_dim}, DSA_DTYPE_BF16);
        } else {
            probs_tensor = host_tensor(probs.data(), {count, tokens}, DSA_DTYPE_F32);
        }
        // Every row is active, so the gradients carry coeff / T; the sample's own normaliser is
        // count, hence the oracle's coeff.
        dsa_indexer_loss_params_t params = s->params;
        params.coeff = s->params.coeff * static_cast<float>(count) / static_cast<float>(rows);
        std::vector<float> want_row_loss(static_cast<size_t>(count)), want_dq(q.size()), want_dw(w.size());
        bench.oracle.indexer_loss(params, host_tensor(q.data(), {count, heads, dim}, DSA_DTYPE_F32),
                                  host_tensor(s->keys.data(), {tokens, dim}, DSA_DTYPE_F32),
                                  host_tensor(w.data(), {count, heads}, DSA_DTYPE_F32),
                                  host_tensor(ks.data(), {count}, DSA_DTYPE_I32),
                                  host_tensor(ke.data(), {count}, DSA_DTYPE_I32), s->sparse ? &index_tensor : nullptr,
                                  s->rebuilt ? &tq_tensor : nullptr, s->rebuilt ? &tk_tensor : nullptr,
                                  s->rebuilt ? nullptr : &probs_tensor,
                                  host_tensor(want_row_loss.data(), {count}, DSA_DTYPE_F32),
                                  host_tensor(want_dq.data(), {count, heads, dim}, DSA_DTYPE_F32),
                                  host_tensor(want_dw.data(), {count, heads}, DSA_DTYPE_F32));
        const double tolerance = training_tolerance(bench);
        const std::vector<float> row_loss = bench.device.download<float>(s->row_loss_buffer, 0, static_cast<size_t>(rows));
        std::string error = compare_norm(gather_rows(row_loss, 1, sample), want_row_loss, tolerance, "row_loss");
        if (error.empty())
            error = compare_norm(download_rows<float>(bench.device, s->dw_buffer, heads, sample), want_dw, tolerance,
                                 "d_weights");
        if (error.empty())
            error = compare_norm(download_rows<float>(bench.device, s->dq_buffer, heads * dim, sample), want_dq,
                                 tolerance, "d_index_q");
        if (!error.empty()) return error;
        double mean = 0;  // loss = coeff * mean row loss (every row active)
        for (float value : row_loss) mean += value / static_cast<double>(rows);
        return compare_norm(bench.device.download<float>(s->loss_buffer, 0, 1), {static_cast<float>(mean)}, 1e-4,
                            "loss (against the mean of row_loss)");
    };
    return prepared;
}

// The backward of the sparse_attention case's shapes: q and kv bf16, dout bf16 random, out and
// lse from the forward on the benchmarked device; dq and dkv f32; mode=0 DETERMINISTIC, 1 FAST
// (the same on the CPU).
Prepared sparse_attention_backward(Bench& bench, const Shape& shape) {
    const int64_t rows = shape["S_q"], tokens = shape["S_kv"], k = shape["k"];
    struct State {
        PrefillAttention forward;
        std::vector<uint16_t> dout, out;
        std::vector<float> lse;
        Buffer dout_buffer, dq_buffer, dkv_buffer, workspace;
        size_t workspace_bytes = 0;
        dsa_tensor_t dout_tensor, dq_tensor, dkv_tensor;
        dsa_sparse_attention_backward_params_t params;
        State(Bench& bench, Random& random, const Shape& shape) : forward(bench, random, shape) {}
    };
    Random random(bench.seed);
    auto s = std::make_shared<State>(bench, random, shape);
    Device& device = bench.device;
    const AttentionData& d = s->forward.data;
    s->dout = random_bf16(random, static_cast<size_t>(rows * d.heads * d.d_v), -1.0f, 1.0f);
    s->dout_buffer = device.upload(s->dout);
    s->dout_tensor = device_tensor(device, s->dout_buffer, {rows, d.heads, d.d_v}, DSA_DTYPE_BF16);
    const dsa_status_t forward = dsa_sparse_attention(device.context(), &d.params, &d.q_tensor, &d.kv_tensor,
                                                      &s->forward.index_tensor, nullptr, nullptr, &d.out_tensor,
                                                      &d.lse_tensor, nullptr, device.stream());
    if (forward == DSA_STATUS_UNSUPPORTED)
        throw Unsupported(std::string("the forward (the backward's input): ") + dsa_last_error_message());
    require_success(forward, "dsa_sparse_attention (the backward's input)");
    s->out = device.download<uint16_t>(d.out_buffer, 0, static_cast<size_t>(rows * d.heads * d.d_v));
    s->lse = device.download<float>(d.lse_buffer, 0, static_cast<size_t>(rows * d.heads));
    s->dq_buffer = device.output(static_cast<size_t>(rows * d.heads * d.d_qk) * 4, kPoisonFloat);
    s->dkv_buffer = device.output(static_cast<size_t>(tokens * d.d_qk) * 4, kPoisonFloat);
    s->dq_tensor = device_tensor(device, s->dq_buffer, {rows, d.heads, d.d_qk}, DSA_DTYPE_F32);
    s->dkv_tensor = device_tensor(device, s->dkv_buffer, {tokens, d.d_qk}, DSA_DTYPE_F32);
    dsa_sparse_attention_backward_params_init(&s->params);
    s->params.scale = d.params.scale;
    s->params.d_v = d.params.d_v;
    s->params.mode = shape["mode"] != 0 ? DSA_SPARSE_ATTENTION_BACKWARD_FAST : DSA_SPARSE_ATTENTION_BACKWARD_DETERMINISTIC;
    require_success(dsa_sparse_attention_backward_workspace_size(device.context(), &s->params, rows, k, tokens, d.d_qk,
                                                                 &s->workspace_bytes),
                    "dsa_sparse_attention_backward_workspace_size");
    s->workspace = device.allocate(s->workspace_bytes);

    Prepared prepared;
    prepared.work.flop = 2.0 * d.heads * static_cast<double>(rows) * k * (3 * d.d_qk + 2 * d.d_v);
    prepared.work.bytes = static_cast<double>(unique_slots(s->forward.indices, tokens)) * d.entry_bytes() + d.query_bytes() +
                          static_cast<double>(rows) * d.heads * (2 * d.d_v + 4 + 4 * d.d_qk) +
                          4.0 * tokens * d.d_qk;
    prepared.run = [s, &device] {
        const AttentionData& d = s->forward.data;
        return dsa_sparse_attention_backward(device.context(), &s->params, &d.q_tensor, &d.kv_tensor,
                                             &s->forward.index_tensor,
                                             nullptr, nullptr, &d.out_tensor, &d.lse_tensor, &s->dout_tensor,
                                             &s->dq_tensor, &s->dkv_tensor, nullptr, s->workspace.data(),
                                             s->workspace_bytes, device.stream());
    };
    prepared.check = [s, &bench, rows, tokens, k] {
        const AttentionData& d = s->forward.data;
        const std::vector<int64_t> sample = sample_rows(rows, bench.check_rows, bench.seed + 1);
        const auto count = static_cast<int64_t>(sample.size());
        const std::vector<uint16_t> q = gather_rows(d.q, d.heads * d.d_qk, sample),
                                    out = gather_rows(s->out, d.heads * d.d_v, sample),
                                    dout = gather_rows(s->dout, d.heads * d.d_v, sample);
        const std::vector<float> lse = gather_rows(s->lse, d.heads, sample);
        const std::vector<int32_t> indices = gather_rows(s->forward.indices, k, sample);
        std::vector<float> want(q.size());
        bench.oracle.sparse_attention_backward(
            s->params, host_tensor(q.data(), {count, d.heads, d.d_qk}, DSA_DTYPE_BF16),
            host_tensor(d.kv.data(), {tokens, d.d_qk}, DSA_DTYPE_BF16),
            host_tensor(indices.data(), {count, k}, DSA_DTYPE_I32),
            host_tensor(out.data(), {count, d.heads, d.d_v}, DSA_DTYPE_BF16),
            host_tensor(lse.data(), {count, d.heads}, DSA_DTYPE_F32),
            host_tensor(dout.data(), {count, d.heads, d.d_v}, DSA_DTYPE_BF16),
            host_tensor(want.data(), {count, d.heads, d.d_qk}, DSA_DTYPE_F32));
        return compare_norm(download_rows<float>(bench.device, s->dq_buffer, d.heads * d.d_qk, sample), want,
                            training_tolerance(bench), "dq");
    };
    return prepared;
}

}  // namespace

void add_training_ops(std::vector<Op>& ops) {
    ops.push_back({"indexer_loss",
                   "dsa_indexer_loss: forward and backward, T rows at the end of an S-token causal context (mode=1: "
                   "SPARSE over k tokens; teacher=1: rebuilt from bf16 q [T, H_q, d] and MQA k [S, d], 0: "
                   "teacher_probs). FLOP executed: 8 * H_I * D_I (+ 4 * H_q * d rebuilt) per entry; bytes: inputs + "
                   "gradients.",
                   {{"T", 256},
                    {"S", 4096},
                    {"H_I", 64},
                    {"D_I", 128},
                    {"mode", 0},
                    {"k", 2048},
                    {"teacher", 0},
                    {"H_q", 128},
                    {"d", 576}},
                   indexer_loss});
    ops.push_back({"sparse_attention_backward",
                   "dsa_sparse_attention_backward: dq and dkv of the sparse_attention prefill case (out and lse from "
                   "the forward on the same device; mode=0 DETERMINISTIC, 1 FAST). FLOP executed: 2 * H_q * S_q * k * "
                   "(3 * d_qk + 2 * d_v) (Z, dP, dq, dkv's K and V parts); bytes: unique KV rows + q, out, dout, lse, "
                   "dq, dkv.",
                   {{"S_q", 64}, {"S_kv", 4096}, {"H_q", 128}, {"k", 2048}, {"d_qk", 576}, {"d_v", 512}, {"mode", 0}},
                   sparse_attention_backward});
}

}  // namespace dsa_bench
