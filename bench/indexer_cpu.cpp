// CPU lightning indexer at the DeepSeek shape (H_I = 64, D_I = 128): causal prefill logits at
// S = 4096 and 8192 (FLOP counted as PERFORMANCE.md says: 2 * H_I * D_I per visible pair), and
// paged decode B = 4 x 16K context (bytes: 132 per cached token read). The FMA peak of the same
// thread count is measured beside each case. Spot rows are checked against the scalar reference.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "bench/timing.hpp"
#include "core/ops/indexer.hpp"
#include "dsa.h"

namespace {

constexpr int64_t kHeads = 64, kDim = 128, kPage = 64;

std::vector<uint8_t> random_codes(size_t count, uint32_t seed) {
    std::mt19937 engine(seed);
    std::uniform_int_distribution<int> byte(0, 255);
    std::vector<uint8_t> codes(count);
    for (uint8_t& code : codes) {
        do code = static_cast<uint8_t>(byte(engine));
        while ((code & 0x7f) == 0x7f);  // no NaN codes
    }
    return codes;
}

std::vector<float> random_floats(size_t count, uint32_t seed, float low, float high) {
    std::mt19937 engine(seed);
    std::uniform_real_distribution<float> dist(low, high);
    std::vector<float> values(count);
    for (float& v : values) v = dist(engine);
    return values;
}

dsa_tensor_t tensor(void* data, std::vector<int64_t> shape, dsa_dtype_t dtype) {
    dsa_tensor_t t;
    dsa_tensor_init_contiguous(&t, data, static_cast<int32_t>(shape.size()), shape.data(), dtype, DSA_DEVICE_CPU, 0);
    return t;
}

// The core view of an ABI tensor, for the scalar reference.
dsa::TensorView core(const dsa_tensor_t& t) {
    dsa::TensorView v;
    v.data = t.data;
    v.ndim = t.ndim;
    v.dtype = static_cast<dsa::DType>(t.dtype);
    for (int axis = 0; axis < t.ndim; ++axis) {
        v.shape[axis] = t.shape[axis];
        v.strides[axis] = t.strides[axis];
    }
    return v;
}

bool check(dsa_status_t status) {
    if (status != DSA_STATUS_SUCCESS) std::printf("failed: %s\n", dsa_last_error_message());
    return status == DSA_STATUS_SUCCESS;
}

// Largest |got - reference| of query row `row` over the row's largest |reference|.
double spot_error(int64_t row, int64_t s, const std::vector<uint8_t>& q, const std::vector<float>& w,
                  std::vector<uint8_t>& k, std::vector<float>& k_scale, const float* got) {
    std::vector<int32_t> ks = {0}, ke = {static_cast<int32_t>(row + 1)};
    std::vector<float> want(static_cast<size_t>(s));
    dsa::IndexerProblem p;
    p.q = core(tensor(const_cast<uint8_t*>(q.data()) + row * kHeads * kDim, {1, kHeads, kDim}, DSA_DTYPE_U8));
    p.weights = core(tensor(const_cast<float*>(w.data()) + row * kHeads, {1, kHeads}, DSA_DTYPE_F32));
    p.k = core(tensor(k.data(), {s, kDim}, DSA_DTYPE_U8));
    p.k_scale = core(tensor(k_scale.data(), {s}, DSA_DTYPE_F32));
    p.ks = core(tensor(ks.data(), {1}, DSA_DTYPE_I32));
    p.ke = core(tensor(ke.data(), {1}, DSA_DTYPE_I32));
    p.logits = core(tensor(want.data(), {1, s}, DSA_DTYPE_F32));
    p.rows = 1;
    p.heads = kHeads;
    p.dim = kDim;
    p.columns = s;
    dsa::reference::indexer_logits(p);
    double error = 0.0, scale = 0.0;
    for (int64_t c = 0; c <= row; ++c) {
        error = std::fmax(error, std::fabs(static_cast<double>(got[c]) - want[c]));
        scale = std::fmax(scale, std::fabs(static_cast<double>(want[c])));
    }
    for (int64_t c = row + 1; c < s; ++c)
        if (got[c] != -INFINITY) return INFINITY;
    return error / scale;
}

void prefill(dsa_context_t* context, int64_t s, int threads) {
    const std::vector<uint8_t> q = random_codes(static_cast<size_t>(s * kHeads * kDim), 1);
    std::vector<uint8_t> k = random_codes(static_cast<size_t>(s * kDim), 2);
    const std::vector<float> w = random_floats(static_cast<size_t>(s * kHeads), 3, -1.0f, 1.0f);
    std::vector<float> k_scale = random_floats(static_cast<size_t>(s), 4, 0.01f, 1.0f);
    std::vector<int32_t> ks(static_cast<size_t>(s), 0), ke(static_cast<size_t>(s));
    std::iota(ke.begin(), ke.end(), 1);
    std::vector<float> logits(static_cast<size_t>(s * s));
    dsa_tensor_t qt = tensor(const_cast<uint8_t*>(q.data()), {s, kHeads, kDim}, DSA_DTYPE_FP8_E4M3),
                 wt = tensor(const_cast<float*>(w.data()), {s, kHeads}, DSA_DTYPE_F32),
                 kt = tensor(k.data(), {s, kDim}, DSA_DTYPE_FP8_E4M3), st = tensor(k_scale.data(), {s}, DSA_DTYPE_F32),
                 kst = tensor(ks.data(), {s}, DSA_DTYPE_I32), ket = tensor(ke.data(), {s}, DSA_DTYPE_I32),
                 lt = tensor(logits.data(), {s, s}, DSA_DTYPE_F32);
    // The machine is shared: the peak is measured right beside each case.
    const double peak = dsa_bench::measure_fma_peak_gflops(threads);
    bool ok = true;
    const double seconds = dsa_bench::median_seconds(
        [&] { ok = ok && check(dsa_indexer_logits(context, nullptr, &qt, &wt, &kt, &st, &kst, &ket, &lt, nullptr)); },
        3, 1);
    if (!ok) return;
    double error = 0.0;
    for (int64_t row : {int64_t(0), s / 2 + 3, s - 1})
        error = std::fmax(error, spot_error(row, s, q, w, k, k_scale, logits.data() + row * s));
    const double gflops = 2.0 * kHeads * kDim * (static_cast<double>(s) * (s + 1) / 2) / seconds / 1e9;
    std::printf("prefill causal S=%-5lld H=64 D=128: %8.1f ms  %6.1f GFLOPS  %.2f of FMA peak %.1f  (spot rows vs reference: "
                "max error %.1e of the row's largest logit)\n",
                static_cast<long long>(s), seconds * 1e3, gflops, gflops / peak, peak, error);
}

void decode(dsa_context_t* context, int64_t batch, int64_t context_length, int threads) {
    const int64_t max_pages = context_length / kPage, num_pages = batch * max_pages, page_bytes = kPage * (kDim + 4);
    const std::vector<uint8_t> q = random_codes(static_cast<size_t>(batch * kHeads * kDim), 5);
    const std::vector<float> w = random_floats(static_cast<size_t>(batch * kHeads), 6, -1.0f, 1.0f);
    std::vector<uint8_t> cache = random_codes(static_cast<size_t>(num_pages * page_bytes), 7);
    for (int64_t page = 0; page < num_pages; ++page)  // positive scales
        for (int64_t row = 0; row < kPage; ++row) {
            const float scale = 0.01f + 0.001f * static_cast<float>(row);
            std::memcpy(cache.data() + page * page_bytes + kPage * kDim + 4 * row, &scale, 4);
        }
    std::vector<int32_t> table(static_cast<size_t>(num_pages));
    std::iota(table.begin(), table.end(), 0);
    std::shuffle(table.begin(), table.end(), std::mt19937(8));
    std::vector<int32_t> lengths(static_cast<size_t>(batch), static_cast<int32_t>(context_length));
    std::vector<float> logits(static_cast<size_t>(batch * context_length));
    dsa_tensor_t qt = tensor(const_cast<uint8_t*>(q.data()), {batch, 1, kHeads, kDim}, DSA_DTYPE_FP8_E4M3),
                 wt = tensor(const_cast<float*>(w.data()), {batch, kHeads}, DSA_DTYPE_F32),
                 ct = tensor(cache.data(), {num_pages, page_bytes}, DSA_DTYPE_U8),
                 tt = tensor(table.data(), {batch, max_pages}, DSA_DTYPE_I32),
                 nt = tensor(lengths.data(), {batch}, DSA_DTYPE_I32),
                 lt = tensor(logits.data(), {batch, context_length}, DSA_DTYPE_F32);
    const double peak = dsa_bench::measure_fma_peak_gflops(threads);
    bool ok = true;
    const double seconds = dsa_bench::median_seconds(
        [&] { ok = ok && check(dsa_indexer_logits_paged(context, nullptr, &qt, &wt, &ct, &tt, &nt, &lt, nullptr)); },
        10, 2);
    if (!ok) return;
    const double tokens = static_cast<double>(batch * context_length);
    const double gbps = tokens * (kDim + 4) / seconds / 1e9, gflops = 2.0 * kHeads * kDim * tokens / seconds / 1e9;
    std::printf("paged decode B=%lld x %lld context, n_next=1: %8.2f ms  %6.2f GB/s of cache read  (%6.1f GFLOPS, %.2f "
                "of FMA peak %.1f)\n",
                static_cast<long long>(batch), static_cast<long long>(context_length), seconds * 1e3, gbps, gflops,
                gflops / peak, peak);
}

}  // namespace

// Optional argument: the context's thread count (default: all cores).
int main(int argc, char** argv) {
    dsa_context_options_t options;
    dsa_context_options_init(&options);
    if (argc > 1) options.num_threads = std::atoi(argv[1]);
    dsa_context_t* context = nullptr;
    if (!check(dsa_context_create(&context, &options))) return 1;
    int32_t threads = 0;
    dsa_context_num_threads(context, &threads);
    std::printf("%s; %d threads\n", dsa_build_info(), threads);
    prefill(context, 4096, threads);
    prefill(context, 8192, threads);
    decode(context, 4, 16384, threads);
    dsa_context_destroy(context);
    return 0;
}
