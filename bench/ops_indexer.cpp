// Cases of the selection side: top-k alone, the lightning indexer (prefill and paged decode), and
// the fused indexer + top-k. FLOP: 2 * H_I * D_I per visible (query, token) pair; decode bytes:
// (D_I + 4) = 132 per cached token read; top-k bytes: the scores read once plus the indices.
#include <cmath>

#include "bench/bench.hpp"
#include "bench/checks.hpp"
#include "bench/inputs.hpp"

namespace dsa_bench {
namespace {

dsa_topk_params_t topk_params(const Shape& shape) {
    dsa_topk_params_t params;
    dsa_topk_params_init(&params);
    params.k = static_cast<int32_t>(shape["k"]);
    return params;
}

// Every element of sampled logit rows: -inf exactly where the oracle has it, else within the
// row's tolerance.
template <typename Indexer>
std::string compare_logits(Bench& bench, const Indexer& indexer, const std::vector<int64_t>& rows,
                           const std::vector<float>& got, const std::vector<float>& want) {
    const size_t columns = want.size() / rows.size();
    for (size_t i = 0; i < rows.size(); ++i) {
        const std::vector<double> tolerance = indexer.tolerance(bench, rows[i]);
        for (size_t c = 0; c < columns; ++c) {
            const double a = got[i * columns + c], b = want[i * columns + c];
            if (std::isinf(b) ? a == b : std::fabs(a - b) <= tolerance[c]) continue;  // NaN fails
            return "logits row " + std::to_string(rows[i]) + ", column " + std::to_string(c) + ": " + std::to_string(a) +
                   ", expected " + std::to_string(b);
        }
    }
    return "";
}

// ---- Top-k --------------------------------------------------------------------------------

// f32 scores [rows, n]: uniform in [0, 1) (24-bit, so 128K-long rows have ties), or plateau=1:
// 90% exact zeros (ReLU-sum-like rows, where ties decide). causal=1: row r sees the first
// n - rows + r + 1 columns (prefill logits). order: DSA_TOPK_ORDER_* (0 any, 1 score, 2 index).
Prepared topk(Bench& bench, const Shape& shape) {
    const int64_t rows = shape["rows"], n = shape["n"], k = shape["k"];
    const bool causal = shape["causal"] != 0;
    if (causal && rows > n) throw std::invalid_argument("causal needs rows <= n");
    struct State {
        std::vector<float> scores;
        std::vector<int32_t> ends;
        Buffer score_buffer, end_buffer, index_buffer;
        dsa_tensor_t score_tensor, end_tensor, index_tensor;
        dsa_topk_params_t params;
        bool causal;
    };
    auto s = std::make_shared<State>();
    Device& device = bench.device;
    Random random(bench.seed);
    s->causal = causal;
    s->params = topk_params(shape);
    s->params.order = static_cast<dsa_topk_order_t>(shape["order"]);
    s->scores.resize(static_cast<size_t>(rows * n));
    for (float& score : s->scores) score = shape["plateau"] && random.below(10) != 0 ? 0.0f : random.uniform(0.0f, 1.0f);
    s->ends.resize(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) s->ends[r] = static_cast<int32_t>(causal ? n - rows + r + 1 : n);
    s->score_buffer = device.upload(s->scores);
    s->end_buffer = device.upload(s->ends);
    s->index_buffer = device.output(static_cast<size_t>(rows * k) * 4, kPoisonIndex);
    s->score_tensor = device_tensor(device, s->score_buffer, {rows, n}, DSA_DTYPE_F32);
    s->end_tensor = device_tensor(device, s->end_buffer, {rows}, DSA_DTYPE_I32);
    s->index_tensor = device_tensor(device, s->index_buffer, {rows, k}, DSA_DTYPE_I32);

    Prepared prepared;
    prepared.work.bytes = static_cast<double>(rows) * (n + k) * 4;
    prepared.run = [s, &device] {
        return dsa_topk(device.context(), &s->params, &s->score_tensor, nullptr, s->causal ? &s->end_tensor : nullptr,
                        nullptr, &s->index_tensor, device.stream());
    };
    prepared.check = [s, &bench, rows, n, k] {
        const std::vector<int64_t> sample = sample_rows(rows, bench.check_rows, bench.seed + 1);
        const auto count = static_cast<int64_t>(sample.size());
        const std::vector<float> scores = gather_rows(s->scores, n, sample);
        const std::vector<int32_t> ends = gather_rows(s->ends, 1, sample);
        std::vector<int32_t> want(static_cast<size_t>(count * k));
        const dsa_tensor_t end_tensor = host_tensor(ends.data(), {count}, DSA_DTYPE_I32);
        bench.oracle.topk(s->params, host_tensor(scores.data(), {count, n}, DSA_DTYPE_F32), nullptr,
                          s->causal ? &end_tensor : nullptr, host_tensor(want.data(), {count, k}, DSA_DTYPE_I32));
        const std::vector<int32_t> got = download_rows<int32_t>(bench.device, s->index_buffer, k, sample);
        for (int64_t i = 0; i < count; ++i) {
            const std::string what = "row " + std::to_string(sample[i]);
            // The set is exact on every device; so is the order, except the unspecified one.
            const std::string error =
                s->params.order == DSA_TOPK_ORDER_UNSPECIFIED
                    ? compare_index_sets(got.data() + i * k, want.data() + i * k, k, what)
                    : compare_bytes(got.data() + i * k, want.data() + i * k, static_cast<size_t>(k) * 4, what);
            if (!error.empty()) return error;
        }
        return std::string();
    };
    return prepared;
}

// ---- Lightning indexer --------------------------------------------------------------------

// A case over indexer inputs (IndexerPrefill or IndexerPaged), the op's outputs kept beside them.
template <typename Indexer, typename Outputs>
struct IndexerState {
    Indexer indexer;
    Outputs outputs;
    IndexerState(Bench& bench, Random&& random, const Shape& shape) : indexer(bench, random, shape) {}
};

struct LogitsOutput {
    Buffer buffer;
    dsa_tensor_t tensor;
};

// The materialised logits [rows, columns], every element of the sampled rows compared.
// `call(context, indexer, logits, stream)` is the op; `bytes` its byte count.
template <typename Indexer, typename Call>
Prepared logits_case(Bench& bench, const Shape& shape, Call call, double (*bytes)(const Indexer&)) {
    auto s = std::make_shared<IndexerState<Indexer, LogitsOutput>>(bench, Random(bench.seed), shape);
    Device& device = bench.device;
    const Indexer& x = s->indexer;
    s->outputs.buffer = device.output(static_cast<size_t>(x.rows() * x.columns()) * 4, kPoisonFloat);
    s->outputs.tensor = device_tensor(device, s->outputs.buffer, {x.rows(), x.columns()}, DSA_DTYPE_F32);

    Prepared prepared;
    prepared.work.flop = x.flop();
    prepared.work.bytes = bytes(x);
    prepared.run = [s, &device, call] {
        return call(device.context(), s->indexer, s->outputs.tensor, device.stream());
    };
    prepared.check = [s, &bench] {
        const Indexer& x = s->indexer;
        const IndexerSample sample = x.oracle_sample(bench);
        const std::vector<float> got = download_rows<float>(bench.device, s->outputs.buffer, x.columns(), sample.rows);
        return compare_logits(bench, x, sample.rows, got, sample.logits);
    };
    return prepared;
}

Prepared indexer_logits(Bench& bench, const Shape& shape) {
    return logits_case<IndexerPrefill>(
        bench, shape,
        [](dsa_context_t* context, const IndexerPrefill& x, const dsa_tensor_t& logits, dsa_stream_t stream) {
            return dsa_indexer_logits(context, nullptr, &x.q_tensor, &x.weight_tensor, &x.k_tensor, &x.scale_tensor,
                                      &x.ks_tensor, &x.ke_tensor, &logits, stream);
        },
        [](const IndexerPrefill& x) { return x.input_bytes() + 4.0 * x.rows() * x.columns(); });
}

Prepared indexer_logits_paged(Bench& bench, const Shape& shape) {
    return logits_case<IndexerPaged>(
        bench, shape,
        [](dsa_context_t* context, const IndexerPaged& x, const dsa_tensor_t& logits, dsa_stream_t stream) {
            return dsa_indexer_logits_paged(context, nullptr, &x.q_tensor, &x.weight_tensor, &x.cache_tensor,
                                            &x.table_tensor, &x.length_tensor, &logits, stream);
        },
        [](const IndexerPaged& x) { return x.cache_bytes_read(); });
}

// ---- Fused indexer + top-k ----------------------------------------------------------------

// The fused op's outputs: token indices [rows, k] (and for the paged form cache slots), and the
// workspace it asks for on the benchmarked device, so no call allocates.
struct SelectionOutputs {
    dsa_topk_params_t params;
    Buffer index_buffer, slot_buffer, workspace;
    size_t workspace_bytes = 0;
    dsa_tensor_t index_tensor, slot_tensor;
};

template <typename Indexer>
std::shared_ptr<IndexerState<Indexer, SelectionOutputs>> selection_state(Bench& bench, const Shape& shape, bool slots) {
    auto s = std::make_shared<IndexerState<Indexer, SelectionOutputs>>(bench, Random(bench.seed), shape);
    Device& device = bench.device;
    const Indexer& x = s->indexer;
    SelectionOutputs& o = s->outputs;
    const int64_t k = shape["k"];
    o.params = topk_params(shape);
    o.index_buffer = device.output(static_cast<size_t>(x.rows() * k) * 4, kPoisonIndex);
    o.index_tensor = device_tensor(device, o.index_buffer, {x.rows(), k}, DSA_DTYPE_I32);
    if (slots) {
        o.slot_buffer = device.output(static_cast<size_t>(x.rows() * k) * 4, kPoisonIndex);
        o.slot_tensor = device_tensor(device, o.slot_buffer, {x.rows(), k}, DSA_DTYPE_I32);
    }
    require_success(dsa_indexer_topk_workspace_size(device.context(), x.rows(), x.columns(), &o.workspace_bytes),
                    "dsa_indexer_topk_workspace_size");
    o.workspace = device.allocate(o.workspace_bytes);
    return s;
}

Prepared indexer_topk(Bench& bench, const Shape& shape) {
    auto s = selection_state<IndexerPrefill>(bench, shape, false);
    Device& device = bench.device;
    const IndexerPrefill& x = s->indexer;
    const int64_t k = shape["k"];
    Prepared prepared;
    prepared.work.flop = x.flop();
    prepared.work.bytes = x.input_bytes() + 4.0 * x.rows() * k;
    prepared.run = [s, &device] {
        const IndexerPrefill& x = s->indexer;
        const SelectionOutputs& o = s->outputs;
        return dsa_indexer_topk(device.context(), nullptr, &o.params, &x.q_tensor, &x.weight_tensor, &x.k_tensor,
                                &x.scale_tensor, &x.ks_tensor, &x.ke_tensor, &o.index_tensor, o.workspace.data(),
                                o.workspace_bytes, device.stream());
    };
    prepared.check = [s, &bench, k] {
        const IndexerSample sample = s->indexer.oracle_sample(bench);
        const std::vector<int32_t> selected = download_rows<int32_t>(bench.device, s->outputs.index_buffer, k, sample.rows);
        return check_indexer_selection(bench, s->indexer, sample, selected, k);
    };
    return prepared;
}

// Both outputs: token indices (checked against the oracle's logits) and cache slots (checked
// against the block table).
Prepared indexer_topk_paged(Bench& bench, const Shape& shape) {
    auto s = selection_state<IndexerPaged>(bench, shape, true);
    Device& device = bench.device;
    const IndexerPaged& x = s->indexer;
    const int64_t k = shape["k"];
    Prepared prepared;
    prepared.work.flop = x.flop();
    prepared.work.bytes = x.cache_bytes_read() + 8.0 * x.rows() * k;
    prepared.run = [s, &device] {
        const IndexerPaged& x = s->indexer;
        const SelectionOutputs& o = s->outputs;
        return dsa_indexer_topk_paged(device.context(), nullptr, &o.params, &x.q_tensor, &x.weight_tensor,
                                      &x.cache_tensor, &x.table_tensor, &x.length_tensor, &o.index_tensor,
                                      &o.slot_tensor, o.workspace.data(), o.workspace_bytes, device.stream());
    };
    prepared.check = [s, &bench, k] {
        const IndexerPaged& x = s->indexer;
        const IndexerSample sample = x.oracle_sample(bench);
        const std::vector<int32_t> selected = download_rows<int32_t>(bench.device, s->outputs.index_buffer, k, sample.rows);
        const std::string error = check_indexer_selection(bench, x, sample, selected, k);
        if (!error.empty()) return error;
        const std::vector<int32_t> slots = download_rows<int32_t>(bench.device, s->outputs.slot_buffer, k, sample.rows);
        for (size_t i = 0; i < sample.rows.size(); ++i)
            for (int64_t j = 0; j < k; ++j)
                if (slots[i * k + j] != x.slot(sample.rows[i], selected[i * k + j]))
                    return "slots row " + std::to_string(sample.rows[i]) + ": entry " + std::to_string(j) +
                           " is not the block-table slot of its index";
        return std::string();
    };
    return prepared;
}

}  // namespace

void add_indexer_ops(std::vector<Op>& ops) {
    ops.push_back({"topk",
                   "dsa_topk: k best of f32 scores [rows, n] (plateau=1: 90% zeros; causal=1: row r sees "
                   "n - rows + r + 1 columns; order 0/1/2 = any/score/index). Bytes: rows * n * 4 + rows * k * 4.",
                   {{"rows", 64}, {"n", 131072}, {"k", 2048}, {"causal", 0}, {"plateau", 0}, {"order", 0}},
                   topk});
    ops.push_back({"indexer_logits",
                   "dsa_indexer_logits: ragged prefill logits [S_q, S_kv] (causal=1: the queries are the last S_q "
                   "tokens). FLOP: 2 * H_I * D_I per visible pair; bytes: inputs + logits.",
                   {{"S_q", 4096}, {"S_kv", 4096}, {"H_I", 64}, {"D_I", 128}, {"causal", 1}},
                   indexer_logits});
    ops.push_back({"indexer_logits_paged",
                   "dsa_indexer_logits_paged: decode logits over the paged indexer cache, B sequences of `context` "
                   "tokens, n_next queries each. FLOP as prefill; bytes: (D_I + 4) per cached token read.",
                   {{"B", 64}, {"context", 32768}, {"n_next", 1}, {"H_I", 64}, {"D_I", 128}},
                   indexer_logits_paged});
    ops.push_back({"indexer_topk",
                   "dsa_indexer_topk: fused indexer + top-k, prefill, no logits matrix. FLOP: the indexer's; bytes: "
                   "inputs + indices.",
                   {{"S_q", 4096}, {"S_kv", 4096}, {"H_I", 64}, {"D_I", 128}, {"causal", 1}, {"k", 2048}},
                   indexer_topk});
    ops.push_back({"indexer_topk_paged",
                   "dsa_indexer_topk_paged: fused indexer + top-k over the paged cache, token indices and cache slots. "
                   "FLOP: the indexer's; bytes: (D_I + 4) per cached token + both outputs.",
                   {{"B", 64}, {"context", 32768}, {"n_next", 1}, {"H_I", 64}, {"D_I", 128}, {"k", 2048}},
                   indexer_topk_paged});
}

}  // namespace dsa_bench
