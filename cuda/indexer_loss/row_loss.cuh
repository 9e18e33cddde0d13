// The CUDA indexer distillation loss kernels: one query row per CTA, its entries (the window in
// DENSE mode, the index positions in SPARSE mode; positions outside the window are masked) in
// tiles of 16, every score a tensor-core product (cuda/common/tensor_core.cuh):
//   u = q.k^T (all H_I heads x the tile), I = sum_h w_h ReLU(u) (heads in order);
//   the fused rebuilt teacher: z = teacher_q.teacher_k^T per kv head, in MMA tiles of
//   `chunk_heads` heads of one kv head (never more than one tile of [heads, entries] at a time).
//   The precomputed form (bf16 teachers, teacher.cuh) leaves the teacher to its own kernels:
//   its per-head statistics before pass 1, its p (by entry position) before pass 2.
// statistics_kernel (pass 1) keeps the running log-sum-exps of the student and of every
// teacher head (fused form; or the explicit teacher's mass) and decides whether the row is
// active; gradient_kernel (pass 2) rescores each tile, forms p, pi, the row's KL in f64 and
// g = coeff / N_active * (pi - p), then d_w and dq of the row (accumulated in shared memory) and
// each entry's d_index_k contribution G^T.q, added in 64-bit fixed point (below). Per-row
// outputs are deterministic, and so is d_index_k: integer addition is associative, so the order
// of its atomics does not change the sum.
//
// d_index_k's fixed point: every active row's g sums to at most 2 * coeff / N_active in absolute
// value over its entries (pi and p are probabilities on them), so with N_active such rows
// |d_index_k[s,c]| <= B = 2 * H_I * |coeff| * max|w| * max|q| (maxima over the finite values).
// A contribution x (f32) is added as llrint(x * 2^e) to an int64 sum, 2^e the power of two with
// B * 2^e <= 2^61 (launch.cu): the true total fits with a factor 4 to spare for rounding, so the
// two's complement sum of the wrapped parts is exact. A non-finite contribution only sets a flag
// bit (NaN, +Inf, -Inf) of its element; the final kernel writes NaN, +-Inf or sum * 2^-e.
#pragma once

#include <cmath>
#include <cstdint>

#include "../../core/ops/topk.hpp"
#include "../common/tensor_core.cuh"

namespace dsa::cuda::distillation {

inline constexpr int kTile = 16;
inline constexpr int kThreads = 128;
inline constexpr int kWarps = kThreads / 32;
// Row pitch of the [heads][kTile] score tiles (u, z): 4 mod 32 floats, so the MMA fragment
// reads (lane pattern row g, column 2t, and its transpose) hit at most two lanes per bank.
inline constexpr int kScorePitch = kTile + 4;

// Where the teacher's p comes from: the caller's matrix, rebuilt inside the student kernels
// (score_teacher), or rebuilt beforehand by teacher.cuh's kernels into `teacher_p`.
enum class TeacherForm { explicit_probs, fused, precomputed };

struct Arguments {
    const void* q;
    int64_t q_row, q_head;
    const void* k;
    int64_t k_row;
    const void* weights;
    int64_t weight_row, weight_head;
    const int32_t* ks;
    int64_t ks_stride;
    const int32_t* ke;
    int64_t ke_stride;
    const int32_t* indices;  // NULL: DENSE mode
    int64_t index_row;
    const float* teacher_probs;  // non-NULL: the explicit teacher
    int64_t probs_row;
    const void* teacher_q;
    int64_t teacher_q_row, teacher_q_head;
    const void* teacher_k;
    int64_t teacher_k_row, teacher_k_head;
    TeacherForm teacher_form;
    // precomputed: p of rows [first_row, first_row + gridDim.x) by entry position, teacher_p_row
    // floats a row. The row kernels of a launch take rows [first_row, first_row + gridDim.x).
    float* teacher_p;
    int64_t teacher_p_row, first_row;
    float* d_q;  // each gradient NULL when not asked for
    int64_t d_q_row, d_q_head;
    float* d_k;
    int64_t d_k_row;
    float* d_w;
    int64_t d_w_row;
    // Scratch of the call, per row.
    float* student_lse;
    float2* teacher_stats;  // [rows][teacher_heads] running (max, sum) of teacher_scale * z
    double* teacher_mass;   // explicit teacher: the mass of the row's entries
    int32_t* active;
    double* kl;
    float* factor;  // coeff / N_active (0 without active rows), written between the passes
    // d_index_k's reduction (with d_k only): [tokens][dim] fixed-point sums and flag words, the
    // finite maxima |index_q| and |weights| (f32 bits) and the scale {2^e, 2^-e}, the latter
    // written between the passes.
    unsigned long long* dk_sum;
    uint32_t* dk_flags;
    uint32_t* dk_maxima;
    double* dk_scale;
    int64_t rows, tokens, heads, dim, topk, teacher_heads, teacher_kv_heads, teacher_dim;
    int chunk_heads;  // teacher heads per MMA tile: divides teacher_heads / teacher_kv_heads, <= 16
    float teacher_scale;
    bool q_bf16, k_bf16, weights_bf16, teacher_q_bf16, teacher_k_bf16;
};

// Shared memory in floats: q and the dq accumulator (H_I rounded up to 16 rows of `width` =
// D_I rounded up to 16, `pitch` = width + 4 apart, as kScorePitch), the key tile, u (later G),
// the teacher key tile (fused teacher), teacher scores of two head tiles, w and d_w, and
// per-entry values of the tile.
struct SharedLayout {
    int width, pitch, teacher_width, teacher_pitch, head_rows;
    int q, dq, k, u, teacher_k, z, w, dw, logits, probs, g, tokens, floats;
};

__host__ __device__ inline SharedLayout shared_layout(int64_t heads, int64_t dim, int64_t teacher_dim, bool fused_teacher) {
    SharedLayout s;
    s.width = static_cast<int>((dim + 15) / 16 * 16);
    s.pitch = s.width + 4;
    s.teacher_width = fused_teacher ? static_cast<int>((teacher_dim + 15) / 16 * 16) : 0;
    s.teacher_pitch = fused_teacher ? s.teacher_width + 4 : 0;
    s.head_rows = static_cast<int>((heads + 15) / 16 * 16);
    s.q = 0;
    s.dq = s.q + s.head_rows * s.pitch;
    s.k = s.dq + s.head_rows * s.pitch;
    s.u = s.k + kTile * s.pitch;
    s.teacher_k = s.u + s.head_rows * kScorePitch;
    s.z = s.teacher_k + kTile * s.teacher_pitch;
    s.w = s.z + 2 * 16 * kScorePitch;
    s.dw = s.w + s.head_rows;
    s.logits = s.dw + s.head_rows;
    s.probs = s.logits + kTile;
    s.g = s.probs + kTile;
    s.tokens = s.g + kTile;
    s.floats = s.tokens + kTile;
    return s;
}

// The CTA's row among the launch's: last rows first, as causal windows grow with the row, so
// the longest rows do not form the grid's tail.
__device__ __forceinline__ int64_t launch_row(const Arguments& a) {
    return a.first_row + (static_cast<int64_t>(gridDim.x) - 1 - blockIdx.x);
}

// A row's entry positions [0, count) and their tokens (-1: masked).
struct RowEntries {
    int64_t begin, end, count;
};

__device__ __forceinline__ RowEntries row_entries(const Arguments& a, int64_t row) {
    const TopkWindow window = clamp_topk_window(a.ks[row * a.ks_stride], a.ke[row * a.ke_stride], a.tokens);
    return {window.begin, window.end, a.indices == nullptr ? window.end - window.begin : a.topk};
}

__device__ __forceinline__ int32_t entry_token(const Arguments& a, int64_t row, const RowEntries& e, int64_t position) {
    if (position >= e.count) return -1;
    if (a.indices == nullptr) return static_cast<int32_t>(e.begin + position);
    const int32_t token = a.indices[row * a.index_row + position];
    return token >= e.begin && token < e.end ? token : -1;
}

// Pointers into the kernel's shared memory.
struct Tiles {
    float *q, *dq, *k, *u, *teacher_k, *z, *w, *dw, *logits, *probs, *g;
    int32_t* tokens;
    SharedLayout layout;
};

__device__ __forceinline__ Tiles tiles_of(float* smem, const Arguments& a) {
    Tiles t;
    t.layout = shared_layout(a.heads, a.dim, a.teacher_dim, a.teacher_form == TeacherForm::fused);
    const SharedLayout& s = t.layout;
    t.q = smem + s.q, t.dq = smem + s.dq, t.k = smem + s.k, t.u = smem + s.u, t.teacher_k = smem + s.teacher_k;
    t.z = smem + s.z, t.w = smem + s.w, t.dw = smem + s.dw, t.logits = smem + s.logits, t.probs = smem + s.probs;
    t.g = smem + s.g;
    t.tokens = reinterpret_cast<int32_t*>(smem + s.tokens);
    return t;
}

// q (zero padded), w, and zeroed dq and d_w of the row.
__device__ __forceinline__ void load_row(const Arguments& a, int64_t row, const Tiles& t) {
    const int width = t.layout.width, pitch = t.layout.pitch;
    for (int i = threadIdx.x; i < t.layout.head_rows * width; i += kThreads) {
        const int h = i / width, c = i % width;
        t.q[h * pitch + c] =
            h < a.heads && c < a.dim ? load_value(a.q, a.q_bf16, row * a.q_row + h * a.q_head + c) : 0.0f;
        t.dq[h * pitch + c] = 0.0f;
    }
    for (int h = threadIdx.x; h < t.layout.head_rows; h += kThreads) {
        t.w[h] = h < a.heads ? load_value(a.weights, a.weights_bf16, row * a.weight_row + h * a.weight_head) : 0.0f;
        t.dw[h] = 0.0f;
    }
}

// The tile at `first`: its tokens, key rows, u (all heads) and student logits.
template <bool Split>
__device__ __forceinline__ void score_student(const Arguments& a, int64_t row, const RowEntries& e, int64_t first,
                                              const Tiles& t) {
    const int tid = threadIdx.x, warp = tid / 32, width = t.layout.width, pitch = t.layout.pitch;
    if (tid < kTile) t.tokens[tid] = entry_token(a, row, e, first + tid);
    __syncthreads();
    for (int i = tid; i < kTile * width; i += kThreads) {
        const int j = i / width, c = i % width;
        const int32_t token = t.tokens[j];
        t.k[j * pitch + c] = token >= 0 && c < a.dim ? load_value(a.k, a.k_bf16, token * a.k_row + c) : 0.0f;
    }
    __syncthreads();
    for (int item = warp; item < t.layout.head_rows / 16 * 2; item += kWarps) {
        const int head0 = item / 2 * 16, column = item % 2 * 8;
        float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        warp_product<Split>(
            acc, [&](int r, int c) { return t.q[(head0 + r) * pitch + c]; },
            [&](int c, int n) { return t.k[(column + n) * pitch + c]; }, width / 16);
        for (int i = 0; i < 4; ++i)
            t.u[(head0 + accumulator_row(i)) * kScorePitch + column + accumulator_column(i)] = acc[i];
    }
    __syncthreads();
    if (tid < kTile) {
        float logit = 0.0f;
        for (int h = 0; h < a.heads; ++h) {
            const float u = t.u[h * kScorePitch + tid];
            logit += t.w[h] * (u < 0.0f ? 0.0f : u);
        }
        t.logits[tid] = logit;
    }
    __syncthreads();
}

// For each kv head and each pair of head tiles of it: z = teacher_q.teacher_k^T of the tile's
// entries into t.z ([2][16] rows of kScorePitch, tile p holding heads first_head(p) + r,
// r < chunk_heads),
// then use(first_head of tile 0, tiles in this pair) between barriers.
template <bool Split, typename Use>
__device__ __forceinline__ void score_teacher(const Arguments& a, int64_t row, const Tiles& t, const Use& use) {
    const int tid = threadIdx.x, warp = tid / 32, width = t.layout.teacher_width, pitch = t.layout.teacher_pitch;
    const int64_t group_heads = a.teacher_heads / a.teacher_kv_heads;
    const int m = a.chunk_heads;
    for (int64_t group = 0; group < a.teacher_kv_heads; ++group) {
        for (int i = tid; i < kTile * width; i += kThreads) {
            const int j = i / width, c = i % width;
            const int32_t token = t.tokens[j];
            t.teacher_k[j * pitch + c] =
                token >= 0 && c < a.teacher_dim
                    ? load_value(a.teacher_k, a.teacher_k_bf16, token * a.teacher_k_row + group * a.teacher_k_head + c)
                    : 0.0f;
        }
        __syncthreads();
        for (int64_t first = 0; first < group_heads; first += 2 * m) {
            const int pair = warp / 2, column = warp % 2 * 8;
            const int64_t head0 = group * group_heads + first + pair * m;
            if (first + pair * m < group_heads) {
                float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                warp_product<Split>(
                    acc,
                    [&](int r, int c) {
                        return r < m && c < a.teacher_dim
                                   ? load_value(a.teacher_q, a.teacher_q_bf16,
                                                row * a.teacher_q_row + (head0 + r) * a.teacher_q_head + c)
                                   : 0.0f;
                    },
                    [&](int c, int n) { return t.teacher_k[(column + n) * pitch + c]; }, width / 16);
                for (int i = 0; i < 4; ++i)
                    t.z[(pair * 16 + accumulator_row(i)) * kScorePitch + column + accumulator_column(i)] = acc[i];
            }
            __syncthreads();
            use(group * group_heads + first, first + m < group_heads ? 2 : 1);
            __syncthreads();
        }
    }
}

// Folds values x[j] (j < kTile with tokens[j] >= 0) into a running (max, sum) of exp.
__device__ __forceinline__ void update_log_sum_exp(const float* x, float scale, const int32_t* tokens, float2& stats) {
    float tile_max = -INFINITY;
    for (int j = 0; j < kTile; ++j)
        if (tokens[j] >= 0) tile_max = fmaxf(tile_max, scale * x[j]);
    const float next = fmaxf(stats.x, tile_max);
    if (next == -INFINITY) return;
    float sum = stats.x == -INFINITY ? 0.0f : stats.y * expf(stats.x - next);
    for (int j = 0; j < kTile; ++j)
        if (tokens[j] >= 0) sum += expf(scale * x[j] - next);
    stats = make_float2(next, sum);
}

template <bool Split>
__global__ void __launch_bounds__(kThreads) statistics_kernel(const __grid_constant__ Arguments a) {
    extern __shared__ __align__(16) float smem[];
    __shared__ float2 student;
    __shared__ double mass;
    __shared__ int valid, negative, finite;
    const Tiles t = tiles_of(smem, a);
    const int64_t row = launch_row(a);
    const int tid = threadIdx.x;
    const RowEntries e = row_entries(a, row);
    const bool rebuilt = a.teacher_form != TeacherForm::explicit_probs, fused = a.teacher_form == TeacherForm::fused;
    load_row(a, row, t);
    if (tid == 0) {
        student = make_float2(-INFINITY, 0.0f);
        mass = 0.0;
        valid = negative = 0;
        finite = 1;
    }
    if (fused)
        for (int64_t h = tid; h < a.teacher_heads; h += kThreads)
            a.teacher_stats[row * a.teacher_heads + h] = make_float2(-INFINITY, 0.0f);
    __syncthreads();
    for (int64_t first = 0; first < e.count; first += kTile) {
        score_student<Split>(a, row, e, first, t);
        if (tid == 0) {
            float2 stats = student;
            update_log_sum_exp(t.logits, 1.0f, t.tokens, stats);
            student = stats;
            for (int j = 0; j < kTile; ++j) {
                if (t.tokens[j] < 0) continue;
                ++valid;
                if (rebuilt) continue;
                const float value = a.teacher_probs[row * a.probs_row + t.tokens[j]];
                negative |= !(value >= 0.0f);
                mass += value;
            }
        }
        if (fused)
            score_teacher<Split>(a, row, t, [&](int64_t first_head, int tiles) {
                if (tid >= 16 * tiles || tid % 16 >= a.chunk_heads) return;
                float2* stats = a.teacher_stats + row * a.teacher_heads + first_head + tid / 16 * a.chunk_heads + tid % 16;
                float2 value = *stats;
                update_log_sum_exp(t.z + tid * kScorePitch, a.teacher_scale, t.tokens, value);
                *stats = value;
            });
        __syncthreads();
    }
    if (rebuilt) {
        for (int64_t h = tid; h < a.teacher_heads; h += kThreads) {
            const float2 stats = a.teacher_stats[row * a.teacher_heads + h];
            if (!isfinite(stats.x + logf(stats.y))) finite = 0;
        }
    }
    __syncthreads();
    if (tid != 0) return;
    a.student_lse[row] = student.x + logf(student.y);
    if (rebuilt) {
        a.active[row] = valid > 0 && finite;
    } else {
        a.teacher_mass[row] = mass;
        a.active[row] = valid > 0 && !negative && mass > 0.0 && isfinite(mass);
    }
}

// Flag bits of a d_index_k element that received a non-finite contribution.
inline constexpr uint32_t kFlagNaN = 1, kFlagPlusInfinity = 2, kFlagMinusInfinity = 4;

// Adds contribution `value` to d_index_k element `at` (token * dim + column) of the reduction.
__device__ __forceinline__ void add_fixed_point(const Arguments& a, int64_t at, float value, double scale) {
    if (isfinite(value)) {
        const long long fixed = llrint(static_cast<double>(value) * scale);
        if (fixed != 0) atomicAdd(a.dk_sum + at, static_cast<unsigned long long>(fixed));
    } else {
        atomicOr(a.dk_flags + at, isnan(value) ? kFlagNaN : value > 0.0f ? kFlagPlusInfinity : kFlagMinusInfinity);
    }
}

template <bool Split>
__global__ void __launch_bounds__(kThreads) gradient_kernel(const __grid_constant__ Arguments a) {
    extern __shared__ __align__(16) float smem[];
    __shared__ double kl;
    const Tiles t = tiles_of(smem, a);
    const int64_t row = launch_row(a);
    const int tid = threadIdx.x, warp = tid / 32, width = t.layout.width, pitch = t.layout.pitch;
    const int head_rows = t.layout.head_rows;
    const RowEntries e = row_entries(a, row);
    const TeacherForm form = a.teacher_form;
    const bool active = a.active[row] != 0;
    const float factor = *a.factor, student_lse = a.student_lse[row];
    const double dk_scale = a.d_k != nullptr ? a.dk_scale[0] : 0.0;
    load_row(a, row, t);
    if (tid == 0) kl = 0.0;
    __syncthreads();
    for (int64_t first = 0; active && first < e.count; first += kTile) {
        score_student<Split>(a, row, e, first, t);
        if (tid < kTile) {
            const int32_t token = t.tokens[tid];
            float p = 0.0f;
            if (token >= 0 && form == TeacherForm::explicit_probs)
                p = static_cast<float>(a.teacher_probs[row * a.probs_row + token] / a.teacher_mass[row]);
            else if (token >= 0 && form == TeacherForm::precomputed)
                p = a.teacher_p[(row - a.first_row) * a.teacher_p_row + first + tid];
            t.probs[tid] = p;
        }
        __syncthreads();
        if (form == TeacherForm::fused) {
            score_teacher<Split>(a, row, t, [&](int64_t first_head, int tiles) {
                if (tid >= kTile || t.tokens[tid] < 0) return;
                float sum = t.probs[tid];
                for (int p = 0; p < tiles; ++p)
                    for (int r = 0; r < a.chunk_heads; ++r) {
                        const float2 stats = a.teacher_stats[row * a.teacher_heads + first_head + p * a.chunk_heads + r];
                        sum += expf(a.teacher_scale * t.z[(p * 16 + r) * kScorePitch + tid] -
                                    (stats.x + logf(stats.y)));
                    }
                t.probs[tid] = sum;
            });
            if (tid < kTile) t.probs[tid] *= 1.0f / static_cast<float>(a.teacher_heads);
            __syncthreads();
        }
        if (tid < kTile) {
            const bool real = t.tokens[tid] >= 0;
            const float pi = real ? expf(t.logits[tid] - student_lse) : 0.0f;
            t.g[tid] = real ? factor * (pi - t.probs[tid]) : 0.0f;
        }
        if (tid == 0)
            for (int j = 0; j < kTile; ++j) {
                const double p = t.probs[j];
                if (t.tokens[j] >= 0 && p > 0.0)
                    kl += p * (log(p) - (static_cast<double>(t.logits[j]) - student_lse));
            }
        __syncthreads();
        // d_w, then u becomes G = g w [u > 0] (each head row owned by one thread).
        for (int h = tid; h < head_rows; h += kThreads) {
            float* u = t.u + h * kScorePitch;
            float sum = 0.0f;
            for (int j = 0; j < kTile; ++j) sum += t.g[j] * (u[j] < 0.0f ? 0.0f : u[j]);
            t.dw[h] += sum;
            for (int j = 0; j < kTile; ++j) u[j] = u[j] > 0.0f ? t.g[j] * t.w[h] : 0.0f;
        }
        __syncthreads();
        // G is f32: its products always take the split form.
        for (int item = warp; item < head_rows / 16 * (width / 8); item += kWarps) {
            const int head0 = item / (width / 8) * 16, column = item % (width / 8) * 8;
            float acc[4];
            for (int i = 0; i < 4; ++i) acc[i] = t.dq[(head0 + accumulator_row(i)) * pitch + column + accumulator_column(i)];
            warp_product<true>(
                acc, [&](int r, int j) { return t.u[(head0 + r) * kScorePitch + j]; },
                [&](int j, int n) { return t.k[j * pitch + column + n]; }, 1);
            for (int i = 0; i < 4; ++i) t.dq[(head0 + accumulator_row(i)) * pitch + column + accumulator_column(i)] = acc[i];
        }
        if (a.d_k != nullptr)
            for (int block = warp; block < width / 8; block += kWarps) {
                const int column = block * 8;
                float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                warp_product<true>(
                    acc, [&](int j, int h) { return t.u[h * kScorePitch + j]; },
                    [&](int h, int n) { return t.q[h * pitch + column + n]; }, head_rows / 16);
                for (int i = 0; i < 4; ++i) {
                    const int32_t token = t.tokens[accumulator_row(i)];
                    const int64_t c = column + accumulator_column(i);
                    if (token >= 0 && c < a.dim) add_fixed_point(a, token * a.dim + c, acc[i], dk_scale);
                }
            }
        __syncthreads();
    }
    // Inactive rows write their zeroed accumulators.
    if (a.d_q != nullptr)
        for (int i = tid; i < head_rows * width; i += kThreads) {
            const int h = i / width, c = i % width;
            if (h < a.heads && c < a.dim) a.d_q[row * a.d_q_row + h * a.d_q_head + c] = t.dq[h * pitch + c];
        }
    if (a.d_w != nullptr)
        for (int h = tid; h < a.heads; h += kThreads) a.d_w[row * a.d_w_row + h] = t.dw[h];
    if (tid == 0) a.kl[row] = kl;
}

}  // namespace dsa::cuda::distillation
