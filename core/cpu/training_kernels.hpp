// CPU building blocks of the training ops: a small f32 GEMM and vector exp chosen at run time
// (AVX2+FMA or portable), f32/bf16 row loads, key gathers, and the deterministic reduction of
// per-entry contributions into a [tokens, dim] gradient.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "../context.hpp"

namespace dsa::cpu {

// Entries per tile of a row's selected or windowed tokens.
inline constexpr int64_t kEntryTile = 64;

inline int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

struct TrainingKernels {
    // c[i * ldc + j] (= or +=) sum_l a[i * lda + l] * b[l * ldb + j] for i < m, j < n (n a
    // multiple of 8), l < depth, accumulated over l in order.
    void (*gemm)(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t m,
                 int64_t n, int64_t depth, bool accumulate);
    // sum_j exp(scale * x[j] - shift) for j < count; x readable up to round_up(count, 8).
    float (*exp_sum)(const float* x, int64_t count, float scale, float shift);
    // out[j] += exp(scale * x[j] - shift) for j < count; x and out up to round_up(count, 8).
    void (*exp_add)(const float* x, int64_t count, float scale, float shift, float* out);
    // out[d * kEntryTile + j] = rows[j * row_stride + d] for j < rows_count, d < dim (both
    // multiples of 8).
    void (*transpose)(const float* rows, int64_t row_stride, int64_t rows_count, int64_t dim, float* out);
};
const TrainingKernels& training_kernels();

// `count` elements of a f32 or bf16 tensor starting at element `offset`, as f32.
void load_row(const TensorView& tensor, int64_t offset, int64_t count, float* out);
float load_element(const TensorView& tensor, int64_t offset);

// Rows of `count` (<= kEntryTile) entries of a [tokens, ...] f32 or bf16 tensor (row tokens[j],
// from element `offset` within it) as f32, row-major into rows[j * round_up(dim, 8) + d] (rows
// count .. round_up(count, 8) zeroed; the columns past dim are left as they are: keep them zero)
// and transposed into transposed[d * kEntryTile + j] for d < round_up(dim, 8), j <
// round_up(count, 8).
void gather_entries(const TensorView& tensor, int64_t offset, const int32_t* tokens, int64_t count, int64_t dim,
                    float* rows, float* transposed);

void scale_values(float* values, int64_t count, float factor);
void add_values(const float* source, int64_t count, float* target);

// Folds scale * x[j], j < count, into a running log-sum-exp (max, sum).
void update_log_sum_exp(const TrainingKernels& kernels, const float* x, int64_t count, float scale, float& max,
                        float& sum);

// counts[t] = the number of entries of row t, for a problem with `rows` and `entries(row, list)`.
template <typename Problem>
std::vector<int64_t> entry_counts(Context& context, const Problem& problem) {
    std::vector<int64_t> counts(static_cast<size_t>(problem.rows));
    context.pool().parallel_for(problem.rows, 256, [&](int64_t begin, int64_t end) {
        std::vector<int32_t> entries;
        for (int64_t t = begin; t < end; ++t) {
            problem.entries(t, entries);
            counts[t] = static_cast<int64_t>(entries.size());
        }
    });
    return counts;
}

// Query rows that each contribute one vector per entry to a [tokens, dim] f32 gradient, reduced
// without atomics: rows run in panels on the pool, each writing its entries' contributions and
// tokens to a panel buffer, and after each panel every token adds its contributions in (row,
// entry) order. The order is global, so the result is bitwise independent of the panel size and
// the thread count.
class TokenReduction {
public:
    // Where row `row` of the current panel puts entry j: contribution(row) + j * stride floats,
    // token(row)[j].
    struct Panel {
        float* contributions;
        int32_t* tokens;
        const int64_t* offsets;  // offsets[row] - offsets[first]: the row's first entry
        int64_t first;
        int64_t stride;
        float* contribution(int64_t row) const { return contributions + (offsets[row] - offsets[first]) * stride; }
        int32_t* token(int64_t row) const { return tokens + (offsets[row] - offsets[first]); }
    };
    // Runs rows [begin, end) of a panel (called on the pool); sets contributes[row] for each
    // row that wrote its entries (a row that did not is skipped by the reduction).
    using Rows = std::function<void(int64_t begin, int64_t end, const Panel& panel)>;

    // Entries per panel for rows of at most max_row_entries entries of `dim` floats: about 32 MiB
    // of contributions, and at least two rows per thread.
    static int64_t panel_entries(const Context& context, int64_t rows, int64_t max_row_entries, int64_t dim);
    // Scratch bytes for panels of `capacity` entries over `tokens` tokens.
    static int64_t scratch_bytes(int64_t capacity, int64_t dim, int64_t tokens);

    // memory: scratch_bytes(capacity, dim, tokens) bytes, 16-byte aligned, or NULL to allocate.
    TokenReduction(int64_t capacity, int64_t dim, int64_t tokens, void* memory);

    int64_t stride() const { return stride_; }

    // Zeroes output f32 [tokens, dim] (unit last stride), then runs every row (row t has
    // counts[t] <= capacity entries) through `rows`, panel by panel, adding the contributions of
    // the rows marked in `contributes` (which `rows` fills) to output[token].
    void run(Context& context, const std::vector<int64_t>& counts, std::vector<uint8_t>& contributes,
             const TensorView& output, const Rows& rows);

private:
    void reduce(Context& context, int64_t first, int64_t last, const std::vector<int64_t>& offsets,
                const std::vector<uint8_t>& contributes, const TensorView& output);

    int64_t capacity_, dim_, stride_, tokens_;
    std::unique_ptr<unsigned char[]> owned_;
    float* contributions_;
    int32_t* entry_tokens_;
    int64_t* order_;
    int64_t* token_starts_;
};

}  // namespace dsa::cpu
