// CUDA fused lightning indexer + top-k: a tile of query rows is scored into the workspace by the
// CUDA indexer kernels (inside the windows only: the selection never reads outside them), each
// row's clamped window is written beside it, and the CUDA top-k kernel selects the tile's rows
// from there. The [S_q, S_kv] matrix never exists: the workspace holds one tile (about 256 MB).
// Tiles start on multiples of 16 rows (and of n_next when paged), where the indexer's row
// blocks start too, so every logit is bitwise the one dsa_indexer_logits computes and the
// selected sets equal the unfused ops' on the same device.
#include "../../core/ops/indexer_topk.hpp"
#include "../common/runtime.cuh"

namespace dsa::cuda {
namespace {

constexpr int64_t kTileFloats = int64_t(64) << 20;  // 256 MB of logits per tile
constexpr int64_t kTileAlignment = 16;              // rows: a multiple of every indexer row block
constexpr int kThreads = 256;

int64_t align_bytes(int64_t bytes) { return (bytes + 255) / 256 * 256; }

int64_t tile_rows(int64_t rows, int64_t columns) {
    int64_t tile = kTileFloats / (columns > 0 ? columns : 1);
    if (tile >= kTileAlignment) tile = tile / kTileAlignment * kTileAlignment;
    if (tile < 1) tile = 1;
    return tile < rows ? tile : rows;
}

// starts[i], ends[i]: the window of row first + i, clamped as the indexer clamps it.
__global__ void row_windows_kernel(IndexerProblem problem, int64_t first, int64_t count, int32_t* starts,
                                   int32_t* ends) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
    if (i >= count) return;
    int64_t begin, end;
    problem.window(first + i, &begin, &end);
    starts[i] = static_cast<int32_t>(begin);
    ends[i] = static_cast<int32_t>(end);
}

// slots[r][i] = the cache slot of token tokens[r][i] through row r's block-table row.
__global__ void translate_slots_kernel(IndexerProblem problem, int64_t k, const int32_t* tokens,
                                       int64_t token_stride, int32_t* slots, int64_t slot_stride, int64_t page_size) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
    if (i >= problem.rows * k) return;
    const int64_t row = i / k, j = i % k;
    const TensorView& table = problem.block_table;
    const int32_t* entries = table.as<const int32_t>() + problem.sequence(row) * table.strides[0];
    slots[row * slot_stride + j] =
        translate_topk_slot(tokens[row * token_stride + j], entries, table.strides[1], problem.max_pages, page_size);
}

TensorView device_view(void* data, DType dtype, int64_t rows, int64_t columns, int64_t row_stride, int device_id) {
    TensorView view;
    view.data = data;
    view.dtype = dtype;
    view.device = DeviceType::cuda;
    view.device_id = device_id;
    view.ndim = columns < 0 ? 1 : 2;
    view.shape[0] = rows;
    view.strides[0] = columns < 0 ? 1 : row_stride;
    if (columns >= 0) {
        view.shape[1] = columns;
        view.strides[1] = 1;
    }
    return view;
}

Status select_tiles(Context& context, const IndexerProblem& problem, const TopkConfig& config, char* workspace,
                    int32_t* tokens, int64_t token_stride, Stream stream) {
    const int64_t columns = problem.columns;
    int64_t tile = tile_rows(problem.rows, columns);
    if (problem.keys == IndexerKeys::paged && tile >= problem.next_n) tile = tile / problem.next_n * problem.next_n;
    float* logits = reinterpret_cast<float*>(workspace);
    const int64_t logits_bytes = align_bytes(tile_rows(problem.rows, columns) * columns * 4);  // the largest tile's
    int32_t* starts = reinterpret_cast<int32_t*>(workspace + logits_bytes);
    int32_t* ends = starts + align_bytes(tile * 4) / 4;
    for (int64_t first = 0; first < problem.rows; first += tile) {
        const int64_t count = first + tile < problem.rows ? tile : problem.rows - first;
        DSA_TRY(indexer_logits_rows(context, problem, first, first + count, logits, columns, false, stream));
        row_windows_kernel<<<static_cast<unsigned>(ceil_div(count, kThreads)), kThreads, 0, stream>>>(
            problem, first, count, starts, ends);
        DSA_TRY(launch_status("indexer_topk windows kernel launch"));
        TopkProblem selection;
        selection.scores = device_view(logits, DType::f32, count, columns, columns, context.device_id());
        selection.row_starts = device_view(starts, DType::i32, count, -1, 1, context.device_id());
        selection.row_ends = device_view(ends, DType::i32, count, -1, 1, context.device_id());
        selection.indices =
            device_view(tokens + first * token_stride, DType::i32, count, config.k, token_stride, context.device_id());
        selection.has_row_starts = selection.has_row_ends = true;
        selection.config = config;
        selection.rows = count;
        selection.n = columns;
        selection.block_rows = 1;
        DSA_TRY(topk(context, selection, stream));
    }
    return Status::success();
}

}  // namespace

int64_t indexer_topk_workspace_bytes(int64_t rows, int64_t columns) {
    if (rows <= 0 || columns <= 0) return 0;
    const int64_t tile = tile_rows(rows, columns);
    return align_bytes(tile * columns * 4) + 2 * align_bytes(tile * 4);
}

Status indexer_topk(Context& context, const IndexerProblem& problem, const TopkConfig& config, Workspace workspace,
                    int32_t* indices, int64_t indices_row_stride, int32_t* slots, int64_t slots_row_stride,
                    Stream stream) {
    if (problem.columns > 0x7fffffff)
        return {StatusCode::shape_mismatch, "k: more than 2^31 - 1 key tokens cannot be indexed by int32"};
    DeviceScope scope(context.device_id());
    DSA_TRY(scope.status());
    // Tokens go to `indices` when asked for, else straight into `slots`, translated in place.
    int32_t* tokens = indices != nullptr ? indices : slots;
    const int64_t token_stride = indices != nullptr ? indices_row_stride : slots_row_stride;
    if (problem.columns == 0) {
        // No column to choose from: every row is -1 padding (what dsa_topk gives for empty rows).
        DSA_TRY(runtime_status(cudaMemset2DAsync(tokens, static_cast<size_t>(token_stride) * 4, 0xff,
                                                 static_cast<size_t>(config.k) * 4, static_cast<size_t>(problem.rows),
                                                 stream),
                               "cudaMemset2DAsync(indices)"));
    } else {
        char* scratch = static_cast<char*>(workspace.data);
        if (scratch == nullptr)
            DSA_TRY(runtime_status(cudaMallocAsync(reinterpret_cast<void**>(&scratch),
                                                   static_cast<size_t>(indexer_topk_workspace_bytes(problem.rows,
                                                                                                    problem.columns)),
                                                   stream),
                                   "cudaMallocAsync(indexer_topk workspace)"));
        const Status selected = select_tiles(context, problem, config, scratch, tokens, token_stride, stream);
        if (workspace.data == nullptr)
            DSA_TRY(runtime_status(cudaFreeAsync(scratch, stream), "cudaFreeAsync(indexer_topk workspace)"));
        DSA_TRY(selected);
    }
    if (slots == nullptr) return Status::success();
    const int64_t total = problem.rows * config.k;
    if (ceil_div(total, kThreads) > 0x7fffffff) return {StatusCode::shape_mismatch, "slots: too many entries"};
    translate_slots_kernel<<<static_cast<unsigned>(ceil_div(total, kThreads)), kThreads, 0, stream>>>(
        problem, config.k, tokens, token_stride, slots, slots_row_stride, config.page_size);
    return launch_status("indexer_topk slot translation launch");
}

}  // namespace dsa::cuda
