// CUDA lightning indexer, fused indexer + top-k and the two cache writers against the CPU path on
// the same inputs. Shapes are chosen to reach each CUDA kernel: FP8 wgmma (H_I 16/32/64/128,
// D_I 128 or 256), f16 mma.sync (other H_I or D_I, or strides TMA cannot take) and the scalar
// kernel (H_I x D_I too large for shared memory).
//
// Logit bound. Both backends consume the same e4m3 codes, and every product of two codes is
// exact in f32, so the backends differ only in how they sum. With M = k_scale * sum_h |w_h| *
// sum_d |q_hd k_d| (computed by the CPU path itself on |codes| and |w|, which is exact up to its
// own rounding), the CPU's error is at most (D_I + H_I + 2) 2^-24 M (recursive f32 summation,
// see tests/indexer_fixtures.hpp). The GPU sums each head's D_I products inside the tensor
// cores, whose internal accumulation of FP8 products keeps fewer bits than f32 (about 14 by
// DeepSeek-V3's measurement on Hopper); we allow 2^-9 M for it (a 64-term block losing 2^-14
// relative to its largest term per addition stays far below), plus (H_I + 2) 2^-24 M for the
// head sum and the scale. A wrong index, layout or mask moves a logit by O(M), far above this.
// Each case prints the largest |gpu - cpu| / M it saw.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "../indexer_fixtures.hpp"
#include "gpu_support.hpp"

using namespace dsa_test;

namespace {

constexpr double kTensorCoreRelative = 1.0 / 512;

struct Agreement {
    int64_t bad = 0;
    int64_t visible = 0;
    double worst = 0.0;  // max |gpu - cpu| / M over finite visible logits
};

// got (GPU), want (CPU) and magnitude (CPU on |codes|, |w|) share one layout: rows x stride, of
// which the first `columns` are the logits and the rest padding that must stay kPadding.
Agreement compare_logits(const std::vector<float>& got, const std::vector<float>& want,
                         const std::vector<float>& magnitude, int64_t rows, int64_t columns, int64_t stride,
                         int64_t heads, int64_t dim) {
    Agreement result;
    const double cpu_relative = static_cast<double>(dim + heads + 2) * std::ldexp(1.0, -24);
    const double gpu_relative = kTensorCoreRelative + static_cast<double>(heads + 2) * std::ldexp(1.0, -24);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t s = 0; s < stride; ++s) {
            const size_t i = static_cast<size_t>(r * stride + s);
            const float g = got[i], w = want[i];
            bool ok;
            if (s >= columns) {
                ok = g == kPadding;
            } else if (w == -kInf) {
                ok = g == -kInf;
            } else if (is_nan_float(w)) {
                ok = is_nan_float(g);
            } else {
                ++result.visible;
                const double m = magnitude[i];
                const double error = std::fabs(static_cast<double>(g) - w);
                ok = error <= (cpu_relative + gpu_relative) * m + 1e-30;
                if (m > 0 && error / m > result.worst) result.worst = error / m;
            }
            if (!ok && ++result.bad <= 5) FAIL_CHECK("row ", r, " column ", s, ": gpu ", g, ", cpu ", w);
        }
    return result;
}

// Checks an agreement and prints its worst error (the run's record of the bound's margin).
void expect_agreement(const Agreement& agreement, const char* what, int64_t heads, int64_t dim) {
    std::printf("%-8s H_I %3lld D_I %5lld: max |gpu - cpu| / M = %.3g over %lld logits%s\n", what,
                static_cast<long long>(heads), static_cast<long long>(dim), agreement.worst,
                static_cast<long long>(agreement.visible), agreement.bad ? " FAILED" : "");
    CHECK(agreement.bad == 0);
    CHECK(agreement.visible > 0);
}

// ---- Ragged prefill -------------------------------------------------------------------------

// A fixture's tensors copied to the GPU, as CUDA tensors.
struct DevicePrefill {
    DeviceBuffer<uint8_t> q, k;
    DeviceBuffer<float> weights, k_scale;
    DeviceBuffer<int32_t> ks, ke;
    dsa_tensor_t q_t, weights_t, k_t, k_scale_t, ks_t, ke_t;
    explicit DevicePrefill(Prefill& p)
        : q(p.q), k(p.k), weights(p.weights), k_scale(p.k_scale), ks(p.ks), ke(p.ke),
          q_t(on_device(p.q_view(), q.data)), weights_t(on_device(p.weights_view(), weights.data)),
          k_t(on_device(p.k_view(), k.data)), k_scale_t(on_device(p.k_scale_view(), k_scale.data)),
          ks_t(on_device(p.ks_view(), ks.data)), ke_t(on_device(p.ke_view(), ke.data)) {}
};

std::vector<float> gpu_logits(dsa_context_t* gpu, Prefill& p) {
    DevicePrefill device(p);
    std::vector<float> poisoned = p.poisoned_output();
    DeviceBuffer<float> out(poisoned);
    dsa_tensor_t out_t = on_device(p.logits_view(poisoned), out.data);
    REQUIRE_MESSAGE(dsa_indexer_logits(gpu, nullptr, &device.q_t, &device.weights_t, &device.k_t, &device.k_scale_t,
                                       &device.ks_t, &device.ke_t, &out_t, nullptr) == DSA_STATUS_SUCCESS,
                    dsa_last_error_message());
    return out.download();
}

// The same problem on |codes| and |w|: the CPU logits are then the bound's M.
Prefill absolute(Prefill p) {
    for (uint8_t& code : p.q) code &= 0x7f;
    for (uint8_t& code : p.k) code &= 0x7f;
    for (float& w : p.weights) w = std::fabs(w);
    return p;
}

Agreement check_prefill(Prefill& p, dsa_context_t* cpu, dsa_context_t* gpu) {
    Prefill magnitude = absolute(p);
    return compare_logits(gpu_logits(gpu, p), p.run(cpu), magnitude.run(cpu), p.s_q, p.s_kv, p.logits_row_stride,
                          p.heads, p.dim);
}

}  // namespace

TEST_CASE("CUDA indexer_logits: one product at a time lands at its (row, token) in every kernel's layout") {
    // q has one code 1.0 at (row t0, head h0, dim d0) and k one at (token s0, dim d0): the only
    // non-zero logit is 1.0 at (t0, s0). Prints where each kernel put it (a layout map on failure).
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    struct Probe {
        int64_t row, head, dim, token;
    };
    struct Shape {
        int64_t heads, dim;
    };
    for (Shape shape : {Shape{64, 128}, Shape{16, 256}, Shape{128, 128}, Shape{32, 64}, Shape{3, 40}})
        for (Probe probe : {Probe{0, 0, 0, 0}, Probe{1, 5, 17, 9}, Probe{2, 63, 127, 200}, Probe{3, 33, 64, 130},
                            Probe{0, 8, 32, 64}, Probe{1, 1, 1, 127}, Probe{0, 2, 100, 255}}) {
            Prefill p(4, 256, shape.heads, shape.dim, 1, 0, 0);
            const int64_t head = probe.head % shape.heads, d = probe.dim % shape.dim;
            std::fill(p.q.begin(), p.q.end(), 0);
            std::fill(p.k.begin(), p.k.end(), 0);
            std::fill(p.weights.begin(), p.weights.end(), 1.0f);
            std::fill(p.k_scale.begin(), p.k_scale.end(), 1.0f);
            std::fill(p.ke.begin(), p.ke.end(), 256);
            p.q[static_cast<size_t>((probe.row * shape.heads + head) * shape.dim + d)] = 0x38;  // 1.0
            p.k[static_cast<size_t>(probe.token * shape.dim + d)] = 0x38;
            const std::vector<float> got = gpu_logits(gpu, p);
            std::string landed;
            int64_t nonzero = 0;
            for (int64_t t = 0; t < 4; ++t)
                for (int64_t s = 0; s < 256; ++s)
                    if (got[static_cast<size_t>(t * 256 + s)] != 0.0f && ++nonzero <= 4)
                        landed += " (" + std::to_string(t) + ", " + std::to_string(s) + ") = " +
                                  std::to_string(got[static_cast<size_t>(t * 256 + s)]);
            const bool right = nonzero == 1 && got[static_cast<size_t>(probe.row * 256 + probe.token)] == 1.0f;
            if (!right)
                std::printf("probe H_I %lld D_I %lld q(%lld, %lld, %lld) k(%lld): %lld non-zero:%s\n",
                            static_cast<long long>(shape.heads), static_cast<long long>(shape.dim),
                            static_cast<long long>(probe.row), static_cast<long long>(head), static_cast<long long>(d),
                            static_cast<long long>(probe.token), static_cast<long long>(nonzero), landed.c_str());
            CHECK(right);
        }
}

TEST_CASE("CUDA indexer_logits equals the CPU's within the FP8 bound: wgmma shapes, ragged and causal windows") {
    Context cpu(0), gpu(0, DSA_DEVICE_CUDA, 0);
    uint32_t seed = 100;
    struct Shape {
        int64_t heads, dim;
    };
    // Every head count of the wgmma kernel, one and two 128-byte chunks of D_I.
    for (Shape shape : {Shape{64, 128}, Shape{16, 128}, Shape{32, 256}, Shape{128, 256}, Shape{128, 128}}) {
        CAPTURE(shape.heads);
        CAPTURE(shape.dim);
        // 37 rows and 1000 keys: no tile multiples; q rows 16 bytes apart from the next; padded logits.
        Prefill ragged(37, 1000, shape.heads, shape.dim, seed += 10, /*q_padding=*/16, /*logits_padding=*/3);
        ragged.ragged(seed);
        expect_agreement(check_prefill(ragged, cpu, gpu), "prefill", ragged.heads, ragged.dim);
        Prefill chunked(37, 1000, shape.heads, shape.dim, seed += 10, 16, 3, /*transposed weights=*/true);
        chunked.causal(900);  // chunked prefill at offset 900: windows run past S_kv (clamped)
        expect_agreement(check_prefill(chunked, cpu, gpu), "prefill", chunked.heads, chunked.dim);
    }
}

TEST_CASE("CUDA indexer_logits: causal 2048, few long rows (column splits), one row, S_q > 65535") {
    Context cpu(0), gpu(0, DSA_DEVICE_CUDA, 0);
    Prefill causal(2048, 2048, 64, 128, 7, 0, 0);
    expect_agreement(check_prefill(causal, cpu, gpu), "prefill", causal.heads, causal.dim);
    // Two runs give the same bits (no race, no order dependence).
    CHECK(same_bits(gpu_logits(gpu, causal), gpu_logits(gpu, causal)));
    Prefill long_rows(5, 50000, 64, 128, 8, 16, 1);
    long_rows.ragged(9);
    expect_agreement(check_prefill(long_rows, cpu, gpu), "prefill", long_rows.heads, long_rows.dim);
    Prefill one(1, 1, 64, 128, 10);
    expect_agreement(check_prefill(one, cpu, gpu), "prefill", one.heads, one.dim);
    // More than 65535 query rows; the f16 kernel (one row per CUDA block) gets 70000 blocks.
    Prefill many(70000, 40, 64, 128, 11);
    expect_agreement(check_prefill(many, cpu, gpu), "prefill", many.heads, many.dim);
    Prefill many_rows(70000, 40, 3, 64, 12);
    expect_agreement(check_prefill(many_rows, cpu, gpu), "prefill", many_rows.heads, many_rows.dim);
}

TEST_CASE("CUDA indexer_logits: f16 tensor-core and scalar kernels for the other shapes") {
    Context cpu(0), gpu(0, DSA_DEVICE_CUDA, 0);
    struct Case {
        int64_t heads, dim, q_padding;
    };
    // H_I 3 and 1; D_I 20, 32, 64, 96 (not multiples of 128); q rows 3 bytes apart (no TMA);
    // H_I x D_I 2 x 20000 (its f16 copy exceeds shared memory: the scalar kernel).
    for (Case c : {Case{3, 128, 0}, Case{1, 64, 0}, Case{64, 20, 0}, Case{64, 32, 0}, Case{16, 64, 0},
                   Case{32, 96, 0}, Case{64, 128, 3}, Case{2, 20000, 0}}) {
        CAPTURE(c.heads);
        CAPTURE(c.dim);
        CAPTURE(c.q_padding);
        const int64_t s_kv = c.dim > 1000 ? 150 : 700;
        Prefill problem(29, s_kv, c.heads, c.dim, static_cast<uint32_t>(c.heads * 7 + c.dim), c.q_padding, 2, true);
        problem.ragged(static_cast<uint32_t>(c.dim));
        expect_agreement(check_prefill(problem, cpu, gpu), "prefill", problem.heads, problem.dim);
    }
}

TEST_CASE("CUDA indexer_logits: a NaN key code gives NaN exactly where it is visible, in every kernel") {
    Context cpu(0), gpu(0, DSA_DEVICE_CUDA, 0);
    struct Shape {
        int64_t heads, dim;
    };
    for (Shape shape : {Shape{64, 128}, Shape{3, 64}, Shape{2, 20000}}) {
        CAPTURE(shape.heads);
        Prefill problem(9, 300, shape.heads, shape.dim, 21, 0, 0);
        problem.causal(12);                                // row t sees tokens [0, 13 + t)
        problem.k[static_cast<size_t>(17 * shape.dim + 5)] = 0x7f;  // token 17
        const std::vector<float> got = gpu_logits(gpu, problem);
        expect_agreement(check_prefill(problem, cpu, gpu), "prefill", problem.heads, problem.dim);
        for (int64_t t = 0; t < 9; ++t)
            for (int64_t s = 0; s < 300; ++s) CHECK(is_nan_float(got[t * 300 + s]) == (s == 17 && t >= 5));
    }
}

// ---- Paged decode ---------------------------------------------------------------------------

namespace {

struct DevicePaged {
    DeviceBuffer<uint8_t> q, cache;
    DeviceBuffer<float> weights;
    DeviceBuffer<int32_t> block_table, context_lens;
    dsa_tensor_t q_t, weights_t, cache_t, table_t, lens_t;
    explicit DevicePaged(Paged& p)
        : q(p.q), cache(p.cache), weights(p.weights), block_table(p.block_table), context_lens(p.context_lens),
          q_t(on_device(p.q_view(), q.data)), weights_t(on_device(p.weights_view(), weights.data)),
          cache_t(on_device(p.cache_view(), cache.data)), table_t(on_device(p.table_view(), block_table.data)),
          lens_t(on_device(p.lens_view(), context_lens.data)) {}
};

std::vector<float> gpu_logits(dsa_context_t* gpu, Paged& p) {
    DevicePaged device(p);
    std::vector<float> poisoned = p.poisoned_output();
    DeviceBuffer<float> out(poisoned);
    dsa_tensor_t out_t = on_device(p.logits_view(poisoned), out.data);
    REQUIRE_MESSAGE(dsa_indexer_logits_paged(gpu, nullptr, &device.q_t, &device.weights_t, &device.cache_t,
                                             &device.table_t, &device.lens_t, &out_t, nullptr) == DSA_STATUS_SUCCESS,
                    dsa_last_error_message());
    return out.download();
}

Paged absolute(Paged p) {
    for (uint8_t& code : p.q) code &= 0x7f;
    for (float& w : p.weights) w = std::fabs(w);
    for (int64_t page = 0; page < p.num_pages; ++page)
        for (int64_t i = 0; i < kPage * p.dim; ++i) p.cache[static_cast<size_t>(page * p.page_stride + i)] &= 0x7f;
    return p;
}

Agreement check_paged(Paged& p, dsa_context_t* cpu, dsa_context_t* gpu) {
    Paged magnitude = absolute(p);
    return compare_logits(gpu_logits(gpu, p), p.run(cpu), magnitude.run(cpu), p.rows(), p.max_context,
                          p.logits_row_stride(), p.heads, p.dim);
}

}  // namespace

TEST_CASE("CUDA indexer_logits_paged equals the CPU's: n_next 1/2/3, bad block-table entries, NaN elsewhere") {
    Context cpu(0), gpu(0, DSA_DEVICE_CUDA, 0);
    struct Shape {
        int64_t heads, dim, page_padding;
    };
    // 64 x 128, 32 x 256 and 128 x 128 with 16-byte aligned pages (wgmma + TMA); 5 heads, D_I 64,
    // and pages 24 bytes apart (not TMA-aligned) take the f16 kernel.
    for (Shape shape : {Shape{64, 128, 32}, Shape{32, 256, 0}, Shape{128, 128, 16}, Shape{5, 64, 24},
                        Shape{16, 64, 0}, Shape{64, 128, 24}}) {
        for (int64_t next_n : {1, 2, 3}) {
            CAPTURE(shape.heads);
            CAPTURE(shape.page_padding);
            CAPTURE(next_n);
            // max_pages 9 = 576 tokens, max_context 560: lengths with a partial page, beyond the
            // table (clamped), zero, shorter than n_next, negative, exactly one tile.
            Paged problem(7, next_n, shape.heads, shape.dim, 9, 560, {130, 1000, 0, 1, -4, 256, 577},
                          static_cast<uint32_t>(shape.heads + next_n), shape.page_padding);
            expect_agreement(check_paged(problem, cpu, gpu), "paged", problem.heads, problem.dim);
            problem.block_table[0 * 9 + 1] = -1;  // inside visible ranges: -inf, never read
            problem.block_table[1 * 9 + 0] = static_cast<int32_t>(problem.num_pages);
            problem.block_table[1 * 9 + 3] = std::numeric_limits<int32_t>::max();
            problem.block_table[6 * 9 + 4] = std::numeric_limits<int32_t>::min();
            expect_agreement(check_paged(problem, cpu, gpu), "paged", problem.heads, problem.dim);
        }
    }
}

TEST_CASE("CUDA indexer_logits_paged: one long sequence spread over the SMs, and a wide batch") {
    Context cpu(0), gpu(0, DSA_DEVICE_CUDA, 0);
    Paged one(1, 1, 64, 128, 400, 400 * 64, {25000}, 41, 32);
    expect_agreement(check_paged(one, cpu, gpu), "paged", one.heads, one.dim);
    std::vector<int32_t> lengths(150);
    for (size_t b = 0; b < lengths.size(); ++b) lengths[b] = static_cast<int32_t>(37 * b % 1200 + 2);
    Paged batch(150, 2, 64, 128, 19, 19 * 64 + 7, lengths, 43, 32);  // max_context past the table
    expect_agreement(check_paged(batch, cpu, gpu), "paged", batch.heads, batch.dim);
}

// ---- Fused indexer + top-k ------------------------------------------------------------------

namespace {

std::vector<int32_t> row_sets(std::vector<int32_t> indices, int64_t k) {
    for (size_t row = 0; row * k < indices.size(); ++row)
        std::sort(indices.begin() + row * k, indices.begin() + (row + 1) * k);
    return indices;
}

// Random windows of up to `width` tokens over [0, s_kv), some empty, some clamped.
void random_windows(Prefill& p, int64_t width, uint32_t seed) {
    std::mt19937 engine(seed);
    for (int64_t t = 0; t < p.s_q; ++t) {
        const int64_t start = static_cast<int64_t>(engine() % static_cast<uint32_t>(p.s_kv)) - 50;
        p.ks[t] = static_cast<int32_t>(start);
        p.ke[t] = static_cast<int32_t>(start + static_cast<int64_t>(engine() % static_cast<uint32_t>(width)));
    }
    p.ks[0] = p.ke[0] = 5;  // empty
}

// dsa_indexer_topk (caller's workspace and its own) against dsa_indexer_logits then dsa_topk, for
// three k and every order; the CPU top-k over the same logits once; a workspace one byte short.
void check_indexer_topk(int64_t rows, int64_t keys, int64_t tile_rows) {
    Context cpu(0), gpu(0, DSA_DEVICE_CUDA, 0);
    Prefill p(rows, keys, 64, 128, 51, 0, 0);
    random_windows(p, 9000, 52);
    DevicePrefill device(p);
    std::vector<float> logits_host(static_cast<size_t>(p.s_q * p.s_kv));
    DeviceBuffer<float> logits(logits_host);
    dsa_tensor_t logits_t = on_device(view(logits_host.data(), {p.s_q, p.s_kv}, DSA_DTYPE_F32), logits.data);
    REQUIRE(dsa_indexer_logits(gpu, nullptr, &device.q_t, &device.weights_t, &device.k_t, &device.k_scale_t,
                               &device.ks_t, &device.ke_t, &logits_t, nullptr) == DSA_STATUS_SUCCESS);
    size_t workspace_bytes = 0;
    REQUIRE(dsa_indexer_topk_workspace_size(gpu, p.s_q, p.s_kv, &workspace_bytes) == DSA_STATUS_SUCCESS);
    CHECK(workspace_bytes >= static_cast<size_t>(tile_rows * keys * 4));
    DeviceBuffer<uint8_t> workspace(std::vector<uint8_t>(workspace_bytes, 0));
    for (int32_t k : {1, 100, 2048})
        for (dsa_topk_order_t order : {DSA_TOPK_ORDER_UNSPECIFIED, DSA_TOPK_ORDER_SCORE, DSA_TOPK_ORDER_INDEX}) {
            CAPTURE(k);
            CAPTURE(order);
            const dsa_topk_params_t params = topk_params(k, order, k > 64 ? 8 : 0, k > 64 ? 16 : 0);
            std::vector<int32_t> poison(static_cast<size_t>(p.s_q * k), 12345);
            DeviceBuffer<int32_t> unfused(poison), fused(poison), fused_owned(poison);
            dsa_tensor_t unfused_t = on_device(view(poison.data(), {p.s_q, k}, DSA_DTYPE_I32), unfused.data);
            dsa_tensor_t fused_t = on_device(unfused_t, fused.data), owned_t = on_device(unfused_t, fused_owned.data);
            REQUIRE(dsa_topk(gpu, &params, &logits_t, &device.ks_t, &device.ke_t, nullptr, &unfused_t, nullptr) ==
                    DSA_STATUS_SUCCESS);
            REQUIRE_MESSAGE(dsa_indexer_topk(gpu, nullptr, &params, &device.q_t, &device.weights_t, &device.k_t,
                                             &device.k_scale_t, &device.ks_t, &device.ke_t, &fused_t, workspace.data,
                                             workspace_bytes, nullptr) == DSA_STATUS_SUCCESS,
                            dsa_last_error_message());
            // NULL workspace: stream-ordered allocation inside the call.
            REQUIRE(dsa_indexer_topk(gpu, nullptr, &params, &device.q_t, &device.weights_t, &device.k_t,
                                     &device.k_scale_t, &device.ks_t, &device.ke_t, &owned_t, nullptr, 0,
                                     nullptr) == DSA_STATUS_SUCCESS);
            const std::vector<int32_t> expected = unfused.download();
            CHECK(fused.download() == expected);
            CHECK(fused_owned.download() == expected);
            if (order == DSA_TOPK_ORDER_UNSPECIFIED && k == 100) {
                // The CPU top-k over the same (GPU) logits selects the same sets.
                logits_host = logits.download();
                std::vector<int32_t> on_cpu(poison.size());
                dsa_tensor_t scores = view(logits_host.data(), {p.s_q, p.s_kv}, DSA_DTYPE_F32),
                             out = view(on_cpu.data(), {p.s_q, k}, DSA_DTYPE_I32), ks = p.ks_view(), ke = p.ke_view();
                REQUIRE(dsa_topk(cpu, &params, &scores, &ks, &ke, nullptr, &out, nullptr) == DSA_STATUS_SUCCESS);
                CHECK(row_sets(on_cpu, k) == row_sets(expected, k));
            }
        }
    std::vector<int32_t> untouched(static_cast<size_t>(p.s_q * 2048), 12345);
    DeviceBuffer<int32_t> indices(untouched);
    dsa_tensor_t indices_t = on_device(view(untouched.data(), {p.s_q, 2048}, DSA_DTYPE_I32), indices.data);
    CHECK_FAILS_WITH(dsa_indexer_topk(gpu, nullptr, nullptr, &device.q_t, &device.weights_t, &device.k_t,
                                      &device.k_scale_t, &device.ks_t, &device.ke_t, &indices_t, workspace.data,
                                      workspace_bytes - 1, nullptr),
                     DSA_STATUS_WORKSPACE_TOO_SMALL, "workspace");
    CHECK(indices.download() == untouched);
}

}  // namespace

// compute-sanitizer's racecheck does not finish the full size in 400 s; the sanitizer size runs
// the same kernels in one tile (bench/run_gpu.sh).
TEST_CASE("CUDA indexer_topk equals CUDA indexer_logits + CUDA topk exactly, over several tiles (full size)") {
    check_indexer_topk(150, 600000, 96);  // a 256 MB tile holds 96 rows of 600000 keys: two tiles
}

TEST_CASE("CUDA indexer_topk equals CUDA indexer_logits + CUDA topk exactly (sanitizer size)") {
    check_indexer_topk(24, 12000, 24);
}

TEST_CASE("CUDA indexer_topk_paged equals CUDA indexer_logits_paged + CUDA topk, as indices and as slots") {
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    // 70 sequences x 2 queries over a 10000-page table (640000 columns: two tiles of 96 rows),
    // pages drawn from a shared pool of 3000, a few entries out of range.
    const int64_t batch = 70, next_n = 2, heads = 64, dim = 128, max_pages = 10000, num_pages = 3000;
    const int64_t rows = batch * next_n, columns = max_pages * kPage, page_bytes = kPage * (dim + 4);
    std::vector<uint8_t> q = random_codes(static_cast<size_t>(rows * heads * dim), 61);
    std::vector<uint8_t> cache = random_codes(static_cast<size_t>(num_pages * page_bytes), 62);
    std::mt19937 engine(63);
    for (int64_t page = 0; page < num_pages; ++page)
        for (int64_t slot = 0; slot < kPage; ++slot) {
            const float scale = 0.01f + static_cast<float>(engine() % 1000) / 500.0f;
            std::memcpy(cache.data() + page * page_bytes + kPage * dim + 4 * slot, &scale, 4);
        }
    std::vector<float> weights = random_floats(static_cast<size_t>(rows * heads), 64);
    std::vector<int32_t> table(static_cast<size_t>(batch * max_pages)), lengths(static_cast<size_t>(batch));
    for (int32_t& entry : table) entry = static_cast<int32_t>(engine() % (num_pages + 20)) - 10;
    for (int64_t b = 0; b < batch; ++b) lengths[b] = static_cast<int32_t>(engine() % 12000) - 100;
    lengths[3] = static_cast<int32_t>(columns);  // the whole table
    DeviceBuffer<uint8_t> q_d(q), cache_d(cache);
    DeviceBuffer<float> weights_d(weights);
    DeviceBuffer<int32_t> table_d(table), lengths_d(lengths);
    dsa_tensor_t q_t = on_device(view(q.data(), {batch, next_n, heads, dim}, DSA_DTYPE_U8), q_d.data),
                 w_t = on_device(view(weights.data(), {rows, heads}, DSA_DTYPE_F32), weights_d.data),
                 cache_t = on_device(view(cache.data(), {num_pages, page_bytes}, DSA_DTYPE_U8), cache_d.data),
                 table_t = on_device(view(table.data(), {batch, max_pages}, DSA_DTYPE_I32), table_d.data),
                 lens_t = on_device(view(lengths.data(), {batch}, DSA_DTYPE_I32), lengths_d.data);
    std::vector<float> logits_host(static_cast<size_t>(rows * columns));
    DeviceBuffer<float> logits(logits_host);
    dsa_tensor_t logits_t = on_device(view(logits_host.data(), {rows, columns}, DSA_DTYPE_F32), logits.data);
    REQUIRE(dsa_indexer_logits_paged(gpu, nullptr, &q_t, &w_t, &cache_t, &table_t, &lens_t, &logits_t, nullptr) ==
            DSA_STATUS_SUCCESS);
    // Row windows as dsa.h defines them: [0, clamp(len) - n_next + j + 1).
    std::vector<int32_t> ends(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t length = std::clamp<int64_t>(lengths[r / next_n], 0, columns);
        ends[r] = static_cast<int32_t>(std::max<int64_t>(0, length - next_n + r % next_n + 1));
    }
    DeviceBuffer<int32_t> ends_d(ends);
    dsa_tensor_t ends_t = on_device(view(ends.data(), {rows}, DSA_DTYPE_I32), ends_d.data);
    for (dsa_topk_order_t order : {DSA_TOPK_ORDER_UNSPECIFIED, DSA_TOPK_ORDER_SCORE}) {
        CAPTURE(order);
        const dsa_topk_params_t params = topk_params(2048, order, 4, 64);
        std::vector<int32_t> poison(static_cast<size_t>(rows * 2048), 12345);
        DeviceBuffer<int32_t> tokens(poison), slots(poison), fused_tokens(poison), fused_slots(poison),
            slots_only(poison);
        dsa_tensor_t tokens_t = on_device(view(poison.data(), {rows, 2048}, DSA_DTYPE_I32), tokens.data);
        dsa_tensor_t slots_t = on_device(tokens_t, slots.data), fused_tokens_t = on_device(tokens_t, fused_tokens.data),
                     fused_slots_t = on_device(tokens_t, fused_slots.data),
                     slots_only_t = on_device(tokens_t, slots_only.data);
        REQUIRE(dsa_topk(gpu, &params, &logits_t, nullptr, &ends_t, nullptr, &tokens_t, nullptr) == DSA_STATUS_SUCCESS);
        REQUIRE(dsa_topk(gpu, &params, &logits_t, nullptr, &ends_t, &table_t, &slots_t, nullptr) == DSA_STATUS_SUCCESS);
        REQUIRE_MESSAGE(dsa_indexer_topk_paged(gpu, nullptr, &params, &q_t, &w_t, &cache_t, &table_t, &lens_t,
                                               &fused_tokens_t, &fused_slots_t, nullptr, 0,
                                               nullptr) == DSA_STATUS_SUCCESS,
                        dsa_last_error_message());
        REQUIRE(dsa_indexer_topk_paged(gpu, nullptr, &params, &q_t, &w_t, &cache_t, &table_t, &lens_t, nullptr,
                                       &slots_only_t, nullptr, 0, nullptr) == DSA_STATUS_SUCCESS);
        const std::vector<int32_t> expected_tokens = tokens.download(), expected_slots = slots.download();
        CHECK(fused_tokens.download() == expected_tokens);
        CHECK(fused_slots.download() == expected_slots);
        CHECK(slots_only.download() == expected_slots);
    }
}

// ---- Cache writers --------------------------------------------------------------------------

namespace {

// Values over many magnitudes, with a few NaN and +-Inf.
std::vector<float> cache_inputs(size_t count, uint32_t seed) {
    std::vector<float> values = random_floats(count, seed, -1.0f, 1.0f);
    std::mt19937 engine(seed + 1);
    for (size_t i = 0; i < count; ++i) {
        values[i] *= std::ldexp(1.0f, static_cast<int>(engine() % 40) - 20);
        if (engine() % 997 == 0) values[i] = NAN;
        if (engine() % 991 == 0) values[i] = engine() % 2 ? INFINITY : -INFINITY;
    }
    return values;
}

// Slots in [-3, num_slots + 3): padding (-1), out of range, and many tokens sharing a slot
// (T > num_slots), including across 256-token blocks.
std::vector<int64_t> slot_mapping(int64_t tokens, int64_t num_slots, uint32_t seed) {
    std::mt19937 engine(seed);
    std::vector<int64_t> slots(static_cast<size_t>(tokens));
    for (int64_t& slot : slots) slot = static_cast<int64_t>(engine() % static_cast<uint32_t>(num_slots + 6)) - 3;
    return slots;
}

}  // namespace

TEST_CASE("CUDA indexer_cache_write stores the CPU writer's bytes (f32 and bf16, duplicates, odd strides)") {
    Context cpu(0), gpu(0, DSA_DEVICE_CUDA, 0);
    for (int64_t dim : {128, 20})
        for (dsa_dtype_t dtype : {DSA_DTYPE_F32, DSA_DTYPE_BF16}) {
            CAPTURE(dim);
            CAPTURE(dtype);
            const int64_t tokens = 3000, num_pages = 30, page_stride = kPage * (dim + 4) + 3;  // pages 3 bytes apart
            const std::vector<float> values = cache_inputs(static_cast<size_t>(tokens * dim), 71);
            const std::vector<uint16_t> halves = to_bf16(values);
            const std::vector<int64_t> slots = slot_mapping(tokens, num_pages * kPage, 72);
            std::vector<uint8_t> cache = random_codes(static_cast<size_t>(num_pages * page_stride), 73);
            void* host_k = dtype == DSA_DTYPE_F32 ? static_cast<void*>(const_cast<float*>(values.data()))
                                                  : static_cast<void*>(const_cast<uint16_t*>(halves.data()));
            dsa_tensor_t k_t = view(host_k, {tokens, dim}, dtype),
                         slots_t = view(const_cast<int64_t*>(slots.data()), {tokens}, DSA_DTYPE_I64);
            DeviceBuffer<uint8_t> cache_d(cache);
            DeviceBuffer<float> values_d(values);
            DeviceBuffer<uint16_t> halves_d(halves);
            DeviceBuffer<int64_t> slots_d(slots);
            dsa_tensor_t cache_t =
                strided(cache.data(), {num_pages, kPage * (dim + 4)}, {page_stride, 1}, DSA_DTYPE_U8);
            dsa_tensor_t k_d = on_device(k_t, dtype == DSA_DTYPE_F32 ? static_cast<void*>(values_d.data)
                                                                     : static_cast<void*>(halves_d.data)),
                         slots_dt = on_device(slots_t, slots_d.data), cache_dt = on_device(cache_t, cache_d.data);
            REQUIRE(dsa_indexer_cache_write(cpu, &k_t, &slots_t, &cache_t, nullptr) == DSA_STATUS_SUCCESS);
            REQUIRE_MESSAGE(dsa_indexer_cache_write(gpu, &k_d, &slots_dt, &cache_dt, nullptr) == DSA_STATUS_SUCCESS,
                            dsa_last_error_message());
            CHECK(cache_d.download() == cache);
        }
}

TEST_CASE("CUDA mla_cache_write stores the CPU writer's bytes (f32 and bf16, duplicates, unaligned entries)") {
    Context cpu(0), gpu(0, DSA_DEVICE_CUDA, 0);
    for (dsa_dtype_t dtype : {DSA_DTYPE_F32, DSA_DTYPE_BF16}) {
        CAPTURE(dtype);
        const int64_t tokens = 2000, num_pages = 100, page_size = 16, entry_stride = 657;
        const int64_t page_stride = page_size * entry_stride + 5;
        const std::vector<float> latent = cache_inputs(static_cast<size_t>(tokens * 512), 81),
                                 rope = cache_inputs(static_cast<size_t>(tokens * 64), 82);
        const std::vector<uint16_t> latent_half = to_bf16(latent), rope_half = to_bf16(rope);
        const std::vector<int64_t> slots = slot_mapping(tokens, num_pages * page_size, 83);
        std::vector<uint8_t> cache = random_codes(static_cast<size_t>(num_pages * page_stride), 84);
        const bool f32 = dtype == DSA_DTYPE_F32;
        dsa_tensor_t c_t = view(f32 ? static_cast<void*>(const_cast<float*>(latent.data()))
                                    : static_cast<void*>(const_cast<uint16_t*>(latent_half.data())),
                                {tokens, 512}, dtype),
                     r_t = view(f32 ? static_cast<void*>(const_cast<float*>(rope.data()))
                                    : static_cast<void*>(const_cast<uint16_t*>(rope_half.data())),
                                {tokens, 64}, dtype),
                     s_t = view(const_cast<int64_t*>(slots.data()), {tokens}, DSA_DTYPE_I64),
                     cache_t = strided(cache.data(), {num_pages, page_size, 656}, {page_stride, entry_stride, 1},
                                       DSA_DTYPE_U8);
        DeviceBuffer<float> latent_d(latent), rope_d(rope);
        DeviceBuffer<uint16_t> latent_half_d(latent_half), rope_half_d(rope_half);
        DeviceBuffer<int64_t> slots_d(slots);
        DeviceBuffer<uint8_t> cache_d(cache);
        dsa_tensor_t c_d = on_device(c_t, f32 ? static_cast<void*>(latent_d.data) : latent_half_d.data),
                     r_d = on_device(r_t, f32 ? static_cast<void*>(rope_d.data) : rope_half_d.data),
                     s_d = on_device(s_t, slots_d.data), cache_d_t = on_device(cache_t, cache_d.data);
        REQUIRE(dsa_mla_cache_write(cpu, &c_t, &r_t, &s_t, &cache_t, nullptr) == DSA_STATUS_SUCCESS);
        REQUIRE_MESSAGE(dsa_mla_cache_write(gpu, &c_d, &r_d, &s_d, &cache_d_t, nullptr) == DSA_STATUS_SUCCESS,
                        dsa_last_error_message());
        CHECK(cache_d.download() == cache);
    }
}
