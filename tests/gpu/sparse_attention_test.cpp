// CUDA sparse attention against the CPU path on the same inputs (the problems of the CPU tests:
// poisoned padding and unused rows, invalid sentinels, sinks, topk_length): the generic mma.sync
// kernel on every shape, the sm_90a wgmma kernel (the default on sm_90) on 576/512 with H_q a
// multiple of 64, the split-k path, large grids, and repeatability.
#include <cstdio>
#include <cstdlib>

#include "../sparse_attention_problems.hpp"
#include "gpu_support.hpp"

using namespace dsa_test;

namespace {

// Device copies of a problem's inputs and of poisoned outputs, and the device views of a call.
struct DeviceProblem {
    DeviceBuffer<uint16_t> q, kv;
    DeviceBuffer<uint8_t> cache;
    DeviceBuffer<int32_t> indices, lengths;
    DeviceBuffer<float> sink;
    DeviceBuffer<uint16_t> out;
    DeviceBuffer<float> lse, max_logits;
    Tensors tensors;

    DeviceProblem(const Problem& p, const Result& poisoned)
        : q(p.q), kv(p.kv), cache(p.cache), indices(p.indices), lengths(p.lengths), sink(p.sink), out(poisoned.out),
          lse(poisoned.lse), max_logits(poisoned.max_logits), tensors(host_tensors(p, poisoned)) {
        tensors.q = on_device(tensors.q, q.data);
        tensors.kv = on_device(tensors.kv, p.fp8 ? static_cast<void*>(cache.data) : static_cast<void*>(kv.data));
        tensors.indices = on_device(tensors.indices, indices.data);
        tensors.sink = on_device(tensors.sink, sink.data);
        tensors.lengths = on_device(tensors.lengths, lengths.data);
        tensors.out = on_device(tensors.out, out.data);
        tensors.lse = on_device(tensors.lse, lse.data);
        tensors.max_logits = on_device(tensors.max_logits, max_logits.data);
    }

    Result download(const Problem& p) const {
        Result r(p);
        r.out = out.download();
        r.lse = lse.download();
        r.max_logits = max_logits.download();
        return r;
    }
};

// The CUDA result; every output element must have been written.
Result run_cuda(const Problem& p) {
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    DeviceProblem device(p, Result(p));
    const dsa_status_t status = call(gpu, p, device.tensors);
    REQUIRE_MESSAGE(status == DSA_STATUS_SUCCESS, dsa_last_error_message());
    const Result r = device.download(p);
    for (uint16_t bits : r.out) REQUIRE(!std::isnan(dsa::bf16_to_float(bits)));
    for (float value : r.lse) REQUIRE(!std::isnan(value));
    if (p.use_max_logits && !p.paged)
        for (float value : r.max_logits) REQUIRE(!std::isnan(value));
    return r;
}

// Where a mismatch lives, to tell the score path from the value path: the worst lse errors and
// the relative error of out by 16-head block and 64-column block.
void describe_mismatch(const Problem& p, const Result& got, const Result& want) {
    double worst_lse = 0.0;
    int64_t worst_at = -1;
    for (size_t i = 0; i < got.lse.size(); ++i) {
        const double error = std::isinf(want.lse[i]) ? (got.lse[i] == want.lse[i] ? 0.0 : INFINITY)
                                                      : std::fabs(got.lse[i] - want.lse[i]);
        if (error > worst_lse) worst_lse = error, worst_at = static_cast<int64_t>(i);
    }
    std::string text = "lse worst error " + std::to_string(worst_lse) + " at (row, head) (" +
                       std::to_string(worst_at / std::max<int64_t>(p.heads, 1)) + ", " +
                       std::to_string(worst_at % std::max<int64_t>(p.heads, 1)) + ")\nout relative error [head block][column block]:";
    const int64_t head_blocks = (p.heads + 15) / 16, column_blocks = (p.d_v + 63) / 64;
    for (int64_t hb = 0; hb < head_blocks; ++hb) {
        text += "\n  heads " + std::to_string(16 * hb) + ":";
        for (int64_t cb = 0; cb < column_blocks; ++cb) {
            double error = 0.0, norm = 0.0;
            for (int64_t r = 0; r < p.rows(); ++r)
                for (int64_t h = 16 * hb; h < std::min(p.heads, 16 * hb + 16); ++h)
                    for (int64_t c = 64 * cb; c < std::min(p.d_v, 64 * cb + 64); ++c) {
                        const size_t i = static_cast<size_t>((r * p.heads + h) * p.d_v + c);
                        const double a = dsa::bf16_to_float(got.out[i]), b = dsa::bf16_to_float(want.out[i]);
                        error += (a - b) * (a - b);
                        norm += b * b;
                    }
            char cell[32];
            std::snprintf(cell, sizeof cell, " %.1e", std::sqrt(error / std::max(norm, 1e-30)));
            text += cell;
        }
    }
    MESSAGE(text);
}

// CUDA against the CPU library on the same problem (tolerances of check_close).
void check_against_cpu(const Problem& p) {
    const Result want = run_library(p, 0);
    const Result got = run_cuda(p);
    double error = 0.0, norm = 0.0;
    for (size_t i = 0; i < got.out.size(); ++i) {
        const double a = dsa::bf16_to_float(got.out[i]), b = dsa::bf16_to_float(want.out[i]);
        error += (a - b) * (a - b);
        norm += b * b;
    }
    bool lse_ok = true;
    for (size_t i = 0; i < got.lse.size(); ++i)
        lse_ok = lse_ok && (std::isinf(want.lse[i]) ? got.lse[i] == want.lse[i] : std::fabs(got.lse[i] - want.lse[i]) < 1e-3f);
    if (!lse_ok || std::sqrt(error) > 1e-2 * std::sqrt(norm)) describe_mismatch(p, got, want);
    check_close(p, got, want);
}

void check_variants_against_cpu(const Problem& p) { for_each_variant(p, check_against_cpu); }

// The cases of the sm_90a kernel's shapes (576/512, H_q a multiple of 64, aligned layouts): the
// sm_90a kernel runs them on sm_90 unless a KernelSwitchedOff scope switches it off.
void check_hopper_shapes() {
    for (int64_t heads : {64, 128}) {
        CAPTURE(heads);
        check_variants_against_cpu(prefill(5, heads, 576, 512, 3000, 300, 100 + static_cast<uint32_t>(heads)));
        check_variants_against_cpu(prefill(3, heads, 576, 512, 5000, 2048, 120 + static_cast<uint32_t>(heads)));
        check_variants_against_cpu(prefill(4, heads, 576, 512, 700, 130, 130 + static_cast<uint32_t>(heads)));
        for (int64_t page_size : {64, 3}) {
            CAPTURE(page_size);
            check_variants_against_cpu(paged_bf16(2, 2, heads, 576, 512, page_size, 600, 300, 161, false));
            Problem fp8 = paged_fp8(2, 2, heads, page_size, 700, 259, 170 + static_cast<uint32_t>(heads + page_size));
            fp8.use_sink = true;
            fp8.use_lengths = heads == 128;
            check_against_cpu(fp8);
            check_close(fp8, run_cuda(fp8), run_reference(dequantised(fp8)));
        }
    }
}

// Few rows over long selections: the index list is split over CTAs and the partials merged.
void check_splits(std::initializer_list<Problem> problems) {
    for (Problem p : problems) {
        p.use_sink = true;
        for (bool lengths : {false, true}) {
            p.use_lengths = lengths;
            check_against_cpu(p);
        }
    }
}

void check_repeatable(std::initializer_list<Problem> problems) {
    for (Problem p : problems) {
        p.use_sink = p.use_lengths = p.use_max_logits = true;
        const Result first = run_cuda(p);
        CHECK(same_bits(first, run_cuda(p)));
        CHECK(same_bits(first, run_cuda(p)));
    }
}

void check_semantics(int64_t heads) {
    CAPTURE(heads);
    Problem p = prefill(3, heads, 576, 512, 50, 6, 210);
    p.use_sink = p.use_lengths = p.use_max_logits = true;
    const int32_t rows[3][6] = {{3, 3, 7, -1, 50, INT32_MIN}, {-1, -5, 50, 51, INT32_MAX, INT32_MIN},
                                {8, 10, 9, 14, 19, 24}};
    for (int r = 0; r < 3; ++r) std::copy_n(rows[r], 6, p.indices.begin() + r * 6);
    p.lengths = {6, 6, 2};
    for (int64_t h = 0; h < heads; ++h) p.sink[h] = h % 2 ? 30.0f : -INFINITY;  // odd heads: the sink takes all
    const Result got = run_cuda(p);
    check_close(p, got, run_library(p, 0));
    // Row 1 has no valid index: out 0, lse +inf, max_logits -inf for every head.
    CHECK(std::count(got.lse.begin() + heads, got.lse.begin() + 2 * heads, INFINITY) == heads);
    CHECK(std::count(got.max_logits.begin() + heads, got.max_logits.begin() + 2 * heads, -INFINITY) == heads);
    CHECK(std::count(got.out.begin() + heads * 512, got.out.begin() + 2 * heads * 512, uint16_t{0}) == heads * 512);
    Problem none = prefill(4, heads, 576, 512, 100, 1, 211);  // k = 0: every row empty
    none.topk = 0;
    none.indices.clear();
    none.use_max_logits = true;
    const Result empty = run_cuda(none);
    CHECK(std::count(empty.lse.begin(), empty.lse.end(), INFINITY) == static_cast<std::ptrdiff_t>(empty.lse.size()));
    CHECK(std::count(empty.out.begin(), empty.out.end(), uint16_t{0}) == static_cast<std::ptrdiff_t>(empty.out.size()));
}

// Sets an environment switch to 0 for a scope: DSA_CUDA_SM90_ATTENTION leaves the sm_90a
// kernel's shapes to the narrow kernel, DSA_CUDA_NARROW_ATTENTION the narrow kernel's shapes to
// the generic one (with both, the generic kernel runs every shape).
struct KernelSwitchedOff {
    const char* variable;
    explicit KernelSwitchedOff(const char* name) : variable(name) { REQUIRE(setenv(variable, "0", 1) == 0); }
    ~KernelSwitchedOff() { unsetenv(variable); }
};

}  // namespace

TEST_CASE("CUDA semantics: empty rows, duplicates, a sink that takes all the mass, k = 0") {
    check_semantics(2);
    check_semantics(64);
}

TEST_CASE("CUDA prefill equals the CPU: 576/512, any head count, aligned and padded layouts") {
    const int64_t heads[] = {1, 3, 8, 16, 20, 64, 128};
    for (bool padded : {false, true})
        for (int i = 0; i < 7; ++i) {
            CAPTURE(padded);
            CAPTURE(heads[i]);
            check_variants_against_cpu(prefill(5, heads[i], 576, 512, 3000, 300, 100 + i, padded));
        }
    check_variants_against_cpu(prefill(3, 16, 576, 512, 5000, 2048, 136));
}

TEST_CASE("CUDA prefill equals the CPU: other widths") {
    struct Widths {
        int64_t d_qk, d_v, heads;
    };
    for (const Widths& w : {Widths{72, 64, 16}, Widths{128, 128, 20}, Widths{192, 128, 64}, Widths{13, 5, 3},
                            Widths{1, 1, 2}, Widths{1024, 1024, 17}, Widths{576, 520, 64}, Widths{64, 64, 128}}) {
        CAPTURE(w.d_qk);
        CAPTURE(w.d_v);
        CAPTURE(w.heads);
        check_variants_against_cpu(prefill(6, w.heads, w.d_qk, w.d_v, 400, 77, 140 + static_cast<uint32_t>(w.d_qk), false));
        check_variants_against_cpu(prefill(3, w.heads, w.d_qk, w.d_v, 400, 77, 150 + static_cast<uint32_t>(w.d_qk), true));
    }
}

TEST_CASE("CUDA paged bf16 equals the CPU: page sizes 64 and 3, aligned and padded") {
    for (int64_t page_size : {64, 3})
        for (bool padded : {false, true}) {
            CAPTURE(page_size);
            CAPTURE(padded);
            check_variants_against_cpu(paged_bf16(3, 2, 16, 72, 64, page_size, 150, 67, 160, padded));
            check_variants_against_cpu(paged_bf16(2, 2, 128, 576, 512, page_size, 600, 300, 161, padded));
        }
}

TEST_CASE("CUDA paged FP8 equals the CPU and the dequantised-cache reference") {
    for (int64_t page_size : {64, 3})
        for (int64_t heads : {3, 8, 16, 32}) {
            CAPTURE(page_size);
            CAPTURE(heads);
            Problem p = paged_fp8(2, 2, heads, page_size, 700, 259, 170 + static_cast<uint32_t>(heads + page_size));
            p.use_sink = heads != 3;
            p.use_lengths = heads % 16 == 0;
            check_against_cpu(p);
            check_close(p, run_cuda(p), run_reference(dequantised(p)));
        }
}

TEST_CASE("CUDA narrow kernel on the sm_90a kernel's shapes (DSA_CUDA_SM90_ATTENTION=0)") {
    const KernelSwitchedOff sm90("DSA_CUDA_SM90_ATTENTION");
    check_semantics(64);
    check_hopper_shapes();
    check_repeatable({prefill(4, 128, 576, 512, 4000, 1000, 200), paged_fp8(1, 2, 128, 64, 4000, 2048, 203)});
}

TEST_CASE("CUDA generic kernel on the 576/512 shapes (both faster kernels switched off)") {
    const KernelSwitchedOff sm90("DSA_CUDA_SM90_ATTENTION"), narrow("DSA_CUDA_NARROW_ATTENTION");
    check_semantics(2);
    check_hopper_shapes();
    for (int64_t heads : {8, 16, 32}) {
        CAPTURE(heads);
        Problem p = paged_fp8(2, 2, heads, 64, 700, 259, 175 + static_cast<uint32_t>(heads));
        p.use_sink = p.use_lengths = true;
        check_against_cpu(p);
    }
    check_splits({paged_fp8(2, 1, 16, 64, 5000, 2048, 181)});
    check_repeatable({paged_fp8(1, 2, 16, 64, 4000, 2048, 201)});
}

TEST_CASE("CUDA split over the index list: few rows, long selections") {
    check_splits({paged_fp8(1, 1, 128, 64, 5000, 2048, 180), paged_fp8(2, 1, 16, 64, 5000, 2048, 181),
                  prefill(2, 64, 576, 512, 6000, 2048, 182), prefill(1, 20, 128, 96, 3000, 1500, 183)});
}

TEST_CASE("CUDA: more than 65535 query rows") {
    check_against_cpu(prefill(70000, 1, 64, 64, 500, 8, 190, false));
    Problem two_groups = prefill(66000, 20, 16, 16, 300, 4, 191, false);
    two_groups.use_sink = true;
    check_against_cpu(two_groups);
}

TEST_CASE("CUDA results are bitwise identical run to run") {
    check_repeatable({prefill(4, 128, 576, 512, 4000, 1000, 200), paged_fp8(1, 2, 16, 64, 4000, 2048, 201),
                      prefill(5, 20, 72, 64, 300, 100, 202, true)});
}

TEST_CASE("CUDA kernel of the 576/512 shapes (sm_90a on sm_90) equals the CPU") {
    check_semantics(64);
    check_hopper_shapes();
    check_splits({paged_fp8(1, 1, 128, 64, 5000, 2048, 180), prefill(2, 64, 576, 512, 6000, 2048, 182)});
    check_repeatable({prefill(4, 128, 576, 512, 4000, 1000, 200), paged_fp8(1, 2, 128, 64, 4000, 2048, 203)});
}

TEST_CASE("CUDA sparse attention: mixed devices are refused, outputs untouched") {
    Problem p = prefill(2, 64, 576, 512, 100, 10, 220);
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    const Result poisoned(p);
    DeviceProblem device(p, poisoned);
    Tensors mixed = device.tensors;
    mixed.q = p.q_tensor();  // q on the host
    CHECK_FAILS_WITH(call(gpu, p, mixed), DSA_STATUS_DEVICE_MISMATCH, "q");
    const Result after = device.download(p);
    CHECK(after.out == poisoned.out);
}
