// Scalar oracle for the Hadamard rotation: the explicit Sylvester matrix, f64 sums (tests only).
#include <vector>

#include "../ops/hadamard.hpp"

namespace dsa::reference {

void hadamard(const HadamardProblem& p) {
    const RowLayout x_rows = leading_rows(p.x), y_rows = leading_rows(p.y);
    std::vector<double> input(static_cast<size_t>(p.n));
    for (int64_t row = 0; row < p.rows; ++row) {
        for (int64_t j = 0; j < p.n; ++j)
            input[j] = p.x.dtype == DType::bf16 ? bf16_to_float(p.x.as<const uint16_t>()[x_rows.offset(row) + j])
                                                : p.x.as<const float>()[x_rows.offset(row) + j];
        for (int64_t col = 0; col < p.n; ++col) {
            double sum = 0.0;
            // Sylvester order: H[i][j] = (-1)^popcount(i & j).
            for (int64_t i = 0; i < p.n; ++i) sum += (__builtin_popcountll(i & col) & 1) ? -input[i] : input[i];
            const float value = static_cast<float>(sum * p.scale);
            if (p.y.dtype == DType::bf16)
                p.y.as<uint16_t>()[y_rows.offset(row) + col] = float_to_bf16(value);
            else
                p.y.as<float>()[y_rows.offset(row) + col] = value;
        }
    }
}

}  // namespace dsa::reference
