// CUDA lightning indexer: picks the kernel for the device and the shape.
//   1. sm90.cu (FP8 wgmma + TMA) on compute capability 9.0 with sm_90a code in the build, for
//      H_I in {16, 32, 64, 128}, D_I a multiple of 32 up to 256, and TMA-compatible layouts
//      (16-byte aligned bases and row strides);
//   2. sm80.cu (e4m3 -> f16, mma.sync) on compute capability >= 8.0 for any other shape whose
//      f16 copy of one q row and one 64-token key tile fits in shared memory;
//   3. simple.cu (scalar) for everything else.
// All three compute the same function (the summation order differs within the stated bound,
// see tests/gpu/indexer_test.cpp) and honour the same window, page and output rules.
#include "logits.cuh"

namespace dsa::cuda {

Status indexer_logits_rows(Context& context, const IndexerProblem& problem, int64_t row_begin, int64_t row_end,
                           float* out, int64_t out_row_stride, bool outside_windows, Stream stream) {
    if (row_begin >= row_end || problem.columns == 0) return Status::success();
    DeviceScope scope(context.device_id());
    DSA_TRY(scope.status());
    bool launched = false;
    DSA_TRY(indexer::launch_sm90(context, problem, row_begin, row_end, out, out_row_stride, outside_windows, stream,
                                 &launched));
    if (launched) return Status::success();
    if (indexer::sm80_fits(context, problem))
        return indexer::launch_sm80(context, problem, row_begin, row_end, out, out_row_stride, outside_windows, stream);
    return indexer::launch_simple(context, problem, row_begin, row_end, out, out_row_stride, outside_windows, stream);
}

}  // namespace dsa::cuda
