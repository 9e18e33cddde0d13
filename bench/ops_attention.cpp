// Cases of sparse MLA attention (prefill; paged decode over a bf16 or FP8 cache) and of the
// one-call DSA layer (indexer -> top-k -> attention). FLOP: 2 * H_q * queries * k * (d_qk + d_v),
// invalid slots included; bytes: the KV entries touched (each once) plus q and out.
#include <algorithm>

#include "bench/bench.hpp"
#include "bench/checks.hpp"
#include "bench/inputs.hpp"

namespace dsa_bench {
namespace {

// Prefill: every query row selects k random tokens of the whole [0, S_kv).
Prepared sparse_attention(Bench& bench, const Shape& shape) {
    const int64_t rows = shape["S_q"], tokens = shape["S_kv"], k = shape["k"];
    Random random(bench.seed);
    auto s = std::make_shared<PrefillAttention>(bench, random, shape);
    Device& device = bench.device;
    const AttentionData& d = s->data;
    Prepared prepared;
    prepared.work.flop = attention_flop(d.heads, rows, k, d.d_qk, d.d_v);
    prepared.work.bytes = static_cast<double>(unique_slots(s->indices, tokens)) * d.entry_bytes() + d.query_bytes();
    prepared.run = [s, &device] {
        const AttentionData& d = s->data;
        return dsa_sparse_attention(device.context(), &d.params, &d.q_tensor, &d.kv_tensor, &s->index_tensor, nullptr,
                                    nullptr, &d.out_tensor, &d.lse_tensor, nullptr, device.stream());
    };
    prepared.check = [s, &bench, rows, k] {
        const std::vector<int64_t> sample = sample_rows(rows, bench.check_rows, bench.seed + 1);
        return s->data.check_rows(bench, sample, gather_rows(s->indices, k, sample), k);
    };
    return prepared;
}

// Decode over a paged cache: B sequences of `context` tokens (pages shuffled through a block
// table); query j of s_q selects k random tokens of its causal prefix, passed as cache slots.
Prepared sparse_attention_paged(Bench& bench, const Shape& shape) {
    const int64_t batch = shape["B"], next_n = shape["s_q"], context = shape["context"], k = shape["k"];
    if (next_n < 1 || next_n > context) throw std::invalid_argument("needs 1 <= s_q <= context");
    const int64_t max_pages = (context + kPageTokens - 1) / kPageTokens, slots = batch * max_pages * kPageTokens;
    struct State {
        AttentionData data;
        std::vector<int32_t> indices;
        Buffer index_buffer;
        dsa_tensor_t index_tensor;
        State(Bench& bench, Random& random, const Shape& shape, int64_t slots)
            : data(bench, random, {shape["B"], shape["s_q"]}, shape["H_q"], 576, 512, slots, true, shape["fp8"] != 0) {}
    };
    Random random(bench.seed);
    auto s = std::make_shared<State>(bench, random, shape, slots);
    Device& device = bench.device;
    const std::vector<int32_t> table = random_block_table(random, batch, max_pages);
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t j = 0; j < next_n; ++j)
            for (int32_t token : random_selection(random, k, context - next_n + j + 1))
                s->indices.push_back(token < 0 ? -1
                                               : table[b * max_pages + token / kPageTokens] * kPageTokens +
                                                     token % kPageTokens);
    s->index_buffer = device.upload(s->indices);
    s->index_tensor = device_tensor(device, s->index_buffer, {batch, next_n, k}, DSA_DTYPE_I32);

    const AttentionData& d = s->data;
    Prepared prepared;
    prepared.work.flop = attention_flop(d.heads, d.rows(), k, d.d_qk, d.d_v);
    prepared.work.bytes = static_cast<double>(unique_slots(s->indices, slots)) * d.entry_bytes() + d.query_bytes();
    prepared.run = [s, &device] {
        const AttentionData& d = s->data;
        return dsa_sparse_attention_paged(device.context(), &d.params, &d.q_tensor, &d.kv_tensor, &s->index_tensor,
                                          nullptr, nullptr, &d.out_tensor, &d.lse_tensor, device.stream());
    };
    prepared.check = [s, &bench, k] {
        const std::vector<int64_t> sample = sample_rows(s->data.rows(), bench.check_rows, bench.seed + 1);
        return s->data.check_rows(bench, sample, gather_rows(s->indices, k, sample), k);
    };
    return prepared;
}

// What the one-call layer writes besides out and lse (the selection it used, [rows, k]) and the
// workspace it asks for on the benchmarked device, so no call allocates.
struct LayerOutputs {
    dsa_topk_params_t topk;
    Buffer selected_buffer, workspace;
    size_t workspace_bytes = 0;
    dsa_tensor_t selected_tensor;

    LayerOutputs(Device& device, int64_t rows, int64_t columns, int64_t k) {
        dsa_topk_params_init(&topk);
        topk.k = static_cast<int32_t>(k);
        selected_buffer = device.output(static_cast<size_t>(rows * k) * 4, kPoisonIndex);
        selected_tensor = device_tensor(device, selected_buffer, {rows, k}, DSA_DTYPE_I32);
        require_success(dsa_attention_workspace_size(device.context(), &topk, rows, columns, &workspace_bytes),
                        "dsa_attention_workspace_size");
        workspace = device.allocate(workspace_bytes);
    }
};

// The one-call layer, prefill: the selection is checked against the oracle's indexer logits,
// then the attention against the oracle given the indices the layer reports it used.
Prepared attention(Bench& bench, const Shape& shape) {
    const int64_t rows = shape["S_q"], tokens = shape["S_kv"], k = shape["k"];
    struct State {
        IndexerPrefill indexer;
        AttentionData data;
        LayerOutputs layer;
        State(Bench& bench, Random& random, const Shape& shape)
            : indexer(bench, random, shape),
              data(bench, random, {shape["S_q"]}, shape["H_q"], shape["d_qk"], shape["d_v"], shape["S_kv"], false,
                   false),
              layer(bench.device, shape["S_q"], shape["S_kv"], shape["k"]) {}
    };
    Random random(bench.seed);
    auto s = std::make_shared<State>(bench, random, shape);
    Device& device = bench.device;
    const IndexerPrefill& x = s->indexer;
    const AttentionData& d = s->data;
    Prepared prepared;
    prepared.work.flop = x.flop() + attention_flop(d.heads, rows, k, d.d_qk, d.d_v);
    // Each KV row is counted once, as if every token of the sequence were selected by some query.
    prepared.work.bytes = x.input_bytes() + static_cast<double>(std::min(tokens, rows * k)) * d.entry_bytes() +
                          d.query_bytes() + 4.0 * rows * k;
    prepared.run = [s, &device] {
        const IndexerPrefill& x = s->indexer;
        const AttentionData& d = s->data;
        const LayerOutputs& o = s->layer;
        return dsa_attention(device.context(), nullptr, &o.topk, &d.params, &x.q_tensor, &x.weight_tensor, &x.k_tensor,
                             &x.scale_tensor, &x.ks_tensor, &x.ke_tensor, &d.q_tensor, &d.kv_tensor, nullptr,
                             &d.out_tensor, &d.lse_tensor, &o.selected_tensor, o.workspace.data(), o.workspace_bytes,
                             device.stream());
    };
    prepared.check = [s, &bench, k] {
        const IndexerSample sample = s->indexer.oracle_sample(bench);
        const std::vector<int32_t> selected =
            download_rows<int32_t>(bench.device, s->layer.selected_buffer, k, sample.rows);
        const std::string error = check_indexer_selection(bench, s->indexer, sample, selected, k);
        return error.empty() ? s->data.check_rows(bench, sample.rows, selected, k) : error;
    };
    return prepared;
}

// The token of each selected cache slot of sequence rows (for the selection check), or a
// description of a slot that is not one of the row's own pages.
std::string tokens_of_slots(const IndexerPaged& indexer, const std::vector<int64_t>& rows,
                            const std::vector<int32_t>& slots, int64_t k, std::vector<int32_t>* tokens) {
    std::vector<int64_t> owner(static_cast<size_t>(indexer.num_pages)), block(static_cast<size_t>(indexer.num_pages));
    for (int64_t b = 0; b < indexer.batch; ++b)
        for (int64_t i = 0; i < indexer.max_pages; ++i) {
            owner[indexer.block_table[b * indexer.max_pages + i]] = b;
            block[indexer.block_table[b * indexer.max_pages + i]] = i;
        }
    tokens->resize(slots.size());
    for (size_t r = 0; r < rows.size(); ++r)
        for (int64_t j = 0; j < k; ++j) {
            const int32_t slot = slots[r * k + j];
            int32_t& token = (*tokens)[r * k + j];
            if (slot == -1) {
                token = -1;
                continue;
            }
            const int64_t page = slot / kPageTokens;
            if (slot < 0 || page >= indexer.num_pages || owner[page] != rows[r] / indexer.next_n)
                return "selected row " + std::to_string(rows[r]) + ": slot " + std::to_string(slot) +
                       " is not in the sequence's pages";
            token = static_cast<int32_t>(block[page] * kPageTokens + slot % kPageTokens);
        }
    return "";
}

// The one-call layer, paged decode: both caches share the block table (64-token pages).
Prepared attention_paged(Bench& bench, const Shape& shape) {
    const int64_t k = shape["k"];
    struct State {
        IndexerPaged indexer;
        AttentionData data;
        LayerOutputs layer;
        State(Bench& bench, Random& random, const Shape& shape)
            : indexer(bench, random, shape, "s_q"),
              data(bench, random, {shape["B"], shape["s_q"]}, shape["H_q"], 576, 512, indexer.num_pages * kPageTokens,
                   true, shape["fp8"] != 0),
              layer(bench.device, indexer.rows(), indexer.columns(), shape["k"]) {}
    };
    Random random(bench.seed);
    auto s = std::make_shared<State>(bench, random, shape);
    Device& device = bench.device;
    const IndexerPaged& x = s->indexer;
    const AttentionData& d = s->data;
    Prepared prepared;
    prepared.work.flop = x.flop() + attention_flop(d.heads, x.rows(), k, d.d_qk, d.d_v);
    // Each sequence's KV counted once per token its queries can select.
    prepared.work.bytes = x.cache_bytes_read() +
                          static_cast<double>(x.batch) * std::min(x.context, x.next_n * k) * d.entry_bytes() +
                          d.query_bytes();
    prepared.run = [s, &device] {
        const IndexerPaged& x = s->indexer;
        const AttentionData& d = s->data;
        const LayerOutputs& o = s->layer;
        return dsa_attention_paged(device.context(), nullptr, &o.topk, &d.params, &x.q_tensor, &x.weight_tensor,
                                   &x.cache_tensor, &x.table_tensor, &x.length_tensor, &d.q_tensor, &d.kv_tensor,
                                   nullptr, &d.out_tensor, &d.lse_tensor, &o.selected_tensor, o.workspace.data(),
                                   o.workspace_bytes, device.stream());
    };
    prepared.check = [s, &bench, k] {
        const IndexerPaged& x = s->indexer;
        const IndexerSample sample = x.oracle_sample(bench);
        const std::vector<int32_t> slots = download_rows<int32_t>(bench.device, s->layer.selected_buffer, k, sample.rows);
        std::vector<int32_t> tokens;
        std::string error = tokens_of_slots(x, sample.rows, slots, k, &tokens);
        if (error.empty()) error = check_indexer_selection(bench, x, sample, tokens, k);
        return error.empty() ? s->data.check_rows(bench, sample.rows, slots, k) : error;
    };
    return prepared;
}

}  // namespace

void add_attention_ops(std::vector<Op>& ops) {
    ops.push_back({"sparse_attention",
                   "dsa_sparse_attention: prefill, bf16 q [S_q, H_q, d_qk] over bf16 kv [S_kv, d_qk], k random "
                   "tokens per query. FLOP: 2 * H_q * S_q * k * (d_qk + d_v); bytes: unique KV rows + q + out.",
                   {{"S_q", 4096}, {"S_kv", 32768}, {"H_q", 128}, {"k", 2048}, {"d_qk", 576}, {"d_v", 512}},
                   sparse_attention});
    ops.push_back({"sparse_attention_paged",
                   "dsa_sparse_attention_paged: decode over a paged cache (fp8=1: the 656-byte FP8 MLA cache, 0: "
                   "bf16), d 576/512, B sequences of `context` tokens, s_q queries each. FLOP as prefill; bytes: "
                   "unique cache entries touched + q + out.",
                   {{"B", 128}, {"s_q", 2}, {"H_q", 128}, {"k", 2048}, {"context", 32768}, {"fp8", 1}},
                   sparse_attention_paged});
    ops.push_back({"attention",
                   "dsa_attention: the one-call layer, prefill (indexer -> top-k -> sparse attention). FLOP: "
                   "indexer + attention; bytes: indexer inputs + min(S_kv, S_q * k) KV rows + q + out + indices.",
                   {{"S_q", 4096},
                    {"S_kv", 4096},
                    {"H_I", 64},
                    {"D_I", 128},
                    {"causal", 1},
                    {"H_q", 128},
                    {"k", 2048},
                    {"d_qk", 576},
                    {"d_v", 512}},
                   attention});
    ops.push_back({"attention_paged",
                   "dsa_attention_paged: the one-call layer, paged decode over both caches (fp8=1: FP8 MLA cache). "
                   "FLOP: indexer + attention; bytes: indexer cache + B * min(context, s_q * k) entries + q + out.",
                   {{"B", 128}, {"s_q", 2}, {"context", 32768}, {"H_I", 64}, {"D_I", 128}, {"H_q", 128}, {"k", 2048},
                    {"fp8", 1}},
                   attention_paged});
}

}  // namespace dsa_bench
