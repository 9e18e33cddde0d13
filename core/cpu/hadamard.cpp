// CPU Hadamard rotation: the in-place butterfly on an f32 copy of each row.
#include "../ops/hadamard.hpp"
#include "isa.hpp"

namespace dsa::cpu {

DSA_CPU_MULTIVERSION void hadamard_butterfly(float* v, int64_t n, float scale) {
    for (int64_t half = 1; half < n; half *= 2)
        for (int64_t block = 0; block < n; block += 2 * half)
            for (int64_t j = block; j < block + half; ++j) {
                const float a = v[j], b = v[j + half];
                v[j] = a + b;
                v[j + half] = a - b;
            }
    for (int64_t j = 0; j < n; ++j) v[j] *= scale;
}

namespace {

template <typename T>
void rotate_rows(Context& context, const HadamardProblem& p) {
    const RowLayout x_rows = leading_rows(p.x), y_rows = leading_rows(p.y);
    const int64_t rows_per_chunk = p.n >= 16384 ? 1 : 16384 / p.n;
    context.pool().parallel_for(p.rows, rows_per_chunk, [&](int64_t begin, int64_t end) {
        alignas(64) float row[kHadamardMaxLength];
        for (int64_t r = begin; r < end; ++r) {
            const T* x = p.x.as<const T>() + x_rows.offset(r);
            T* y = p.y.as<T>() + y_rows.offset(r);
            for (int64_t j = 0; j < p.n; ++j) row[j] = to_float(x[j]);
            hadamard_butterfly(row, p.n, p.scale);
            for (int64_t j = 0; j < p.n; ++j) {
                if constexpr (sizeof(T) == 4) {
                    y[j] = row[j];
                } else {
                    y[j] = bf16_t{float_to_bf16(row[j])};
                }
            }
        }
    });
}

}  // namespace

void hadamard(Context& context, const HadamardProblem& problem) {
    if (problem.x.dtype == DType::bf16) return rotate_rows<bf16_t>(context, problem);
    rotate_rows<float>(context, problem);
}

}  // namespace dsa::cpu
