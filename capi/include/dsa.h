/*
 * libdsa: DeepSeek Sparse Attention kernels behind a stable C ABI.
 *
 * This is the only public header. It is plain C99 (stdint.h and stddef.h only) so that every
 * language can bind it. Conventions that hold for every function below:
 *
 * - Every function returns a dsa_status_t (0 = DSA_STATUS_SUCCESS) unless documented otherwise.
 *   On failure, dsa_last_error_message() on the SAME thread says what was wrong; outputs are
 *   left untouched (no partial writes) for every error that validation can detect.
 * - No function aborts, prints, throws or reads memory that the caller did not describe.
 * - Tensors are borrowed views (dsa_tensor_t): the caller owns the memory, which must stay valid
 *   until the call returns (CPU) or until the work on `stream` has completed (CUDA).
 * - The tensors' device decides where an op runs; all tensors of one call and the context must
 *   be on the same device, else DSA_STATUS_DEVICE_MISMATCH.
 * - Params structs start with `struct_size`; fill them with the matching *_params_init()
 *   function, then change fields. A NULL params pointer means "all defaults". Fields are only
 *   ever appended: an older library accepts a newer, larger struct if the fields it does not know
 *   are zero, and returns DSA_STATUS_UNSUPPORTED otherwise.
 * - CUDA work is enqueued on `stream` (NULL = the legacy default stream) without host
 *   synchronisation. `stream` is ignored for CPU tensors.
 *
 * Thread safety: a context may be shared by any number of threads calling ops at once. Status
 * strings and version strings are static; the last-error message is per thread.
 */
#ifndef DSA_H
#define DSA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define DSA_API __declspec(dllimport)
#elif defined(__GNUC__)
#define DSA_API __attribute__((visibility("default")))
#else
#define DSA_API
#endif

/* ------------------------------------------------------------------------------------------ */
/* Versions                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/** Version of this header. The library's own is dsa_version(); a major mismatch means the ABI
 *  differs. */
#define DSA_VERSION_MAJOR 0
#define DSA_VERSION_MINOR 1
#define DSA_VERSION_PATCH 0
/** The three parts in one number: major * 10000 + minor * 100 + patch. */
#define DSA_VERSION_NUMBER (DSA_VERSION_MAJOR * 10000 + DSA_VERSION_MINOR * 100 + DSA_VERSION_PATCH)

/** Returns the version of the loaded library as major * 10000 + minor * 100 + patch. */
DSA_API uint32_t dsa_version(void);

/** Returns the version of the loaded library as "MAJOR.MINOR.PATCH". Static storage; never NULL. */
DSA_API const char* dsa_version_string(void);

/** Returns a one-line description of how the library was built and what it found at run time:
 *  version, CUDA runtime version and compiled architectures (or "cuda: not built"), and the CPU
 *  vector paths in use (e.g. "cpu: avx2+fma"). Static storage; never NULL. */
DSA_API const char* dsa_build_info(void);

/* ------------------------------------------------------------------------------------------ */
/* Status codes and errors                                                                     */
/* ------------------------------------------------------------------------------------------ */

/** A status code: 0 is success. Values are stable and never reused. */
typedef int32_t dsa_status_t;
/** The call succeeded. */
#define DSA_STATUS_SUCCESS 0
/** A NULL pointer, a bad parameter value, or a params struct with a bad struct_size. */
#define DSA_STATUS_INVALID_ARGUMENT 1
/** A tensor has the wrong rank, a wrong or inconsistent extent, or a size that overflows. */
#define DSA_STATUS_SHAPE_MISMATCH 2
/** A tensor has a dtype the op does not accept. */
#define DSA_STATUS_DTYPE_MISMATCH 3
/** Tensors (or the context) are on different devices, or on an unknown device type. */
#define DSA_STATUS_DEVICE_MISMATCH 4
/** Strides, overlap or alignment that the op cannot honour (no silent copies are made). */
#define DSA_STATUS_LAYOUT_UNSUPPORTED 5
/** The feature exists but not in this build or this version (e.g. CUDA in a CPU-only build, or
 *  non-zero fields of a newer params struct). */
#define DSA_STATUS_UNSUPPORTED 6
/** Host or device memory could not be allocated. */
#define DSA_STATUS_OUT_OF_MEMORY 7
/** The CUDA runtime reported an error (no device, launch failure, ...); the message has it. */
#define DSA_STATUS_CUDA_ERROR 8
/** The workspace passed is smaller than the matching *_workspace_size() asked for. */
#define DSA_STATUS_WORKSPACE_TOO_SMALL 9
/** A bug in libdsa: please report it with the message. */
#define DSA_STATUS_INTERNAL 10

/** Returns a short static description of a status code ("invalid argument", ...); unknown codes
 *  give "unknown status". Never NULL. */
DSA_API const char* dsa_status_string(dsa_status_t status);

/** Returns the message of the last failed call on this thread, naming the offending argument
 *  and what was expected; "" if no call failed yet. The pointer is valid until the next libdsa
 *  call on this thread. Never NULL. Successful calls do not clear it. */
DSA_API const char* dsa_last_error_message(void);

/* ------------------------------------------------------------------------------------------ */
/* Tensors                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/** Element type codes. */
typedef int32_t dsa_dtype_t;
#define DSA_DTYPE_F32 1
#define DSA_DTYPE_F16 2
#define DSA_DTYPE_BF16 3
/** OCP FP8 e4m3 "fn" (bias 7, max 448, no infinities, 0x7F/0xFF are NaN), one byte each. */
#define DSA_DTYPE_FP8_E4M3 4
#define DSA_DTYPE_U8 5
#define DSA_DTYPE_I32 6
#define DSA_DTYPE_I64 7

/** Device type codes: equal to DLPack's DLDeviceType values. */
typedef int32_t dsa_device_type_t;
#define DSA_DEVICE_CPU 1
#define DSA_DEVICE_CUDA 2

/** Largest rank of a dsa_tensor_t. */
#define DSA_MAX_DIMS 8

/** A borrowed, strided view of caller-owned memory.
 *  Element (i0, i1, ...) lives at data + (i0 * strides[0] + i1 * strides[1] + ...) * element size.
 *  Strides are in ELEMENTS and must be >= 0; entries past ndim are ignored. A rank-0 tensor is a
 *  scalar. data may be NULL only when the tensor has no elements. device_id is the CUDA ordinal
 *  (ignored for CPU). */
typedef struct dsa_tensor {
    void* data;
    int32_t ndim;
    dsa_dtype_t dtype;
    dsa_device_type_t device_type;
    int32_t device_id;
    int64_t shape[DSA_MAX_DIMS];
    int64_t strides[DSA_MAX_DIMS];
} dsa_tensor_t;

/** Fills *tensor as a contiguous (row-major) view of `data` with the given rank, shape and dtype,
 *  on the given device. Returns DSA_STATUS_INVALID_ARGUMENT if tensor or shape is NULL or ndim is
 *  outside [0, DSA_MAX_DIMS], DSA_STATUS_SHAPE_MISMATCH for a negative extent or a byte size that
 *  overflows int64, DSA_STATUS_DTYPE_MISMATCH for an unknown dtype. */
DSA_API dsa_status_t dsa_tensor_init_contiguous(dsa_tensor_t* tensor, void* data, int32_t ndim,
                                                const int64_t* shape, dsa_dtype_t dtype,
                                                dsa_device_type_t device_type, int32_t device_id);

/** Returns the size in bytes of one element of `dtype`, or 0 for an unknown code. */
DSA_API size_t dsa_dtype_size(dsa_dtype_t dtype);

/** A CUDA stream. A cudaStream_t converts to it without a cast; NULL is the legacy default
 *  stream. */
typedef struct CUstream_st* dsa_stream_t;

/* ------------------------------------------------------------------------------------------ */
/* Context                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/** An opaque handle holding the device, the CPU thread pool and cached device properties. */
typedef struct dsa_context dsa_context_t;

/** Options for dsa_context_create. */
typedef struct dsa_context_options {
    uint32_t struct_size;          /**< sizeof(dsa_context_options_t); set by the init function */
    dsa_device_type_t device_type; /**< DSA_DEVICE_CPU (default) or DSA_DEVICE_CUDA */
    int32_t device_id;             /**< CUDA device ordinal (default 0); ignored for CPU */
    int32_t num_threads;           /**< CPU worker threads; 0 (default) = the machine's cores.
                                        Results never depend on this number. */
} dsa_context_options_t;

/** Fills *options with defaults (CPU, device 0, all cores). Returns DSA_STATUS_INVALID_ARGUMENT
 *  if options is NULL. */
DSA_API dsa_status_t dsa_context_options_init(dsa_context_options_t* options);

/** Creates a context. options may be NULL (defaults). On success *context owns a new context
 *  that the caller frees with dsa_context_destroy; on failure *context is set to NULL.
 *  Returns DSA_STATUS_INVALID_ARGUMENT (context NULL, num_threads < 0, bad struct_size),
 *  DSA_STATUS_DEVICE_MISMATCH (unknown device type), DSA_STATUS_UNSUPPORTED (CUDA asked of a
 *  CPU-only build), DSA_STATUS_CUDA_ERROR (no such CUDA device or no usable driver),
 *  DSA_STATUS_OUT_OF_MEMORY. */
DSA_API dsa_status_t dsa_context_create(dsa_context_t** context,
                                        const dsa_context_options_t* options);

/** Destroys a context created by dsa_context_create. NULL is a no-op. The caller must ensure that
 *  no other thread is using it and that CUDA work launched with it has completed. */
DSA_API void dsa_context_destroy(dsa_context_t* context);

/** Writes the context's device type and id. Returns DSA_STATUS_INVALID_ARGUMENT for NULL
 *  arguments. */
DSA_API dsa_status_t dsa_context_device(const dsa_context_t* context,
                                        dsa_device_type_t* device_type, int32_t* device_id);

/** Writes the number of CPU threads the context uses (>= 1). */
DSA_API dsa_status_t dsa_context_num_threads(const dsa_context_t* context, int32_t* num_threads);

/* ------------------------------------------------------------------------------------------ */
/* FP8 block quantisation (DSA_SPEC section 2)                                                  */
/* ------------------------------------------------------------------------------------------ */

/** How a group's scale is chosen. */
typedef int32_t dsa_scale_format_t;
/** s = amax / 448, any f32 value. */
#define DSA_SCALE_FORMAT_F32 0
/** s = 2^ceil(log2(amax / 448)): an exact power of two rounded up (DeepSeek-V3.2), stored as
 *  f32. Dequantisation with it is exact scaling. */
#define DSA_SCALE_FORMAT_UE8M0 1

/** Parameters of dsa_quantize_fp8 and dsa_dequantize_fp8. */
typedef struct dsa_quantize_fp8_params {
    uint32_t struct_size;            /**< sizeof(dsa_quantize_fp8_params_t) */
    int32_t group_size;              /**< B: consecutive elements sharing a scale; default 128 */
    dsa_scale_format_t scale_format; /**< default DSA_SCALE_FORMAT_F32 */
    float amax_floor;                /**< lower bound on a group's amax; default 1e-4; > 0 */
} dsa_quantize_fp8_params_t;

/** Fills *params with the defaults above. */
DSA_API dsa_status_t dsa_quantize_fp8_params_init(dsa_quantize_fp8_params_t* params);

/** Quantises x [..., N] (f32, bf16 or f16) to e4m3 codes q [..., N] (FP8_E4M3 or U8) and f32
 *  scales [..., N / group_size], group by group along the last dimension:
 *  amax = max(max |x_i| over the group's finite values, amax_floor); s as scale_format says;
 *  q_i = e4m3(clamp(x_i / s, -448, 448)) rounded to nearest even.
 *  Non-finite inputs: NaN encodes as the NaN code (sign kept) and does not affect the scale;
 *  +-Inf saturates to +-448 and does not affect the scale.
 *  Layout: the last dimension of x and q must be contiguous (stride 1) and scales' last stride
 *  is free; leading dimensions may have any strides; all three have the same leading shape.
 *  Outputs must not overlap each other or x.
 *  Returns DSA_STATUS_INVALID_ARGUMENT (NULL ctx/tensor/data, group_size <= 0 or not dividing N,
 *  amax_floor not > 0 or not finite, unknown scale_format), DSA_STATUS_SHAPE_MISMATCH,
 *  DSA_STATUS_DTYPE_MISMATCH, DSA_STATUS_DEVICE_MISMATCH, DSA_STATUS_LAYOUT_UNSUPPORTED,
 *  DSA_STATUS_UNSUPPORTED, DSA_STATUS_CUDA_ERROR. */
DSA_API dsa_status_t dsa_quantize_fp8(dsa_context_t* context,
                                      const dsa_quantize_fp8_params_t* params,
                                      const dsa_tensor_t* x, const dsa_tensor_t* q,
                                      const dsa_tensor_t* scales, dsa_stream_t stream);

/** The inverse of dsa_quantize_fp8: y_i = f32(q_i) * s for q [..., N] (FP8_E4M3 or U8) and
 *  scales f32 [..., N / group_size] into y [..., N] (f32 or bf16, bf16 rounded to nearest even).
 *  Only params->group_size is read. NaN codes give NaN. Layout rules and statuses as
 *  dsa_quantize_fp8 (y must not overlap q or scales). */
DSA_API dsa_status_t dsa_dequantize_fp8(dsa_context_t* context,
                                        const dsa_quantize_fp8_params_t* params,
                                        const dsa_tensor_t* q, const dsa_tensor_t* scales,
                                        const dsa_tensor_t* y, dsa_stream_t stream);

/* ------------------------------------------------------------------------------------------ */
/* Hadamard rotation (DSA_SPEC section 3)                                                       */
/* ------------------------------------------------------------------------------------------ */

/** Parameters of dsa_hadamard. */
typedef struct dsa_hadamard_params {
    uint32_t struct_size; /**< sizeof(dsa_hadamard_params_t) */
    float scale;          /**< multiplier of the result; 0 (default) means n^-0.5 (orthonormal) */
} dsa_hadamard_params_t;

/** Fills *params with the defaults above. */
DSA_API dsa_status_t dsa_hadamard_params_init(dsa_hadamard_params_t* params);

/** y = (x . H_n) * scale for every length-n vector along the last dimension, H_n the Sylvester
 *  Hadamard matrix in natural order, n a power of two in [1, 1024]. x and y are both f32 or both
 *  bf16 (computed in f32, bf16 output rounded to nearest even) with the same shape; their last
 *  dimension must be contiguous. y may be x itself (same data and layout: in place); any other
 *  overlap is DSA_STATUS_LAYOUT_UNSUPPORTED. Statuses as dsa_quantize_fp8. */
DSA_API dsa_status_t dsa_hadamard(dsa_context_t* context, const dsa_hadamard_params_t* params,
                                  const dsa_tensor_t* x, const dsa_tensor_t* y,
                                  dsa_stream_t stream);

/** dsa_hadamard and dsa_quantize_fp8 in one pass (DeepSeek rotates the indexer q and k right
 *  before quantising them): every row of x [..., N] (f32, bf16 or f16) is rotated with n = N
 *  (a power of two in [1, 1024]) in f32 by exactly dsa_hadamard's operations, NOT rounded to
 *  x's dtype, and quantised exactly as dsa_quantize_fp8 quantises an f32 tensor into codes
 *  q [..., N] (FP8_E4M3 or U8) and f32 scales [..., N / group_size]. The results are bitwise
 *  those of dsa_hadamard of f32(x) into an f32 tensor followed by dsa_quantize_fp8 of it.
 *  hadamard_params / quantize_params NULL: their defaults (scale n^-0.5; group_size 128, f32
 *  scales, amax_floor 1e-4); quantize_params->group_size must divide N.
 *  Layout: the last dimension of x and q must be contiguous (stride 1) and scales' last stride
 *  is free; leading dimensions may have any strides; all three have the same leading shape.
 *  Outputs must not overlap each other or x (no in-place form: q is narrower than x).
 *  Returns DSA_STATUS_INVALID_ARGUMENT (NULL ctx/tensor/data, a struct_size too small, a
 *  non-finite hadamard_params->scale, group_size <= 0 or not dividing N, amax_floor not > 0 or
 *  not finite, unknown scale_format), DSA_STATUS_SHAPE_MISMATCH (N not a power of two in
 *  [1, 1024], q's shape not x's, scales' leading shape or last extent wrong, a rank of 0),
 *  DSA_STATUS_DTYPE_MISMATCH, DSA_STATUS_DEVICE_MISMATCH, DSA_STATUS_LAYOUT_UNSUPPORTED (a last
 *  stride not 1, an output overlapping itself, x or the other output), DSA_STATUS_UNSUPPORTED
 *  (a params struct from a newer caller with fields set that this version does not know),
 *  DSA_STATUS_CUDA_ERROR. */
DSA_API dsa_status_t dsa_hadamard_quantize_fp8(dsa_context_t* context,
                                               const dsa_hadamard_params_t* hadamard_params,
                                               const dsa_quantize_fp8_params_t* quantize_params,
                                               const dsa_tensor_t* x, const dsa_tensor_t* q,
                                               const dsa_tensor_t* scales, dsa_stream_t stream);

/* ------------------------------------------------------------------------------------------ */
/* Top-k selection (DSA_SPEC section 5)                                                       */
/* ------------------------------------------------------------------------------------------ */

/** Output order of dsa_topk (the selected SET never depends on it). */
typedef uint32_t dsa_topk_order_t;
/** A deterministic order that is otherwise unspecified (the fastest). */
#define DSA_TOPK_ORDER_UNSPECIFIED 0
/** Score descending, ties by ascending index; NaN-scored (forced) tokens last, by index. */
#define DSA_TOPK_ORDER_SCORE 1
/** Ascending token index. */
#define DSA_TOPK_ORDER_INDEX 2

/** Parameters of dsa_topk. */
typedef struct dsa_topk_params {
    uint32_t struct_size;   /**< sizeof(dsa_topk_params_t) */
    int32_t k;              /**< tokens selected per row; default 2048; >= 1 (may exceed N) */
    dsa_topk_order_t order; /**< default DSA_TOPK_ORDER_UNSPECIFIED */
    int32_t n_sink;         /**< default 0; >= 0: the first n_sink tokens of each row's window are
                                 always selected */
    int32_t n_local;        /**< default 0; >= 0: the last n_local tokens of each row's window are
                                 always selected; n_sink + n_local <= k */
    int32_t page_size;      /**< tokens per page of the block table; default 64; >= 1 (checked
                                 even when no block table is passed) */
} dsa_topk_params_t;

/** Fills *params with the defaults above. Returns DSA_STATUS_INVALID_ARGUMENT if params is
 *  NULL. */
DSA_API dsa_status_t dsa_topk_params_init(dsa_topk_params_t* params);

/** Selects, for every row r of scores f32 [R, N], the k best tokens of the row's window and
 *  writes their indices to indices int32 [R, k].
 *
 *  Window: [row_starts[r], row_ends[r]) clamped to [0, N]; start >= end is an empty window.
 *  row_starts NULL means 0 for every row, row_ends NULL means N. The values are data (a GPU
 *  cannot check them without a synchronisation), so they are clamped, never rejected.
 *  Preference: larger score first; equal scores prefer the smaller index, so the selected set is
 *  exact and deterministic. -inf is valid but least preferred; NaN is never selected except as a
 *  forced token.
 *  Hybrid selection: the first min(n_sink, len) and the last min(n_local, len) tokens of the
 *  window (len its length) are always selected, whatever their score (NaN included), and count
 *  toward k; the remaining slots take the best other tokens of the window.
 *  Output: column indices (token positions in [0, N)), ordered as params->order says, then -1
 *  padding at the END of the row where fewer than k tokens are selectable (k > window, NaN).
 *  Block table: with block_table int32 [B, max_pages] (B >= 1 dividing R), row r uses block-table
 *  row b = r / (R / B) and each index i becomes the physical slot
 *  block_table[b][i / page_size] * page_size + i % page_size. -1 stays -1; a page index
 *  >= max_pages, a negative entry or a slot that does not fit int32 gives -1 (never an
 *  out-of-bounds read). The order is decided on the token indices before translation.
 *  Layout: scores' last dimension contiguous (row stride free); row_starts, row_ends int32 [R]
 *  and block_table any strides; indices' last dimension contiguous (row stride free), must not
 *  overlap itself or any input.
 *  Returns DSA_STATUS_INVALID_ARGUMENT (NULL context, scores or indices, bad struct_size,
 *  k < 1, n_sink or n_local < 0, n_sink + n_local > k, unknown order, page_size < 1),
 *  DSA_STATUS_SHAPE_MISMATCH (ranks, row_starts/row_ends not [R], indices not [R, k], B not
 *  dividing R), DSA_STATUS_DTYPE_MISMATCH (scores not f32, others not int32),
 *  DSA_STATUS_DEVICE_MISMATCH, DSA_STATUS_LAYOUT_UNSUPPORTED (last strides, overlaps),
 *  DSA_STATUS_UNSUPPORTED (newer params fields; on CUDA, DSA_TOPK_ORDER_SCORE with
 *  min(k, N) > 16384), DSA_STATUS_CUDA_ERROR, DSA_STATUS_OUT_OF_MEMORY.
 *  CUDA: one block per row, no workspace, no host synchronisation; the SET equals the CPU's
 *  exactly; with DSA_TOPK_ORDER_UNSPECIFIED the CUDA order is ascending index. */
DSA_API dsa_status_t dsa_topk(dsa_context_t* context, const dsa_topk_params_t* params,
                              const dsa_tensor_t* scores, const dsa_tensor_t* row_starts,
                              const dsa_tensor_t* row_ends, const dsa_tensor_t* block_table,
                              const dsa_tensor_t* indices, dsa_stream_t stream);

/* (end of the topk section) */

/* ------------------------------------------------------------------------------------------ */
/* Lightning indexer (DSA_SPEC section 4) and its key cache (section 7.1)                     */
/* ------------------------------------------------------------------------------------------ */

/** Parameters of dsa_indexer_logits and dsa_indexer_logits_paged. There are no options yet;
 *  fields will be appended (see the params convention at the top of this header). */
typedef struct dsa_indexer_params {
    uint32_t struct_size; /**< sizeof(dsa_indexer_params_t) */
} dsa_indexer_params_t;

/** Fills *params with the defaults. Returns DSA_STATUS_INVALID_ARGUMENT if params is NULL. */
DSA_API dsa_status_t dsa_indexer_params_init(dsa_indexer_params_t* params);

/** Lightning-indexer logits of a ragged prefill (DSA_SPEC section 4):
 *    logits[t, s] = k_scale[s] * sum_{h < H_I} w[t,h] * ReLU(sum_{d < D_I} q[t,h,d] * k[s,d])
 *  for s in the window [ks[t], ke[t]), and -inf for every other s in [0, S_kv).
 *  q and k are e4m3 codes (dtype FP8_E4M3 or U8, NaN codes give NaN). Products are exact and
 *  summed in f32; ReLU, the head weighting and the head sum are f32; k_scale is applied after
 *  the head sum. ReLU(NaN) is NaN. Results are bitwise identical for any thread count.
 *  CUDA: no workspace, no host synchronisation, graph-capturable. The sum over D_I runs in the
 *  tensor cores (sm_90a FP8 wgmma for H_I in {16, 32, 64, 128}, D_I 128 or 256 and 16-byte
 *  aligned q / k bases and row strides; f16 mma.sync or a scalar kernel otherwise), whose FP8
 *  accumulation keeps fewer bits than f32: a logit is within 2^-9 of k_scale * sum_h |w_h|
 *  sum_d |q_hd k_d| of the CPU's (the tested bound; measured on an H200: below 2e-4 of it).
 *  The same inputs give the same bits, however the call's rows are tiled.
 *
 *  q        FP8_E4M3 or U8 [S_q, H_I, D_I]; the last two dimensions contiguous (strides D_I, 1),
 *           the row stride free.
 *  weights  f32 [S_q, H_I], any strides: w, which folds in q's scale and the constants.
 *  k        FP8_E4M3 or U8 [S_kv, D_I], last dimension contiguous, row stride free.
 *  k_scale  f32 [S_kv], any stride: one scale per token (> 0 in DeepSeek's use).
 *  ks, ke   i32 [S_q], any stride: window start and (exclusive) end of each query row. They are
 *           data, so they are not rejected: both are clamped to [0, S_kv], and start >= end gives
 *           a row of -inf. Causal prefill from position 0: ks = 0, ke = t + 1.
 *  logits   f32 [S_q, S_kv] output, last dimension contiguous, row stride >= S_kv (the padding
 *           past S_kv is not written); must not overlap any input.
 *  H_I >= 1 and D_I >= 1 are free (64 x 128 is the tuned case). params may be NULL.
 *  Returns DSA_STATUS_INVALID_ARGUMENT (NULL context, tensor or data; bad params struct_size),
 *  DSA_STATUS_SHAPE_MISMATCH (ranks, extents that disagree, H_I or D_I of 0),
 *  DSA_STATUS_DTYPE_MISMATCH, DSA_STATUS_DEVICE_MISMATCH, DSA_STATUS_LAYOUT_UNSUPPORTED (strides
 *  above, overlapping output), DSA_STATUS_UNSUPPORTED (newer params fields; CUDA tensors in a
 *  build without CUDA), DSA_STATUS_CUDA_ERROR, DSA_STATUS_OUT_OF_MEMORY. Every message names
 *  the argument. */
DSA_API dsa_status_t dsa_indexer_logits(dsa_context_t* context, const dsa_indexer_params_t* params,
                                        const dsa_tensor_t* q, const dsa_tensor_t* weights,
                                        const dsa_tensor_t* k, const dsa_tensor_t* k_scale,
                                        const dsa_tensor_t* ks, const dsa_tensor_t* ke,
                                        const dsa_tensor_t* logits, dsa_stream_t stream);

/** Lightning-indexer logits of a decode step over the paged key cache (DSA_SPEC sections 4 and
 *  7.1): query j of sequence b (logits row b * n_next + j) sees cached tokens
 *  [0, context_lens[b] - n_next + j + 1); token s of sequence b lives in page
 *  block_table[b, s / 64], row s % 64. Visible entries are computed as dsa_indexer_logits
 *  does (same precision; on the CPU bitwise the same values for the same codes and scales);
 *  every other entry of [0, max_context) is -inf.
 *
 *  q             FP8_E4M3 or U8 [B, n_next, H_I, D_I], n_next >= 1; the last two dimensions
 *                contiguous (strides D_I, 1), the first two free.
 *  weights       f32 [B * n_next, H_I], any strides.
 *  k_cache       U8 [num_pages, 64 * (D_I + 4)], last dimension contiguous, page stride free.
 *                Each page holds 64 x D_I e4m3 codes (token-major), then 64 f32 scales, the
 *                scale of row r at byte 64 * D_I + 4 * r (what dsa_indexer_cache_write writes).
 *  block_table   i32 [B, max_pages], any strides: page index of each 64-token block.
 *  context_lens  i32 [B], any stride: tokens cached per sequence, the new ones included.
 *  logits        f32 [B * n_next, max_context] output, last dimension contiguous, row stride
 *                >= max_context (the padding is not written); must not overlap any input.
 *  Data is handled, not rejected: context_lens are clamped to [0, min(max_context,
 *  max_pages * 64)]; a block-table entry outside [0, num_pages) makes its 64 tokens -inf and its
 *  page is never read; pages and rows outside the visible ranges are never read (the CUDA fast
 *  kernel loads aligned 4-page tiles, so up to 3 pages past a visible range are read when their
 *  block-table entries, below max_pages, lie in [0, num_pages)).
 *  CUDA: as dsa_indexer_logits; the fast kernel also needs 16-byte aligned k_cache pages.
 *  Returns the statuses of dsa_indexer_logits (SHAPE_MISMATCH also for n_next = 0 and for a
 *  k_cache width that is not 64 * (D_I + 4)). */
DSA_API dsa_status_t dsa_indexer_logits_paged(dsa_context_t* context, const dsa_indexer_params_t* params,
                                              const dsa_tensor_t* q, const dsa_tensor_t* weights,
                                              const dsa_tensor_t* k_cache, const dsa_tensor_t* block_table,
                                              const dsa_tensor_t* context_lens, const dsa_tensor_t* logits,
                                              dsa_stream_t stream);

/** Quantises keys and scatters them into the paged indexer key cache (DSA_SPEC sections 2 and
 *  7.1). Token i of k is quantised as one group of D_I values: amax over its finite values,
 *  floored at 1e-4; scale = 2^ceil(log2(amax / 448)) (ue8m0); codes e4m3(clamp(x / scale, -448,
 *  448)) rounded to nearest even (NaN stays NaN, +-Inf saturates), exactly as dsa_quantize_fp8
 *  with group_size D_I and DSA_SCALE_FORMAT_UE8M0. Slot s = slot_mapping[i] receives the D_I
 *  codes at byte (s % 64) * D_I of page s / 64 and the f32 scale at byte 64 * D_I + 4 * (s % 64)
 *  of that page. Slots < 0 (padding tokens) and slots >= num_pages * 64 are skipped; nothing else
 *  of the cache is written. If several tokens name the same slot, the last of them (largest i)
 *  is stored. CUDA writes the CPU's bytes, without workspace or host synchronisation (a slot's
 *  last token is found by comparing each token's slot with the later ones: T^2 / 2 compares).
 *
 *  k             f32 or bf16 [T, D_I], D_I >= 1, last dimension contiguous, row stride free.
 *  slot_mapping  i64 [T], any stride.
 *  k_cache       U8 [num_pages, 64 * (D_I + 4)], written in place; last dimension contiguous,
 *                pages must not overlap each other, k or slot_mapping.
 *  Returns DSA_STATUS_INVALID_ARGUMENT (NULL context, tensor or data), DSA_STATUS_SHAPE_MISMATCH,
 *  DSA_STATUS_DTYPE_MISMATCH, DSA_STATUS_DEVICE_MISMATCH, DSA_STATUS_LAYOUT_UNSUPPORTED,
 *  DSA_STATUS_UNSUPPORTED (CUDA tensors in a build without CUDA), DSA_STATUS_CUDA_ERROR,
 *  DSA_STATUS_OUT_OF_MEMORY. */
DSA_API dsa_status_t dsa_indexer_cache_write(dsa_context_t* context, const dsa_tensor_t* k,
                                             const dsa_tensor_t* slot_mapping, const dsa_tensor_t* k_cache,
                                             dsa_stream_t stream);


/* (end of the indexer section) */

/* ------------------------------------------------------------------------------------------ */
/* Sparse MLA attention (DSA_SPEC section 6) and the MLA FP8 cache (section 7.2)              */
/* ------------------------------------------------------------------------------------------ */

/** Parameters of dsa_sparse_attention and dsa_sparse_attention_paged. */
typedef struct dsa_sparse_attention_params {
    uint32_t struct_size; /**< sizeof(dsa_sparse_attention_params_t) */
    float scale;          /**< softmax scale applied to q.k. REQUIRED: the init function sets 0, which
                               is rejected, so the caller must choose it (DeepSeek-V3.2 uses
                               192^-0.5 * (0.1 * ln 40 + 1)^2 = 0.13523378, not d_qk^-0.5). Any
                               finite non-zero value. */
    int32_t d_v;          /**< value width: the first d_v dims of each KV entry; default 512;
                               1 <= d_v <= d_qk */
} dsa_sparse_attention_params_t;

/** Fills *params with the defaults above (scale 0, which must be replaced; d_v 512). Returns
 *  DSA_STATUS_INVALID_ARGUMENT if params is NULL. */
DSA_API dsa_status_t dsa_sparse_attention_params_init(dsa_sparse_attention_params_t* params);

/** Sparse MLA attention, prefill form (MQA: one KV entry per token shared by all query heads).
 *  For query row t, head h, and the selected tokens s_j = indices[t, j] that are valid
 *  (0 <= s_j < S_kv, among the first topk_length[t] entries):
 *      z[h, j]      = scale * (q[t, h, :] . kv[s_j, :])      (bf16 inputs, f32 products and sums)
 *      lse[t, h]    = log sum_j exp z[h, j]                   (natural log; the sink is EXCLUDED)
 *      out[t, h, :] = sum_j exp(z[h, j]) * kv[s_j, :d_v] / (sum_j exp(z[h, j]) + exp(attn_sink[h]))
 *      max_logits[t, h] = max_j z[h, j]                       (scaled)
 *  without attn_sink the exp(attn_sink) term is 0 (plain softmax). Softmax and accumulation run in
 *  f32; out is rounded to bf16 to nearest even.
 *  - Invalid indices (< 0 or >= S_kv, e.g. -1 padding) are skipped and never read. A valid index
 *    that appears several times in a row counts as many times as it appears.
 *  - A row with no valid index gives out = 0, lse = +inf and max_logits = -inf.
 *  Shapes: q bf16 [S_q, H_q, d_qk]; kv bf16 [S_kv, d_qk]; indices i32 [S_q, k];
 *  attn_sink f32 [H_q] or NULL (no sink); topk_length i32 [S_q] or NULL (all k count; values are
 *  clamped to [0, k]); out bf16 [S_q, H_q, d_v]; lse f32 [S_q, H_q]; max_logits f32 [S_q, H_q] or
 *  NULL. Any H_q >= 1, d_qk >= 1, k >= 0 (k = 0: every row has no valid index).
 *  Layout: the last dimension of q, kv and out must be contiguous; every other stride is free.
 *  Outputs must not overlap each other or any input.
 *  Results are bitwise identical for any number of CPU threads, and run to run on CUDA.
 *  CUDA: runs on `stream` with no host synchronisation. A generic kernel (mma.sync, sm_80+) takes
 *  every shape with d_qk <= 1024 and any strides; rows too few to fill the GPU split their index
 *  list over several CTAs, whose partials live in scratch allocated and freed on `stream`
 *  (cudaMallocAsync / cudaFreeAsync; if that allocation is refused the call runs unsplit).
 *  For d_qk 576, d_v 512 with 16-byte aligned q and kv rows: on sm_90 devices (a build with
 *  sm_90a) a Hopper kernel (wgmma, warp-specialised) takes H_q a multiple of 64 (out rows aligned
 *  too); a narrow kernel (mma.sync, 16 heads a CTA, never padded to 64) takes the other head
 *  counts, the tensor-parallel shards 8/16/32 among them, and every head count before Hopper.
 *  The kernels agree with each other within the same tolerance, not bitwise. In the environment,
 *  DSA_CUDA_SM90_ATTENTION=0 switches the Hopper kernel off (the narrow kernel takes its shapes)
 *  and DSA_CUDA_NARROW_ATTENTION=0 the narrow one (the generic kernel takes its shapes).
 *  Returns DSA_STATUS_INVALID_ARGUMENT (NULL context/params/required tensor/data, scale 0 or not
 *  finite, d_v outside [1, d_qk], bad struct_size), DSA_STATUS_SHAPE_MISMATCH,
 *  DSA_STATUS_DTYPE_MISMATCH, DSA_STATUS_DEVICE_MISMATCH, DSA_STATUS_LAYOUT_UNSUPPORTED,
 *  DSA_STATUS_UNSUPPORTED (CUDA tensors with d_qk > 1024, or a shape needing more shared memory
 *  per block than the device has), DSA_STATUS_OUT_OF_MEMORY, DSA_STATUS_CUDA_ERROR. */
DSA_API dsa_status_t dsa_sparse_attention(dsa_context_t* context,
                                          const dsa_sparse_attention_params_t* params,
                                          const dsa_tensor_t* q, const dsa_tensor_t* kv,
                                          const dsa_tensor_t* indices, const dsa_tensor_t* attn_sink,
                                          const dsa_tensor_t* topk_length, const dsa_tensor_t* out,
                                          const dsa_tensor_t* lse, const dsa_tensor_t* max_logits,
                                          dsa_stream_t stream);

/** Sparse MLA attention over a paged KV cache (decode form); the semantics of
 *  dsa_sparse_attention with one query row per (b, i).
 *  Shapes: q bf16 [B, s_q, H_q, d_qk]; kv_cache either bf16 [num_pages, page_size, d_qk] or the
 *  FP8 MLA cache U8 [num_pages, page_size, 656] (DSA_SPEC 7.2; then d_qk must be 576 and d_v 512,
 *  and an entry reads as [e4m3 c_kv * its group's scale (512) ; bf16 k_pe (64)]);
 *  indices i32 [B, s_q, k]: physical slots page * page_size + offset, where slots outside
 *  [0, num_pages * page_size) are skipped (never read) and repeated slots count as many times as
 *  they appear; attn_sink f32 [H_q] or NULL; topk_length i32 [B, s_q] or NULL;
 *  out bf16 [B, s_q, H_q, d_v]; lse f32 [B, s_q, H_q] (natural log, sink excluded).
 *  Layout: the last dimension of q, kv_cache and out must be contiguous; pages and tokens within a
 *  page may have any strides. Outputs must not overlap each other or any input.
 *  CUDA: as dsa_sparse_attention; FP8 entries are dequantised in the kernel (once per entry and
 *  CTA, codes times their group's f32 scale rounded once to bf16).
 *  Statuses as dsa_sparse_attention. */
DSA_API dsa_status_t dsa_sparse_attention_paged(dsa_context_t* context,
                                                const dsa_sparse_attention_params_t* params,
                                                const dsa_tensor_t* q, const dsa_tensor_t* kv_cache,
                                                const dsa_tensor_t* indices,
                                                const dsa_tensor_t* attn_sink,
                                                const dsa_tensor_t* topk_length,
                                                const dsa_tensor_t* out, const dsa_tensor_t* lse,
                                                dsa_stream_t stream);

/** Writes T new tokens into the FP8 MLA cache (DSA_SPEC 7.2): token t goes to slot
 *  slot_mapping[t] = page * page_size + offset, as one 656-byte entry:
 *  bytes 0..511 the e4m3 codes of c_kv[t] quantised in 4 groups of 128 (DSA_SPEC 2: amax over the
 *  group's finite values, floored at 1e-4; ue8m0 scale s = 2^ceil(log2(amax / 448)); codes
 *  e4m3(clamp(x / s, -448, 448)) rounded to nearest even; NaN stays NaN, +-Inf saturates);
 *  bytes 512..527 the 4 scales as f32 (native byte order); bytes 528..655 k_pe[t] as 64 bf16
 *  (rounded to nearest even from f32, copied from bf16).
 *  Slots < 0 or >= num_pages * page_size are skipped (that token is not written). When several
 *  tokens map to the same slot, the last of them (largest t) is what the slot holds. CUDA
 *  writes the CPU's bytes, without workspace or host synchronisation.
 *  Shapes: c_kv f32 or bf16 [T, 512]; k_pe [T, 64] of the same dtype; slot_mapping i64 [T];
 *  kv_cache U8 [num_pages, page_size, 656], written in place (only the addressed entries change).
 *  Layout: the last dimension of c_kv, k_pe and kv_cache must be contiguous; other strides free.
 *  kv_cache must not overlap the inputs.
 *  Returns DSA_STATUS_INVALID_ARGUMENT (NULL context/tensor/data), DSA_STATUS_SHAPE_MISMATCH,
 *  DSA_STATUS_DTYPE_MISMATCH, DSA_STATUS_DEVICE_MISMATCH, DSA_STATUS_LAYOUT_UNSUPPORTED,
 *  DSA_STATUS_UNSUPPORTED (CUDA tensors in a build without CUDA), DSA_STATUS_CUDA_ERROR,
 *  DSA_STATUS_OUT_OF_MEMORY. */
DSA_API dsa_status_t dsa_mla_cache_write(dsa_context_t* context, const dsa_tensor_t* c_kv,
                                         const dsa_tensor_t* k_pe, const dsa_tensor_t* slot_mapping,
                                         const dsa_tensor_t* kv_cache, dsa_stream_t stream);

/* (end of the sparse attention section) */

/* ------------------------------------------------------------------------------------------ */
/* Fused indexer + top-k, and the one-call DSA layer                                          */
/* ------------------------------------------------------------------------------------------ */

/** Writes to *bytes the scratch memory dsa_indexer_topk and dsa_indexer_topk_paged need for
 *  num_queries query rows over num_tokens key tokens (S_kv; paged: max_pages * 64) on the
 *  context's device (CUDA: a device buffer of one tile of logit rows, about 256 MB at most, and
 *  two int32 windows per tile row). Passing that much (or more) as `workspace` makes the call
 *  allocate nothing; the size does not depend on k, n_next or the hybrid options. Returns
 *  DSA_STATUS_INVALID_ARGUMENT for a NULL context or bytes, or negative counts, and
 *  DSA_STATUS_SHAPE_MISMATCH when the size does not fit int64 bytes (*bytes is then not written). */
DSA_API dsa_status_t dsa_indexer_topk_workspace_size(const dsa_context_t* context, int64_t num_queries,
                                                     int64_t num_tokens, size_t* bytes);

/** Fused lightning indexer + top-k, ragged prefill: writes to indices int32 [S_q, k] exactly what
 *  dsa_indexer_logits (same inputs) followed by dsa_topk (same topk_params, row_starts = ks,
 *  row_ends = ke, no block table) would, but never materialises the [S_q, S_kv] logits: memory is
 *  O(S_q * k) plus a tile of logit rows (see dsa_indexer_topk_workspace_size), so causal 128K
 *  prefill fits. Inputs, layouts and the handling of out-of-range ks/ke are those of
 *  dsa_indexer_logits; the top-k rules (ties by smaller index, NaN never selected, hybrid sink /
 *  local tokens, -1 padding, order) those of dsa_topk. indices: int32 [S_q, k], last dimension
 *  contiguous, not overlapping any input.
 *  workspace: NULL (the library allocates scratch for the call: host memory on the CPU; on CUDA
 *  stream-ordered device memory, cudaMallocAsync / cudaFreeAsync on `stream`) or at least
 *  dsa_indexer_topk_workspace_size bytes (device memory for CUDA tensors), suitably aligned for
 *  float (16 bytes suffice). With a workspace the CUDA call allocates nothing and does not
 *  synchronise, so it can be captured in a CUDA graph.
 *  CUDA: the logits are those of dsa_indexer_logits on CUDA, bit for bit, and the selection that
 *  of dsa_topk on CUDA (so DSA_TOPK_ORDER_SCORE is limited to min(k, S_kv) <= 16384 there); the
 *  sets equal the CUDA unfused ops' exactly. They can differ from the CPU's where two logits are
 *  within the rounding bound of dsa_indexer_logits.
 *  indexer_params and topk_params may be NULL (defaults: k = 2048).
 *  Returns the statuses of dsa_indexer_logits and dsa_topk and DSA_STATUS_WORKSPACE_TOO_SMALL. */
DSA_API dsa_status_t dsa_indexer_topk(dsa_context_t* context, const dsa_indexer_params_t* indexer_params,
                                      const dsa_topk_params_t* topk_params, const dsa_tensor_t* q,
                                      const dsa_tensor_t* weights, const dsa_tensor_t* k,
                                      const dsa_tensor_t* k_scale, const dsa_tensor_t* ks,
                                      const dsa_tensor_t* ke, const dsa_tensor_t* indices, void* workspace,
                                      size_t workspace_bytes, dsa_stream_t stream);

/** Fused lightning indexer + top-k, paged decode: the selection of dsa_indexer_logits_paged
 *  (same inputs; columns are the max_pages * 64 tokens the block table can address) followed by
 *  dsa_topk over each query's visible tokens [0, context_lens[b] - n_next + j + 1), without the
 *  logits matrix. Outputs (at least one non-NULL, int32 [B * n_next, k], last dimension
 *  contiguous): `indices` gets token positions; `slots` gets the physical cache slots
 *  block_table[b][i / 64] * 64 + i % 64 (-1 for padding, pages beyond the table or negative
 *  entries), ready for dsa_sparse_attention_paged; then topk_params->page_size must be 64.
 *  Workspace and statuses as dsa_indexer_topk. */
DSA_API dsa_status_t dsa_indexer_topk_paged(dsa_context_t* context, const dsa_indexer_params_t* indexer_params,
                                            const dsa_topk_params_t* topk_params, const dsa_tensor_t* q,
                                            const dsa_tensor_t* weights, const dsa_tensor_t* k_cache,
                                            const dsa_tensor_t* block_table, const dsa_tensor_t* context_lens,
                                            const dsa_tensor_t* indices, const dsa_tensor_t* slots,
                                            void* workspace, size_t workspace_bytes, dsa_stream_t stream);

/** Writes to *bytes the scratch memory of dsa_attention / dsa_attention_paged for num_queries
 *  query rows over num_tokens key tokens (paged: max_pages * 64) with k = topk_params->k
 *  (topk_params NULL: k = 2048): the selected indices plus the fused indexer + top-k scratch.
 *  Returns DSA_STATUS_INVALID_ARGUMENT for NULL context or bytes, negative counts or a bad
 *  topk_params, and DSA_STATUS_SHAPE_MISMATCH when the size does not fit int64 bytes (*bytes is
 *  then not written). */
DSA_API dsa_status_t dsa_attention_workspace_size(const dsa_context_t* context,
                                                  const dsa_topk_params_t* topk_params, int64_t num_queries,
                                                  int64_t num_tokens, size_t* bytes);

/** One DSA layer step, ragged prefill: indexer (index_q, index_weights, index_k, index_k_scale,
 *  windows [ks, ke)) -> top-k (topk_params) -> sparse MLA attention (attention_params, q, kv,
 *  optional attn_sink) into out and lse. Equal to dsa_indexer_topk followed by
 *  dsa_sparse_attention with those indices (no topk_length, no max_logits). The indexer and the
 *  attention must describe the same queries (S_q rows) and tokens (S_kv rows of index_k and kv).
 *  selected: NULL, or int32 [S_q, k] that receives the token indices the attention used.
 *  Everything is validated before anything runs: an error leaves every output untouched.
 *  workspace: NULL (the call allocates its scratch: host memory for CPU tensors; for CUDA
 *  tensors device memory allocated and freed on `stream`, cudaMallocAsync / cudaFreeAsync) or at
 *  least dsa_attention_workspace_size bytes on the tensors' device, aligned to 16 bytes; it
 *  starts with the selected indices. attention_params must not be NULL (its scale has no
 *  default); the other params may be.
 *  CUDA: the stages run on `stream` with no host synchronisation.
 *  Returns the statuses of its parts, DSA_STATUS_WORKSPACE_TOO_SMALL, and DSA_STATUS_UNSUPPORTED
 *  for CUDA tensors while dsa_indexer_topk has no CUDA backend. */
DSA_API dsa_status_t dsa_attention(dsa_context_t* context, const dsa_indexer_params_t* indexer_params,
                                   const dsa_topk_params_t* topk_params,
                                   const dsa_sparse_attention_params_t* attention_params,
                                   const dsa_tensor_t* index_q, const dsa_tensor_t* index_weights,
                                   const dsa_tensor_t* index_k, const dsa_tensor_t* index_k_scale,
                                   const dsa_tensor_t* ks, const dsa_tensor_t* ke, const dsa_tensor_t* q,
                                   const dsa_tensor_t* kv, const dsa_tensor_t* attn_sink, const dsa_tensor_t* out,
                                   const dsa_tensor_t* lse, const dsa_tensor_t* selected, void* workspace,
                                   size_t workspace_bytes, dsa_stream_t stream);

/** One DSA layer step, paged decode: dsa_indexer_topk_paged over the indexer key cache (block
 *  table, context_lens; index_q [B, n_next, H_I, D_I]) -> physical slots ->
 *  dsa_sparse_attention_paged over kv_cache (bf16 [num_pages, 64, d_qk] or the FP8 MLA cache
 *  uint8 [num_pages, 64, 656]) for q [B, n_next, H_q, d_qk] into out [B, n_next, H_q, d_v] and
 *  lse [B, n_next, H_q]. Both caches share the block table, so kv_cache pages hold 64 tokens.
 *  selected: NULL, or int32 [B * n_next, k] receiving the slots used. Workspace, validation and
 *  statuses as dsa_attention. */
DSA_API dsa_status_t dsa_attention_paged(dsa_context_t* context, const dsa_indexer_params_t* indexer_params,
                                         const dsa_topk_params_t* topk_params,
                                         const dsa_sparse_attention_params_t* attention_params,
                                         const dsa_tensor_t* index_q, const dsa_tensor_t* index_weights,
                                         const dsa_tensor_t* index_k_cache, const dsa_tensor_t* block_table,
                                         const dsa_tensor_t* context_lens, const dsa_tensor_t* q,
                                         const dsa_tensor_t* kv_cache, const dsa_tensor_t* attn_sink,
                                         const dsa_tensor_t* out, const dsa_tensor_t* lse,
                                         const dsa_tensor_t* selected, void* workspace, size_t workspace_bytes,
                                         dsa_stream_t stream);

/* (end of the pipeline section) */

/* ------------------------------------------------------------------------------------------ */
/* Training: the indexer distillation loss (DSA_SPEC section 8.1)                             */
/* ------------------------------------------------------------------------------------------ */

/** Which token set each query row's teacher and student distributions live on. */
typedef uint32_t dsa_indexer_loss_mode_t;
/** Dense warm-up: every token of the row's window [ks[t], ke[t]). */
#define DSA_INDEXER_LOSS_DENSE 0
/** Sparse stage: the row's selected tokens (indices[t, :] inside the window), renormalised. */
#define DSA_INDEXER_LOSS_SPARSE 1

/** Parameters of dsa_indexer_loss. */
typedef struct dsa_indexer_loss_params {
    uint32_t struct_size;         /**< sizeof(dsa_indexer_loss_params_t) */
    dsa_indexer_loss_mode_t mode; /**< default DSA_INDEXER_LOSS_DENSE */
    float coeff;                  /**< loss weight; default 1; finite */
    float teacher_scale;          /**< softmax scale of the teacher's q.k (teacher given as q/k);
                                       default 0, which is rejected when teacher_q is passed; any
                                       finite non-zero value. Ignored for teacher_probs. */
} dsa_indexer_loss_params_t;

/** Fills *params with the defaults above. Returns DSA_STATUS_INVALID_ARGUMENT if params is
 *  NULL. */
DSA_API dsa_status_t dsa_indexer_loss_params_init(dsa_indexer_loss_params_t* params);

/** Indexer distillation loss, forward and backward in one call (DSA_SPEC section 8.1).
 *  Student (unquantised, f32 arithmetic):
 *      u[t,h,s] = index_q[t,h,:] . index_k[s,:],   I[t,s] = sum_h weights[t,h] * ReLU(u[t,h,s]),
 *      pi[t,:]  = softmax of I[t,:] over the row's set.
 *  Set of row t: DENSE mode, every s in the window [ks[t], ke[t]) (clamped to [0, S]); SPARSE
 *  mode, the entries of indices[t, :] that lie in the window (-1 and other out-of-window entries
 *  are ignored; an index listed twice counts twice, as in dsa_sparse_attention: both
 *  distributions live on the set's entries).
 *  Teacher p[t,:] (detached: no gradient flows into it), given in one of two forms:
 *    - teacher_q [T, H_q, d] and teacher_k [S, d] (MQA) or [S, H_kv, d] with H_q % H_kv == 0
 *      (head h uses kv head h / (H_q / H_kv)): p[t,s] = (1/H_q) sum_h softmax_s(teacher_scale *
 *      teacher_q[t,h,:] . teacher_k[s,(h),:]) over the row's set, rebuilt tile by tile (never
 *      [T, S] per head: each row is scored twice, once for the softmax normalisers, once for p);
 *    - teacher_probs f32 [T, S]: restricted to the row's set and renormalised there (entries
 *      outside the set are never read).
 *  Loss: row_loss[t] = KL(p[t,:] || pi[t,:]) in nats (0 log 0 = 0); a row is ACTIVE when its set is
 *  non-empty and its teacher mass is positive and finite: with teacher_probs, every entry of the
 *  set is >= 0 (not NaN) and their sum is > 0 and finite; with teacher_q / teacher_k, every
 *  head's log-sum-exp over the set is finite. loss = coeff * (sum of row_loss over active rows) /
 *  (number of active rows), 0 when no row is active (row losses are summed in f64). Inactive rows
 *  get row_loss 0 and zero gradients. Non-finite student inputs give non-finite results in
 *  their rows, never an error.
 *  Gradients of loss (overwritten, never accumulated), with g[t,s] = coeff / N_active *
 *  (pi[t,s] - p[t,s]) on active rows:
 *      d_weights[t,h] = sum_s g[t,s] ReLU(u[t,h,s]),   G[t,h,s] = g[t,s] weights[t,h] [u[t,h,s] > 0],
 *      d_index_q[t,h,:] = sum_s G[t,h,s] index_k[s,:],  d_index_k[s,:] = sum_{t,h} G[t,h,s] index_q[t,h,:].
 *
 *  index_q   f32 or bf16 [T, H_I, D_I], last dimension contiguous.
 *  index_k   f32 or bf16 [S, D_I], last dimension contiguous.
 *  weights   f32 or bf16 [T, H_I], any strides.
 *  ks, ke    i32 [T], any stride: window of each row (causal prefill from 0: ks = 0, ke = t + 1).
 *            They are data: clamped, never rejected; start >= end is an empty set.
 *  indices   i32 [T, k] (k >= 0), last dimension contiguous: SPARSE mode only (must be NULL in
 *            DENSE). Out-of-range values are ignored, never read through.
 *  teacher_q, teacher_k: f32 or bf16 as above, last dimension contiguous; or both NULL and
 *            teacher_probs f32 [T, S], last dimension contiguous. Exactly one form. Each of the
 *            five float inputs may have its own dtype.
 *  loss      f32 [] or [1] output, or NULL.     row_loss  f32 [T] output (any stride), or NULL.
 *  d_index_q f32 [T, H_I, D_I], d_index_k f32 [S, D_I], d_weights f32 [T, H_I]: outputs, each
 *            may be NULL (not computed), last dimension contiguous; outputs must not overlap
 *            each other or any input. With every output NULL the call validates and returns.
 *  T, S >= 0; H_I, D_I, H_q, d >= 1. On the CPU, results are bitwise identical for any thread
 *  count. With d_index_k the call allocates host scratch for its reduction: 4 * D_I bytes per
 *  entry of a panel of rows holding about 32 MiB, at least two rows per CPU thread (so long
 *  dense rows need 8 * threads * D_I * S bytes), never more than all the entries need; plus
 *  O(T + S) besides. params may be NULL only with teacher_probs
 *  (teacher_scale has no default).
 *  On CUDA (sm_80+, on the caller's stream, no host synchronisation): scores and gradients run
 *  on bf16 tensor cores with f32 accumulation, f32 inputs as three bf16 parts (f32-accurate
 *  products); results agree with the CPU to 1e-3 of each output's largest magnitude (tests/gpu),
 *  except that a ReLU input within rounding of 0 may take the other side of the kink than on the
 *  CPU (its gradient term is then present on one backend only). Every output is bitwise
 *  identical run to run and across streams: d_index_k is summed in 64-bit fixed point (integer
 *  atomics, so their order does not matter). With B = 2 * H_I * |coeff| * max|weights| *
 *  max|index_q| (maxima over the finite values), a bound on |d_index_k|, each contribution is
 *  rounded to a multiple of 2^-e, 2^e the power of two with B * 2^e <= 2^61 (a step of at most
 *  B * 2^-60; B = 0 means every finite contribution is 0), and the integer sum once to f32. An
 *  element that receives a NaN, or both +Inf and -Inf, is NaN; only +Inf (-Inf): +Inf (-Inf); a
 *  sum beyond f32's range: +-Inf. Non-finite inputs: CUDA carries an infinite f32 operand as bf16
 *  parts of which the later are NaN, so a score or product that is +-Inf on the CPU is NaN on
 *  CUDA. For a NaN index_q[t,h,c] of an active row both backends give the same d_index_k: NaN in
 *  column c of every token of row t's set, and in the token's other columns when another head's
 *  score with it is > 0. For an infinite one, column c of those tokens is non-finite on both (NaN
 *  on CUDA; +-Inf or NaN on the CPU) and their other columns may be NaN on CUDA where the CPU's
 *  are finite. Tokens in no set of such a row stay finite. A bf16 teacher_q / teacher_k with
 *  d % 8 == 0 whose tiles fit in shared memory (2 * (min(128, H_q / H_kv rounded up to 16) + 64) *
 *  (d rounded up to 16, + 8) + 1,280 bytes: H_q 128, d 576 needs 225,536) is rebuilt by kernels of
 *  its own, p written to scratch by entry position for chunks of rows (at most 64 MiB at a time);
 *  other teachers are rebuilt inside the student's kernels, about 15x slower. The call allocates
 *  stream-ordered device scratch (cudaMallocAsync) of about 24 * T + 8 * T * H_q bytes, plus that
 *  p scratch (4 bytes per entry slot of a chunk's rows: S slots a row in DENSE mode, k in SPARSE),
 *  plus 12 * S * D_I bytes with d_index_k (if that allocation fails: DSA_STATUS_OUT_OF_MEMORY
 *  naming d_index_k, outputs untouched). Shapes whose per-row tiles exceed the device's shared
 *  memory (about 4 * (2 * H_I + 16) * D_I bytes, + 64 * d when the teacher is rebuilt inside the
 *  student's kernels, rounded up to 16) return DSA_STATUS_UNSUPPORTED.
 *  Returns DSA_STATUS_INVALID_ARGUMENT (NULL context or required tensor, bad params: unknown
 *  mode, coeff not finite, teacher_scale 0 or not finite with teacher_q, bad struct_size;
 *  teacher given in both or neither form, or only half of teacher_q / teacher_k; indices given
 *  in DENSE mode or missing in SPARSE mode), DSA_STATUS_SHAPE_MISMATCH (ranks, extents that
 *  disagree, H_I, D_I, H_q, d or H_kv of 0, H_kv not dividing H_q), DSA_STATUS_DTYPE_MISMATCH,
 *  DSA_STATUS_DEVICE_MISMATCH, DSA_STATUS_LAYOUT_UNSUPPORTED (last strides, overlapping
 *  outputs), DSA_STATUS_UNSUPPORTED (CUDA: a shape beyond the device's shared memory; newer
 *  params fields), DSA_STATUS_OUT_OF_MEMORY, DSA_STATUS_CUDA_ERROR. Every message names the
 *  argument. */
DSA_API dsa_status_t dsa_indexer_loss(dsa_context_t* context, const dsa_indexer_loss_params_t* params,
                                      const dsa_tensor_t* index_q, const dsa_tensor_t* index_k,
                                      const dsa_tensor_t* weights, const dsa_tensor_t* ks, const dsa_tensor_t* ke,
                                      const dsa_tensor_t* indices, const dsa_tensor_t* teacher_q,
                                      const dsa_tensor_t* teacher_k, const dsa_tensor_t* teacher_probs,
                                      const dsa_tensor_t* loss, const dsa_tensor_t* row_loss,
                                      const dsa_tensor_t* d_index_q, const dsa_tensor_t* d_index_k,
                                      const dsa_tensor_t* d_weights, dsa_stream_t stream);

/* (end of the indexer loss section) */

/* ------------------------------------------------------------------------------------------ */
/* Training: sparse attention backward (DSA_SPEC section 8.2)                                 */
/* ------------------------------------------------------------------------------------------ */

/** How dsa_sparse_attention_backward reduces dkv, a scatter over tokens that many queries
 *  select. */
typedef uint32_t dsa_sparse_attention_backward_mode_t;
/** Bitwise reproducible: the same inputs give the same bits run to run (on CUDA whatever the
 *  stream or workspace; on the CPU for any thread count) (default). */
#define DSA_SPARSE_ATTENTION_BACKWARD_DETERMINISTIC 0
/** The fastest reduction: on CUDA, f32 atomics (the order of additions may vary run to run);
 *  on the CPU the same as DSA_SPARSE_ATTENTION_BACKWARD_DETERMINISTIC. */
#define DSA_SPARSE_ATTENTION_BACKWARD_FAST 1

/** Parameters of dsa_sparse_attention_backward. */
typedef struct dsa_sparse_attention_backward_params {
    uint32_t struct_size;                      /**< sizeof(dsa_sparse_attention_backward_params_t) */
    float scale;                               /**< the forward's softmax scale. REQUIRED: the init
                                                    function sets 0, which is rejected; any finite
                                                    non-zero value */
    int32_t d_v;                               /**< the forward's value width; default 512;
                                                    1 <= d_v <= d_qk */
    dsa_sparse_attention_backward_mode_t mode; /**< default
                                                    DSA_SPARSE_ATTENTION_BACKWARD_DETERMINISTIC */
} dsa_sparse_attention_backward_params_t;

/** Fills *params with the defaults above (scale 0, which must be replaced). Returns
 *  DSA_STATUS_INVALID_ARGUMENT if params is NULL. */
DSA_API dsa_status_t dsa_sparse_attention_backward_params_init(dsa_sparse_attention_backward_params_t* params);

/** Writes to *bytes the scratch memory dsa_sparse_attention_backward needs on the context's
 *  device for num_queries query rows of topk indices each over num_tokens KV rows of d_qk
 *  values, with params->mode (params NULL: the defaults). Passing that much (or more) as
 *  `workspace` makes the call allocate no large buffer. Returns DSA_STATUS_INVALID_ARGUMENT for
 *  a NULL context or bytes, negative counts, or a bad params struct (struct_size, an unknown
 *  mode; scale is not read), DSA_STATUS_UNSUPPORTED for newer params fields, and
 *  DSA_STATUS_SHAPE_MISMATCH when the size does not fit int64 bytes (*bytes is then not
 *  written).
 *  On a CUDA context (every part rounded up to 256 bytes): FAST needs 4 * num_queries (a flag
 *  per row); DETERMINISTIC adds, for panels of R = clamp(2^30 / (4 * topk * d_qk), 1,
 *  num_queries) rows and E = R * topk entries, 4 * E * d_qk (one contribution per entry),
 *  4 * 4 * E (sort keys and entry numbers, twice), 2 * 4 * num_tokens (each token's run of
 *  sorted entries) and CUB's radix-sort scratch for E pairs (0 when num_queries, topk or
 *  num_tokens is 0): about 1 GiB at DeepSeek shapes. On CUDA the query may also return
 *  DSA_STATUS_CUDA_ERROR (the device or CUB's size query failed) and DSA_STATUS_UNSUPPORTED
 *  (DETERMINISTIC with topk beyond 2^31 - 1 positions per row). */
DSA_API dsa_status_t dsa_sparse_attention_backward_workspace_size(
    const dsa_context_t* context, const dsa_sparse_attention_backward_params_t* params, int64_t num_queries,
    int64_t topk, int64_t num_tokens, int64_t d_qk, size_t* bytes);

/** Backward pass of dsa_sparse_attention, prefill form (DSA_SPEC section 8.2). For query row t,
 *  head h, and the row's valid indices s_j (as the forward: among the first topk_length[t]
 *  entries, 0 <= s_j < S_kv, a repeated index counting as many times as it appears):
 *      z[h,j]   = scale * q[t,h,:] . kv[s_j,:]
 *      L[t,h]   = log(exp(lse[t,h]) + exp(attn_sink[h]))   (lse[t,h] without attn_sink)
 *      P[h,j]   = exp(z[h,j] - L[t,h]),  D[t,h] = dout[t,h,:] . out[t,h,:]
 *      dZ[h,j]  = P[h,j] * (dout[t,h,:] . kv[s_j,:d_v] - D[t,h])
 *      dq[t,h,:]    = scale * sum_j dZ[h,j] kv[s_j,:]
 *      dkv[s,:]     = sum over (t,j) with s_j = s of scale * sum_h dZ[h,j] q[t,h,:]
 *                     + (first d_v dims) sum_h P[h,j] dout[t,h,:]
 *      d_attn_sink[h] = -sum_t exp(attn_sink[h] - L[t,h]) * D[t,h]
 *  lse and out are the forward's outputs (lse recomputes P; out gives D). A row whose lse is
 *  +inf (no valid index in the forward) or that has no valid index contributes nothing: zero
 *  dq, no dkv or d_attn_sink terms (never NaN). Products and sums run in f32.
 *  Shapes: q [S_q, H_q, d_qk] and kv [S_kv, d_qk], bf16 or f32; indices i32 [S_q, k]; attn_sink
 *  f32 [H_q] or NULL; topk_length i32 [S_q] or NULL (clamped to [0, k]); out [S_q, H_q, d_v] and
 *  dout [S_q, H_q, d_v], bf16 or f32; lse f32 [S_q, H_q]. Each of q, kv, out, dout may have its
 *  own dtype.
 *  Outputs (overwritten, never accumulated): dq [S_q, H_q, d_qk] f32 or bf16 (rounded to nearest
 *  even); dkv f32 [S_kv, d_qk] (rows no query selects are 0); d_attn_sink f32 [H_q], or NULL
 *  (it must be NULL without attn_sink).
 *  Layout: the last dimension of q, kv, indices, out, dout, dq and dkv must be contiguous; every
 *  other stride is free. Outputs must not overlap each other or any input.
 *  mode: DSA_SPARSE_ATTENTION_BACKWARD_DETERMINISTIC gives bitwise identical results run to run
 *  (on the CPU also for any thread count); the CPU runs both modes deterministically.
 *  On CUDA (sm_80+, on the caller's stream, no host synchronisation): products on bf16 tensor
 *  cores with f32 accumulation. With q, kv, out and dout all bf16 and d_qk, d_v multiples of 16
 *  (d_qk <= 576), a bf16 kernel takes heads in groups of 32 (192 KB of shared memory at d_qk
 *  576, d_v 512), a CTA per (row, head group) in FAST mode and per row in DETERMINISTIC mode
 *  (whose panels are rounded down to whole waves of the GPU); every other problem (or a device without that much
 *  shared memory) takes the general kernel, one row per CTA, heads in groups of 16. With any of q,
 *  kv, dout in f32 the operands are split into three bf16 parts (f32-accurate) and results agree with the CPU
 *  to 1e-3 of each output's largest magnitude; with all of them bf16, P and dS are rounded to
 *  bf16 for the MMAs and the agreement is 2e-2 (tests/gpu). FAST adds dkv with f32 atomics
 *  (last bits vary run to run); DETERMINISTIC writes each (row, position) contribution to the
 *  workspace and adds them per token in ascending (row, position) order, a panel of rows at a
 *  time. dq and d_attn_sink are computed the same way in both modes (fixed order, bitwise
 *  stable). d_qk is limited by shared memory (the general kernel: about 256 * d_qk bytes per
 *  block, d_qk = 576 needs 150 KB) and otherwise answers DSA_STATUS_UNSUPPORTED.
 *  workspace: NULL (the call allocates scratch for itself: host memory on the CPU,
 *  stream-ordered device memory on CUDA) or at least dsa_sparse_attention_backward_workspace_size
 *  bytes for these shapes, aligned to 16 bytes.
 *  Returns DSA_STATUS_INVALID_ARGUMENT (NULL context/params/required tensor/data, scale 0 or not
 *  finite, d_v outside [1, d_qk], unknown mode, bad struct_size, d_attn_sink without
 *  attn_sink), DSA_STATUS_SHAPE_MISMATCH, DSA_STATUS_DTYPE_MISMATCH, DSA_STATUS_DEVICE_MISMATCH,
 *  DSA_STATUS_LAYOUT_UNSUPPORTED (last strides, overlaps, a misaligned workspace),
 *  DSA_STATUS_WORKSPACE_TOO_SMALL, DSA_STATUS_UNSUPPORTED (CUDA: d_qk beyond the device's shared
 *  memory; newer params fields), DSA_STATUS_OUT_OF_MEMORY, DSA_STATUS_CUDA_ERROR. Every message
 *  names the argument. */
DSA_API dsa_status_t dsa_sparse_attention_backward(
    dsa_context_t* context, const dsa_sparse_attention_backward_params_t* params, const dsa_tensor_t* q,
    const dsa_tensor_t* kv, const dsa_tensor_t* indices, const dsa_tensor_t* attn_sink,
    const dsa_tensor_t* topk_length, const dsa_tensor_t* out, const dsa_tensor_t* lse, const dsa_tensor_t* dout,
    const dsa_tensor_t* dq, const dsa_tensor_t* dkv, const dsa_tensor_t* d_attn_sink, void* workspace,
    size_t workspace_bytes, dsa_stream_t stream);

/* (end of the sparse attention backward section) */

#ifdef __cplusplus
}
#endif

#endif /* DSA_H */
