// CPU fused rotation + quantisation: each row goes through the f32 buffer the rotation uses and
// straight into the group quantiser, with the two ops' own row functions (so the results are
// theirs, bit for bit).
#include "../ops/hadamard_quantize.hpp"

namespace dsa::cpu {
namespace {

template <typename T>
void rotate_and_quantize_rows(Context& context, const HadamardQuantizeFp8Problem& problem) {
    const QuantizeFp8Problem& p = problem.quantization;
    const RowLayout x_rows = leading_rows(p.values), q_rows = leading_rows(p.codes), s_rows = leading_rows(p.scales);
    const int64_t scale_stride = p.scales.stride(-1);
    const int64_t rows_per_chunk = p.n >= 16384 ? 1 : 16384 / p.n;
    context.pool().parallel_for(p.rows, rows_per_chunk, [&](int64_t begin, int64_t end) {
        alignas(64) float row[kHadamardMaxLength];
        for (int64_t r = begin; r < end; ++r) {
            const T* x = p.values.as<const T>() + x_rows.offset(r);
            for (int64_t j = 0; j < p.n; ++j) row[j] = to_float(x[j]);
            hadamard_butterfly(row, p.n, problem.scale);
            quantize_fp8_row(row, p.codes.as<uint8_t>() + q_rows.offset(r), p.scales.as<float>() + s_rows.offset(r),
                             scale_stride, p.n, p.config);
        }
    });
}

}  // namespace

void hadamard_quantize_fp8(Context& context, const HadamardQuantizeFp8Problem& problem) {
    switch (problem.quantization.values.dtype) {
        case DType::bf16: return rotate_and_quantize_rows<bf16_t>(context, problem);
        case DType::f16: return rotate_and_quantize_rows<f16_t>(context, problem);
        default: return rotate_and_quantize_rows<float>(context, problem);
    }
}

}  // namespace dsa::cpu
