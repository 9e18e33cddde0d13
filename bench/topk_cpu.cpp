// CPU top-k (k = 2048) through the C API: median time and effective bandwidth (scores read plus
// indices written) next to the machine's memory-copy ceiling. Each shape's result is checked
// against the scalar reference first.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "bench/timing.hpp"
#include "core/ops/topk.hpp"
#include "dsa.h"

namespace {

dsa_tensor_t contiguous(void* data, int64_t rows, int64_t columns, dsa_dtype_t dtype) {
    dsa_tensor_t tensor;
    const int64_t shape[2] = {rows, columns};
    dsa_tensor_init_contiguous(&tensor, data, 2, shape, dtype, DSA_DEVICE_CPU, 0);
    return tensor;
}

// Uniform scores, or ReLU-sum-like ones: 90% exact 0.0 (the plateau that makes ties common).
std::vector<float> make_scores(int64_t count, bool plateau) {
    std::mt19937 engine(42);
    std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
    std::vector<float> scores(static_cast<size_t>(count));
    for (float& score : scores) score = plateau && engine() % 10 != 0 ? 0.0f : uniform(engine);
    return scores;
}

// The same SET as the reference (the unspecified order is compared sorted).
bool matches_reference(const std::vector<float>& scores, const std::vector<int32_t>& indices, int64_t rows,
                       int64_t n, int64_t k) {
    std::vector<int32_t> expected(indices.size());
    dsa::TopkProblem problem;
    dsa_tensor_t scores_view = contiguous(const_cast<float*>(scores.data()), rows, n, DSA_DTYPE_F32);
    dsa_tensor_t expected_view = contiguous(expected.data(), rows, k, DSA_DTYPE_I32);
    static_assert(sizeof(dsa_tensor_t) == sizeof(dsa::TensorView));
    std::memcpy(&problem.scores, &scores_view, sizeof scores_view);
    std::memcpy(&problem.indices, &expected_view, sizeof expected_view);
    problem.config.k = k;
    problem.rows = rows;
    problem.n = n;
    dsa::reference::topk(problem);
    for (int64_t r = 0; r < rows; ++r) {
        std::vector<int32_t> got(indices.begin() + r * k, indices.begin() + (r + 1) * k);
        std::sort(got.begin(), got.end());
        if (!std::equal(got.begin(), got.end(), expected.begin() + r * k)) return false;
    }
    return true;
}

}  // namespace

int main() {
    dsa_context_t* context = nullptr;
    if (dsa_context_create(&context, nullptr) != DSA_STATUS_SUCCESS) return 1;
    int32_t threads = 0;
    dsa_context_num_threads(context, &threads);
    const double copy_gbps = dsa_bench::measure_copy_gbps();
    std::printf("%s\nthreads %d, memory copy ceiling %.1f GB/s (read + write)\n", dsa_build_info(), threads,
                copy_gbps);
    std::printf("%-10s %-8s %-11s %10s %8s %10s\n", "shape", "scores", "order", "median ms", "GB/s", "of copy");

    const int64_t k = 2048;
    struct Shape { int64_t rows, n; const char* name; };
    const Shape shapes[] = {{1, 131072, "1 x 128K"}, {16, 131072, "16 x 128K"}, {64, 32768, "64 x 32K"}};
    int failures = 0;
    for (const Shape& shape : shapes)
        for (bool plateau : {false, true}) {
            std::vector<float> scores = make_scores(shape.rows * shape.n, plateau);
            std::vector<int32_t> indices(static_cast<size_t>(shape.rows * k));
            dsa_tensor_t scores_view = contiguous(scores.data(), shape.rows, shape.n, DSA_DTYPE_F32);
            dsa_tensor_t indices_view = contiguous(indices.data(), shape.rows, k, DSA_DTYPE_I32);
            for (dsa_topk_order_t order : {DSA_TOPK_ORDER_UNSPECIFIED, DSA_TOPK_ORDER_SCORE}) {
                dsa_topk_params_t params;
                dsa_topk_params_init(&params);
                params.k = static_cast<int32_t>(k);
                params.order = order;
                auto run = [&] {
                    if (dsa_topk(context, &params, &scores_view, nullptr, nullptr, nullptr, &indices_view, nullptr) !=
                        DSA_STATUS_SUCCESS)
                        std::printf("dsa_topk failed: %s\n", dsa_last_error_message());
                };
                run();
                if (!matches_reference(scores, indices, shape.rows, shape.n, k)) {
                    std::printf("%s: result differs from the reference\n", shape.name);
                    ++failures;
                }
                const double seconds = dsa_bench::median_seconds(run, 20, 3);
                const double bytes = static_cast<double>(shape.rows) * (shape.n + k) * 4.0;
                const double gbps = bytes / seconds / 1e9;
                std::printf("%-10s %-8s %-11s %10.3f %8.1f %9.0f%%\n", shape.name, plateau ? "plateau" : "uniform",
                            order == DSA_TOPK_ORDER_SCORE ? "score" : "unspecified", seconds * 1e3, gbps,
                            100.0 * gbps / copy_gbps);
            }
        }
    dsa_context_destroy(context);
    return failures == 0 ? 0 : 1;
}
