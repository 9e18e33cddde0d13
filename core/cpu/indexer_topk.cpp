// CPU fused indexer + top-k: score a tile of query rows into a buffer, select each row's top-k
// from it, move to the next tile. Every row's logits and selection are those of the unfused
// ops, bitwise, because both stages are independent of how rows are tiled.
#include <algorithm>
#include <vector>

#include "../ops/indexer_topk.hpp"

namespace dsa::cpu {

int64_t indexer_topk_tile_rows(const Context& context, int64_t rows, int64_t columns) {
    // About 16 MB of logits per tile (cache-friendly for the selection pass), but never fewer
    // rows than the pool has threads, so the selection stays parallel.
    const int64_t budget_floats = int64_t(4) << 20;
    int64_t tile = budget_floats / (columns > 0 ? columns : 1);
    const int64_t threads = context.num_threads();
    if (tile < threads) tile = threads;
    if (tile > rows) tile = rows;
    return tile < 1 ? 1 : tile;
}

void indexer_topk(Context& context, const IndexerProblem& indexer, const TopkConfig& config, float* tile_buffer,
                  int64_t tile_rows, int32_t* indices_out, int64_t indices_row_stride, int32_t* slots_out,
                  int64_t slots_row_stride) {
    const int64_t columns = indexer.columns;
    for (int64_t tile_begin = 0; tile_begin < indexer.rows; tile_begin += tile_rows) {
        const int64_t tile_end = tile_begin + tile_rows < indexer.rows ? tile_begin + tile_rows : indexer.rows;
        indexer_logits_rows(context, indexer, tile_begin, tile_end, tile_buffer, columns);
        context.pool().parallel_for(tile_end - tile_begin, 4, [&](int64_t begin, int64_t end) {
            TopkScratch scratch;
            std::vector<int32_t> tokens(static_cast<size_t>(config.k));
            for (int64_t offset = begin; offset < end; ++offset) {
                const int64_t row = tile_begin + offset;
                int64_t window_begin = 0, window_end = 0;
                indexer.window(row, &window_begin, &window_end);
                select_topk_row(tile_buffer + offset * columns, window_begin, window_end, config, tokens.data(), scratch);
                if (indices_out != nullptr)
                    std::copy(tokens.begin(), tokens.end(), indices_out + row * indices_row_stride);
                if (slots_out != nullptr) {
                    const TensorView& table = indexer.block_table;
                    // A table without pages may have NULL data: no row address then (slots are -1).
                    const int32_t* entries = indexer.max_pages > 0
                                                 ? table.as<const int32_t>() + indexer.sequence(row) * table.strides[0]
                                                 : nullptr;
                    int32_t* slots = slots_out + row * slots_row_stride;
                    for (int64_t i = 0; i < config.k; ++i)
                        slots[i] = translate_topk_slot(tokens[i], entries, table.strides[1], indexer.max_pages,
                                                       config.page_size);
                }
            }
        });
    }
}

}  // namespace dsa::cpu
