// The training ops on CUDA against the CPU on the same inputs (the problem builders of the CPU
// tests): dsa_sparse_attention_backward in both modes (f32 and bf16 inputs, f32 and bf16 dq,
// invalid and repeated indices, rows without a valid index, topk_length, the sink and its
// gradient, DeepSeek widths, head counts that are not multiples of 16 or 32; all-bf16 inputs
// with widths multiples of 16 take the bf16 kernel, the rest the row kernel), DETERMINISTIC bitwise
// across runs, streams and workspaces; dsa_indexer_loss in both modes with both teacher forms,
// f32 and bf16, its d_index_k (64-bit fixed point) bitwise across runs and streams, with B = 0
// and extreme coeff, and with a NaN or infinite index_q element; the workspace query; bad input
// leaving the outputs untouched.
//
// Tolerances (max |CUDA - CPU| relative to the largest |CPU| value, check_close):
//   sparse_attention_backward: 1e-3 with any f32 input (split bf16 products), 2e-2 with all
//   inputs bf16 (P and dS are rounded to bf16 for the tensor cores); d_attn_sink 1e-3.
//   indexer_loss: 1e-3 for the loss, row losses and every gradient.
#include <cuda_runtime.h>

#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "../indexer_loss_cases.hpp"
#include "../sparse_attention_backward_cases.hpp"
#include "gpu_support.hpp"

using namespace dsa_test;

namespace {

// Elements a tensor's strides span (0 for an empty tensor).
size_t span_elements(const dsa_tensor_t& tensor) {
    size_t span = 1;
    for (int axis = 0; axis < tensor.ndim; ++axis) {
        if (tensor.shape[axis] == 0) return 0;
        span += static_cast<size_t>((tensor.shape[axis] - 1) * tensor.strides[axis]);
    }
    return span;
}

// A host copy of a contiguous tensor laid out with `strides` (elements); padding filled with
// `fill` bytes. contiguous() reads the values back in row-major order.
struct Restrided {
    std::vector<uint8_t> bytes;
    dsa_tensor_t tensor;

    Restrided(const dsa_tensor_t& source, std::initializer_list<int64_t> strides, uint8_t fill) : tensor(source) {
        int axis = 0;
        for (int64_t stride : strides) tensor.strides[axis++] = stride;
        bytes.assign(span_elements(tensor) * element(), fill);
        tensor.data = bytes.data();
        for (size_t index = 0; index < count(); ++index)
            std::memcpy(bytes.data() + offset(index) * element(),
                        static_cast<const uint8_t*>(source.data) + index * element(), element());
    }
    template <typename T>
    std::vector<T> contiguous() const {
        std::vector<T> values(count());
        for (size_t index = 0; index < count(); ++index)
            std::memcpy(&values[index], bytes.data() + offset(index) * element(), element());
        return values;
    }

private:
    size_t element() const { return dsa_dtype_size(tensor.dtype); }
    size_t count() const {
        size_t elements = 1;
        for (int axis = 0; axis < tensor.ndim; ++axis) elements *= static_cast<size_t>(tensor.shape[axis]);
        return elements;
    }
    // The strided element offset of row-major element `index`.
    size_t offset(size_t index) const {
        size_t result = 0;
        for (int axis = tensor.ndim - 1; axis >= 0; --axis) {
            const size_t extent = static_cast<size_t>(tensor.shape[axis]);
            result += index % extent * static_cast<size_t>(tensor.strides[axis]);
            index /= extent;
        }
        return result;
    }
};

// Device copies of host tensors (their strides' span); outputs are copied back by download().
class Mirror {
public:
    Mirror() = default;
    Mirror(const Mirror&) = delete;
    Mirror& operator=(const Mirror&) = delete;
    ~Mirror() {
        for (const Copy& copy : copies_) cudaFree(copy.device);
    }

    dsa_tensor_t input(const dsa_tensor_t& host) { return copy(host, false); }
    dsa_tensor_t output(const dsa_tensor_t& host) { return copy(host, true); }

    // Waits for the device and copies every output back into its host tensor.
    void download() {
        CUDA_REQUIRE(cudaDeviceSynchronize());
        for (const Copy& copy : copies_)
            if (copy.output) CUDA_REQUIRE(cudaMemcpy(copy.host, copy.device, copy.bytes, cudaMemcpyDeviceToHost));
    }

private:
    struct Copy {
        void* host;
        void* device;
        size_t bytes;
        bool output;
    };

    dsa_tensor_t copy(const dsa_tensor_t& host, bool output) {
        const size_t bytes = span_elements(host) * dsa_dtype_size(host.dtype);
        void* device = nullptr;
        CUDA_REQUIRE(cudaMalloc(&device, bytes + 16));
        if (bytes > 0) CUDA_REQUIRE(cudaMemcpy(device, host.data, bytes, cudaMemcpyHostToDevice));
        copies_.push_back({host.data, device, bytes, output});
        return on_device(host, device);
    }

    std::vector<Copy> copies_;
};

std::vector<double> widened(const std::vector<float>& values) { return {values.begin(), values.end()}; }

bool any_nan(const std::vector<float>& values) {
    return std::any_of(values.begin(), values.end(), [](float v) { return std::isnan(v); });
}

// Every element of a strided f32 output outside its values still holds the 0xff poison bytes.
bool padding_untouched(const Restrided& output) {
    const size_t span = output.bytes.size() / 4;
    size_t poisoned = 0;
    for (size_t i = 0; i < span; ++i) {
        uint32_t bits;
        std::memcpy(&bits, output.bytes.data() + 4 * i, 4);
        poisoned += bits == 0xffffffffu;
    }
    return poisoned == span - output.contiguous<float>().size();
}

// ---- sparse_attention_backward ---------------------------------------------------------------

namespace backward = dsa_test::attention_backward_cases;

struct BackwardRun {
    bool bf16_dq = false;
    void* workspace = nullptr;
    size_t workspace_bytes = 0;
    cudaStream_t stream = nullptr;
};

dsa_status_t call_cuda(dsa_context_t* gpu, backward::Case& c, backward::Gradients& g, const BackwardRun& run) {
    Mirror m;
    const dsa_sparse_attention_backward_params_t params = c.params();
    const dsa_tensor_t q = m.input(c.q_tensor()), kv = m.input(c.kv_tensor()), indices = m.input(c.indices_tensor()),
                       sink = m.input(c.sink_tensor()), lengths = m.input(c.lengths_tensor()),
                       out = m.input(c.out_tensor()), lse = m.input(c.lse_tensor()), dout = m.input(c.dout_tensor());
    const dsa_tensor_t dq = m.output(run.bf16_dq ? view(g.dq_bf16.data(), {c.rows, c.heads, c.d_qk}, DSA_DTYPE_BF16)
                                                 : view(g.dq.data(), {c.rows, c.heads, c.d_qk}, DSA_DTYPE_F32));
    const dsa_tensor_t dkv = m.output(view(g.dkv.data(), {c.tokens, c.d_qk}, DSA_DTYPE_F32));
    const dsa_tensor_t d_sink = m.output(view(g.d_sink.data(), {c.heads}, DSA_DTYPE_F32));
    const dsa_status_t status = dsa_sparse_attention_backward(
        gpu, &params, &q, &kv, &indices, c.use_sink ? &sink : nullptr, c.use_lengths ? &lengths : nullptr, &out, &lse,
        &dout, &dq, &dkv, c.use_sink ? &d_sink : nullptr, run.workspace, run.workspace_bytes, run.stream);
    m.download();
    return status;
}

backward::Gradients run_cuda(dsa_context_t* gpu, backward::Case& c, const BackwardRun& run = {}) {
    backward::Gradients g(c);
    REQUIRE_MESSAGE(call_cuda(gpu, c, g, run) == DSA_STATUS_SUCCESS, dsa_last_error_message());
    if (run.bf16_dq)
        for (size_t i = 0; i < g.dq.size(); ++i) g.dq[i] = dsa::bf16_to_float(g.dq_bf16[i]);
    REQUIRE(!any_nan(g.dq));
    REQUIRE(!any_nan(g.dkv));
    if (c.use_sink) REQUIRE(!any_nan(g.d_sink));
    return g;
}

struct BackwardShape {
    int64_t rows, heads, d_qk, d_v, tokens, topk;
};

TEST_CASE("CUDA sparse_attention_backward matches the CPU in both modes") {
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    const BackwardShape shapes[] = {
        {5, 3, 40, 24, 50, 37},      // odd widths, few heads
        {33, 20, 576, 512, 300, 70},  // DeepSeek widths, two head groups (the second padded)
        {17, 16, 72, 64, 9, 40},     // few tokens: many repeats per token
        {40, 64, 576, 512, 2000, 160},
        // The bf16 kernel at small widths (f32 inputs still take the row kernel): 36 heads (the
        // second 32-head tile padded), d_v < d_qk, k = 50 (a partial 32-entry tile).
        {21, 36, 64, 32, 45, 50},
        // The bf16 kernel with 20 n8 column tiles (the warps own 3 or 2), 8 heads, k = 33.
        {9, 8, 160, 96, 30, 33},
        // Rows split over head groups (FAST: a CTA each; DETERMINISTIC: in turn): 128 heads at
        // DeepSeek widths, 160 heads (5 groups), 70 heads at d_qk 16 (the last group padded).
        {12, 128, 576, 512, 700, 96},
        {8, 160, 64, 48, 60, 40},
        {6, 70, 16, 16, 20, 30},
    };
    uint32_t seed = 100;
    for (const BackwardShape& s : shapes)
        for (dsa_dtype_t dtype : {DSA_DTYPE_F32, DSA_DTYPE_BF16})
            for (bool extras : {false, true})
                for (dsa_sparse_attention_backward_mode_t mode :
                     {DSA_SPARSE_ATTENTION_BACKWARD_DETERMINISTIC, DSA_SPARSE_ATTENTION_BACKWARD_FAST}) {
                    CAPTURE(s.rows); CAPTURE(s.heads); CAPTURE(s.d_qk); CAPTURE(s.tokens); CAPTURE(s.topk);
                    CAPTURE(dtype); CAPTURE(extras); CAPTURE(mode);
                    backward::Case c =
                        backward::make_case(s.rows, s.heads, s.d_qk, s.d_v, s.tokens, s.topk, seed++, dtype, extras, extras);
                    c.mode = mode;
                    const backward::Gradients want = backward::run_library(c);
                    const double tolerance = dtype == DSA_DTYPE_F32 ? 1e-3 : 2e-2;
                    for (bool bf16_dq : {false, true}) {
                        CAPTURE(bf16_dq);
                        BackwardRun run;
                        run.bf16_dq = bf16_dq;
                        const backward::Gradients got = run_cuda(gpu, c, run);
                        check_close(got.dq, widened(want.dq), tolerance + (bf16_dq ? 8e-3 : 0.0), "dq");
                        check_close(got.dkv, widened(want.dkv), tolerance, "dkv");
                        if (c.use_sink) check_close(got.d_sink, widened(want.d_sink), 1e-3, "d_attn_sink");
                    }
                }
}

TEST_CASE("CUDA sparse_attention_backward: rows without a valid index, k = 0, S_q = 0, S_kv = 0") {
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    // f32 takes the row kernel, bf16 (widths multiples of 16) the bf16 kernel.
    for (dsa_dtype_t dtype : {DSA_DTYPE_F32, DSA_DTYPE_BF16})
        for (dsa_sparse_attention_backward_mode_t mode :
             {DSA_SPARSE_ATTENTION_BACKWARD_DETERMINISTIC, DSA_SPARSE_ATTENTION_BACKWARD_FAST}) {
            CAPTURE(dtype); CAPTURE(mode);
            const double tolerance = dtype == DSA_DTYPE_F32 ? 1e-3 : 2e-2;
            // Row 1 of every case has only invalid indices; here every row does (S_kv = 0).
            for (const BackwardShape& s : {BackwardShape{6, 4, 32, 16, 0, 9}, BackwardShape{6, 4, 32, 16, 20, 0},
                                           BackwardShape{0, 4, 32, 16, 20, 9}, BackwardShape{7, 2, 32, 16, 20, 9}}) {
                CAPTURE(s.rows); CAPTURE(s.tokens); CAPTURE(s.topk);
                backward::Case c = backward::make_case(s.rows, s.heads, s.d_qk, s.d_v, s.tokens, s.topk, 7, dtype);
                c.mode = mode;
                const backward::Gradients want = backward::run_library(c);
                const backward::Gradients got = run_cuda(gpu, c);
                check_close(got.dq, widened(want.dq), tolerance, "dq");
                check_close(got.dkv, widened(want.dkv), tolerance, "dkv");
                check_close(got.d_sink, widened(want.d_sink), 1e-3, "d_attn_sink");
                if (s.rows > 1 && s.heads > 0)  // row 1 selects nothing: exactly zero dq
                    for (int64_t i = 0; i < s.heads * s.d_qk; ++i) REQUIRE(got.dq[s.heads * s.d_qk + i] == 0.0f);
            }
        }
}

TEST_CASE("CUDA DETERMINISTIC sparse_attention_backward is bitwise identical across runs, streams and workspaces") {
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    // Few tokens and many rows: every token gathers hundreds of contributions. For the bf16 kernel
    // 40 heads make two head groups and 160 heads five (the later groups add to the panel slots
    // with reductions).
    for (const auto& [dtype, heads] : {std::pair{DSA_DTYPE_BF16, int64_t{40}}, std::pair{DSA_DTYPE_BF16, int64_t{160}},
                                       std::pair{DSA_DTYPE_F32, int64_t{40}}}) {
        CAPTURE(dtype); CAPTURE(heads);
        backward::Case c = backward::make_case(300, heads, 576, 512, 500, 128, 55, dtype);
        const backward::Gradients first = run_cuda(gpu, c);
        const backward::Gradients second = run_cuda(gpu, c);
        CHECK(backward::same_bits(first, second));

        const dsa_sparse_attention_backward_params_t params = c.params();
        size_t bytes = 0;
        REQUIRE(dsa_sparse_attention_backward_workspace_size(gpu, &params, c.rows, c.topk, c.tokens, c.d_qk, &bytes) ==
                DSA_STATUS_SUCCESS);
        void* workspace = nullptr;
        CUDA_REQUIRE(cudaMalloc(&workspace, bytes));
        cudaStream_t stream = nullptr;
        CUDA_REQUIRE(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
        BackwardRun run;
        run.workspace = workspace;
        run.workspace_bytes = bytes;
        run.stream = stream;
        const backward::Gradients third = run_cuda(gpu, c, run);
        CHECK(backward::same_bits(first, third));
        CUDA_REQUIRE(cudaStreamDestroy(stream));
        CUDA_REQUIRE(cudaFree(workspace));

        c.mode = DSA_SPARSE_ATTENTION_BACKWARD_FAST;  // same values within the tolerance
        const backward::Gradients fast = run_cuda(gpu, c);
        check_close(fast.dkv, widened(first.dkv), 1e-4, "FAST dkv vs DETERMINISTIC");
        CHECK(same_floats(fast.dq, first.dq));  // dq has no scatter: the same in both modes
    }
}

TEST_CASE("CUDA DETERMINISTIC sparse_attention_backward over several panels matches the CPU") {
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    // Panels hold 2^30 / (4 * k * d_qk) = 227 rows at k = 2048, d_qk = 576, rounded down to whole
    // waves (132 rows on an H100 / H200): 240 rows make two.
    backward::Case c = backward::make_case(240, 4, 576, 512, 3000, 2048, 91, DSA_DTYPE_BF16);
    const backward::Gradients want = backward::run_library(c, 0);
    const backward::Gradients first = run_cuda(gpu, c), second = run_cuda(gpu, c);
    CHECK(backward::same_bits(first, second));
    check_close(first.dq, widened(want.dq), 2e-2, "dq");
    check_close(first.dkv, widened(want.dkv), 2e-2, "dkv");
    check_close(first.d_sink, widened(want.d_sink), 1e-3, "d_attn_sink");
}

TEST_CASE("CUDA sparse_attention_backward honours strides: the contiguous bits, padding untouched") {
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    // d_qk 72: the row kernel. d_qk 64, d_v 48: the bf16 kernel, whose contiguous run copies rows
    // with cp.async while here kv (row stride 68) and dout (head stride 52) are not 16-byte aligned
    // and take its 2-byte loads: the same bits all the same.
    struct Strided {
        int64_t d_qk, d_v, kv_pad;
    };
    for (const Strided& shape : {Strided{72, 64, 16}, Strided{64, 48, 4}}) {
        CAPTURE(shape.d_qk);
        backward::Case c = backward::make_case(19, 20, shape.d_qk, shape.d_v, 50, 40, 123, DSA_DTYPE_BF16);
        const backward::Gradients want = run_cuda(gpu, c);
        backward::Gradients g(c);
        const int64_t heads = c.heads, d_qk = c.d_qk, d_v = c.d_v;
        const Restrided q(c.q_tensor(), {heads * (d_qk + 8), d_qk + 8, 1}, 0), kv(c.kv_tensor(), {d_qk + shape.kv_pad, 1}, 0),
            indices(c.indices_tensor(), {c.topk + 3, 1}, 0), sink(c.sink_tensor(), {3}, 0),
            lengths(c.lengths_tensor(), {2}, 0), out(c.out_tensor(), {heads * (d_v + 8), d_v + 8, 1}, 0),
            lse(c.lse_tensor(), {1, c.rows}, 0), dout(c.dout_tensor(), {heads * (d_v + 4), d_v + 4, 1}, 0);
        Restrided dq(view(g.dq.data(), {c.rows, heads, d_qk}, DSA_DTYPE_F32), {heads * (d_qk + 8), d_qk + 8, 1}, 0xff),
            dkv(view(g.dkv.data(), {c.tokens, d_qk}, DSA_DTYPE_F32), {d_qk + 4, 1}, 0xff),
            d_sink(view(g.d_sink.data(), {heads}, DSA_DTYPE_F32), {2}, 0xff);
        {
            Mirror m;
            const dsa_sparse_attention_backward_params_t params = c.params();
            const dsa_tensor_t q_d = m.input(q.tensor), kv_d = m.input(kv.tensor), indices_d = m.input(indices.tensor),
                               sink_d = m.input(sink.tensor), lengths_d = m.input(lengths.tensor),
                               out_d = m.input(out.tensor), lse_d = m.input(lse.tensor), dout_d = m.input(dout.tensor),
                               dq_d = m.output(dq.tensor), dkv_d = m.output(dkv.tensor), d_sink_d = m.output(d_sink.tensor);
            REQUIRE_MESSAGE(dsa_sparse_attention_backward(gpu, &params, &q_d, &kv_d, &indices_d, &sink_d, &lengths_d,
                                                          &out_d, &lse_d, &dout_d, &dq_d, &dkv_d, &d_sink_d, nullptr, 0,
                                                          nullptr) == DSA_STATUS_SUCCESS,
                            dsa_last_error_message());
            m.download();
        }
        CHECK(same_floats(dq.contiguous<float>(), want.dq));
        CHECK(same_floats(dkv.contiguous<float>(), want.dkv));
        CHECK(same_floats(d_sink.contiguous<float>(), want.d_sink));
        CHECK(padding_untouched(dq));
        CHECK(padding_untouched(dkv));
        CHECK(padding_untouched(d_sink));
    }
}

TEST_CASE("CUDA sparse_attention_backward: the workspace query and bad input; outputs untouched") {
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    backward::Case c = backward::make_case(9, 4, 64, 32, 30, 12, 77, DSA_DTYPE_BF16);
    dsa_sparse_attention_backward_params_t params = c.params();
    size_t deterministic = 0, fast = 0;
    REQUIRE(dsa_sparse_attention_backward_workspace_size(gpu, &params, c.rows, c.topk, c.tokens, c.d_qk,
                                                         &deterministic) == DSA_STATUS_SUCCESS);
    params.mode = DSA_SPARSE_ATTENTION_BACKWARD_FAST;
    REQUIRE(dsa_sparse_attention_backward_workspace_size(gpu, &params, c.rows, c.topk, c.tokens, c.d_qk, &fast) ==
            DSA_STATUS_SUCCESS);
    CHECK(fast == 256);  // the rows' flags (4 bytes a row, 256-byte parts)
    CHECK(deterministic > static_cast<size_t>(c.rows * c.topk * c.d_qk * 4));

    void* workspace = nullptr;
    CUDA_REQUIRE(cudaMalloc(&workspace, deterministic));
    BackwardRun small;
    small.workspace = workspace;
    small.workspace_bytes = deterministic - 1;
    backward::Gradients g(c);
    CHECK(call_cuda(gpu, c, g, small) == DSA_STATUS_WORKSPACE_TOO_SMALL);
    CHECK(std::string(dsa_last_error_message()).find("workspace") != std::string::npos);
    CHECK(std::all_of(g.dq.begin(), g.dq.end(), [](float v) { return std::isnan(v); }));
    CHECK(std::all_of(g.dkv.begin(), g.dkv.end(), [](float v) { return std::isnan(v); }));
    CUDA_REQUIRE(cudaFree(workspace));

    c.scale = 0.0f;
    CHECK(call_cuda(gpu, c, g, {}) == DSA_STATUS_INVALID_ARGUMENT);
    CHECK(std::string(dsa_last_error_message()).find("params.scale") != std::string::npos);
    CHECK(std::all_of(g.dq.begin(), g.dq.end(), [](float v) { return std::isnan(v); }));
    CHECK(std::all_of(g.dkv.begin(), g.dkv.end(), [](float v) { return std::isnan(v); }));
}

// ---- indexer_loss ----------------------------------------------------------------------------

namespace distill = dsa_test::indexer_loss_cases;

dsa_status_t call_cuda(dsa_context_t* gpu, distill::Case& c, distill::Outputs& o, cudaStream_t stream = nullptr) {
    Mirror m;
    const dsa_indexer_loss_params_t params = c.params();
    const dsa_tensor_t q = m.input(c.q_tensor()), k = m.input(c.k_tensor()), w = m.input(c.w_tensor()),
                       ks = m.input(c.ks_tensor()), ke = m.input(c.ke_tensor()),
                       indices = m.input(c.indices_tensor()), tq = m.input(c.teacher_q_tensor()),
                       tk = m.input(c.teacher_k_tensor()), tp = m.input(c.probs_tensor());
    const dsa_tensor_t loss = m.output(view(&o.loss, {}, DSA_DTYPE_F32)),
                       row_loss = m.output(view(o.row_loss.data(), {c.rows}, DSA_DTYPE_F32)),
                       dq = m.output(view(o.d_index_q.data(), {c.rows, c.heads, c.dim}, DSA_DTYPE_F32)),
                       dk = m.output(view(o.d_index_k.data(), {c.tokens, c.dim}, DSA_DTYPE_F32)),
                       dw = m.output(view(o.d_weights.data(), {c.rows, c.heads}, DSA_DTYPE_F32));
    const dsa_status_t status = dsa_indexer_loss(
        gpu, &params, &q, &k, &w, &ks, &ke, c.mode == DSA_INDEXER_LOSS_SPARSE ? &indices : nullptr,
        c.probs ? nullptr : &tq, c.probs ? nullptr : &tk, c.probs ? &tp : nullptr, &loss, &row_loss, &dq, &dk, &dw,
        stream);
    m.download();
    return status;
}

// The library's CPU result without run_library's checks (non-finite outputs allowed).
distill::Outputs run_cpu(distill::Case& c) {
    Context cpu(2);
    distill::Outputs o(c);
    REQUIRE_MESSAGE(distill::call(cpu, c, o) == DSA_STATUS_SUCCESS, dsa_last_error_message());
    return o;
}

// Values times `factor`, widened.
std::vector<double> scaled(const std::vector<float>& values, double factor) {
    std::vector<double> result(values.size());
    for (size_t i = 0; i < values.size(); ++i) result[i] = values[i] * factor;
    return result;
}

// Values rounded to multiples of 1 / steps.
std::vector<float> on_grid(std::vector<float> values, float steps) {
    for (float& value : values) value = std::round(value * steps) / steps;
    return values;
}

// Every output within 1e-3 of the CPU's (relative to its largest magnitude).
void check_matches_cpu(const distill::Outputs& got, const distill::Outputs& want) {
    CHECK(std::fabs(got.loss - want.loss) <= 1e-3 * std::max(1.0f, std::fabs(want.loss)));
    check_close(got.row_loss, widened(want.row_loss), 1e-3, "row_loss");
    check_close(got.d_index_q, widened(want.d_index_q), 1e-3, "d_index_q");
    check_close(got.d_index_k, widened(want.d_index_k), 1e-3, "d_index_k");
    check_close(got.d_weights, widened(want.d_weights), 1e-3, "d_weights");
}

TEST_CASE("CUDA indexer_loss matches the CPU: both modes, both teacher forms, GQA and MQA teachers, f32 and bf16") {
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    // A rebuilt teacher runs fused into the student kernels in f32 (and in bf16 with d % 8 != 0),
    // on the teacher kernels (teacher.cuh) in bf16 otherwise.
    const distill::Shape shapes[] = {
        {23, 40, 5, 24, 6, 2, 40, 30},       // GQA teacher, 3 heads per kv head (head tiles of 3)
        {37, 100, 64, 128, 20, 0, 72, 50},   // DeepSeek's indexer widths, MQA teacher (tiles of 10)
        {70, 300, 16, 64, 32, 1, 128, 200},  // rank-3 teacher_k with one kv head (tiles of 16)
        {30, 70, 4, 16, 4, 2, 20, 25},       // d = 20: the bf16 teacher stays fused too
        {20, 90, 72, 40, 136, 0, 64, 40},    // 136 heads of one kv head: teacher blocks of 128 and 8; H_I 72
        {6, 300, 64, 128, 128, 0, 576, 260}, // DeepSeek's widths throughout (H_q 128, d 576)
    };
    uint32_t seed = 300;
    for (const distill::Shape& shape : shapes)
        for (dsa_indexer_loss_mode_t mode : {DSA_INDEXER_LOSS_DENSE, DSA_INDEXER_LOSS_SPARSE})
            for (bool probs : {false, true})
                for (dsa_dtype_t dtype : {DSA_DTYPE_F32, DSA_DTYPE_BF16}) {
                    CAPTURE(shape.rows); CAPTURE(shape.tokens); CAPTURE(shape.heads); CAPTURE(mode); CAPTURE(probs);
                    CAPTURE(dtype);
                    distill::Case c = distill::make_case(mode, probs, shape, seed++, dtype);
                    // With f32 q and k a student score within rounding of 0 may fall on either side
                    // of the ReLU on the two backends and move a gradient by a whole term; the
                    // 64-head shape (~10^5 scores) met one. With 64 heads or more q and k lie on a 1/16 grid, so
                    // every score is exact in f32 in any order and both take the same side.
                    if (dtype == DSA_DTYPE_F32 && shape.heads >= 64)
                        for (Values* values : {&c.index_q, &c.index_k}) values->assign(on_grid(values->f32, 16.0f), dtype);
                    const distill::Outputs want = distill::run_library(c);
                    distill::Outputs got(c);
                    REQUIRE_MESSAGE(call_cuda(gpu, c, got) == DSA_STATUS_SUCCESS, dsa_last_error_message());
                    REQUIRE(!std::isnan(got.loss));
                    for (const auto* values : {&got.row_loss, &got.d_index_q, &got.d_index_k, &got.d_weights})
                        REQUIRE(!any_nan(*values));
                    check_matches_cpu(got, want);
                    for (int64_t t = 1; t < c.rows; t += 5) CHECK(got.row_loss[t] == 0.0f);  // empty windows
                }
}

TEST_CASE("CUDA indexer_loss: a bf16 teacher over several chunks of rows matches the CPU") {
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    // DENSE over 16384 tokens: launch.cu's 64 MiB of teacher p scratch holds 1024 such rows, so
    // these 1030 take two chunks (the second of 6 rows).
    distill::Case c = distill::make_case(DSA_INDEXER_LOSS_DENSE, false, {1030, 16384, 2, 16, 4, 2, 8}, 77, DSA_DTYPE_BF16);
    const distill::Outputs want = distill::run_library(c);
    distill::Outputs got(c);
    REQUIRE_MESSAGE(call_cuda(gpu, c, got) == DSA_STATUS_SUCCESS, dsa_last_error_message());
    check_matches_cpu(got, want);
}

TEST_CASE("CUDA indexer_loss honours strides: the contiguous results, padding untouched") {
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    // bf16: the teacher kernels gather the padded rows (not 16-byte aligned) with 2-byte loads.
    for (dsa_dtype_t dtype : {DSA_DTYPE_F32, DSA_DTYPE_BF16}) {
        CAPTURE(dtype);
        distill::Case c = distill::make_case(DSA_INDEXER_LOSS_SPARSE, false, {23, 60, 8, 40, 6, 3, 24, 30}, 41, dtype);
        distill::Outputs want(c);
        REQUIRE_MESSAGE(call_cuda(gpu, c, want) == DSA_STATUS_SUCCESS, dsa_last_error_message());
        distill::Outputs o(c);
        const int64_t heads = c.heads, dim = c.dim, d = c.teacher_dim;
        const Restrided q(c.q_tensor(), {heads * (dim + 4), dim + 4, 1}, 0), k(c.k_tensor(), {dim + 8, 1}, 0),
            w(c.w_tensor(), {1, c.rows}, 0), ks(c.ks_tensor(), {2}, 0), ke(c.ke_tensor(), {3}, 0),
            indices(c.indices_tensor(), {c.topk + 5, 1}, 0),
            tq(c.teacher_q_tensor(), {c.teacher_heads * (d + 4), d + 4, 1}, 0),
            tk(c.teacher_k_tensor(), {c.teacher_kv_heads * (d + 8), d + 8, 1}, 0);
        Restrided row_loss(view(o.row_loss.data(), {c.rows}, DSA_DTYPE_F32), {2}, 0xff),
            dq(view(o.d_index_q.data(), {c.rows, heads, dim}, DSA_DTYPE_F32), {heads * (dim + 4), dim + 4, 1}, 0xff),
            dk(view(o.d_index_k.data(), {c.tokens, dim}, DSA_DTYPE_F32), {dim + 4, 1}, 0xff),
            dw(view(o.d_weights.data(), {c.rows, heads}, DSA_DTYPE_F32), {heads + 3, 1}, 0xff);
        {
            Mirror m;
            const dsa_indexer_loss_params_t params = c.params();
            const dsa_tensor_t q_d = m.input(q.tensor), k_d = m.input(k.tensor), w_d = m.input(w.tensor),
                               ks_d = m.input(ks.tensor), ke_d = m.input(ke.tensor), indices_d = m.input(indices.tensor),
                               tq_d = m.input(tq.tensor), tk_d = m.input(tk.tensor),
                               loss_d = m.output(view(&o.loss, {}, DSA_DTYPE_F32)), row_loss_d = m.output(row_loss.tensor),
                               dq_d = m.output(dq.tensor), dk_d = m.output(dk.tensor), dw_d = m.output(dw.tensor);
            REQUIRE_MESSAGE(dsa_indexer_loss(gpu, &params, &q_d, &k_d, &w_d, &ks_d, &ke_d, &indices_d, &tq_d, &tk_d,
                                             nullptr, &loss_d, &row_loss_d, &dq_d, &dk_d, &dw_d,
                                             nullptr) == DSA_STATUS_SUCCESS,
                            dsa_last_error_message());
            m.download();
        }
        // Every output is bitwise the contiguous one (d_index_k's fixed-point sum is order-free).
        CHECK(std::memcmp(&o.loss, &want.loss, sizeof(float)) == 0);
        CHECK(same_floats(row_loss.contiguous<float>(), want.row_loss));
        CHECK(same_floats(dq.contiguous<float>(), want.d_index_q));
        CHECK(same_floats(dw.contiguous<float>(), want.d_weights));
        CHECK(same_floats(dk.contiguous<float>(), want.d_index_k));
        for (const Restrided* output : {&row_loss, &dq, &dk, &dw}) CHECK(padding_untouched(*output));
    }
}

TEST_CASE("CUDA indexer_loss: d_index_k is bitwise identical across runs and streams (many rows per token)") {
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    cudaStream_t stream = nullptr;
    CUDA_REQUIRE(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    uint32_t seed = 700;
    for (dsa_indexer_loss_mode_t mode : {DSA_INDEXER_LOSS_DENSE, DSA_INDEXER_LOSS_SPARSE})
        for (dsa_dtype_t dtype : {DSA_DTYPE_F32, DSA_DTYPE_BF16}) {
            CAPTURE(mode); CAPTURE(dtype);
            // 256 rows on 64 tokens: each token gathers up to 256 rows' contributions; SPARSE rows
            // pick 96 of the 64 tokens, so every row repeats tokens. Rebuilt teacher in DENSE,
            // explicit in SPARSE.
            const bool probs = mode == DSA_INDEXER_LOSS_SPARSE;
            distill::Case c = distill::make_case(mode, probs, {256, 64, 8, 64, 4, 2, 32, 96}, seed++, dtype);
            if (dtype == DSA_DTYPE_F32)  // exact scores: both backends take the same side of every ReLU
                for (Values* values : {&c.index_q, &c.index_k}) values->assign(on_grid(values->f32, 16.0f), dtype);
            distill::Outputs first(c), second(c), third(c), streamed(c);
            for (distill::Outputs* o : {&first, &second, &third})
                REQUIRE_MESSAGE(call_cuda(gpu, c, *o) == DSA_STATUS_SUCCESS, dsa_last_error_message());
            REQUIRE_MESSAGE(call_cuda(gpu, c, streamed, stream) == DSA_STATUS_SUCCESS, dsa_last_error_message());
            REQUIRE(!any_nan(first.d_index_k));
            CHECK(same_floats(first.d_index_k, second.d_index_k));
            CHECK(same_floats(first.d_index_k, third.d_index_k));
            CHECK(same_floats(first.d_index_k, streamed.d_index_k));
            CHECK(distill::same_bits(first, streamed));
            const distill::Outputs want = distill::run_library(c);
            check_close(first.d_index_k, widened(want.d_index_k), 1e-3, "d_index_k");
            check_close(first.d_index_q, widened(want.d_index_q), 1e-3, "d_index_q");
        }
    CUDA_REQUIRE(cudaStreamDestroy(stream));
}

TEST_CASE("CUDA indexer_loss: d_index_k with zero weights (B = 0) and with extreme coeff") {
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    for (dsa_indexer_loss_mode_t mode : {DSA_INDEXER_LOSS_DENSE, DSA_INDEXER_LOSS_SPARSE}) {
        CAPTURE(mode);
        distill::Case c = distill::make_case(mode, false, {40, 50, 8, 32, 4, 0, 16, 30}, 810);
        for (Values* values : {&c.index_q, &c.index_k}) values->assign(on_grid(values->f32, 16.0f), DSA_DTYPE_F32);
        // The fixed-point scale 2^e follows B = 2 H_I |coeff| max|w| max|q| over 120 binades.
        for (float coeff : {1e-30f, 1.0f, 1e30f}) {
            CAPTURE(coeff);
            c.coeff = coeff;
            const distill::Outputs want = distill::run_library(c);
            distill::Outputs got(c);
            REQUIRE_MESSAGE(call_cuda(gpu, c, got) == DSA_STATUS_SUCCESS, dsa_last_error_message());
            REQUIRE(!any_nan(got.d_index_k));
            check_close(got.d_index_k, widened(want.d_index_k), 1e-3, "d_index_k");
            const double unscale = 1.0 / coeff;  // check_close's floor of 1e-3 would hide tiny values
            const std::vector<double> want_unscaled = scaled(want.d_index_k, unscale);
            const std::vector<double> got_unscaled = scaled(got.d_index_k, unscale);
            check_close(std::vector<float>(got_unscaled.begin(), got_unscaled.end()), want_unscaled, 1e-3,
                        "d_index_k / coeff");
        }
        // Zero weights everywhere: G = 0, so B = 0 (scale 1) and d_index_k is exactly 0.
        c.coeff = 1.0f;
        c.weights.assign(std::vector<float>(c.weights.f32.size(), 0.0f), DSA_DTYPE_F32);
        distill::Outputs got(c);
        REQUIRE_MESSAGE(call_cuda(gpu, c, got) == DSA_STATUS_SUCCESS, dsa_last_error_message());
        CHECK(std::all_of(got.d_index_k.begin(), got.d_index_k.end(), [](float v) { return v == 0.0f; }));
        const distill::Outputs want = distill::run_library(c);
        CHECK(std::all_of(want.d_index_k.begin(), want.d_index_k.end(), [](float v) { return v == 0.0f; }));
        CHECK(std::fabs(got.loss - want.loss) <= 1e-3 * std::max(1.0f, std::fabs(want.loss)));
        check_close(got.d_weights, widened(want.d_weights), 1e-3, "d_weights");
    }
}

TEST_CASE("CUDA indexer_loss: a NaN or infinite index_q element reaches d_index_k as on the CPU") {
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    // Row 6's set is tokens [10, 20); index_q[6, 2, 5] is NaN or +Inf. What the CPU gives (f32
    // arithmetic): a NaN makes row 6's g NaN, so every column of tokens 10..19 is NaN (a NaN or 0
    // G times the NaN q, or a NaN G). +Inf with weights[6, 2] = -1 turns the scores of head 2
    // into +-Inf, the logits of the +Inf ones into -Inf (pi = 0), g stays finite and only column 5
    // of tokens 10..19 is non-finite (+-Inf where G[6, 2, s] != 0, NaN where it is 0). CUDA
    // carries the infinite f32 operand as bf16 parts of which the later are NaN, so with f32 q its
    // head-2 scores are NaN (not +-Inf) and the whole of tokens 10..19 may be NaN: only column 5
    // of tokens 10..19 is promised non-finite there. The engineered +Inf case (index_k[:, 5] > 0,
    // weights[6, 2] = 1, head 3 of row 6 the unit vector e_5, so head 3 scores > 0 everywhere)
    // makes g NaN on both, and both then give NaN on all of tokens 10..19. Every other token gets
    // finite contributions only: finite, and within the parity tolerance.
    enum Variant { kNaN, kInfinityEngineered, kInfinity };
    for (dsa_dtype_t dtype : {DSA_DTYPE_F32, DSA_DTYPE_BF16})
        for (Variant variant : {kNaN, kInfinityEngineered, kInfinity}) {
            CAPTURE(dtype); CAPTURE(static_cast<int>(variant));
            distill::Case c = distill::make_case(DSA_INDEXER_LOSS_DENSE, true, {24, 40, 8, 32, 1, 0, 1}, 900, dtype);
            std::vector<float> q = on_grid(c.index_q.f32, 16.0f), k = on_grid(c.index_k.f32, 16.0f), w = c.weights.f32;
            const int64_t t0 = 6, h0 = 2, c0 = 5, heads = c.heads, dim = c.dim, begin = 10, end = 20;
            c.ks[t0] = static_cast<int32_t>(begin);
            c.ke[t0] = static_cast<int32_t>(end);
            if (variant == kInfinityEngineered) {
                for (int64_t s = 0; s < c.tokens; ++s) k[s * dim + c0] = std::fabs(k[s * dim + c0]) + 0.25f;
                w[t0 * heads + h0] = 1.0f;
                for (int64_t d = 0; d < dim; ++d) q[(t0 * heads + h0 + 1) * dim + d] = d == c0 ? 1.0f : 0.0f;
            }
            if (variant == kInfinity) w[t0 * heads + h0] = -1.0f;
            q[(t0 * heads + h0) * dim + c0] =
                variant == kNaN ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
            c.index_q.assign(q, dtype);
            c.index_k.assign(k, dtype);
            c.weights.assign(w, dtype);
            const distill::Outputs want = run_cpu(c);
            distill::Outputs got(c);
            REQUIRE_MESSAGE(call_cuda(gpu, c, got) == DSA_STATUS_SUCCESS, dsa_last_error_message());
            const bool same_pattern = variant != kInfinity;
            std::vector<float> got_finite;
            std::vector<double> want_finite;
            int64_t pattern_mismatches = 0, promise_misses = 0, cpu_misses = 0;
            for (int64_t s = 0; s < c.tokens; ++s)
                for (int64_t d = 0; d < dim; ++d) {
                    const float g = got.d_index_k[s * dim + d], e = want.d_index_k[s * dim + d];
                    const bool in_set = s >= begin && s < end;
                    if (!in_set) {
                        promise_misses += !std::isfinite(g);
                        cpu_misses += !std::isfinite(e);
                    } else if (same_pattern) {
                        pattern_mismatches += std::isnan(g) != std::isnan(e) || std::isinf(g) != std::isinf(e) ||
                                              (std::isinf(g) && std::isinf(e) && (g > 0) != (e > 0));
                        cpu_misses += std::isfinite(e);  // the CPU's pattern above: all of tokens 10..19
                    } else if (d == c0) {
                        promise_misses += std::isfinite(g);
                        cpu_misses += std::isfinite(e);
                    } else {
                        cpu_misses += !std::isfinite(e);
                    }
                    if (std::isfinite(g) && std::isfinite(e)) got_finite.push_back(g), want_finite.push_back(e);
                }
            CHECK(cpu_misses == 0);  // the CPU behaves as described above
            CHECK(pattern_mismatches == 0);
            CHECK(promise_misses == 0);
            CHECK(got_finite.size() >= static_cast<size_t>((c.tokens - (end - begin)) * dim));
            check_close(got_finite, want_finite, 1e-3, "finite d_index_k");
        }
}

TEST_CASE("CUDA indexer_loss: inactive rows, empty problems and bad input; outputs untouched") {
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    // A negative entry, zero mass and an infinite entry make rows 0, 2 and 3 inactive (row 1 is empty).
    distill::Case c = distill::make_case(DSA_INDEXER_LOSS_DENSE, true, {8, 20, 4, 16, 1, 0, 1}, 9);
    c.teacher_probs[0 * c.tokens + 3] = -0.5f;
    for (int64_t s = 0; s < c.tokens; ++s) c.teacher_probs[2 * c.tokens + s] = 0.0f;
    c.teacher_probs[3 * c.tokens + c.tokens - 1] = std::numeric_limits<float>::infinity();
    const distill::Outputs want = distill::run_library(c);
    distill::Outputs got(c);
    REQUIRE_MESSAGE(call_cuda(gpu, c, got) == DSA_STATUS_SUCCESS, dsa_last_error_message());
    CHECK(std::fabs(got.loss - want.loss) <= 1e-3 * std::max(1.0f, std::fabs(want.loss)));
    check_close(got.d_index_q, widened(want.d_index_q), 1e-3, "d_index_q");
    check_close(got.d_index_k, widened(want.d_index_k), 1e-3, "d_index_k");
    for (int64_t t : {0, 1, 2, 3}) CHECK(got.row_loss[t] == 0.0f);

    for (const distill::Shape& empty : {distill::Shape{0, 20, 4, 16, 2, 0, 8}, distill::Shape{4, 0, 4, 16, 2, 0, 8}}) {
        distill::Case e = distill::make_case(DSA_INDEXER_LOSS_DENSE, false, empty, 10);
        distill::Outputs o(e);
        REQUIRE_MESSAGE(call_cuda(gpu, e, o) == DSA_STATUS_SUCCESS, dsa_last_error_message());
        CHECK(o.loss == 0.0f);
        for (const auto* values : {&o.row_loss, &o.d_index_q, &o.d_weights})
            CHECK(std::all_of(values->begin(), values->end(), [](float v) { return v == 0.0f; }));
    }

    c.coeff = std::numeric_limits<float>::infinity();
    distill::Outputs untouched(c);
    CHECK(call_cuda(gpu, c, untouched) == DSA_STATUS_INVALID_ARGUMENT);
    CHECK(std::string(dsa_last_error_message()).find("params.coeff") != std::string::npos);
    CHECK(std::isnan(untouched.loss));
    CHECK(std::all_of(untouched.d_index_k.begin(), untouched.d_index_k.end(), [](float v) { return std::isnan(v); }));
}

}  // namespace
