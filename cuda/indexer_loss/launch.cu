// CUDA indexer distillation loss: resolves the problem into kernel arguments and queues, on the
// caller's stream without synchronising: with d_index_k, zeroing its fixed-point reduction and
// the maxima of |index_q| and |weights|; pass 1 (row statistics), the count of active rows and
// coeff / N_active (and d_index_k's scale), pass 2 (KL and gradients), d_index_k from its
// reduction, and the loss (row_loss and the f64 total over active rows in a fixed order).
// A rebuilt teacher in bf16 with d % 8 == 0 on sm_80+ (when its tiles fit in shared memory) is
// precomputed by teacher.cuh's kernels: its statistics before pass 1, then per chunk of rows
// its p into scratch and pass 2 of those rows. Other rebuilt teachers are fused into the passes.
// Scratch (O(T * H_q) floats, up to kTeacherScratchBytes for p, 12 * S * D_I bytes with
// d_index_k) is stream-ordered.
#include <algorithm>
#include <cmath>
#include <string>

#include "../../core/ops/indexer_loss.hpp"
#include "../../core/stream_buffer.hpp"
#include "../common/runtime.cuh"
#include "row_loss.cuh"
#include "teacher.cuh"

namespace dsa::cuda {
namespace {

using namespace distillation;

constexpr int kSumThreads = 256;
constexpr int64_t kPartAlignment = 256;
// The precomputed teacher's p scratch at most (a chunk of rows at a time; one row at least).
constexpr int64_t kTeacherScratchBytes = int64_t{64} << 20;

int64_t align_part(int64_t bytes) { return (bytes + kPartAlignment - 1) / kPartAlignment * kPartAlignment; }

// d_index_k's bound inputs: the largest finite |index_q| and |weights| into a.dk_maxima[0] and
// [1] as f32 bits (non-negative floats order as their bits; max is order-independent). A warp
// per (row, head) line of index_q, lanes along D_I; one atomicMax per warp and value.
__global__ void __launch_bounds__(kSumThreads) d_index_k_maxima_kernel(const __grid_constant__ Arguments a) {
    const int lane = static_cast<int>(threadIdx.x % 32);
    const int64_t lines = a.rows * a.heads, warps = static_cast<int64_t>(gridDim.x) * (kSumThreads / 32);
    float q_max = 0.0f, w_max = 0.0f;
    for (int64_t line = blockIdx.x * static_cast<int64_t>(kSumThreads / 32) + threadIdx.x / 32; line < lines;
         line += warps) {
        const int64_t row = line / a.heads, head = line % a.heads;
        for (int64_t c = lane; c < a.dim; c += 32) {
            const float value = fabsf(load_value(a.q, a.q_bf16, row * a.q_row + head * a.q_head + c));
            if (isfinite(value)) q_max = fmaxf(q_max, value);
        }
        if (lane == 0) {
            const float value = fabsf(load_value(a.weights, a.weights_bf16, row * a.weight_row + head * a.weight_head));
            if (isfinite(value)) w_max = fmaxf(w_max, value);
        }
    }
    const unsigned q_bits = __reduce_max_sync(0xffffffffu, __float_as_uint(q_max));
    const unsigned w_bits = __reduce_max_sync(0xffffffffu, __float_as_uint(w_max));
    if (lane != 0) return;
    if (q_bits != 0) atomicMax(a.dk_maxima, q_bits);
    if (w_bits != 0) atomicMax(a.dk_maxima + 1, w_bits);
}

// The power of two 2^e with B * 2^e <= 2^61, B = 2 * H_I * |coeff| * max|w| * max|q| (row_loss.cuh):
// {2^e, 2^-e}. B = 0: e = 0. In f64 every factor is finite and B < 2^450, so nothing overflows;
// e = 61 - (B's frexp exponent) lies within [-390, 510], kept in [-1000, 1000] all the same so
// both powers are normal doubles.
__device__ void d_index_k_scale(const Arguments& a, float coeff) {
    const double bound = 2.0 * static_cast<double>(a.heads) * fabs(static_cast<double>(coeff)) *
                         static_cast<double>(__uint_as_float(a.dk_maxima[1])) *
                         static_cast<double>(__uint_as_float(a.dk_maxima[0]));
    int e = 0;
    if (bound > 0.0) {
        int exponent = 0;
        frexp(bound, &exponent);  // bound = m * 2^exponent, m in [0.5, 1): bound < 2^exponent
        e = max(-1000, min(1000, 61 - exponent));
    }
    a.dk_scale[0] = ldexp(1.0, e);
    a.dk_scale[1] = ldexp(1.0, -e);
}

// factor = coeff / N_active (one CTA; an integer count, so the order does not matter); with
// d_index_k, its scale.
__global__ void __launch_bounds__(kSumThreads) active_factor_kernel(const __grid_constant__ Arguments a, float coeff) {
    __shared__ int64_t counts[kSumThreads];
    int64_t count = 0;
    for (int64_t row = threadIdx.x; row < a.rows; row += kSumThreads) count += a.active[row] != 0;
    counts[threadIdx.x] = count;
    __syncthreads();
    if (threadIdx.x != 0) return;
    int64_t total = 0;
    for (int i = 0; i < kSumThreads; ++i) total += counts[i];
    *a.factor = total > 0 ? coeff / static_cast<float>(total) : 0.0f;
    if (a.dk_scale != nullptr) d_index_k_scale(a, coeff);
}

// d_index_k (strided) from the reduction: a flagged element is NaN (a NaN contribution, or both
// infinities) or the infinity it received; else sum * 2^-e, the int64 rounded once to f32 and
// scaled exactly (f32 subnormals aside). Elements no row touched are 0.
__global__ void __launch_bounds__(kSumThreads) d_index_k_kernel(const __grid_constant__ Arguments a) {
    const int64_t count = a.tokens * a.dim;
    const double inverse = a.dk_scale[1];
    for (int64_t i = blockIdx.x * static_cast<int64_t>(kSumThreads) + threadIdx.x; i < count;
         i += static_cast<int64_t>(gridDim.x) * kSumThreads) {
        const uint32_t flags = a.dk_flags[i];
        float value;
        if (flags == 0) {
            value = static_cast<float>(static_cast<double>(__ll2float_rn(static_cast<long long>(a.dk_sum[i]))) * inverse);
        } else if ((flags & kFlagNaN) != 0 || ((flags & kFlagPlusInfinity) != 0 && (flags & kFlagMinusInfinity) != 0)) {
            value = __int_as_float(0x7fffffff);
        } else {
            value = (flags & kFlagPlusInfinity) != 0 ? INFINITY : -INFINITY;
        }
        a.d_k[(i / a.dim) * a.d_k_row + i % a.dim] = value;
    }
}

// CTAs of the grid-stride kernels over `count` items, 256 a CTA.
unsigned grid_of(int64_t count) {
    return static_cast<unsigned>(std::clamp<int64_t>((count + kSumThreads - 1) / kSumThreads, 1, int64_t{1} << 16));
}

// row_loss (KL of active rows, else 0) and loss = coeff * sum KL / N_active: thread i sums rows
// i, i + 256, ... and thread 0 adds the threads in order, in f64.
__global__ void __launch_bounds__(kSumThreads)
    loss_kernel(const __grid_constant__ Arguments a, float coeff, float* loss, float* row_loss, int64_t row_stride) {
    __shared__ double sums[kSumThreads];
    __shared__ int64_t counts[kSumThreads];
    double sum = 0.0;
    int64_t count = 0;
    for (int64_t row = threadIdx.x; row < a.rows; row += kSumThreads) {
        const bool active = a.active[row] != 0;
        if (row_loss != nullptr) row_loss[row * row_stride] = active ? static_cast<float>(a.kl[row]) : 0.0f;
        if (!active) continue;
        sum += a.kl[row];
        ++count;
    }
    sums[threadIdx.x] = sum;
    counts[threadIdx.x] = count;
    __syncthreads();
    if (threadIdx.x != 0 || loss == nullptr) return;
    double total = 0.0;
    int64_t active_rows = 0;
    for (int i = 0; i < kSumThreads; ++i) total += sums[i], active_rows += counts[i];
    *loss = active_rows > 0 ? static_cast<float>(coeff * total / static_cast<double>(active_rows)) : 0.0f;
}

Arguments arguments_of(const IndexerLossProblem& p) {
    Arguments a{};
    a.q = p.index_q.data;
    a.q_row = p.index_q.strides[0];
    a.q_head = p.index_q.strides[1];
    a.q_bf16 = p.index_q.dtype == DType::bf16;
    a.k = p.index_k.data;
    a.k_row = p.index_k.strides[0];
    a.k_bf16 = p.index_k.dtype == DType::bf16;
    a.weights = p.weights.data;
    a.weight_row = p.weights.strides[0];
    a.weight_head = p.weights.strides[1];
    a.weights_bf16 = p.weights.dtype == DType::bf16;
    a.ks = p.ks.as<const int32_t>();
    a.ks_stride = p.ks.strides[0];
    a.ke = p.ke.as<const int32_t>();
    a.ke_stride = p.ke.strides[0];
    if (p.config.mode == IndexerLossMode::sparse) {
        a.indices = p.indices.as<const int32_t>();
        a.index_row = p.indices.strides[0];
    }
    if (p.has_teacher_probs) {
        a.teacher_probs = p.teacher_probs.as<const float>();
        a.probs_row = p.teacher_probs.strides[0];
    } else {
        a.teacher_q = p.teacher_q.data;
        a.teacher_q_row = p.teacher_q.strides[0];
        a.teacher_q_head = p.teacher_q.strides[1];
        a.teacher_q_bf16 = p.teacher_q.dtype == DType::bf16;
        a.teacher_k = p.teacher_k.data;
        a.teacher_k_row = p.teacher_k.strides[0];
        a.teacher_k_head = p.teacher_k.ndim == 3 ? p.teacher_k.strides[1] : 0;
        a.teacher_k_bf16 = p.teacher_k.dtype == DType::bf16;
    }
    if (p.has_d_index_q) {
        a.d_q = p.d_index_q.as<float>();
        a.d_q_row = p.d_index_q.strides[0];
        a.d_q_head = p.d_index_q.strides[1];
    }
    if (p.has_d_index_k) {
        a.d_k = p.d_index_k.as<float>();
        a.d_k_row = p.d_index_k.strides[0];
    }
    if (p.has_d_weights) {
        a.d_w = p.d_weights.as<float>();
        a.d_w_row = p.d_weights.strides[0];
    }
    a.rows = p.rows;
    a.tokens = p.tokens;
    a.heads = p.heads;
    a.dim = p.dim;
    a.topk = p.topk;
    a.teacher_heads = p.has_teacher_probs ? 0 : p.teacher_heads;
    a.teacher_kv_heads = p.has_teacher_probs ? 1 : p.teacher_kv_heads;
    a.teacher_dim = p.has_teacher_probs ? 0 : p.teacher_dim;
    // The largest head tile (<= 16) that divides a kv head's query heads: tiles never mix kv heads.
    const int64_t group_heads = a.teacher_heads / a.teacher_kv_heads;
    int chunk = static_cast<int>(std::min<int64_t>(16, std::max<int64_t>(group_heads, 1)));
    while (group_heads % chunk != 0) --chunk;
    a.chunk_heads = chunk;
    a.teacher_scale = p.config.teacher_scale;
    a.teacher_form = p.has_teacher_probs ? TeacherForm::explicit_probs : TeacherForm::fused;
    return a;
}

// Whether the teacher kernels can take the rebuilt teacher (else it is fused into the passes).
bool precomputes_teacher(const IndexerLossProblem& p, const DeviceProperties& device) {
    return !p.has_teacher_probs && p.teacher_q.dtype == DType::bf16 && p.teacher_k.dtype == DType::bf16 &&
           p.teacher_dim % 8 == 0 && device.compute_major >= 8 &&
           teacher_layout(p.teacher_heads / p.teacher_kv_heads, p.teacher_dim).bytes <= device.shared_memory_per_block_optin;
}

}  // namespace

Status indexer_loss(Context& context, const IndexerLossProblem& p, Stream stream) {
    if (!p.has_loss && !p.has_row_loss && !p.wants_gradients()) return Status::success();
    DeviceScope scope(context.device_id());
    DSA_TRY(scope.status());
    Arguments a = arguments_of(p);
    const bool precomputed = precomputes_teacher(p, context.properties());
    if (precomputed) a.teacher_form = TeacherForm::precomputed;
    const bool fused = a.teacher_form == TeacherForm::fused;
    const SharedLayout layout = shared_layout(a.heads, a.dim, a.teacher_dim, fused);
    const int smem = layout.floats * static_cast<int>(sizeof(float));
    if (smem > context.properties().shared_memory_per_block_optin)
        return {StatusCode::unsupported,
                std::string(fused ? "index_q / teacher_q" : "index_q") + ": H_I = " + std::to_string(p.heads) +
                    ", D_I = " + std::to_string(p.dim) + (fused ? ", d = " + std::to_string(p.teacher_dim) : "") +
                    " need " +
                    std::to_string(smem) + " bytes of shared memory per block; this device offers " +
                    std::to_string(context.properties().shared_memory_per_block_optin)};
    if (p.rows > 0x7fffffff)
        return {StatusCode::shape_mismatch,
                "index_q: " + std::to_string(p.rows) + " rows exceed one CUDA launch (2^31 - 1 CTAs)"};
    // f32 score inputs take the split (near-f32) products, all-bf16 ones the plain bf16 products.
    const bool split = p.index_q.dtype == DType::f32 || p.index_k.dtype == DType::f32 ||
                       (!p.has_teacher_probs && (p.teacher_q.dtype == DType::f32 || p.teacher_k.dtype == DType::f32));
    const void* statistics = split ? reinterpret_cast<const void*>(statistics_kernel<true>)
                                   : reinterpret_cast<const void*>(statistics_kernel<false>);
    const void* gradients = split ? reinterpret_cast<const void*>(gradient_kernel<true>)
                                  : reinterpret_cast<const void*>(gradient_kernel<false>);
    for (const void* kernel : {statistics, gradients})
        DSA_TRY(runtime_status(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem),
                               "cudaFuncSetAttribute(indexer loss)"));
    const int teacher_smem = precomputed ? teacher_layout(p.teacher_heads / p.teacher_kv_heads, p.teacher_dim).bytes : 0;
    if (precomputed)
        for (const void* kernel : {reinterpret_cast<const void*>(teacher_statistics_kernel),
                                   reinterpret_cast<const void*>(teacher_probability_kernel)})
            DSA_TRY(runtime_status(
                cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, teacher_smem),
                "cudaFuncSetAttribute(indexer loss teacher)"));

    // Scratch: student lse, active flag, KL and teacher mass per row; teacher (max, sum) per
    // (row, head); the factor; the precomputed teacher's p of a chunk of rows, by entry position.
    const int64_t rows = p.rows;
    const int64_t p_row = std::max<int64_t>(1, p.config.mode == IndexerLossMode::sparse ? p.topk : p.tokens);
    const int64_t chunk_rows =
        precomputed ? std::clamp<int64_t>(kTeacherScratchBytes / (p_row * 4), 1, std::max<int64_t>(rows, 1)) : 0;
    const int64_t lse_at = 0, active_at = lse_at + align_part(rows * 4), kl_at = active_at + align_part(rows * 4),
                  mass_at = kl_at + align_part(rows * 8), stats_at = mass_at + align_part(rows * 8),
                  factor_at = stats_at + align_part(rows * a.teacher_heads * 8), p_at = factor_at + kPartAlignment,
                  bytes = p_at + align_part(chunk_rows * p_row * 4);
    StreamBuffer scratch;
    DSA_TRY(scratch.allocate(context, bytes, stream));
    // d_index_k's reduction: int64 sums and u32 flags per element, the two maxima, the scale.
    const int64_t elements = p.has_d_index_k ? p.tokens * p.dim : 0;
    const int64_t flags_at = align_part(elements * 8), maxima_at = flags_at + align_part(elements * 4),
                  scale_at = maxima_at + kPartAlignment, dk_bytes = scale_at + kPartAlignment;
    StreamBuffer dk_scratch;
    if (p.has_d_index_k) {
        const Status status = dk_scratch.allocate(context, dk_bytes, stream);
        if (!status.ok())
            return {status.code(), "d_index_k: its deterministic reduction needs " + std::to_string(dk_bytes) +
                                       " bytes of device scratch (about 12 * S * D_I): " + status.message()};
    }
    uint8_t* base = static_cast<uint8_t*>(scratch.data());
    a.student_lse = reinterpret_cast<float*>(base + lse_at);
    a.active = reinterpret_cast<int32_t*>(base + active_at);
    a.kl = reinterpret_cast<double*>(base + kl_at);
    a.teacher_mass = reinterpret_cast<double*>(base + mass_at);
    a.teacher_stats = reinterpret_cast<float2*>(base + stats_at);
    a.factor = reinterpret_cast<float*>(base + factor_at);
    if (precomputed) {
        a.teacher_p = reinterpret_cast<float*>(base + p_at);
        a.teacher_p_row = p_row;
    }
    if (p.has_d_index_k) {
        uint8_t* dk = static_cast<uint8_t*>(dk_scratch.data());
        a.dk_sum = reinterpret_cast<unsigned long long*>(dk);
        a.dk_flags = reinterpret_cast<uint32_t*>(dk + flags_at);
        a.dk_maxima = reinterpret_cast<uint32_t*>(dk + maxima_at);
        a.dk_scale = reinterpret_cast<double*>(dk + scale_at);
        // Sums, flags and maxima start at 0 (the maxima as +0.0f bits).
        DSA_TRY(runtime_status(cudaMemsetAsync(dk, 0, static_cast<size_t>(maxima_at + 8), stream),
                               "indexer loss: zeroing d_index_k's reduction"));
        const int64_t lines = p.rows * p.heads;
        if (lines > 0) {
            d_index_k_maxima_kernel<<<grid_of(lines * 32), kSumThreads, 0, stream>>>(a);
            DSA_TRY(launch_status("indexer loss: d_index_k maxima"));
        }
    }
    // The launches read `a` when queued, so first_row may change between them.
    void* parameters[] = {&a};
    if (precomputed && rows > 0) {
        teacher_statistics_kernel<<<static_cast<unsigned>(rows), kTeacherThreads, teacher_smem, stream>>>(a);
        DSA_TRY(launch_status("indexer loss: teacher statistics"));
    }
    if (rows > 0) {
        cudaLaunchKernel(statistics, dim3(static_cast<unsigned>(rows)), dim3(kThreads), parameters,
                         static_cast<size_t>(smem), stream);
        DSA_TRY(launch_status("indexer loss: statistics kernel launch"));
    }
    active_factor_kernel<<<1, kSumThreads, 0, stream>>>(a, p.config.coeff);
    DSA_TRY(launch_status("indexer loss: active rows"));
    const int64_t step = precomputed ? chunk_rows : std::max<int64_t>(rows, 1);
    for (int64_t first = 0; first < rows; first += step) {
        const auto count = static_cast<unsigned>(std::min(step, rows - first));
        a.first_row = first;
        if (precomputed) {
            teacher_probability_kernel<<<count, kTeacherThreads, teacher_smem, stream>>>(a);
            DSA_TRY(launch_status("indexer loss: teacher probabilities"));
        }
        cudaLaunchKernel(gradients, dim3(count), dim3(kThreads), parameters, static_cast<size_t>(smem), stream);
        DSA_TRY(launch_status("indexer loss: gradient kernel launch"));
    }
    if (p.has_d_index_k && elements > 0) {
        d_index_k_kernel<<<grid_of(elements), kSumThreads, 0, stream>>>(a);
        DSA_TRY(launch_status("indexer loss: d_index_k"));
    }
    if (p.has_loss || p.has_row_loss) {
        loss_kernel<<<1, kSumThreads, 0, stream>>>(a, p.config.coeff, p.has_loss ? p.loss.as<float>() : nullptr,
                                                    p.has_row_loss ? p.row_loss.as<float>() : nullptr,
                                                    p.has_row_loss ? p.row_loss.strides[0] : 0);
        DSA_TRY(launch_status("indexer loss: loss"));
    }
    return Status::success();
}

}  // namespace dsa::cuda
