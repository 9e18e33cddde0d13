// CUDA top-k against the CPU path on the same scores: the tie rule makes the selected set
// exact, so sets (and ordered outputs) must be equal, not close.
#include <algorithm>
#include <cmath>

#include "gpu_support.hpp"

using namespace dsa_test;

namespace {

enum class Pattern { uniform, plateau, few_levels, with_nan };

std::vector<float> scores_for(Pattern pattern, int64_t count, uint32_t seed) {
    std::vector<float> scores = random_floats(count, seed, -4.0f, 4.0f);
    std::mt19937 engine(seed + 1);
    for (float& score : scores) {
        switch (pattern) {
            case Pattern::plateau: if (engine() % 100 < 95) score = 0.0f; break;  // ReLU-sum plateaus
            case Pattern::few_levels: score = std::floor(score); break;
            case Pattern::with_nan:
                if (engine() % 50 == 0) score = NAN;
                if (engine() % 70 == 0) score = -INFINITY;
                break;
            case Pattern::uniform: break;
        }
    }
    return scores;
}

// Runs topk on both devices and returns (cpu, gpu) outputs.
std::pair<std::vector<int32_t>, std::vector<int32_t>> both(const std::vector<float>& scores, int64_t rows, int64_t n,
                                                           const dsa_topk_params_t& params,
                                                           const std::vector<int32_t>* starts,
                                                           const std::vector<int32_t>* ends,
                                                           const std::vector<int32_t>* table, int64_t table_rows) {
    Context cpu(2);
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    std::vector<int32_t> cpu_out(rows * params.k, -5);
    dsa_tensor_t scores_t = view(const_cast<float*>(scores.data()), {rows, n}, DSA_DTYPE_F32);
    dsa_tensor_t out_t = view(cpu_out.data(), {rows, params.k}, DSA_DTYPE_I32);
    dsa_tensor_t starts_t{}, ends_t{}, table_t{};
    if (starts) starts_t = view(const_cast<int32_t*>(starts->data()), {rows}, DSA_DTYPE_I32);
    if (ends) ends_t = view(const_cast<int32_t*>(ends->data()), {rows}, DSA_DTYPE_I32);
    if (table) table_t = view(const_cast<int32_t*>(table->data()), {table_rows, static_cast<int64_t>(table->size()) / table_rows}, DSA_DTYPE_I32);
    REQUIRE(dsa_topk(cpu, &params, &scores_t, starts ? &starts_t : nullptr, ends ? &ends_t : nullptr,
                     table ? &table_t : nullptr, &out_t, nullptr) == DSA_STATUS_SUCCESS);

    DeviceBuffer<float> scores_dev(scores);
    DeviceBuffer<int32_t> out_dev(std::vector<int32_t>(cpu_out.size(), 12345));
    std::vector<int32_t> empty(1, 0);
    DeviceBuffer<int32_t> starts_dev(starts ? *starts : empty), ends_dev(ends ? *ends : empty),
        table_dev(table ? *table : empty);
    dsa_tensor_t scores_d = on_device(scores_t, scores_dev.data), out_d = on_device(out_t, out_dev.data);
    dsa_tensor_t starts_d = on_device(starts_t, starts_dev.data), ends_d = on_device(ends_t, ends_dev.data),
                 table_d = on_device(table_t, table_dev.data);
    REQUIRE_MESSAGE(dsa_topk(gpu, &params, &scores_d, starts ? &starts_d : nullptr, ends ? &ends_d : nullptr,
                             table ? &table_d : nullptr, &out_d, nullptr) == DSA_STATUS_SUCCESS,
                    dsa_last_error_message());
    return {cpu_out, out_dev.download()};
}

// The selected set of each row (sorted), for order-free comparison.
std::vector<int32_t> row_sets(std::vector<int32_t> indices, int64_t k) {
    for (size_t row = 0; row * k < indices.size(); ++row) std::sort(indices.begin() + row * k, indices.begin() + (row + 1) * k);
    return indices;
}

// Every pattern x size x k x order; rows of more than 4099 tokens come `long_rows` at a time.
void check_pattern_matrix(std::initializer_list<int64_t> sizes, std::initializer_list<int32_t> ks, int64_t rows_short,
                          int64_t long_rows) {
    for (Pattern pattern : {Pattern::uniform, Pattern::plateau, Pattern::few_levels, Pattern::with_nan})
        for (int64_t n : sizes)
            for (int32_t k : ks)
                for (dsa_topk_order_t order : {DSA_TOPK_ORDER_UNSPECIFIED, DSA_TOPK_ORDER_SCORE, DSA_TOPK_ORDER_INDEX}) {
                    const int64_t rows = n > 4099 ? long_rows : rows_short;
                    CAPTURE(static_cast<int>(pattern)); CAPTURE(n); CAPTURE(k); CAPTURE(order);
                    const std::vector<float> scores = scores_for(pattern, rows * n, static_cast<uint32_t>(n + k));
                    const auto [cpu, gpu] = both(scores, rows, n, topk_params(k, order), nullptr, nullptr, nullptr, 0);
                    if (order == DSA_TOPK_ORDER_UNSPECIFIED)
                        CHECK(row_sets(cpu, k) == row_sets(gpu, k));
                    else
                        CHECK(cpu == gpu);
                }
}

}  // namespace

// Cases marked "full size" have a twin at sanitizer size over the same kernels and branches:
// compute-sanitizer's racecheck does not finish the full ones in 400 s (bench/run_gpu.sh).
TEST_CASE("CUDA topk selects the CPU's set: patterns x sizes x k x orders (full size)") {
    check_pattern_matrix({1, 7, 1000, 4099, 70000}, {1, 5, 512, 2048}, 24, 6);
}

TEST_CASE("CUDA topk selects the CPU's set: patterns x sizes x k x orders (sanitizer size)") {
    check_pattern_matrix({1, 7, 4099, 70000}, {5, 2048}, 4, 1);
}

TEST_CASE("CUDA topk: ragged and clamped windows, hybrid sink/local, block-table translation") {
    const int64_t rows = 40, n = 9000;
    const std::vector<float> scores = scores_for(Pattern::plateau, rows * n, 5);
    std::vector<int32_t> starts(rows), ends(rows);
    std::mt19937 engine(6);
    for (int64_t r = 0; r < rows; ++r) {
        starts[r] = static_cast<int32_t>(engine() % 3000) - 200;  // some negative: clamped
        ends[r] = static_cast<int32_t>(engine() % 9500);          // some past n, some before start
    }
    starts[3] = 100, ends[3] = 100;    // empty
    starts[4] = 10, ends[4] = 30;      // shorter than n_sink + n_local
    // 4 block-table rows of 150 pages (64 tokens), shuffled, a few unmapped or out of range.
    std::vector<int32_t> table(4 * 150);
    for (size_t i = 0; i < table.size(); ++i) table[i] = static_cast<int32_t>((i * 37 + 11) % 700);
    table[5] = -1;
    table[160] = -4;
    for (dsa_topk_order_t order : {DSA_TOPK_ORDER_UNSPECIFIED, DSA_TOPK_ORDER_SCORE, DSA_TOPK_ORDER_INDEX}) {
        CAPTURE(order);
        const dsa_topk_params_t params = topk_params(256, order, 8, 32);
        auto [cpu, gpu] = both(scores, rows, n, params, &starts, &ends, nullptr, 0);
        CHECK(row_sets(cpu, params.k) == row_sets(gpu, params.k));
        if (order != DSA_TOPK_ORDER_UNSPECIFIED) CHECK(cpu == gpu);
        auto [cpu_slots, gpu_slots] = both(scores, rows, n, params, &starts, &ends, &table, 4);
        CHECK(row_sets(cpu_slots, params.k) == row_sets(gpu_slots, params.k));
        if (order != DSA_TOPK_ORDER_UNSPECIFIED) CHECK(cpu_slots == gpu_slots);
    }
}

namespace {

// Rows of n tokens over a cluster: windowed rows in index order (hybrid sink/local) and whole
// rows in any order, for each score pattern, must select the CPU's set.
void check_cluster_rows(int64_t n, const std::vector<int32_t>& starts, const std::vector<int32_t>& ends, int32_t k,
                        uint32_t seed) {
    const int64_t rows = static_cast<int64_t>(starts.size());
    for (Pattern pattern : {Pattern::uniform, Pattern::plateau, Pattern::with_nan}) {
        CAPTURE(n); CAPTURE(static_cast<int>(pattern));
        const std::vector<float> scores = scores_for(pattern, rows * n, seed);
        const dsa_topk_params_t params = topk_params(k, DSA_TOPK_ORDER_INDEX, 4, 64);
        auto [cpu, gpu] = both(scores, rows, n, params, &starts, &ends, nullptr, 0);
        CHECK(cpu == gpu);
        const dsa_topk_params_t plain = topk_params(2048, DSA_TOPK_ORDER_UNSPECIFIED);
        auto [cpu_plain, gpu_plain] = both(scores, rows, n, plain, nullptr, nullptr, nullptr, 0);
        CHECK(row_sets(cpu_plain, plain.k) == row_sets(gpu_plain, plain.k));
    }
}

}  // namespace

TEST_CASE("CUDA topk: long rows split over a cluster of blocks (and too long for one) select the CPU's set (full size)") {
    // 131072 and 262143 tokens: 16 blocks of 8K / 16K keys; 600000: 16 blocks of 37500 keys;
    // 1100000: chunks beyond shared memory, one block per row. Plateaus put ties at the
    // threshold in every block, so their index-order ranking crosses block boundaries.
    for (int64_t n : {131072, 262143, 600000, 1100000})
        check_cluster_rows(n, {0, 5000, 17}, {static_cast<int32_t>(n), static_cast<int32_t>(n - 3), 9000}, 2048,
                           static_cast<uint32_t>(n % 1000 + 3));
}

TEST_CASE("CUDA topk: long rows split over a cluster of blocks (and too long for one) select the CPU's set (sanitizer size)") {
    // One row each: 16 blocks of 8K keys, and chunks beyond shared memory.
    for (int64_t n : {131072, 1100000})
        check_cluster_rows(n, {5000}, {static_cast<int32_t>(n - 3)}, 2048, static_cast<uint32_t>(n % 1000 + 3));
}

TEST_CASE("CUDA topk: short rows over small clusters select the CPU's set") {
    // Few rows leave the GPU idle, so even short rows are split: 5000 tokens over 2 blocks,
    // 16384 over 8 (chunks of 2048 keys). Small enough for compute-sanitizer's racecheck.
    for (int64_t n : {5000, 16384})
        check_cluster_rows(n, {0, 100}, {static_cast<int32_t>(n), static_cast<int32_t>(n - 1)}, 1024,
                           static_cast<uint32_t>(n + 7));
}

namespace {

// Two runs over `rows` rows of 40 tokens with k 48 (> N) in score order.
void check_rows_repeat(int64_t rows) {
    const int64_t n = 40;
    const std::vector<float> scores = scores_for(Pattern::few_levels, rows * n, 9);
    const dsa_topk_params_t params = topk_params(48, DSA_TOPK_ORDER_SCORE);
    auto [cpu, gpu] = both(scores, rows, n, params, nullptr, nullptr, nullptr, 0);
    CHECK(cpu == gpu);
    auto [cpu_again, gpu_again] = both(scores, rows, n, params, nullptr, nullptr, nullptr, 0);
    CHECK(gpu_again == gpu);
}

}  // namespace

TEST_CASE("CUDA topk: more than 65535 rows, k > N, runs are bitwise identical (full size)") { check_rows_repeat(70000); }

TEST_CASE("CUDA topk: many rows, k > N, runs are bitwise identical (sanitizer size)") { check_rows_repeat(700); }

TEST_CASE("CUDA topk: score order beyond the shared-memory sort is refused with a message") {
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    const int64_t n = 20000, k = 17000;
    std::vector<float> scores = random_floats(n, 3);
    DeviceBuffer<float> scores_dev(scores);
    DeviceBuffer<int32_t> out_dev(std::vector<int32_t>(k, 0));
    dsa_tensor_t scores_d = on_device(view(scores.data(), {1, n}, DSA_DTYPE_F32), scores_dev.data);
    dsa_tensor_t out_d = on_device(view(scores.data(), {1, k}, DSA_DTYPE_I32), out_dev.data);
    const dsa_topk_params_t sorted = topk_params(static_cast<int32_t>(k), DSA_TOPK_ORDER_SCORE);
    CHECK_FAILS_WITH(dsa_topk(gpu, &sorted, &scores_d, nullptr, nullptr, nullptr, &out_d, nullptr),
                     DSA_STATUS_UNSUPPORTED, "order");
    const dsa_topk_params_t by_index = topk_params(static_cast<int32_t>(k), DSA_TOPK_ORDER_INDEX);
    CHECK(dsa_topk(gpu, &by_index, &scores_d, nullptr, nullptr, nullptr, &out_d, nullptr) == DSA_STATUS_SUCCESS);
}
