// The fused Hadamard rotation + FP8 quantisation (DSA_SPEC sections 3 and 2): every row of x
// rotated in f32 exactly as dsa_hadamard rotates it, then quantised exactly as dsa_quantize_fp8
// quantises an f32 tensor, without the rounded temporary in between.
#pragma once

#include "hadamard.hpp"
#include "quantize.hpp"

namespace dsa {

// quantization.values is x (f32, bf16 or f16); the rotation length is its last dimension n.
struct HadamardQuantizeFp8Problem {
    QuantizeFp8Problem quantization;
    float scale = 0.0f;  // the rotation's, resolved: never 0 here
};

Status hadamard_quantize_fp8(Context& context, float scale, const QuantizeFp8Config& config, const TensorView* x,
                             const TensorView* q, const TensorView* scales, Stream stream);

namespace cpu {
void hadamard_quantize_fp8(Context& context, const HadamardQuantizeFp8Problem& problem);
}
namespace cuda {
Status hadamard_quantize_fp8(Context& context, const HadamardQuantizeFp8Problem& problem, Stream stream);
}

}  // namespace dsa
