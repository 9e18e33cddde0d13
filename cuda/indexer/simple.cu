// The scalar CUDA indexer kernel: one thread per (row, token), the formula of DSA_SPEC 4 in f32
// (dot products over d in order, heads in order, then the token's scale). It serves shapes
// the tensor-core kernels cannot hold in shared memory (very large H_I x D_I) and any device
// without them; slow, but correct for every shape and both key forms.
#include "logits.cuh"

namespace dsa::cuda::indexer {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kTile = 64;  // split granularity

__global__ void __launch_bounds__(kThreads) simple_logits_kernel(const __grid_constant__ LogitsLaunch launch) {
    const IndexerProblem& p = launch.problem;
    const SingleRow single = single_row(launch);
    if (single.row < 0) return;
    const int64_t row = single.row, column_begin = single.columns.begin, column_end = single.columns.end;
    const int64_t begin = single.window_begin, end = single.window_end;
    const uint8_t* q = p.q.as<const uint8_t>() + p.q_offset(row);
    const float* w = p.weights.as<const float>() + row * p.weights.strides[0];
    float* out = output_row(launch, row);
    const float minus_inf = -__int_as_float(0x7f800000);
    for (int64_t token = column_begin + threadIdx.x; token < column_end; token += kThreads) {
        const bool inside = token >= begin && token < end;
        if (!inside) {
            if (launch.outside_windows) out[token] = minus_inf;
            continue;
        }
        float scale = 0.0f;
        const uint8_t* k = key_codes(p, row, token, &scale);
        if (k == nullptr) {
            out[token] = minus_inf;
            continue;
        }
        float total = 0.0f;
        for (int64_t h = 0; h < p.heads; ++h) {
            float dot = 0.0f;
            for (int64_t d = 0; d < p.dim; ++d) dot = fmaf(decode_e4m3(q[h * p.dim + d]), decode_e4m3(k[d]), dot);
            total = fmaf(w[h * p.weights.strides[1]], relu_keep_nan(dot), total);
        }
        out[token] = scale * total;
    }
}

}  // namespace

Status launch_simple(Context& context, const IndexerProblem& problem, int64_t row_begin, int64_t row_end, float* out,
                     int64_t out_row_stride, bool outside_windows, Stream stream) {
    const LogitsLaunch launch = plan_launch(problem, row_begin, row_end, out, out_row_stride, outside_windows, 1, kTile,
                                            8 * static_cast<int64_t>(context.properties().multiprocessor_count));
    const int64_t blocks = launch.row_blocks * launch.splits;
    if (blocks > 0x7fffffff) return {StatusCode::shape_mismatch, "q: too many query rows for one CUDA grid"};
    simple_logits_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(launch);
    return launch_status("indexer logits (scalar kernel) launch");
}

}  // namespace dsa::cuda::indexer
