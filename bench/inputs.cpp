#include "bench/inputs.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "bench/checks.hpp"
#include "core/numeric.hpp"

namespace dsa_bench {
namespace {

// How far an indexer logit may be from the oracle's, as a fraction of its magnitude
// k_scale * sum_h |w_h| sum_d |q_hd k_d|. CPU against the f64 reference: the recursive-summation
// bound of dsa.h's f32 sums (D_I products, H_I heads, the scale) plus the reference's own
// rounding, as tests/indexer_test.cpp derives it. CUDA against the CPU: tensor cores accumulate
// in another order and, for FP8, at lower internal precision, so 1e-3 (a wrong result is off by
// the order of the magnitude itself).
double indexer_tolerance_factor(const Bench& bench, int64_t heads, int64_t dim) {
    if (bench.device.type() == DSA_DEVICE_CUDA) return 1e-3;
    return 2.0 * static_cast<double>(dim + heads + 2) * std::ldexp(1.0, -24);
}

// sum_h |w_h| |q_hd| for each d of one query row (the magnitude then costs D_I per column).
std::vector<double> query_magnitudes(const uint8_t* q, const float* weights, int64_t heads, int64_t dim) {
    std::vector<double> result(static_cast<size_t>(dim), 0.0);
    for (int64_t h = 0; h < heads; ++h)
        for (int64_t d = 0; d < dim; ++d)
            result[d] += std::fabs(static_cast<double>(weights[h])) * std::fabs(dsa::decode_e4m3(q[h * dim + d]));
    return result;
}

double key_magnitude(const std::vector<double>& query, const uint8_t* codes, float scale) {
    double total = 0.0;
    for (size_t d = 0; d < query.size(); ++d) total += query[d] * std::fabs(dsa::decode_e4m3(codes[d]));
    return std::fabs(static_cast<double>(scale)) * total;
}

std::vector<uint8_t> random_mla_cache(Random& random, int64_t slots) {
    std::vector<uint8_t> cache = random_e4m3(random, static_cast<size_t>(slots * 656));
    for (int64_t slot = 0; slot < slots; ++slot) {
        uint8_t* entry = cache.data() + slot * 656;
        for (int group = 0; group < 4; ++group) {
            const float scale = std::ldexp(1.0f, -7 - static_cast<int>(random.below(3)));  // codes reach 448
            std::memcpy(entry + 512 + 4 * group, &scale, 4);
        }
        for (int i = 0; i < 64; ++i) {
            const uint16_t bits = dsa::float_to_bf16(random.uniform(-1.0f, 1.0f));
            std::memcpy(entry + 528 + 2 * i, &bits, 2);
        }
    }
    return cache;
}

}  // namespace

// ---- Prefill indexer ----------------------------------------------------------------------

IndexerPrefill::IndexerPrefill(Bench& bench, Random& random, const Shape& shape)
    : row_count(shape["S_q"]), column_count(shape["S_kv"]), heads(shape["H_I"]), dim(shape["D_I"]) {
    const bool causal = shape["causal"] != 0;
    if (causal && row_count > column_count) throw std::invalid_argument("causal needs S_q <= S_kv");
    q = random_e4m3(random, static_cast<size_t>(row_count * heads * dim));
    weights = random_floats(random, static_cast<size_t>(row_count * heads), -1.0f, 1.0f);
    k = random_e4m3(random, static_cast<size_t>(column_count * dim));
    k_scale = random_floats(random, static_cast<size_t>(column_count), 0.01f, 1.0f);
    ks.assign(static_cast<size_t>(row_count), 0);
    ke.resize(static_cast<size_t>(row_count));
    for (int64_t t = 0; t < row_count; ++t) ke[t] = static_cast<int32_t>(causal ? column_count - row_count + t + 1 : column_count);
    Device& device = bench.device;
    q_buffer = device.upload(q);
    weight_buffer = device.upload(weights);
    k_buffer = device.upload(k);
    scale_buffer = device.upload(k_scale);
    ks_buffer = device.upload(ks);
    ke_buffer = device.upload(ke);
    q_tensor = device_tensor(device, q_buffer, {row_count, heads, dim}, DSA_DTYPE_FP8_E4M3);
    weight_tensor = device_tensor(device, weight_buffer, {row_count, heads}, DSA_DTYPE_F32);
    k_tensor = device_tensor(device, k_buffer, {column_count, dim}, DSA_DTYPE_FP8_E4M3);
    scale_tensor = device_tensor(device, scale_buffer, {column_count}, DSA_DTYPE_F32);
    ks_tensor = device_tensor(device, ks_buffer, {row_count}, DSA_DTYPE_I32);
    ke_tensor = device_tensor(device, ke_buffer, {row_count}, DSA_DTYPE_I32);
}

double IndexerPrefill::visible_pairs() const {
    double pairs = 0;
    for (int64_t t = 0; t < row_count; ++t) pairs += ke[t] - ks[t];
    return pairs;
}

double IndexerPrefill::input_bytes() const {
    return static_cast<double>(q.size() + k.size()) + 4.0 * (weights.size() + k_scale.size() + ks.size() + ke.size());
}

void IndexerPrefill::window(int64_t row, int64_t* begin, int64_t* end) const {
    *begin = ks[row];
    *end = ke[row];
}

std::vector<float> IndexerPrefill::oracle_logits(Bench& bench, const std::vector<int64_t>& sample) const {
    const auto count = static_cast<int64_t>(sample.size());
    const std::vector<uint8_t> q_rows = gather_rows(q, heads * dim, sample);
    const std::vector<float> weight_rows = gather_rows(weights, heads, sample);
    const std::vector<int32_t> ks_rows = gather_rows(ks, 1, sample), ke_rows = gather_rows(ke, 1, sample);
    std::vector<float> logits(static_cast<size_t>(count * column_count));
    bench.oracle.indexer_logits(host_tensor(q_rows.data(), {count, heads, dim}, DSA_DTYPE_FP8_E4M3),
                                host_tensor(weight_rows.data(), {count, heads}, DSA_DTYPE_F32),
                                host_tensor(k.data(), {column_count, dim}, DSA_DTYPE_FP8_E4M3),
                                host_tensor(k_scale.data(), {column_count}, DSA_DTYPE_F32),
                                host_tensor(ks_rows.data(), {count}, DSA_DTYPE_I32),
                                host_tensor(ke_rows.data(), {count}, DSA_DTYPE_I32),
                                host_tensor(logits.data(), {count, column_count}, DSA_DTYPE_F32));
    return logits;
}

IndexerSample IndexerPrefill::oracle_sample(Bench& bench) const {
    IndexerSample sample;
    sample.rows = sample_rows(row_count, bench.check_rows, bench.seed + 1);
    sample.logits = oracle_logits(bench, sample.rows);
    return sample;
}

std::vector<double> IndexerPrefill::tolerance(const Bench& bench, int64_t row) const {
    const double factor = indexer_tolerance_factor(bench, heads, dim);
    const std::vector<double> query = query_magnitudes(q.data() + row * heads * dim, weights.data() + row * heads, heads, dim);
    std::vector<double> result(static_cast<size_t>(column_count), 0.0);
    for (int64_t c = ks[row]; c < ke[row]; ++c) result[c] = factor * key_magnitude(query, k.data() + c * dim, k_scale[c]);
    return result;
}

// ---- Paged indexer ------------------------------------------------------------------------

std::vector<int32_t> random_selection(Random& random, int64_t k, int64_t range) {
    std::vector<int32_t> row = random_distinct(random, std::min(k, range), range);
    row.resize(static_cast<size_t>(k), -1);
    return row;
}

std::vector<int32_t> random_selections(Random& random, int64_t rows, int64_t k, int64_t range) {
    std::vector<int32_t> all;
    all.reserve(static_cast<size_t>(rows * k));
    for (int64_t r = 0; r < rows; ++r) {
        const std::vector<int32_t> row = random_selection(random, k, range);
        all.insert(all.end(), row.begin(), row.end());
    }
    return all;
}

std::vector<int32_t> random_block_table(Random& random, int64_t batch, int64_t max_pages) {
    return random_distinct(random, batch * max_pages, batch * max_pages);
}

IndexerPaged::IndexerPaged(Bench& bench, Random& random, const Shape& shape, const char* next_n_key)
    : batch(shape["B"]), next_n(shape[next_n_key]), context(shape["context"]), heads(shape["H_I"]), dim(shape["D_I"]) {
    if (next_n < 1 || next_n > context) throw std::invalid_argument("needs 1 <= n_next <= context");
    max_pages = (context + kPageTokens - 1) / kPageTokens;
    num_pages = batch * max_pages;
    const int64_t page_bytes = kPageTokens * (dim + 4);
    q = random_e4m3(random, static_cast<size_t>(rows() * heads * dim));
    weights = random_floats(random, static_cast<size_t>(rows() * heads), -1.0f, 1.0f);
    cache = random_e4m3(random, static_cast<size_t>(num_pages * page_bytes));
    for (int64_t page = 0; page < num_pages; ++page)
        for (int64_t r = 0; r < kPageTokens; ++r) {
            const float scale = random.uniform(0.01f, 1.0f);
            std::memcpy(cache.data() + page * page_bytes + kPageTokens * dim + 4 * r, &scale, 4);
        }
    block_table = random_block_table(random, batch, max_pages);
    context_lens.assign(static_cast<size_t>(batch), static_cast<int32_t>(context));
    Device& device = bench.device;
    q_buffer = device.upload(q);
    weight_buffer = device.upload(weights);
    cache_buffer = device.upload(cache);
    table_buffer = device.upload(block_table);
    length_buffer = device.upload(context_lens);
    q_tensor = device_tensor(device, q_buffer, {batch, next_n, heads, dim}, DSA_DTYPE_FP8_E4M3);
    weight_tensor = device_tensor(device, weight_buffer, {rows(), heads}, DSA_DTYPE_F32);
    cache_tensor = device_tensor(device, cache_buffer, {num_pages, page_bytes}, DSA_DTYPE_U8);
    table_tensor = device_tensor(device, table_buffer, {batch, max_pages}, DSA_DTYPE_I32);
    length_tensor = device_tensor(device, length_buffer, {batch}, DSA_DTYPE_I32);
}

double IndexerPaged::visible_pairs() const {
    double pairs = 0;
    for (int64_t row = 0; row < rows(); ++row) {
        int64_t begin, end;
        window(row, &begin, &end);
        pairs += end - begin;
    }
    return pairs;
}

std::vector<int64_t> IndexerPaged::rows_of(const std::vector<int64_t>& sequences) const {
    std::vector<int64_t> result;
    for (int64_t sequence : sequences)
        for (int64_t j = 0; j < next_n; ++j) result.push_back(sequence * next_n + j);
    return result;
}

void IndexerPaged::window(int64_t row, int64_t* begin, int64_t* end) const {
    *begin = 0;
    *end = context - next_n + row % next_n + 1;
}

std::vector<float> IndexerPaged::oracle_logits(Bench& bench, const std::vector<int64_t>& sequences) const {
    const auto count = static_cast<int64_t>(sequences.size());
    const std::vector<uint8_t> q_rows = gather_rows(q, next_n * heads * dim, sequences);
    const std::vector<float> weight_rows = gather_rows(weights, next_n * heads, sequences);
    const std::vector<int32_t> table_rows = gather_rows(block_table, max_pages, sequences);
    const std::vector<int32_t> lengths = gather_rows(context_lens, 1, sequences);
    std::vector<float> logits(static_cast<size_t>(count * next_n * columns()));
    bench.oracle.indexer_logits_paged(
        host_tensor(q_rows.data(), {count, next_n, heads, dim}, DSA_DTYPE_FP8_E4M3),
        host_tensor(weight_rows.data(), {count * next_n, heads}, DSA_DTYPE_F32),
        host_tensor(cache.data(), {num_pages, kPageTokens * (dim + 4)}, DSA_DTYPE_U8),
        host_tensor(table_rows.data(), {count, max_pages}, DSA_DTYPE_I32),
        host_tensor(lengths.data(), {count}, DSA_DTYPE_I32),
        host_tensor(logits.data(), {count * next_n, columns()}, DSA_DTYPE_F32));
    return logits;
}

IndexerSample IndexerPaged::oracle_sample(Bench& bench) const {
    const std::vector<int64_t> sequences = sample_rows(batch, bench.check_rows, bench.seed + 1);
    return {rows_of(sequences), oracle_logits(bench, sequences)};
}

std::vector<double> IndexerPaged::tolerance(const Bench& bench, int64_t row) const {
    const double factor = indexer_tolerance_factor(bench, heads, dim);
    const std::vector<double> query = query_magnitudes(q.data() + row * heads * dim, weights.data() + row * heads, heads, dim);
    std::vector<double> result(static_cast<size_t>(columns()), 0.0);
    int64_t begin, end;
    window(row, &begin, &end);
    const int64_t page_bytes = kPageTokens * (dim + 4);
    for (int64_t token = begin; token < end; ++token) {
        const uint8_t* page = cache.data() + block_table[(row / next_n) * max_pages + token / kPageTokens] * page_bytes;
        float scale;
        std::memcpy(&scale, page + kPageTokens * dim + 4 * (token % kPageTokens), 4);
        result[token] = factor * key_magnitude(query, page + (token % kPageTokens) * dim, scale);
    }
    return result;
}

int32_t IndexerPaged::slot(int64_t row, int32_t token) const {
    if (token < 0) return -1;
    const int32_t page = block_table[(row / next_n) * max_pages + token / kPageTokens];
    return static_cast<int32_t>(page * kPageTokens + token % kPageTokens);
}

template <typename Indexer>
std::string check_indexer_selection(Bench& bench, const Indexer& indexer, const IndexerSample& sample,
                                    const std::vector<int32_t>& selected, int64_t k) {
    const std::vector<int64_t>& rows = sample.rows;
    const int64_t columns = indexer.columns();
    for (size_t i = 0; i < rows.size(); ++i) {
        const std::vector<double> tolerance = indexer.tolerance(bench, rows[i]);
        SelectionRow row;
        row.scores = sample.logits.data() + i * columns;
        row.tolerance = &tolerance;
        row.columns = columns;
        indexer.window(rows[i], &row.begin, &row.end);
        row.selected = selected.data() + i * k;
        row.k = k;
        const std::string error = check_selection(row, "row " + std::to_string(rows[i]));
        if (!error.empty()) return error;
    }
    return "";
}

template std::string check_indexer_selection<IndexerPrefill>(Bench&, const IndexerPrefill&, const IndexerSample&,
                                                  const std::vector<int32_t>&, int64_t);
template std::string check_indexer_selection<IndexerPaged>(Bench&, const IndexerPaged&, const IndexerSample&,
                                                  const std::vector<int32_t>&, int64_t);

// ---- Sparse attention ---------------------------------------------------------------------

AttentionData::AttentionData(Bench& bench, Random& random, std::vector<int64_t> query_shape, int64_t heads_,
                             int64_t d_qk_, int64_t d_v_, int64_t slots_, bool paged_, bool fp8_)
    : paged(paged_), fp8(fp8_), heads(heads_), d_qk(d_qk_), d_v(d_v_), slots(slots_) {
    if (fp8 && (d_qk != 576 || d_v != 512)) throw std::invalid_argument("the FP8 MLA cache needs d_qk=576, d_v=512");
    if (d_v < 1 || d_v > d_qk) throw std::invalid_argument("needs 1 <= d_v <= d_qk");
    if (paged && slots % kPageTokens != 0) throw std::logic_error("paged KV must hold whole pages");
    dsa_sparse_attention_params_init(&params);
    params.scale = kSoftmaxScale;
    params.d_v = static_cast<int32_t>(d_v);
    int64_t count = 1;
    for (int64_t extent : query_shape) count *= extent;
    q = random_bf16(random, static_cast<size_t>(count * heads * d_qk), -1.0f, 1.0f);
    if (fp8) {
        kv = random_mla_cache(random, slots);
    } else {
        const std::vector<uint16_t> values = random_bf16(random, static_cast<size_t>(slots * d_qk), -1.0f, 1.0f);
        kv.resize(values.size() * 2);
        std::memcpy(kv.data(), values.data(), kv.size());
    }
    Device& device = bench.device;
    q_buffer = device.upload(q);
    kv_buffer = device.upload(kv);
    out_buffer = device.output(static_cast<size_t>(count * heads * d_v) * 2, kPoisonFloat);
    lse_buffer = device.output(static_cast<size_t>(count * heads) * 4, kPoisonFloat);
    std::vector<int64_t> shape = query_shape;
    shape.insert(shape.end(), {heads, d_qk});
    q_tensor = device_tensor(device, q_buffer, shape, DSA_DTYPE_BF16);
    shape.back() = d_v;
    out_tensor = device_tensor(device, out_buffer, shape, DSA_DTYPE_BF16);
    shape.pop_back();
    lse_tensor = device_tensor(device, lse_buffer, shape, DSA_DTYPE_F32);
    const int64_t width = fp8 ? 656 : d_qk;
    const std::vector<int64_t> kv_shape =
        paged ? std::vector<int64_t>{slots / kPageTokens, kPageTokens, width} : std::vector<int64_t>{slots, width};
    kv_tensor = device_tensor(device, kv_buffer, kv_shape, fp8 ? DSA_DTYPE_U8 : DSA_DTYPE_BF16);
}

int64_t AttentionData::rows() const { return static_cast<int64_t>(q.size()) / (heads * d_qk); }

std::string AttentionData::check_rows(Bench& bench, const std::vector<int64_t>& sample,
                                      const std::vector<int32_t>& indices, int64_t k) const {
    const auto count = static_cast<int64_t>(sample.size());
    const std::vector<uint16_t> q_rows = gather_rows(q, heads * d_qk, sample);
    std::vector<uint16_t> want_out(static_cast<size_t>(count * heads * d_v));
    std::vector<float> want_lse(static_cast<size_t>(count * heads));
    // Paged rows keep a batch axis (of 1-query sequences: the op works row by row).
    std::vector<int64_t> lead = paged ? std::vector<int64_t>{count, 1} : std::vector<int64_t>{count};
    const auto with = [&](std::initializer_list<int64_t> tail) {
        std::vector<int64_t> shape = lead;
        shape.insert(shape.end(), tail);
        return shape;
    };
    std::vector<int64_t> kv_shape(kv_tensor.shape, kv_tensor.shape + kv_tensor.ndim);
    bench.oracle.sparse_attention(params, paged, host_tensor(q_rows.data(), with({heads, d_qk}), DSA_DTYPE_BF16),
                                  host_tensor(kv.data(), kv_shape, fp8 ? DSA_DTYPE_U8 : DSA_DTYPE_BF16),
                                  host_tensor(indices.data(), with({k}), DSA_DTYPE_I32),
                                  host_tensor(want_out.data(), with({heads, d_v}), DSA_DTYPE_BF16),
                                  host_tensor(want_lse.data(), with({heads}), DSA_DTYPE_F32));
    const std::vector<uint16_t> got_out = download_rows<uint16_t>(bench.device, out_buffer, heads * d_v, sample);
    const std::vector<float> got_lse = download_rows<float>(bench.device, lse_buffer, heads, sample);
    std::string error = compare_bf16(got_out, want_out, 1e-2, "out");
    if (error.empty()) error = compare_floats(got_lse, want_lse, 2e-3, 1e-4, "lse");
    return error;
}

PrefillAttention::PrefillAttention(Bench& bench, Random& random, const Shape& shape)
    : data(bench, random, {shape["S_q"]}, shape["H_q"], shape["d_qk"], shape["d_v"], shape["S_kv"], false, false) {
    indices = random_selections(random, shape["S_q"], shape["k"], shape["S_kv"]);
    index_buffer = bench.device.upload(indices);
    index_tensor = device_tensor(bench.device, index_buffer, {shape["S_q"], shape["k"]}, DSA_DTYPE_I32);
}

int64_t unique_slots(const std::vector<int32_t>& indices, int64_t slots) {
    std::vector<char> seen(static_cast<size_t>(slots), 0);
    int64_t count = 0;
    for (int32_t index : indices)
        if (index >= 0 && index < slots && !seen[index]++) ++count;
    return count;
}

}  // namespace dsa_bench
