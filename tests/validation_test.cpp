// The validation matrix: every tensor op of dsa.h (tests/op_cases.hpp) called with each of its
// arguments broken in every way the ABI defines (NULL pointers, unknown and wrong dtypes, ranks,
// extents, negative and overflowing sizes, strides, misaligned data, foreign devices, overlapping
// outputs, params structs of the wrong size or with unknown fields) must answer the documented
// status with a message naming the argument, and leave every output byte untouched. Values that
// live in tensor data (windows, lengths, indices, block tables, slots) are clamped or skipped,
// never rejected: hostile values give exactly the results of their in-range equivalents. Run
// under ASan + UBSan in CI, so an out-of-bounds read on any of these paths fails too.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "op_cases.hpp"

using namespace dsa_test;

namespace {

bool cuda_built() { return std::string(dsa_build_info()).find("cuda: not built") == std::string::npos; }

// One broken call: what was changed, the tensors and params it passes, and what must come back.
struct Mutation {
    std::string what;
    std::vector<dsa_tensor_t> tensors;  // copies of the baseline views, one changed
    std::vector<bool> null_tensor;      // pass NULL instead of tensors[i]
    ParamsList params;
    WorkspaceArg workspace;
    std::vector<dsa_status_t> expected;  // any of these
    std::vector<std::string> names;      // the message must name all of these
};

class Matrix {
public:
    explicit Matrix(OpCase& op) : op_(op) {}

    Mutation base(const std::string& what, std::vector<dsa_status_t> expected, std::vector<std::string> names) const {
        Mutation m;
        m.what = what;
        for (const Arg& a : op_.args) m.tensors.push_back(a.tensor);
        m.null_tensor.assign(op_.args.size(), false);
        m.params = op_.baseline_params();
        m.expected = std::move(expected);
        m.names = std::move(names);
        return m;
    }

    // Calls the op; on failure every output must still hold the poison.
    void expect(const Mutation& m, dsa_context_t* context) {
        INFO(op_.function << ": " << m.what);
        op_.poison_outputs();
        const std::vector<std::vector<uint8_t>> poisoned = op_.outputs();
        Tensors pointers;
        for (size_t i = 0; i < m.tensors.size(); ++i) pointers.push_back(m.null_tensor[i] ? nullptr : &m.tensors[i]);
        const dsa_status_t status = op_.call(context, m.params, pointers, m.workspace);
        const std::string message = dsa_last_error_message();
        bool expected = false;
        for (dsa_status_t code : m.expected) expected = expected || status == code;
        CHECK_MESSAGE(expected, "status " << status << " (" << std::string(dsa_status_string(status)) << "): " << message);
        CHECK_MESSAGE(!message.empty(), "a failing call left no message");
        for (const std::string& name : m.names)
            CHECK_MESSAGE(message.find(name) != std::string::npos, "message should name " << name << ": " << message);
        CHECK_MESSAGE(op_.outputs() == poisoned, "an output was written by a failing call");
        ++checked_;
    }

    int checked() const { return checked_; }

private:
    OpCase& op_;
    int checked_ = 0;
};

constexpr dsa_dtype_t kAllDtypes[] = {DSA_DTYPE_F32,  DSA_DTYPE_F16, DSA_DTYPE_BF16, DSA_DTYPE_FP8_E4M3,
                                      DSA_DTYPE_U8,   DSA_DTYPE_I32, DSA_DTYPE_I64};

// Every generic mutation of tensor argument i.
void break_tensor(OpCase& op, size_t i, Matrix& matrix, dsa_context_t* context) {
    const Arg& a = op.args[i];
    const dsa_tensor_t& good = a.tensor;
    const std::string& name = a.name;
    using S = std::vector<dsa_status_t>;
    auto mutate = [&](const std::string& what, S expected, auto&& change) {
        Mutation m = matrix.base(name + ": " + what, std::move(expected), {name});
        change(m.tensors[i]);
        matrix.expect(m, context);
    };

    if (!a.optional) {
        Mutation m = matrix.base(name + ": NULL tensor", {DSA_STATUS_INVALID_ARGUMENT}, {name});
        m.null_tensor[i] = true;
        matrix.expect(m, context);
    }
    if (a.numel() > 0) mutate("NULL data", {DSA_STATUS_INVALID_ARGUMENT}, [](dsa_tensor_t& t) { t.data = nullptr; });
    for (dsa_dtype_t code : {0, 8, 99, -1})
        mutate("unknown dtype " + std::to_string(code), {DSA_STATUS_DTYPE_MISMATCH}, [&](dsa_tensor_t& t) { t.dtype = code; });
    for (dsa_dtype_t dtype : kAllDtypes)
        if (std::find(a.dtypes.begin(), a.dtypes.end(), dtype) == a.dtypes.end())
            mutate("dtype " + std::to_string(dtype) + " is not accepted", {DSA_STATUS_DTYPE_MISMATCH},
                   [&](dsa_tensor_t& t) { t.dtype = dtype; });
    mutate("ndim 9", {DSA_STATUS_INVALID_ARGUMENT}, [](dsa_tensor_t& t) { t.ndim = 9; });
    mutate("ndim -1", {DSA_STATUS_INVALID_ARGUMENT}, [](dsa_tensor_t& t) { t.ndim = -1; });
    if (!a.any_rank) {
        mutate("one more dimension", {DSA_STATUS_SHAPE_MISMATCH}, [](dsa_tensor_t& t) {
            t.shape[t.ndim] = 1;
            t.strides[t.ndim] = 1;
            ++t.ndim;
        });
        if (good.ndim > 0) mutate("one dimension less", {DSA_STATUS_SHAPE_MISMATCH}, [](dsa_tensor_t& t) { --t.ndim; });
    }
    for (int axis = 0; axis < good.ndim; ++axis) {
        const std::string dim = "dimension " + std::to_string(axis);
        mutate(dim + " negative", {DSA_STATUS_SHAPE_MISMATCH}, [&](dsa_tensor_t& t) { t.shape[axis] = -1; });
        mutate(dim + " extent 2^62 with stride 2^20 overflows", {DSA_STATUS_SHAPE_MISMATCH}, [&](dsa_tensor_t& t) {
            t.shape[axis] = int64_t(1) << 62;
            t.strides[axis] = int64_t(1) << 20;
        });
        if (!(a.free_dims & (1u << axis))) {
            // The disagreement may be reported against the partner extent (or, for an inner
            // extent, as the stride it now breaks), so any of those, naming either.
            Mutation m = matrix.base(name + ": " + dim + " one too long",
                                     {DSA_STATUS_SHAPE_MISMATCH, DSA_STATUS_INVALID_ARGUMENT, DSA_STATUS_LAYOUT_UNSUPPORTED},
                                     {});
            ++m.tensors[i].shape[axis];
            matrix.expect(m, context);
        }
        if (good.shape[axis] > 1)
            mutate(dim + " negative stride", {DSA_STATUS_LAYOUT_UNSUPPORTED}, [&](dsa_tensor_t& t) { t.strides[axis] = -1; });
    }
    if (good.ndim > 0) {
        // Elements fit int64, bytes do not: 2^61 elements of >= 4 bytes.
        const int64_t elements = int64_t(1) << 61;
        if (dsa_dtype_size(good.dtype) >= 4)
            mutate("byte count overflows int64", {DSA_STATUS_SHAPE_MISMATCH}, [&](dsa_tensor_t& t) {
                for (int axis = 0; axis < t.ndim; ++axis) t.shape[axis] = 1, t.strides[axis] = 1;
                t.shape[0] = elements;
            });
    }
    if (a.numel() > 0 && dsa_dtype_size(good.dtype) > 1)
        mutate("misaligned data", {DSA_STATUS_LAYOUT_UNSUPPORTED},
               [](dsa_tensor_t& t) { t.data = static_cast<char*>(t.data) + 1; });
    mutate("on cuda:0 with a CPU context", {cuda_built() ? DSA_STATUS_DEVICE_MISMATCH : DSA_STATUS_UNSUPPORTED},
           [](dsa_tensor_t& t) { t.device_type = DSA_DEVICE_CUDA; });
    mutate("on cuda:-1", {DSA_STATUS_DEVICE_MISMATCH}, [](dsa_tensor_t& t) {
        t.device_type = DSA_DEVICE_CUDA;
        t.device_id = -1;
    });
    for (dsa_device_type_t device : {0, 3, 13})
        mutate("unknown device type " + std::to_string(device), {DSA_STATUS_DEVICE_MISMATCH},
               [&](dsa_tensor_t& t) { t.device_type = device; });
    if (a.contiguous_last && good.ndim > 0 && good.shape[good.ndim - 1] > 1) {
        // Every stride doubled, over a buffer twice the size: only the contiguity rule rejects
        // that (a last stride of 2 alone also makes an output overlap itself).
        std::vector<uint64_t> spread(2 * a.storage.size());
        mutate("last stride 2", {DSA_STATUS_LAYOUT_UNSUPPORTED}, [&](dsa_tensor_t& t) {
            for (int axis = 0; axis < t.ndim; ++axis) t.strides[axis] *= 2;
            t.data = spread.data();
        });
    }

    if (a.role != Role::output) return;
    for (int axis = 0; axis < good.ndim; ++axis)
        if (good.shape[axis] > 1)
            mutate("stride 0 in dimension " + std::to_string(axis) + " (an output writing an element twice)",
                   {DSA_STATUS_LAYOUT_UNSUPPORTED}, [&](dsa_tensor_t& t) { t.strides[axis] = 0; });
    // An output over any other argument's memory.
    for (size_t j = 0; j < op.args.size(); ++j) {
        const Arg& other = op.args[j];
        if (j == i || other.numel() == 0 || a.numel() == 0) continue;
        Mutation m = matrix.base(name + ": memory overlaps " + other.name, {DSA_STATUS_LAYOUT_UNSUPPORTED},
                                 {name, other.name});
        // Both in a fresh buffer of their own, so they overlap each other and nothing else; the
        // other argument keeps its bytes. Exactly the other view is the documented in-place form
        // where allowed, so that pair overlaps by half.
        const size_t offset = a.may_alias == other.name ? other.bytes / 2 : 0;
        std::vector<uint64_t> shared((std::max(a.bytes + offset, other.bytes) + 7) / 8 + 1);
        std::memcpy(shared.data(), other.tensor.data, other.bytes);
        m.tensors[j].data = shared.data();
        m.tensors[i].data = reinterpret_cast<char*>(shared.data()) + offset;
        matrix.expect(m, context);
        // device_id is ignored for CPU tensors, so it cannot make the two memories distinct.
        m.what += " (the other with CPU device_id 5)";
        m.tensors[j].device_id = 5;
        matrix.expect(m, context);
    }
}

// struct_size too small, NULL when required, a newer struct with a zero or non-zero tail.
void break_params(OpCase& op, size_t i, Matrix& matrix, dsa_context_t* context,
                  const std::vector<std::vector<uint8_t>>& baseline_outputs) {
    const ParamsArg& p = op.params[i];
    if (p.required) {
        Mutation m = matrix.base(p.name + ": NULL", {DSA_STATUS_INVALID_ARGUMENT}, {p.name});
        m.params[i] = nullptr;
        matrix.expect(m, context);
    }
    for (size_t size : {size_t(0), size_t(4), p.size - 1}) {
        if (size >= p.size) continue;
        std::vector<uint64_t> smaller = p.storage;
        reinterpret_cast<uint32_t*>(smaller.data())[0] = static_cast<uint32_t>(size);
        Mutation m = matrix.base(p.name + ": struct_size " + std::to_string(size), {DSA_STATUS_INVALID_ARGUMENT},
                                 {p.name, "struct_size"});
        m.params[i] = smaller.data();
        matrix.expect(m, context);
    }
    // A newer caller's struct: 16 more bytes. Zero: accepted, same results; non-zero: refused.
    std::vector<uint64_t> newer(p.storage.size() + 3, 0);
    std::memcpy(newer.data(), p.storage.data(), p.size);
    reinterpret_cast<uint32_t*>(newer.data())[0] = static_cast<uint32_t>(p.size + 16);
    {
        INFO(op.function << ": " << p.name << " from a newer caller, unknown fields zero");
        ParamsList params = op.baseline_params();
        params[i] = newer.data();
        op.poison_outputs();
        const dsa_status_t status = op.call(context, params, op.baseline_tensors(), {});
        CHECK_MESSAGE(status == DSA_STATUS_SUCCESS, dsa_last_error_message());
        CHECK(op.outputs() == baseline_outputs);
    }
    reinterpret_cast<uint8_t*>(newer.data())[p.size + 15] = 1;
    Mutation m = matrix.base(p.name + ": an unknown field is set", {DSA_STATUS_UNSUPPORTED}, {p.name});
    m.params[i] = newer.data();
    matrix.expect(m, context);
}

// NULL context; the workspace too small, misaligned, or with an impossible size.
void break_call(OpCase& op, Matrix& matrix, dsa_context_t* context, std::vector<uint64_t>& workspace) {
    {
        Mutation m = matrix.base("NULL context", {DSA_STATUS_INVALID_ARGUMENT}, {"context"});
        matrix.expect(m, nullptr);
    }
    if (!op.workspace_size) return;
    size_t needed = 0;
    REQUIRE(op.workspace_size(context, &needed) == DSA_STATUS_SUCCESS);
    REQUIRE(needed > 0);
    workspace.assign(needed / 8 + 4, 0);
    Mutation small = matrix.base("workspace one byte too small", {DSA_STATUS_WORKSPACE_TOO_SMALL}, {"workspace"});
    small.workspace = {workspace.data(), needed - 1};
    matrix.expect(small, context);
    Mutation misaligned = matrix.base("workspace misaligned", {DSA_STATUS_LAYOUT_UNSUPPORTED}, {"workspace"});
    misaligned.workspace = {reinterpret_cast<char*>(workspace.data()) + 4, needed};
    matrix.expect(misaligned, context);
    Mutation huge = matrix.base("workspace_bytes beyond int64", {DSA_STATUS_INVALID_ARGUMENT}, {"workspace_bytes"});
    huge.workspace = {workspace.data(), SIZE_MAX};
    matrix.expect(huge, context);
}

// The outputs of one run with `values` written over the start of a data tensor.
std::vector<std::vector<uint8_t>> run_with(OpCase& op, dsa_context_t* context, const std::string& name,
                                           const std::vector<int64_t>& values) {
    Arg& a = op.arg(name);
    REQUIRE(static_cast<int64_t>(values.size()) <= a.numel());
    const std::vector<uint64_t> saved = a.storage;
    for (size_t i = 0; i < values.size(); ++i) {
        if (a.tensor.dtype == DSA_DTYPE_I64) {
            reinterpret_cast<int64_t*>(a.data())[i] = values[i];
        } else {
            REQUIRE(a.tensor.dtype == DSA_DTYPE_I32);
            reinterpret_cast<int32_t*>(a.data())[i] = static_cast<int32_t>(values[i]);
        }
    }
    op.poison_outputs();
    const dsa_status_t status = op.run(context);
    CHECK_MESSAGE(status == DSA_STATUS_SUCCESS, dsa_last_error_message());
    a.storage = saved;
    return op.outputs();
}

}  // namespace

TEST_CASE("validation matrix: every op, every argument, every way to break it") {
    Context context(2);
    std::vector<OpCase> cases = all_op_cases(CaseSize{});
    int total = 0;
    for (OpCase& op : cases) {
        INFO(op.function);
        op.poison_outputs();
        REQUIRE_MESSAGE(op.run(context) == DSA_STATUS_SUCCESS, op.function << ": " << dsa_last_error_message());
        const std::vector<std::vector<uint8_t>> baseline = op.outputs();
        Matrix matrix(op);
        for (size_t i = 0; i < op.args.size(); ++i) break_tensor(op, i, matrix, context);
        for (size_t i = 0; i < op.params.size(); ++i) break_params(op, i, matrix, context, baseline);
        std::vector<uint64_t> workspace;
        break_call(op, matrix, context, workspace);
        // device_id is ignored for CPU tensors: any value gives the baseline's results.
        for (size_t i = 0; i < op.args.size(); ++i) {
            INFO(op.args[i].name << " with CPU device_id 5");
            Tensors tensors = op.baseline_tensors();
            dsa_tensor_t other_id = op.args[i].tensor;
            other_id.device_id = 5;
            tensors[i] = &other_id;
            op.poison_outputs();
            CHECK(op.call(context, op.baseline_params(), tensors, {}) == DSA_STATUS_SUCCESS);
            CHECK(op.outputs() == baseline);
        }
        // The baseline still gives the same bytes after all of that (nothing was left behind).
        op.poison_outputs();
        REQUIRE(op.run(context) == DSA_STATUS_SUCCESS);
        CHECK(op.outputs() == baseline);
        total += matrix.checked();
    }
    CHECK(total > 1000);
}

TEST_CASE("out-of-range data values are clamped or skipped, never rejected or dereferenced") {
    Context context(2);
    std::vector<OpCase> cases = all_op_cases(CaseSize{});
    int edits = 0;
    for (OpCase& op : cases)
        for (const DataEdit& edit : op.data_edits) {
            INFO(op.function << ": " << edit.arg);
            const auto hostile = run_with(op, context, edit.arg, edit.hostile);
            const auto equivalent = run_with(op, context, edit.arg, edit.equivalent);
            CHECK(hostile == equivalent);
            ++edits;
        }
    CHECK(edits >= 20);
}

TEST_CASE("the workspace queries reject what they cannot answer") {
    Context context(1);
    size_t bytes = 0;
    CHECK_FAILS_WITH(dsa_indexer_topk_workspace_size(nullptr, 4, 4, &bytes), DSA_STATUS_INVALID_ARGUMENT, "context");
    CHECK_FAILS_WITH(dsa_indexer_topk_workspace_size(context, 4, 4, nullptr), DSA_STATUS_INVALID_ARGUMENT, "bytes");
    CHECK_FAILS_WITH(dsa_indexer_topk_workspace_size(context, -1, 4, &bytes), DSA_STATUS_INVALID_ARGUMENT, "num_queries");
    CHECK_FAILS_WITH(dsa_indexer_topk_workspace_size(context, 4, -1, &bytes), DSA_STATUS_INVALID_ARGUMENT, "num_tokens");
    CHECK_FAILS_WITH(dsa_attention_workspace_size(nullptr, nullptr, 4, 4, &bytes), DSA_STATUS_INVALID_ARGUMENT, "context");
    CHECK_FAILS_WITH(dsa_attention_workspace_size(context, nullptr, 4, 4, nullptr), DSA_STATUS_INVALID_ARGUMENT, "bytes");
    CHECK_FAILS_WITH(dsa_attention_workspace_size(context, nullptr, INT64_MIN, 4, &bytes), DSA_STATUS_INVALID_ARGUMENT,
                     "num_queries");
    dsa_topk_params_t params = topk_params(0);
    CHECK_FAILS_WITH(dsa_attention_workspace_size(context, &params, 4, 4, &bytes), DSA_STATUS_INVALID_ARGUMENT, "k");
    params = topk_params(8);
    params.struct_size = 2;
    CHECK_FAILS_WITH(dsa_attention_workspace_size(context, &params, 4, 4, &bytes), DSA_STATUS_INVALID_ARGUMENT,
                     "topk_params");
    // Sizes whose byte count does not fit: an error, not a wrapped-around small number.
    CHECK_FAILS_WITH(dsa_indexer_topk_workspace_size(context, INT64_MAX, INT64_MAX, &bytes), DSA_STATUS_SHAPE_MISMATCH,
                     "num_");
    params = topk_params(INT32_MAX);
    CHECK_FAILS_WITH(dsa_attention_workspace_size(context, &params, INT64_MAX / 2, 1, &bytes), DSA_STATUS_SHAPE_MISMATCH,
                     "num_");
    CHECK(dsa_indexer_topk_workspace_size(context, 0, 0, &bytes) == DSA_STATUS_SUCCESS);
    CHECK(bytes == 0);

    dsa_sparse_attention_backward_params_t backward;
    REQUIRE(dsa_sparse_attention_backward_params_init(&backward) == DSA_STATUS_SUCCESS);
    auto backward_size = [&](const dsa_context_t* ctx, int64_t rows, int64_t topk, int64_t tokens, int64_t d_qk,
                             size_t* out) {
        return dsa_sparse_attention_backward_workspace_size(ctx, &backward, rows, topk, tokens, d_qk, out);
    };
    CHECK_FAILS_WITH(backward_size(nullptr, 4, 4, 4, 4, &bytes), DSA_STATUS_INVALID_ARGUMENT, "context");
    CHECK_FAILS_WITH(backward_size(context, 4, 4, 4, 4, nullptr), DSA_STATUS_INVALID_ARGUMENT, "bytes");
    CHECK_FAILS_WITH(backward_size(context, -1, 4, 4, 4, &bytes), DSA_STATUS_INVALID_ARGUMENT, "num_queries");
    CHECK_FAILS_WITH(backward_size(context, 4, -1, 4, 4, &bytes), DSA_STATUS_INVALID_ARGUMENT, "topk");
    CHECK_FAILS_WITH(backward_size(context, 4, 4, INT64_MIN, 4, &bytes), DSA_STATUS_INVALID_ARGUMENT, "num_tokens");
    CHECK_FAILS_WITH(backward_size(context, 4, 4, 4, -1, &bytes), DSA_STATUS_INVALID_ARGUMENT, "d_qk");
    backward.struct_size = 3;
    CHECK_FAILS_WITH(backward_size(context, 4, 4, 4, 4, &bytes), DSA_STATUS_INVALID_ARGUMENT, "params");
    REQUIRE(dsa_sparse_attention_backward_params_init(&backward) == DSA_STATUS_SUCCESS);
    backward.mode = 7;
    CHECK_FAILS_WITH(backward_size(context, 4, 4, 4, 4, &bytes), DSA_STATUS_INVALID_ARGUMENT, "mode");
    backward.mode = DSA_SPARSE_ATTENTION_BACKWARD_DETERMINISTIC;
    std::vector<uint64_t> newer(sizeof backward / 8 + 3, 0);  // a newer caller's struct, an unknown field set
    std::memcpy(newer.data(), &backward, sizeof backward);
    reinterpret_cast<dsa_sparse_attention_backward_params_t*>(newer.data())->struct_size = sizeof backward + 16;
    reinterpret_cast<uint8_t*>(newer.data())[sizeof backward + 15] = 1;
    CHECK_FAILS_WITH(dsa_sparse_attention_backward_workspace_size(
                         context, reinterpret_cast<dsa_sparse_attention_backward_params_t*>(newer.data()), 4, 4, 4, 4,
                         &bytes),
                     DSA_STATUS_UNSUPPORTED, "params");
    // Every factor of the scratch size past what int64 bytes hold (under UBSan in CI: no wrap on the way).
    const int64_t big = INT64_MAX / 2;
    for (const std::vector<int64_t>& counts : std::vector<std::vector<int64_t>>{
             {INT64_MAX, INT64_MAX, 1, 1}, {big, 2, 1, 1}, {1, big, 1, 1}, {1, 1, INT64_MAX, 1}, {1, 1, 1, INT64_MAX},
             {int64_t(1) << 31, int64_t(1) << 31, 1, int64_t(1) << 20}, {1, 1, INT64_MAX / 8, 1}}) {
        INFO(counts[0] << " rows, topk " << counts[1] << ", " << counts[2] << " tokens, d_qk " << counts[3]);
        CHECK_FAILS_WITH(backward_size(context, counts[0], counts[1], counts[2], counts[3], &bytes),
                         DSA_STATUS_SHAPE_MISMATCH, "num_");
    }
    CHECK(backward_size(context, 0, 0, 0, 0, &bytes) == DSA_STATUS_SUCCESS);
    CHECK(backward_size(context, 1 << 20, 2048, 1 << 20, 576, &bytes) == DSA_STATUS_SUCCESS);
    CHECK(bytes > 0);
}

TEST_CASE("every *_params_init and context query rejects NULL, naming it") {
    CHECK_FAILS_WITH(dsa_quantize_fp8_params_init(nullptr), DSA_STATUS_INVALID_ARGUMENT, "params");
    CHECK_FAILS_WITH(dsa_hadamard_params_init(nullptr), DSA_STATUS_INVALID_ARGUMENT, "params");
    CHECK_FAILS_WITH(dsa_topk_params_init(nullptr), DSA_STATUS_INVALID_ARGUMENT, "params");
    CHECK_FAILS_WITH(dsa_indexer_params_init(nullptr), DSA_STATUS_INVALID_ARGUMENT, "params");
    CHECK_FAILS_WITH(dsa_sparse_attention_params_init(nullptr), DSA_STATUS_INVALID_ARGUMENT, "params");
    CHECK_FAILS_WITH(dsa_context_options_init(nullptr), DSA_STATUS_INVALID_ARGUMENT, "options");
    Context context(1);
    int32_t value = 0;
    dsa_device_type_t device = 0;
    CHECK_FAILS_WITH(dsa_context_num_threads(nullptr, &value), DSA_STATUS_INVALID_ARGUMENT, "context");
    CHECK_FAILS_WITH(dsa_context_device(context, nullptr, &value), DSA_STATUS_INVALID_ARGUMENT, "device_type");
    CHECK_FAILS_WITH(dsa_context_device(context, &device, nullptr), DSA_STATUS_INVALID_ARGUMENT, "device_id");
    dsa_tensor_t tensor;
    CHECK_FAILS_WITH(dsa_tensor_init_contiguous(&tensor, &value, 1, nullptr, DSA_DTYPE_I32, DSA_DEVICE_CPU, 0),
                     DSA_STATUS_INVALID_ARGUMENT, "shape");
    const int64_t shape[1] = {1};
    CHECK_FAILS_WITH(dsa_tensor_init_contiguous(&tensor, &value, -1, shape, DSA_DTYPE_I32, DSA_DEVICE_CPU, 0),
                     DSA_STATUS_INVALID_ARGUMENT, "ndim");
    CHECK_FAILS_WITH(dsa_tensor_init_contiguous(&tensor, &value, 1, shape, DSA_DTYPE_I32, 7, 0),
                     DSA_STATUS_DEVICE_MISMATCH, "device_type");
    const int64_t bytes_overflow[1] = {int64_t(1) << 62};  // elements fit int64, bytes do not
    CHECK_FAILS_WITH(dsa_tensor_init_contiguous(&tensor, &value, 1, bytes_overflow, DSA_DTYPE_I32, DSA_DEVICE_CPU, 0),
                     DSA_STATUS_SHAPE_MISMATCH, "tensor");
    // A context option struct from a newer caller with an unknown field set.
    std::vector<uint64_t> newer(sizeof(dsa_context_options_t) / 8 + 3, 0);
    dsa_context_options_init(reinterpret_cast<dsa_context_options_t*>(newer.data()));
    reinterpret_cast<dsa_context_options_t*>(newer.data())->struct_size = sizeof(dsa_context_options_t) + 16;
    dsa_context_t* created = nullptr;
    CHECK(dsa_context_create(&created, reinterpret_cast<dsa_context_options_t*>(newer.data())) == DSA_STATUS_SUCCESS);
    dsa_context_destroy(created);
    reinterpret_cast<uint8_t*>(newer.data())[sizeof(dsa_context_options_t) + 3] = 1;
    CHECK_FAILS_WITH(dsa_context_create(&created, reinterpret_cast<dsa_context_options_t*>(newer.data())),
                     DSA_STATUS_UNSUPPORTED, "options");
    CHECK(created == nullptr);
}

TEST_CASE("inputs with stride-0 dimensions of huge extent: answered without overflow") {
    // A stride-0 input spans one element whatever its extent, so extents up to 2^62 pass the
    // tensor checks; the sizes derived from them (slots, pages * 64) must not overflow (UBSan in
    // CI) and must not turn into reads. Only extents that do not set a loop count are listed.
    struct Huge {
        const char* function;
        const char* arg;
        std::vector<int> dims;
    };
    const Huge huge[] = {
        {"dsa_sparse_attention", "kv", {0}},
        {"dsa_sparse_attention_paged", "kv_cache", {0, 1}},
        {"dsa_sparse_attention_paged (FP8 cache)", "kv_cache", {0, 1}},
        {"dsa_topk", "block_table", {1}},
        {"dsa_indexer_logits_paged", "k_cache", {0}},
        {"dsa_indexer_logits_paged", "block_table", {1}},
        {"dsa_indexer_topk_paged", "k_cache", {0}},
        {"dsa_indexer_topk_paged", "block_table", {1}},
        {"dsa_attention_paged", "index_k_cache", {0}},
        {"dsa_attention_paged", "block_table", {1}},
        {"dsa_attention_paged", "kv_cache", {0, 1}},
    };
    Context context(2);
    std::vector<OpCase> cases = all_op_cases(CaseSize{});
    int checked = 0;
    for (OpCase& op : cases)
        for (const Huge& h : huge) {
            if (op.function != h.function) continue;
            for (int64_t extent : {int64_t(1) << 31, int64_t(1) << 40, int64_t(1) << 62}) {
                INFO(op.function << ": " << h.arg << " extent " << extent);
                Arg& a = op.arg(h.arg);
                const dsa_tensor_t saved = a.tensor;
                for (int axis : h.dims) a.tensor.shape[axis] = extent, a.tensor.strides[axis] = 0;
                op.poison_outputs();
                const std::vector<std::vector<uint8_t>> poisoned = op.outputs();
                const dsa_status_t status = op.run(context);
                CHECK_MESSAGE((status == DSA_STATUS_SUCCESS || status == DSA_STATUS_SHAPE_MISMATCH),
                              dsa_last_error_message());
                if (status != DSA_STATUS_SUCCESS) CHECK(op.outputs() == poisoned);
                a.tensor = saved;
                ++checked;
            }
        }
    CHECK(checked == 3 * 11);
}

TEST_CASE("block tables without pages (NULL data) make every slot -1") {
    // Found by the fuzzer: an empty table's row address was computed from its NULL data.
    Context context(2);
    for (const char* function : {"dsa_topk", "dsa_indexer_topk_paged", "dsa_indexer_logits_paged", "dsa_attention_paged"}) {
        INFO(function);
        std::vector<OpCase> cases = all_op_cases(CaseSize{});
        OpCase* op = nullptr;
        for (OpCase& c : cases)
            if (c.function == function) op = &c;
        REQUIRE(op != nullptr);
        Arg& table = op->arg("block_table");
        table.tensor.shape[1] = 0;
        table.tensor.data = nullptr;
        op->poison_outputs();
        REQUIRE_MESSAGE(op->run(context) == DSA_STATUS_SUCCESS, dsa_last_error_message());
        for (const char* name : {"indices", "slots", "selected"})
            for (Arg& a : op->args)
                if (a.name == name) {
                    const int32_t* values = reinterpret_cast<const int32_t*>(a.data());
                    CHECK(std::all_of(values, values + a.numel(), [](int32_t v) { return v == -1; }));
                }
    }
}

namespace {

// Fills every element of a float (f32, bf16) or e4m3-code input with one special value.
enum class Special { huge, tiny, infinite, nan, equal };
bool fill_special(Arg& a, Special special) {
    const int64_t count = a.numel();
    const float f32 = special == Special::huge ? 3e38f
                      : special == Special::tiny ? 1e-40f
                      : special == Special::infinite ? INFINITY
                      : special == Special::nan ? NAN
                                                : 0.5f;
    switch (a.tensor.dtype) {
        case DSA_DTYPE_F32:
            for (int64_t i = 0; i < count; ++i) {
                const float value = special == Special::infinite && i % 2 ? -f32 : f32;
                std::memcpy(a.data() + 4 * i, &value, 4);
            }
            return true;
        case DSA_DTYPE_BF16:
            for (int64_t i = 0; i < count; ++i) {
                const uint16_t value = dsa::float_to_bf16(special == Special::infinite && i % 2 ? -f32 : f32);
                std::memcpy(a.data() + 2 * i, &value, 2);
            }
            return true;
        case DSA_DTYPE_FP8_E4M3: case DSA_DTYPE_U8: {
            // e4m3: 448 (0x7e), the smallest subnormal (0x01), NaN (0x7f), 0.5 (0x30); no infinity.
            const uint8_t code = special == Special::huge ? 0x7e
                                 : special == Special::tiny ? 0x01
                                 : special == Special::nan ? 0x7f
                                 : special == Special::equal ? 0x30
                                                             : 0x7e;
            std::memset(a.data(), code, static_cast<size_t>(count));
            return true;
        }
        default: return false;
    }
}

// Inputs whose NaN makes every score of the op's selection NaN (in the one-call layer, "q" is
// the attention's query, which the selection does not see).
bool drives_scores(OpCase& op, const std::string& name) {
    bool layer = false;
    for (const Arg& a : op.args) layer = layer || a.name == "index_q";
    const std::vector<std::string> scored =
        layer ? std::vector<std::string>{"index_q", "index_weights", "index_k", "index_k_scale", "index_k_cache"}
              : std::vector<std::string>{"scores", "q", "weights", "k", "k_scale", "k_cache"};
    return std::find(scored.begin(), scored.end(), name) != scored.end();
}
bool is_selection(const std::string& name) { return name == "indices" || name == "slots" || name == "selected"; }

}  // namespace

TEST_CASE("numerical robustness: huge, tiny, infinite, NaN and all-equal inputs") {
    // Every op accepts them (they are data), stays deterministic across thread counts, writes
    // every output it owns, and never turns NaN into a valid-looking index: with NaN scores a
    // selection holds only the forced sink and local tokens (n_sink = n_local = 1 here) and -1.
    Context threaded(3), serial(1);
    const CaseSize size{9, 70, 3};
    int checked = 0;
    for (const OpCaseBuilder& build : op_case_builders())
        for (Special special : {Special::huge, Special::tiny, Special::infinite, Special::nan, Special::equal}) {
            OpCase probe = build(size);
            for (size_t i = 0; i < probe.args.size(); ++i) {
                OpCase op = build(size);
                Arg& a = op.args[i];
                // Byte caches get the code in every byte: their scale fields then read as large floats.
                if (a.role != Role::input || !fill_special(a, special)) continue;
                INFO(op.function << ": " << a.name << " all special value " << static_cast<int>(special));
                op.poison_outputs();
                REQUIRE_MESSAGE(op.run(threaded) == DSA_STATUS_SUCCESS, dsa_last_error_message());
                const auto first = op.outputs();
                op.poison_outputs();
                REQUIRE(op.run(serial) == DSA_STATUS_SUCCESS);
                CHECK(op.outputs() == first);
                for (Arg& out : op.args) {
                    if (out.role != Role::output || !is_selection(out.name)) continue;
                    const int32_t* values = reinterpret_cast<const int32_t*>(out.data());
                    const int64_t k = out.tensor.shape[out.tensor.ndim - 1];
                    for (int64_t row = 0; row * k < out.numel(); ++row) {
                        int64_t valid = 0;
                        for (int64_t j = 0; j < k; ++j) {
                            CHECK(values[row * k + j] >= -1);
                            valid += values[row * k + j] >= 0;
                        }
                        if (special == Special::nan && drives_scores(op, a.name)) CHECK(valid <= 2);
                    }
                }
                ++checked;
            }
        }
    CHECK(checked > 150);
}

TEST_CASE("numerical robustness: NaN and Inf in quantisation and all-equal top-k rows") {
    Context context(2);
    // NaN and +-Inf never reach a scale: scales stay finite and positive, NaN stays a NaN code.
    OpCase quantize = quantize_case(CaseSize{4, 40, 2});
    float* x = reinterpret_cast<float*>(quantize.arg("x").data());
    x[0] = NAN, x[1] = INFINITY, x[2] = -INFINITY, x[300] = NAN;
    for (int i = 128; i < 256; ++i) x[i] = NAN;  // a group with no finite value
    quantize.poison_outputs();
    REQUIRE(quantize.run(context) == DSA_STATUS_SUCCESS);
    const uint8_t* q = quantize.arg("q").data();
    const float* scales = reinterpret_cast<const float*>(quantize.arg("scales").data());
    for (int64_t g = 0; g < quantize.arg("scales").numel(); ++g) CHECK((std::isfinite(scales[g]) && scales[g] > 0));
    CHECK((q[0] & 0x7f) == 0x7f);
    CHECK(q[1] == 0x7e);  // +448
    CHECK(q[2] == 0xfe);  // -448
    CHECK((q[300] & 0x7f) == 0x7f);

    // All-equal scores: ties go to the smallest indices, in every order, with and without windows.
    std::vector<float> scores(3 * 50, 0.25f);
    std::vector<int32_t> out(3 * 5, -7), starts = {0, 10, 45}, ends = {50, 13, 50};
    dsa_tensor_t st = view(scores.data(), {3, 50}, DSA_DTYPE_F32), it = view(out.data(), {3, 5}, DSA_DTYPE_I32);
    dsa_tensor_t rs = view(starts.data(), {3}, DSA_DTYPE_I32), re = view(ends.data(), {3}, DSA_DTYPE_I32);
    for (dsa_topk_order_t order : {DSA_TOPK_ORDER_SCORE, DSA_TOPK_ORDER_INDEX}) {
        const dsa_topk_params_t params = topk_params(5, order);
        REQUIRE(dsa_topk(context, &params, &st, &rs, &re, nullptr, &it, nullptr) == DSA_STATUS_SUCCESS);
        CHECK(out == std::vector<int32_t>{0, 1, 2, 3, 4, 10, 11, 12, -1, -1, 45, 46, 47, 48, 49});
    }
    // NaN rows: nothing is selected; -inf is least preferred but valid.
    std::fill(scores.begin(), scores.begin() + 50, NAN);
    std::fill(scores.begin() + 50, scores.begin() + 100, -INFINITY);
    const dsa_topk_params_t params = topk_params(5, DSA_TOPK_ORDER_INDEX);
    REQUIRE(dsa_topk(context, &params, &st, &rs, &re, nullptr, &it, nullptr) == DSA_STATUS_SUCCESS);
    CHECK(std::vector<int32_t>(out.begin(), out.begin() + 10) == std::vector<int32_t>{-1, -1, -1, -1, -1, 10, 11, 12, -1, -1});
}
