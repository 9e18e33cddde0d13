// The example's own dense maths: a deterministic parallel loop and the few kernels the model,
// the indexer and the metrics need. Every kernel has one fixed order of operations per output
// element, so results do not depend on the thread count or on how rows are split.
#pragma once

#include <cstdint>
#include <functional>

namespace stories {

// Calls body(begin, end) for the fixed chunks [c * grain, min((c + 1) * grain, count)) of
// [0, count), spread over the worker threads. The chunks never depend on the thread count.
void parallel_for(int64_t count, int64_t grain, const std::function<void(int64_t, int64_t)>& body);

// Sets the number of worker threads parallel_for uses (>= 1; 0 = the machine's cores).
void set_worker_threads(int threads);
int worker_threads();

// Y = X . W for `rows` rows: X [rows][m] (row stride x_stride), W [m][n] row-major (the transpose
// of the [out, in] layout), Y [rows][n] (row stride y_stride): y[r][j] = sum_i x[r][i] * W[i][j],
// summed over i in order, so every row's result is the same whatever `rows` is.
void matrix_times_matrix(const float* x, int64_t x_stride, int64_t rows, const float* w, int64_t m, int64_t n,
                         float* y, int64_t y_stride);

// The sum and the maximum of x[0, n), in eight interleaved partial results combined in a fixed
// order (vectorisable, and the same bits on every run).
float sum_of(const float* x, int64_t n);
float max_of(const float* x, int64_t n);
// sum_i a[i] * b[i], the same way.
float dot(const float* a, const float* b, int64_t n);

// y[j] += a * x[j] for j < n.
void add_scaled(float* y, const float* x, float a, int64_t n);

// v[i] = exp(v[i]) for i < n, to about 2 ulp (Cephes' polynomial, vectorisable); inputs below
// -87 give 0 and above 88 give exp(88).
void exp_in_place(float* v, int64_t n);

// out = x / rms(x) * weight over n values, rms(x) = sqrt(mean(x^2) + 1e-5).
void rms_norm(const float* x, const float* weight, int64_t n, float* out);

// Rotates the pairs (v[i], v[i + 1]), i even and i + 1 < rotated, by the angle whose cosine and
// sine are angles[i] and angles[i + 1]; inverse = true rotates the other way (the transpose, which
// is also the backward of the rotation).
void rotate_pairs(float* v, int64_t rotated, const float* angles, bool inverse);

}  // namespace stories
