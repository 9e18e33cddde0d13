// Cases of the memory-bound ops: FP8 quantisation and its inverse, the Hadamard rotation, the two
// fused, and the two cache writers. Bytes are each input read once plus each output written once.
#include <cmath>

#include "bench/bench.hpp"
#include "bench/checks.hpp"
#include "core/numeric.hpp"

namespace dsa_bench {
namespace {

dsa_quantize_fp8_params_t quantize_params(const Shape& shape) {
    dsa_quantize_fp8_params_t params;
    dsa_quantize_fp8_params_init(&params);
    params.group_size = static_cast<int32_t>(shape["group"]);
    params.scale_format = shape["ue8m0"] ? DSA_SCALE_FORMAT_UE8M0 : DSA_SCALE_FORMAT_F32;
    return params;
}

void require_groups(const Shape& shape) {
    if (shape["group"] < 1 || shape["n"] % shape["group"] != 0)
        throw std::invalid_argument("group must divide n");
}

// The inputs and outputs of a quantising case: bf16 activations [rows, n] -> e4m3 codes [rows, n]
// + f32 scales [rows, n / group], the outputs poisoned (0xFF: the NaN code).
struct QuantizeState {
    std::vector<uint16_t> x;
    Buffer x_buffer, q_buffer, scale_buffer;
    dsa_tensor_t x_tensor, q_tensor, scale_tensor;
    dsa_quantize_fp8_params_t params;
};

std::shared_ptr<QuantizeState> prepare_quantize(Bench& bench, const Shape& shape) {
    require_groups(shape);
    const int64_t rows = shape["rows"], n = shape["n"], groups = n / shape["group"];
    auto s = std::make_shared<QuantizeState>();
    Device& device = bench.device;
    Random random(bench.seed);
    s->x = random_bf16(random, static_cast<size_t>(rows * n), -4.0f, 4.0f);
    s->params = quantize_params(shape);
    s->x_buffer = device.upload(s->x);
    s->q_buffer = device.output(static_cast<size_t>(rows * n), kPoisonFloat);
    s->scale_buffer = device.output(static_cast<size_t>(rows * groups) * 4, kPoisonFloat);
    s->x_tensor = device_tensor(device, s->x_buffer, {rows, n}, DSA_DTYPE_BF16);
    s->q_tensor = device_tensor(device, s->q_buffer, {rows, n}, DSA_DTYPE_FP8_E4M3);
    s->scale_tensor = device_tensor(device, s->scale_buffer, {rows, groups}, DSA_DTYPE_F32);
    return s;
}

// bf16 activations [rows, n] -> e4m3 codes + f32 scales; codes and scales must equal the
// oracle's bit for bit.
Prepared quantize_fp8(Bench& bench, const Shape& shape) {
    const std::shared_ptr<QuantizeState> s = prepare_quantize(bench, shape);
    const int64_t rows = shape["rows"], n = shape["n"], groups = n / shape["group"];
    Device& device = bench.device;

    Prepared prepared;
    prepared.work.bytes = static_cast<double>(rows) * (n * 2 + n + groups * 4);
    prepared.run = [s, &device] {
        return dsa_quantize_fp8(device.context(), &s->params, &s->x_tensor, &s->q_tensor, &s->scale_tensor, device.stream());
    };
    prepared.check = [s, &bench, rows, n, groups] {
        const std::vector<int64_t> sample = sample_rows(rows, bench.check_rows, bench.seed + 1);
        const auto count = static_cast<int64_t>(sample.size());
        const std::vector<uint16_t> x = gather_rows(s->x, n, sample);
        std::vector<uint8_t> want_q(static_cast<size_t>(count * n));
        std::vector<float> want_scales(static_cast<size_t>(count * groups));
        bench.oracle.quantize_fp8(s->params, host_tensor(x.data(), {count, n}, DSA_DTYPE_BF16),
                                  host_tensor(want_q.data(), {count, n}, DSA_DTYPE_FP8_E4M3),
                                  host_tensor(want_scales.data(), {count, groups}, DSA_DTYPE_F32));
        const std::vector<uint8_t> got_q = download_rows<uint8_t>(bench.device, s->q_buffer, n, sample);
        const std::vector<float> got_scales = download_rows<float>(bench.device, s->scale_buffer, groups, sample);
        std::string error = compare_bytes(got_q.data(), want_q.data(), got_q.size(), "codes");
        if (error.empty()) error = compare_bytes(got_scales.data(), want_scales.data(), got_scales.size() * 4, "scales");
        return error;
    };
    return prepared;
}

// e4m3 codes + f32 scales -> bf16; bit for bit.
Prepared dequantize_fp8(Bench& bench, const Shape& shape) {
    require_groups(shape);
    const int64_t rows = shape["rows"], n = shape["n"], groups = n / shape["group"];
    struct State {
        std::vector<uint8_t> q;
        std::vector<float> scales;
        Buffer q_buffer, scale_buffer, y_buffer;
        dsa_tensor_t q_tensor, scale_tensor, y_tensor;
        dsa_quantize_fp8_params_t params;
    };
    auto s = std::make_shared<State>();
    Device& device = bench.device;
    Random random(bench.seed);
    s->q = random_e4m3(random, static_cast<size_t>(rows * n));
    s->scales = random_floats(random, static_cast<size_t>(rows * groups), 1e-3f, 1e-2f);
    s->params = quantize_params(shape);
    s->q_buffer = device.upload(s->q);
    s->scale_buffer = device.upload(s->scales);
    s->y_buffer = device.output(static_cast<size_t>(rows * n) * 2, kPoisonFloat);
    s->q_tensor = device_tensor(device, s->q_buffer, {rows, n}, DSA_DTYPE_FP8_E4M3);
    s->scale_tensor = device_tensor(device, s->scale_buffer, {rows, groups}, DSA_DTYPE_F32);
    s->y_tensor = device_tensor(device, s->y_buffer, {rows, n}, DSA_DTYPE_BF16);

    Prepared prepared;
    prepared.work.bytes = static_cast<double>(rows) * (n + groups * 4 + n * 2);
    prepared.run = [s, &device] {
        return dsa_dequantize_fp8(device.context(), &s->params, &s->q_tensor, &s->scale_tensor, &s->y_tensor,
                                  device.stream());
    };
    prepared.check = [s, &bench, rows, n, groups] {
        const std::vector<int64_t> sample = sample_rows(rows, bench.check_rows, bench.seed + 1);
        const auto count = static_cast<int64_t>(sample.size());
        const std::vector<uint8_t> q = gather_rows(s->q, n, sample);
        const std::vector<float> scales = gather_rows(s->scales, groups, sample);
        std::vector<uint16_t> want(static_cast<size_t>(count * n));
        bench.oracle.dequantize_fp8(s->params, host_tensor(q.data(), {count, n}, DSA_DTYPE_FP8_E4M3),
                                    host_tensor(scales.data(), {count, groups}, DSA_DTYPE_F32),
                                    host_tensor(want.data(), {count, n}, DSA_DTYPE_BF16));
        const std::vector<uint16_t> got = download_rows<uint16_t>(bench.device, s->y_buffer, n, sample);
        return compare_bytes(got.data(), want.data(), got.size() * 2, "y");
    };
    return prepared;
}

std::vector<float> bf16_values(const std::vector<uint16_t>& bits) {
    std::vector<float> values(bits.size());
    for (size_t i = 0; i < bits.size(); ++i) values[i] = dsa::bf16_to_float(bits[i]);
    return values;
}

// bf16 [rows, n] rotated by H_n / sqrt(n). FLOP: n log2 n additions per vector.
Prepared hadamard(Bench& bench, const Shape& shape) {
    const int64_t rows = shape["rows"], n = shape["n"];
    struct State {
        std::vector<uint16_t> x;
        Buffer x_buffer, y_buffer;
        dsa_tensor_t x_tensor, y_tensor;
    };
    auto s = std::make_shared<State>();
    Device& device = bench.device;
    Random random(bench.seed);
    s->x = random_bf16(random, static_cast<size_t>(rows * n), -1.0f, 1.0f);
    s->x_buffer = device.upload(s->x);
    s->y_buffer = device.output(static_cast<size_t>(rows * n) * 2, kPoisonFloat);
    s->x_tensor = device_tensor(device, s->x_buffer, {rows, n}, DSA_DTYPE_BF16);
    s->y_tensor = device_tensor(device, s->y_buffer, {rows, n}, DSA_DTYPE_BF16);

    Prepared prepared;
    prepared.work.flop = static_cast<double>(rows) * n * std::log2(static_cast<double>(n));
    prepared.work.bytes = static_cast<double>(rows) * n * 4;
    prepared.run = [s, &device] {
        return dsa_hadamard(device.context(), nullptr, &s->x_tensor, &s->y_tensor, device.stream());
    };
    prepared.check = [s, &bench, rows, n] {
        const std::vector<int64_t> sample = sample_rows(rows, bench.check_rows, bench.seed + 1);
        const auto count = static_cast<int64_t>(sample.size());
        const std::vector<uint16_t> x = gather_rows(s->x, n, sample);
        std::vector<uint16_t> want(static_cast<size_t>(count * n));
        bench.oracle.hadamard(host_tensor(x.data(), {count, n}, DSA_DTYPE_BF16),
                              host_tensor(want.data(), {count, n}, DSA_DTYPE_BF16));
        const std::vector<uint16_t> got = download_rows<uint16_t>(bench.device, s->y_buffer, n, sample);
        // Sums in another order may round to a neighbouring bf16 value: two units of 2^-8.
        return compare_floats(bf16_values(got), bf16_values(want), 1e-5, 1.0 / 128, "y");
    };
    return prepared;
}

// bf16 [rows, n] rotated by H_n / sqrt(n) and quantised, in one call. Checked through its parts:
// the oracle's rotation of f32(x) into f32, then its quantisation. The scalar reference rotates
// in f64, so a value on a rounding boundary may take the neighbouring code (one e4m3 step: 1/8
// relative, or a subnormal step 2^-9 of its group's scale); libdsa's CPU path agrees bit for bit.
Prepared hadamard_quantize_fp8(Bench& bench, const Shape& shape) {
    const std::shared_ptr<QuantizeState> s = prepare_quantize(bench, shape);
    const int64_t rows = shape["rows"], n = shape["n"], groups = n / shape["group"];
    Device& device = bench.device;

    Prepared prepared;
    prepared.work.flop = static_cast<double>(rows) * n * std::log2(static_cast<double>(n));
    prepared.work.bytes = static_cast<double>(rows) * (n * 2 + n + groups * 4);
    prepared.run = [s, &device] {
        return dsa_hadamard_quantize_fp8(device.context(), nullptr, &s->params, &s->x_tensor, &s->q_tensor,
                                         &s->scale_tensor, device.stream());
    };
    prepared.check = [s, &bench, rows, n, groups] {
        const std::vector<int64_t> sample = sample_rows(rows, bench.check_rows, bench.seed + 1);
        const auto count = static_cast<int64_t>(sample.size());
        std::vector<float> x = bf16_values(gather_rows(s->x, n, sample)), rotated(x.size());
        bench.oracle.hadamard(host_tensor(x.data(), {count, n}, DSA_DTYPE_F32),
                              host_tensor(rotated.data(), {count, n}, DSA_DTYPE_F32));
        std::vector<uint8_t> want_q(static_cast<size_t>(count * n));
        std::vector<float> want_scales(static_cast<size_t>(count * groups));
        bench.oracle.quantize_fp8(s->params, host_tensor(rotated.data(), {count, n}, DSA_DTYPE_F32),
                                  host_tensor(want_q.data(), {count, n}, DSA_DTYPE_FP8_E4M3),
                                  host_tensor(want_scales.data(), {count, groups}, DSA_DTYPE_F32));
        const std::vector<uint8_t> got_q = download_rows<uint8_t>(bench.device, s->q_buffer, n, sample);
        const std::vector<float> got_scales = download_rows<float>(bench.device, s->scale_buffer, groups, sample);
        const int64_t group = n / groups;
        std::vector<float> got(got_q.size()), want(want_q.size());
        float largest_scale = 0.0f;
        for (size_t i = 0; i < got.size(); ++i) {
            got[i] = dsa::decode_e4m3(got_q[i]) * got_scales[i / group];
            want[i] = dsa::decode_e4m3(want_q[i]) * want_scales[i / group];
            largest_scale = std::fmax(largest_scale, want_scales[i / group]);
        }
        return compare_floats(got, want, largest_scale * 0x1p-9 * 1.01, 0.125 * 1.01, "dequantised codes");
    };
    return prepared;
}

// A cache writer: `tokens` distinct random slots of a cache holding twice as many, whose other
// bytes are random too; the whole cache must equal the oracle's afterwards.
struct CacheWriteState {
    std::vector<int64_t> slots;
    std::vector<uint8_t> initial_cache;
    Buffer slot_buffer, cache_buffer;
    dsa_tensor_t slot_tensor, cache_tensor;
};

void prepare_cache(Bench& bench, Random& random, CacheWriteState& state, int64_t tokens, int64_t cache_bytes,
                   int64_t num_slots, std::vector<int64_t> cache_shape) {
    const std::vector<int32_t> slots = random_distinct(random, tokens, num_slots);
    state.slots.assign(slots.begin(), slots.end());
    state.initial_cache = random_e4m3(random, static_cast<size_t>(cache_bytes));
    state.slot_buffer = bench.device.upload(state.slots);
    state.cache_buffer = bench.device.upload(state.initial_cache);
    state.slot_tensor = device_tensor(bench.device, state.slot_buffer, {tokens}, DSA_DTYPE_I64);
    state.cache_tensor = device_tensor(bench.device, state.cache_buffer, cache_shape, DSA_DTYPE_U8);
}

// Runs the oracle on a host copy of the initial cache and compares every byte.
std::string check_cache(Bench& bench, const CacheWriteState& state,
                        const std::function<void(const dsa_tensor_t& slots, const dsa_tensor_t& cache)>& oracle) {
    std::vector<uint8_t> want = state.initial_cache;
    std::vector<int64_t> cache_shape(state.cache_tensor.shape, state.cache_tensor.shape + state.cache_tensor.ndim);
    oracle(host_tensor(state.slots.data(), {static_cast<int64_t>(state.slots.size())}, DSA_DTYPE_I64),
           host_tensor(want.data(), cache_shape, DSA_DTYPE_U8));
    const std::vector<uint8_t> got = bench.device.download<uint8_t>(state.cache_buffer, 0, want.size());
    return compare_bytes(got.data(), want.data(), want.size(), "cache");
}

// bf16 keys [T, D_I] into the paged indexer cache (64 tokens of D_I + 4 bytes per page).
Prepared indexer_cache_write(Bench& bench, const Shape& shape) {
    const int64_t tokens = shape["T"], dim = shape["D_I"], pages = (2 * tokens + 63) / 64;
    struct State : CacheWriteState {
        std::vector<uint16_t> k;
        Buffer k_buffer;
        dsa_tensor_t k_tensor;
    };
    auto s = std::make_shared<State>();
    Device& device = bench.device;
    Random random(bench.seed);
    s->k = random_bf16(random, static_cast<size_t>(tokens * dim), -2.0f, 2.0f);
    s->k_buffer = device.upload(s->k);
    s->k_tensor = device_tensor(device, s->k_buffer, {tokens, dim}, DSA_DTYPE_BF16);
    prepare_cache(bench, random, *s, tokens, pages * 64 * (dim + 4), pages * 64, {pages, 64 * (dim + 4)});

    Prepared prepared;
    prepared.work.bytes = static_cast<double>(tokens) * (dim * 2 + 8 + dim + 4);
    prepared.run = [s, &device] {
        return dsa_indexer_cache_write(device.context(), &s->k_tensor, &s->slot_tensor, &s->cache_tensor,
                                       device.stream());
    };
    prepared.check = [s, &bench, tokens, dim] {
        return check_cache(bench, *s, [&](const dsa_tensor_t& slots, const dsa_tensor_t& cache) {
            bench.oracle.indexer_cache_write(host_tensor(s->k.data(), {tokens, dim}, DSA_DTYPE_BF16), slots, cache);
        });
    };
    return prepared;
}

// bf16 c_kv [T, 512] and k_pe [T, 64] into the 656-byte FP8 MLA cache.
Prepared mla_cache_write(Bench& bench, const Shape& shape) {
    const int64_t tokens = shape["T"], page_size = shape["page_size"];
    const int64_t pages = (2 * tokens + page_size - 1) / page_size;
    struct State : CacheWriteState {
        std::vector<uint16_t> c_kv, k_pe;
        Buffer c_kv_buffer, k_pe_buffer;
        dsa_tensor_t c_kv_tensor, k_pe_tensor;
    };
    auto s = std::make_shared<State>();
    Device& device = bench.device;
    Random random(bench.seed);
    s->c_kv = random_bf16(random, static_cast<size_t>(tokens * 512), -2.0f, 2.0f);
    s->k_pe = random_bf16(random, static_cast<size_t>(tokens * 64), -2.0f, 2.0f);
    s->c_kv_buffer = device.upload(s->c_kv);
    s->k_pe_buffer = device.upload(s->k_pe);
    s->c_kv_tensor = device_tensor(device, s->c_kv_buffer, {tokens, 512}, DSA_DTYPE_BF16);
    s->k_pe_tensor = device_tensor(device, s->k_pe_buffer, {tokens, 64}, DSA_DTYPE_BF16);
    prepare_cache(bench, random, *s, tokens, pages * page_size * 656, pages * page_size, {pages, page_size, 656});

    Prepared prepared;
    prepared.work.bytes = static_cast<double>(tokens) * (576 * 2 + 8 + 656);
    prepared.run = [s, &device] {
        return dsa_mla_cache_write(device.context(), &s->c_kv_tensor, &s->k_pe_tensor, &s->slot_tensor,
                                   &s->cache_tensor, device.stream());
    };
    prepared.check = [s, &bench, tokens] {
        return check_cache(bench, *s, [&](const dsa_tensor_t& slots, const dsa_tensor_t& cache) {
            bench.oracle.mla_cache_write(host_tensor(s->c_kv.data(), {tokens, 512}, DSA_DTYPE_BF16),
                                         host_tensor(s->k_pe.data(), {tokens, 64}, DSA_DTYPE_BF16), slots, cache);
        });
    };
    return prepared;
}

}  // namespace

void add_elementwise_ops(std::vector<Op>& ops) {
    ops.push_back({"quantize_fp8",
                   "dsa_quantize_fp8: bf16 x [rows, n] -> e4m3 codes + f32 scales per group (ue8m0=1: power-of-two "
                   "scales). Bytes: x + codes + scales.",
                   {{"rows", 4096}, {"n", 7168}, {"group", 128}, {"ue8m0", 1}},
                   quantize_fp8});
    ops.push_back({"dequantize_fp8",
                   "dsa_dequantize_fp8: e4m3 codes + f32 scales -> bf16 [rows, n]. Bytes: codes + scales + y.",
                   {{"rows", 4096}, {"n", 7168}, {"group", 128}, {"ue8m0", 0}},
                   dequantize_fp8});
    ops.push_back({"hadamard",
                   "dsa_hadamard: bf16 [rows, n] times H_n / sqrt(n). FLOP: rows * n * log2(n); bytes: x + y.",
                   {{"rows", 262144}, {"n", 128}},
                   hadamard});
    ops.push_back({"hadamard_quantize_fp8",
                   "dsa_hadamard_quantize_fp8: bf16 x [rows, n] times H_n / sqrt(n), then e4m3 codes + f32 scales "
                   "per group, in one pass. FLOP: rows * n * log2(n); bytes: x + codes + scales.",
                   {{"rows", 262144}, {"n", 128}, {"group", 128}, {"ue8m0", 1}},
                   hadamard_quantize_fp8});
    ops.push_back({"indexer_cache_write",
                   "dsa_indexer_cache_write: bf16 keys [T, D_I] quantised into T random slots of the paged indexer "
                   "cache. Bytes: k + slots + T * (D_I + 4) written.",
                   {{"T", 4096}, {"D_I", 128}},
                   indexer_cache_write});
    ops.push_back({"mla_cache_write",
                   "dsa_mla_cache_write: bf16 c_kv [T, 512] + k_pe [T, 64] into T random slots of the FP8 MLA cache. "
                   "Bytes: inputs + slots + T * 656 written.",
                   {{"T", 4096}, {"page_size", 64}},
                   mla_cache_write});
}

}  // namespace dsa_bench
