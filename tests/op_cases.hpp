// A valid call of every tensor op of the C API, described as data: each argument with the rules
// its documentation states (accepted dtypes, which last strides must be 1, which extents are
// free, which tensors may be NULL), its bytes (fresh random values, never zeros) and one uniform
// way to call the op. The validation matrix mutates these calls one argument at a time; the
// determinism and concurrency tests run them as they are. A new op adds one builder here and is
// covered by all three, and by the fuzzer (append it to op_case_builders(): see there).
#pragma once

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "support.hpp"

namespace dsa_test {

enum class Role { input, output };

// One tensor argument: a baseline view of `storage` plus what the op's documentation allows.
struct Arg {
    std::string name;
    Role role = Role::input;
    bool optional = false;            // NULL is a valid value (with its own meaning)
    bool contiguous_last = false;     // the last dimension must have stride 1
    bool any_rank = false;            // the rank is free (any number of leading dimensions; or a
                                      // scalar, which may be [] or [1])
    uint32_t free_dims = 0;           // bit d: the extent of dimension d is tied to nothing else
    std::vector<dsa_dtype_t> dtypes;  // the dtypes the op accepts for this argument
    std::string may_alias;            // an output: the input it may be exactly (in place)
    std::vector<uint64_t> storage;    // the bytes the view spans, rounded up to 8
    size_t bytes = 0;
    dsa_tensor_t tensor{};

    uint8_t* data() { return reinterpret_cast<uint8_t*>(storage.data()); }
    int64_t numel() const {
        int64_t count = 1;
        for (int axis = 0; axis < tensor.ndim; ++axis) count *= tensor.shape[axis];
        return count;
    }
};

// One params struct: the bytes its *_params_init wrote, then changed by the case.
struct ParamsArg {
    std::string name;
    std::vector<uint64_t> storage;
    size_t size = 0;
    bool required = false;  // NULL is rejected (a field has no default)
};

// Values of an int32/int64 data tensor that the op must clamp or skip (never reject, never
// dereference out of range): `hostile` written over the first elements must give exactly the
// results of `equivalent` written there.
struct DataEdit {
    std::string arg;
    std::vector<int64_t> hostile;
    std::vector<int64_t> equivalent;
};

struct WorkspaceArg {
    void* data = nullptr;
    size_t bytes = 0;
};

using Tensors = std::vector<const dsa_tensor_t*>;
using ParamsList = std::vector<const void*>;
using OpCall = std::function<dsa_status_t(dsa_context_t*, const ParamsList&, const Tensors&, WorkspaceArg)>;

struct OpCase {
    std::string function;
    std::vector<Arg> args;
    std::vector<ParamsArg> params;
    OpCall call;
    // The op's workspace query; empty when the op takes no workspace.
    std::function<dsa_status_t(dsa_context_t*, size_t*)> workspace_size;
    // run() passes a workspace of the size the query gives for the context it runs on (else
    // NULL: the op allocates its own scratch).
    bool run_with_workspace = false;
    // The scratch the op allocates for itself when called without a workspace, for these params
    // (empty: none that the params can grow); the fuzzer keeps such calls within its memory bound.
    std::function<dsa_status_t(dsa_context_t*, const ParamsList&, size_t*)> own_scratch;
    std::vector<DataEdit> data_edits;

    Arg& arg(const std::string& name) {
        for (Arg& a : args)
            if (a.name == name) return a;
        FAIL("no argument " << name << " in " << function);
        return args.front();
    }
    Tensors baseline_tensors() const {
        Tensors tensors;
        for (const Arg& a : args) tensors.push_back(&a.tensor);
        return tensors;
    }
    ParamsList baseline_params() const {
        ParamsList list;
        for (const ParamsArg& p : params) list.push_back(p.storage.data());
        return list;
    }
    dsa_status_t run(dsa_context_t* context) const {
        std::vector<uint64_t> scratch;  // operator new: 16-byte aligned, as workspaces must be
        WorkspaceArg workspace;
        if (run_with_workspace) {
            size_t bytes = 0;
            const dsa_status_t status = workspace_size(context, &bytes);
            if (status != DSA_STATUS_SUCCESS) return status;
            scratch.assign(bytes / 8 + 1, 0);
            workspace = {scratch.data(), bytes};
        }
        return call(context, baseline_params(), baseline_tensors(), workspace);
    }
    void poison_outputs(uint8_t byte = 0xA5) {
        for (Arg& a : args)
            if (a.role == Role::output) std::memset(a.data(), byte, a.storage.size() * sizeof(uint64_t));
    }
    // The bytes of every output, in argument order.
    std::vector<std::vector<uint8_t>> outputs() {
        std::vector<std::vector<uint8_t>> result;
        for (Arg& a : args)
            if (a.role == Role::output) result.emplace_back(a.data(), a.data() + a.bytes);
        return result;
    }
};

// ---- Arguments --------------------------------------------------------------------------------

inline Arg make_arg(const std::string& name, Role role, dsa_dtype_t dtype, const std::vector<int64_t>& shape,
                    std::vector<dsa_dtype_t> accepted) {
    Arg a;
    a.name = name;
    a.role = role;
    a.dtypes = std::move(accepted);
    int64_t count = 1;
    for (int64_t extent : shape) count *= extent;
    a.bytes = static_cast<size_t>(count) * dsa_dtype_size(dtype);
    a.storage.assign(a.bytes / 8 + 1, 0);
    const dsa_status_t status = dsa_tensor_init_contiguous(&a.tensor, a.storage.data(), static_cast<int32_t>(shape.size()),
                                                           shape.data(), dtype, DSA_DEVICE_CPU, 0);
    REQUIRE_MESSAGE(status == DSA_STATUS_SUCCESS, dsa_last_error_message());
    return a;
}
inline Arg input(const std::string& name, dsa_dtype_t dtype, const std::vector<int64_t>& shape,
                 std::vector<dsa_dtype_t> accepted) {
    return make_arg(name, Role::input, dtype, shape, std::move(accepted));
}
inline Arg output(const std::string& name, dsa_dtype_t dtype, const std::vector<int64_t>& shape,
                  std::vector<dsa_dtype_t> accepted) {
    return make_arg(name, Role::output, dtype, shape, std::move(accepted));
}
inline Arg contiguous(Arg a) {
    a.contiguous_last = true;
    return a;
}
inline Arg optional(Arg a) {
    a.optional = true;
    return a;
}
inline Arg free_dims(Arg a, uint32_t dims) {
    a.free_dims = dims;
    return a;
}
inline Arg any_rank(Arg a) {
    a.any_rank = true;
    return a;
}

inline Arg filled_f32(Arg a, uint32_t seed, float low = -1.0f, float high = 1.0f) {
    const std::vector<float> values = random_floats(static_cast<size_t>(a.numel()), seed, low, high);
    if (!values.empty()) std::memcpy(a.data(), values.data(), values.size() * sizeof(float));
    return a;
}
// Values in [low, high) as the argument's dtype holds them: f32, or bf16 rounded to nearest.
inline Arg filled_real(Arg a, uint32_t seed, float low = -1.0f, float high = 1.0f) {
    if (a.tensor.dtype != DSA_DTYPE_BF16) return filled_f32(std::move(a), seed, low, high);
    const std::vector<uint16_t> values = to_bf16(random_floats(static_cast<size_t>(a.numel()), seed, low, high));
    if (!values.empty()) std::memcpy(a.data(), values.data(), values.size() * sizeof(uint16_t));
    return a;
}
// e4m3 codes, never NaN.
inline Arg filled_codes(Arg a, uint32_t seed) {
    std::mt19937 engine(seed);
    for (int64_t i = 0; i < a.numel(); ++i) {
        const uint8_t code = static_cast<uint8_t>(engine() & 0xff);
        a.data()[i] = (code & 0x7f) == 0x7f ? code ^ 1 : code;
    }
    return a;
}
template <typename T> Arg filled(Arg a, const std::vector<T>& values) {
    REQUIRE(static_cast<int64_t>(values.size()) == a.numel());
    REQUIRE(sizeof(T) == dsa_dtype_size(a.tensor.dtype));
    if (!values.empty()) std::memcpy(a.data(), values.data(), values.size() * sizeof(T));
    return a;
}
// FP8 MLA cache entries (DSA_SPEC 7.2): finite codes, power-of-two scales, bf16 rope part.
inline Arg filled_mla_cache(Arg a, uint32_t seed) {
    std::mt19937 engine(seed);
    for (int64_t e = 0; e < a.numel() / 656; ++e) {
        uint8_t* entry = a.data() + e * 656;
        for (int i = 0; i < 512; ++i) {
            const uint8_t code = static_cast<uint8_t>(engine() & 0xff);
            entry[i] = (code & 0x7f) == 0x7f ? code ^ 1 : code;
        }
        for (int g = 0; g < 4; ++g) {
            const float scale = std::ldexp(1.0f, static_cast<int>(engine() % 8) - 12);
            std::memcpy(entry + 512 + 4 * g, &scale, sizeof scale);
        }
        for (int i = 0; i < 64; ++i) {
            const uint16_t rope = dsa::float_to_bf16(static_cast<float>(static_cast<int>(engine() % 2001) - 1000) / 1000.0f);
            std::memcpy(entry + 528 + 2 * i, &rope, sizeof rope);
        }
    }
    return a;
}

template <typename Params> ParamsArg make_params(const std::string& name, const Params& value, bool required = false) {
    ParamsArg p;
    p.name = name;
    p.size = sizeof(Params);
    p.storage.assign((sizeof(Params) + 7) / 8, 0);
    std::memcpy(p.storage.data(), &value, sizeof(Params));
    p.required = required;
    return p;
}
template <typename Params> const Params* params_at(const ParamsList& list, size_t i) {
    return static_cast<const Params*>(list[i]);
}

// ---- The cases ----------------------------------------------------------------------------------

// `rows` query (or vector) rows and `tokens` key tokens; the other extents are fixed and small.
struct CaseSize {
    int64_t rows = 6;
    int64_t tokens = 40;
    uint32_t seed = 1;
};

constexpr int64_t kCaseIndexerHeads = 2, kCaseIndexerDim = 8, kCasePageTokens = 64;
constexpr int64_t kCaseTopk = 8, kCaseHeads = 2, kCaseDqk = 16, kCaseDv = 8;

// Windows [start, end) in [0, tokens]: causal at the end, some ragged starts, one empty row.
inline void causal_windows(int64_t rows, int64_t tokens, uint32_t seed, std::vector<int32_t>* starts,
                           std::vector<int32_t>* ends) {
    std::mt19937 engine(seed);
    starts->assign(rows, 0);
    ends->assign(rows, 0);
    for (int64_t t = 0; t < rows; ++t) {
        const int64_t end = tokens - rows + t + 1;
        (*ends)[t] = static_cast<int32_t>(end < 0 ? 0 : end);
        (*starts)[t] = t % 3 == 1 ? static_cast<int32_t>(engine() % ((*ends)[t] + 1)) : 0;
    }
    if (rows > 2) (*starts)[2] = (*ends)[2];
}

inline std::vector<int64_t> distinct_slots(int64_t count, int64_t slots, uint32_t seed) {
    std::vector<int64_t> all(slots);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), std::mt19937(seed));
    std::vector<int64_t> chosen(count);
    for (int64_t i = 0; i < count; ++i) chosen[i] = all[i % slots];
    if (count > 1) chosen[1] = -1;  // a padding token
    return chosen;
}

inline std::vector<int32_t> random_selection(int64_t count, int64_t slots, uint32_t seed) {
    std::mt19937 engine(seed);
    std::vector<int32_t> values(count);
    for (int32_t& v : values) v = static_cast<int32_t>(engine() % (slots + 1)) - 1;  // -1 padding included
    return values;
}

inline std::vector<int32_t> random_lengths(int64_t count, int64_t k, uint32_t seed) {
    std::mt19937 engine(seed);
    std::vector<int32_t> values(count);
    for (int32_t& v : values) v = static_cast<int32_t>(engine() % (k + 1));
    return values;
}

inline dsa_topk_params_t case_topk_params(int32_t page_size) {
    dsa_topk_params_t params = topk_params(kCaseTopk, DSA_TOPK_ORDER_SCORE, 1, 1);
    params.page_size = page_size;
    return params;
}
inline dsa_sparse_attention_params_t case_attention_params(int32_t d_v) {
    dsa_sparse_attention_params_t params;
    REQUIRE(dsa_sparse_attention_params_init(&params) == DSA_STATUS_SUCCESS);
    params.scale = 0.3f;
    params.d_v = d_v;
    return params;
}
inline dsa_quantize_fp8_params_t case_quantize_params(dsa_scale_format_t format) {
    dsa_quantize_fp8_params_t params;
    REQUIRE(dsa_quantize_fp8_params_init(&params) == DSA_STATUS_SUCCESS);
    params.scale_format = format;
    return params;
}
inline dsa_indexer_params_t case_indexer_params() {
    dsa_indexer_params_t params;
    REQUIRE(dsa_indexer_params_init(&params) == DSA_STATUS_SUCCESS);
    return params;
}

// ks, ke [rows]: causal_windows, and the edits that clamp them.
inline void add_row_windows(OpCase& c, const CaseSize& s, uint32_t seed) {
    std::vector<int32_t> starts, ends;
    causal_windows(s.rows, s.tokens, seed, &starts, &ends);
    c.args.push_back(filled(input("ks", DSA_DTYPE_I32, {s.rows}, {DSA_DTYPE_I32}), starts));
    c.args.push_back(filled(input("ke", DSA_DTYPE_I32, {s.rows}, {DSA_DTYPE_I32}), ends));
    c.data_edits.push_back({"ks", {INT32_MIN, -5}, {0, 0}});
    c.data_edits.push_back({"ke", {INT32_MAX, s.tokens + 9}, {s.tokens, s.tokens}});
}

// q [rows, H_I, D_I], weights, k [tokens, D_I], k_scale, ks, ke (`prefix` "index_" names the
// pipeline's copies) and the edits of the windows.
inline void add_indexer_prefill(OpCase& c, const CaseSize& s, const std::string& prefix) {
    const std::vector<dsa_dtype_t> codes = {DSA_DTYPE_FP8_E4M3, DSA_DTYPE_U8};
    c.args.push_back(filled_codes(
        contiguous(input(prefix + "q", DSA_DTYPE_FP8_E4M3, {s.rows, kCaseIndexerHeads, kCaseIndexerDim}, codes)),
        s.seed));
    c.args.push_back(filled_f32(input(prefix + "weights", DSA_DTYPE_F32, {s.rows, kCaseIndexerHeads}, {DSA_DTYPE_F32}),
                                s.seed + 1));
    c.args.push_back(
        filled_codes(contiguous(input(prefix + "k", DSA_DTYPE_U8, {s.tokens, kCaseIndexerDim}, codes)), s.seed + 2));
    c.args.push_back(
        filled_f32(input(prefix + "k_scale", DSA_DTYPE_F32, {s.tokens}, {DSA_DTYPE_F32}), s.seed + 3, 0.01f, 1.0f));
    add_row_windows(c, s, s.seed + 4);
}

// Paged indexer inputs: q [B, 2, H_I, D_I], weights [B * 2, H_I], k_cache with shuffled pages,
// block_table [B, max_pages] (one page more than the tokens need), context_lens [B].
struct PagedShape {
    int64_t batch, next_n, max_pages, num_pages;
    int64_t rows() const { return batch * next_n; }
};
inline PagedShape paged_shape(const CaseSize& s) {
    PagedShape shape;
    shape.batch = s.rows / 2 > 0 ? s.rows / 2 : 1;
    shape.next_n = 2;
    shape.max_pages = (s.tokens + kCasePageTokens - 1) / kCasePageTokens + 1;
    shape.num_pages = shape.batch * shape.max_pages;
    return shape;
}
inline void add_indexer_paged(OpCase& c, const CaseSize& s, const std::string& prefix) {
    const PagedShape shape = paged_shape(s);
    const int64_t page_bytes = kCasePageTokens * (kCaseIndexerDim + 4);
    c.args.push_back(filled_codes(contiguous(input(prefix + "q", DSA_DTYPE_FP8_E4M3,
                                                   {shape.batch, shape.next_n, kCaseIndexerHeads, kCaseIndexerDim},
                                                   {DSA_DTYPE_FP8_E4M3, DSA_DTYPE_U8})),
                                  s.seed));
    c.args.push_back(filled_f32(
        input(prefix + "weights", DSA_DTYPE_F32, {shape.rows(), kCaseIndexerHeads}, {DSA_DTYPE_F32}), s.seed + 1));
    Arg cache = filled_codes(
        free_dims(contiguous(input(prefix + "k_cache", DSA_DTYPE_U8, {shape.num_pages, page_bytes}, {DSA_DTYPE_U8})), 1),
        s.seed + 2);
    for (int64_t page = 0; page < shape.num_pages; ++page)
        for (int64_t row = 0; row < kCasePageTokens; ++row) {
            const float scale = 0.05f + 0.01f * static_cast<float>((page * kCasePageTokens + row) % 13);
            std::memcpy(cache.data() + page * page_bytes + kCasePageTokens * kCaseIndexerDim + 4 * row, &scale,
                        sizeof scale);
        }
    c.args.push_back(std::move(cache));
    std::vector<int32_t> table(shape.batch * shape.max_pages);
    std::iota(table.begin(), table.end(), 0);
    std::shuffle(table.begin(), table.end(), std::mt19937(s.seed + 3));
    c.args.push_back(filled(free_dims(input("block_table", DSA_DTYPE_I32, {shape.batch, shape.max_pages},
                                            {DSA_DTYPE_I32}),
                                      1u << 1),
                            table));
    std::vector<int32_t> lens(shape.batch);
    std::mt19937 engine(s.seed + 4);
    for (int32_t& len : lens) len = static_cast<int32_t>(shape.next_n + engine() % (s.tokens - shape.next_n + 1));
    c.args.push_back(filled(input("context_lens", DSA_DTYPE_I32, {shape.batch}, {DSA_DTYPE_I32}), lens));
    c.data_edits.push_back({"block_table", {INT32_MIN, shape.num_pages, INT32_MAX}, {-1, -1, -1}});
    c.data_edits.push_back({"context_lens", {INT32_MAX}, {shape.max_pages * kCasePageTokens}});
    if (shape.batch > 1) c.data_edits.push_back({"context_lens", {lens[0], INT32_MIN}, {lens[0], 0}});
}

inline Arg selection(const std::string& name, int64_t rows) {
    return contiguous(output(name, DSA_DTYPE_I32, {rows, kCaseTopk}, {DSA_DTYPE_I32}));
}

// Sparse attention's q [rows..., H, d_qk] (bf16).
inline Arg attention_q(std::vector<int64_t> rows, int64_t d_qk, uint32_t seed) {
    rows.push_back(kCaseHeads);
    rows.push_back(d_qk);
    return filled_real(contiguous(input("q", DSA_DTYPE_BF16, rows, {DSA_DTYPE_BF16})), seed);
}
// out [rows..., H, d_v] and lse [rows..., H].
inline void add_attention_outputs(OpCase& c, std::vector<int64_t> rows, int64_t d_v) {
    std::vector<int64_t> lse_shape = rows;
    lse_shape.push_back(kCaseHeads);
    rows.push_back(kCaseHeads);
    rows.push_back(d_v);
    c.args.push_back(contiguous(output("out", DSA_DTYPE_BF16, rows, {DSA_DTYPE_BF16})));
    c.args.push_back(output("lse", DSA_DTYPE_F32, lse_shape, {DSA_DTYPE_F32}));
}
inline Arg attention_sink(uint32_t seed) {
    return optional(filled_f32(input("attn_sink", DSA_DTYPE_F32, {kCaseHeads}, {DSA_DTYPE_F32}), seed, -2.0f, 2.0f));
}

inline OpCase quantize_case(const CaseSize& s) {
    OpCase c;
    c.function = "dsa_quantize_fp8";
    c.params.push_back(make_params("params", case_quantize_params(DSA_SCALE_FORMAT_UE8M0)));
    c.args.push_back(filled_f32(
        any_rank(contiguous(input("x", DSA_DTYPE_F32, {s.rows, 256}, {DSA_DTYPE_F32, DSA_DTYPE_BF16, DSA_DTYPE_F16}))),
        s.seed, -3.0f, 3.0f));
    c.args.push_back(any_rank(contiguous(output("q", DSA_DTYPE_FP8_E4M3, {s.rows, 256}, {DSA_DTYPE_FP8_E4M3, DSA_DTYPE_U8}))));
    c.args.push_back(any_rank(output("scales", DSA_DTYPE_F32, {s.rows, 2}, {DSA_DTYPE_F32})));
    c.call = [](dsa_context_t* ctx, const ParamsList& p, const Tensors& t, WorkspaceArg) {
        return dsa_quantize_fp8(ctx, params_at<dsa_quantize_fp8_params_t>(p, 0), t[0], t[1], t[2], nullptr);
    };
    return c;
}

inline OpCase dequantize_case(const CaseSize& s) {
    OpCase c;
    c.function = "dsa_dequantize_fp8";
    c.params.push_back(make_params("params", case_quantize_params(DSA_SCALE_FORMAT_F32)));
    c.args.push_back(filled_codes(
        any_rank(contiguous(input("q", DSA_DTYPE_U8, {s.rows, 256}, {DSA_DTYPE_FP8_E4M3, DSA_DTYPE_U8}))), s.seed));
    c.args.push_back(filled_f32(any_rank(input("scales", DSA_DTYPE_F32, {s.rows, 2}, {DSA_DTYPE_F32})), s.seed + 1,
                                0.01f, 2.0f));
    c.args.push_back(any_rank(contiguous(output("y", DSA_DTYPE_BF16, {s.rows, 256}, {DSA_DTYPE_F32, DSA_DTYPE_BF16}))));
    c.call = [](dsa_context_t* ctx, const ParamsList& p, const Tensors& t, WorkspaceArg) {
        return dsa_dequantize_fp8(ctx, params_at<dsa_quantize_fp8_params_t>(p, 0), t[0], t[1], t[2], nullptr);
    };
    return c;
}

inline OpCase hadamard_case(const CaseSize& s) {
    OpCase c;
    c.function = "dsa_hadamard";
    dsa_hadamard_params_t params;
    REQUIRE(dsa_hadamard_params_init(&params) == DSA_STATUS_SUCCESS);
    c.params.push_back(make_params("params", params));
    c.args.push_back(filled_f32(any_rank(contiguous(input("x", DSA_DTYPE_F32, {s.rows, 64}, {DSA_DTYPE_F32, DSA_DTYPE_BF16}))),
                                s.seed));
    Arg y = any_rank(contiguous(output("y", DSA_DTYPE_F32, {s.rows, 64}, {DSA_DTYPE_F32})));  // y: x's dtype
    y.may_alias = "x";
    c.args.push_back(std::move(y));
    c.call = [](dsa_context_t* ctx, const ParamsList& p, const Tensors& t, WorkspaceArg) {
        return dsa_hadamard(ctx, params_at<dsa_hadamard_params_t>(p, 0), t[0], t[1], nullptr);
    };
    return c;
}

inline OpCase hadamard_quantize_case(const CaseSize& s) {
    OpCase c;
    c.function = "dsa_hadamard_quantize_fp8";
    dsa_hadamard_params_t rotation;
    REQUIRE(dsa_hadamard_params_init(&rotation) == DSA_STATUS_SUCCESS);
    c.params.push_back(make_params("hadamard_params", rotation));
    dsa_quantize_fp8_params_t quantization = case_quantize_params(DSA_SCALE_FORMAT_UE8M0);
    quantization.group_size = 32;
    c.params.push_back(make_params("quantize_params", quantization));
    c.args.push_back(filled_real(
        any_rank(contiguous(input("x", DSA_DTYPE_BF16, {s.rows, 64}, {DSA_DTYPE_F32, DSA_DTYPE_BF16, DSA_DTYPE_F16}))),
        s.seed, -3.0f, 3.0f));
    c.args.push_back(any_rank(contiguous(output("q", DSA_DTYPE_U8, {s.rows, 64}, {DSA_DTYPE_FP8_E4M3, DSA_DTYPE_U8}))));
    c.args.push_back(any_rank(output("scales", DSA_DTYPE_F32, {s.rows, 2}, {DSA_DTYPE_F32})));
    c.call = [](dsa_context_t* ctx, const ParamsList& p, const Tensors& t, WorkspaceArg) {
        return dsa_hadamard_quantize_fp8(ctx, params_at<dsa_hadamard_params_t>(p, 0),
                                         params_at<dsa_quantize_fp8_params_t>(p, 1), t[0], t[1], t[2], nullptr);
    };
    return c;
}

inline OpCase topk_case(const CaseSize& s) {
    OpCase c;
    c.function = "dsa_topk";
    const int32_t page_size = 16;
    const int64_t max_pages = (s.tokens + page_size - 1) / page_size - 1;  // the last page is beyond the table
    c.params.push_back(make_params("params", case_topk_params(page_size)));
    std::vector<float> scores = random_floats(s.rows * s.tokens, s.seed);
    for (int64_t i = 0; i < s.rows * s.tokens; i += 7) scores[i] = scores[i / 2];  // ties
    c.args.push_back(filled(free_dims(contiguous(input("scores", DSA_DTYPE_F32, {s.rows, s.tokens}, {DSA_DTYPE_F32})), 2),
                            scores));
    std::vector<int32_t> starts, ends;
    causal_windows(s.rows, s.tokens, s.seed + 1, &starts, &ends);
    c.args.push_back(optional(filled(input("row_starts", DSA_DTYPE_I32, {s.rows}, {DSA_DTYPE_I32}), starts)));
    c.args.push_back(optional(filled(input("row_ends", DSA_DTYPE_I32, {s.rows}, {DSA_DTYPE_I32}), ends)));
    std::vector<int32_t> table(s.rows * max_pages);
    std::mt19937 engine(s.seed + 2);
    for (int32_t& entry : table) entry = static_cast<int32_t>(engine() % 1000);
    c.args.push_back(optional(filled(
        free_dims(input("block_table", DSA_DTYPE_I32, {s.rows, max_pages}, {DSA_DTYPE_I32}), 1u << 1), table)));
    c.args.push_back(selection("indices", s.rows));
    c.call = [](dsa_context_t* ctx, const ParamsList& p, const Tensors& t, WorkspaceArg) {
        return dsa_topk(ctx, params_at<dsa_topk_params_t>(p, 0), t[0], t[1], t[2], t[3], t[4], nullptr);
    };
    c.data_edits.push_back({"row_starts", {INT32_MIN, -1}, {0, 0}});
    c.data_edits.push_back({"row_ends", {INT32_MAX, s.tokens + 1}, {s.tokens, s.tokens}});
    c.data_edits.push_back({"row_starts", {INT32_MAX}, {s.tokens}});  // start >= end: an empty window
    c.data_edits.push_back({"block_table", {INT32_MIN, INT32_MAX, -9}, {-1, -1, -1}});
    return c;
}

inline OpCase indexer_logits_case(const CaseSize& s) {
    OpCase c;
    c.function = "dsa_indexer_logits";
    c.params.push_back(make_params("params", case_indexer_params()));
    add_indexer_prefill(c, s, "");
    c.args.push_back(contiguous(output("logits", DSA_DTYPE_F32, {s.rows, s.tokens}, {DSA_DTYPE_F32})));
    c.call = [](dsa_context_t* ctx, const ParamsList& p, const Tensors& t, WorkspaceArg) {
        return dsa_indexer_logits(ctx, params_at<dsa_indexer_params_t>(p, 0), t[0], t[1], t[2], t[3], t[4], t[5],
                                  t[6], nullptr);
    };
    return c;
}

inline OpCase indexer_logits_paged_case(const CaseSize& s) {
    OpCase c;
    c.function = "dsa_indexer_logits_paged";
    c.params.push_back(make_params("params", case_indexer_params()));
    add_indexer_paged(c, s, "");
    const PagedShape shape = paged_shape(s);
    // max_context is the logits' width: free, here one page short of what the table addresses.
    c.args.push_back(free_dims(contiguous(output("logits", DSA_DTYPE_F32,
                                                 {shape.rows(), (shape.max_pages - 1) * kCasePageTokens + 5},
                                                 {DSA_DTYPE_F32})),
                               1u << 1));
    c.call = [](dsa_context_t* ctx, const ParamsList& p, const Tensors& t, WorkspaceArg) {
        return dsa_indexer_logits_paged(ctx, params_at<dsa_indexer_params_t>(p, 0), t[0], t[1], t[2], t[3], t[4],
                                        t[5], nullptr);
    };
    for (DataEdit& edit : c.data_edits)  // context_lens clamp to max_context here
        if (edit.arg == "context_lens" && edit.equivalent[0] == shape.max_pages * kCasePageTokens)
            edit.equivalent[0] = (shape.max_pages - 1) * kCasePageTokens + 5;
    return c;
}

inline OpCase indexer_cache_write_case(const CaseSize& s) {
    OpCase c;
    c.function = "dsa_indexer_cache_write";
    const int64_t num_pages = 2, page_bytes = kCasePageTokens * (kCaseIndexerDim + 4);
    c.args.push_back(filled_f32(
        contiguous(input("k", DSA_DTYPE_F32, {s.rows, kCaseIndexerDim}, {DSA_DTYPE_F32, DSA_DTYPE_BF16})), s.seed));
    c.args.push_back(
        filled(input("slot_mapping", DSA_DTYPE_I64, {s.rows}, {DSA_DTYPE_I64}),
               distinct_slots(s.rows, num_pages * kCasePageTokens, s.seed + 1)));
    c.args.push_back(free_dims(contiguous(output("k_cache", DSA_DTYPE_U8, {num_pages, page_bytes}, {DSA_DTYPE_U8})), 1));
    c.call = [](dsa_context_t* ctx, const ParamsList&, const Tensors& t, WorkspaceArg) {
        return dsa_indexer_cache_write(ctx, t[0], t[1], t[2], nullptr);
    };
    c.data_edits.push_back({"slot_mapping", {INT64_MIN, num_pages * kCasePageTokens, INT64_MAX}, {-1, -1, -1}});
    return c;
}

inline OpCase sparse_attention_case(const CaseSize& s) {
    OpCase c;
    c.function = "dsa_sparse_attention";
    c.params.push_back(make_params("params", case_attention_params(kCaseDv), true));
    c.args.push_back(attention_q({s.rows}, kCaseDqk, s.seed));
    c.args.push_back(
        filled_real(free_dims(contiguous(input("kv", DSA_DTYPE_BF16, {s.tokens, kCaseDqk}, {DSA_DTYPE_BF16})), 1), s.seed + 1));
    c.args.push_back(filled(free_dims(input("indices", DSA_DTYPE_I32, {s.rows, kCaseTopk}, {DSA_DTYPE_I32}), 1u << 1),
                            random_selection(s.rows * kCaseTopk, s.tokens, s.seed + 2)));
    c.args.push_back(attention_sink(s.seed + 3));
    c.args.push_back(optional(filled(input("topk_length", DSA_DTYPE_I32, {s.rows}, {DSA_DTYPE_I32}),
                                     random_lengths(s.rows, kCaseTopk, s.seed + 4))));
    add_attention_outputs(c, {s.rows}, kCaseDv);
    c.args.push_back(optional(output("max_logits", DSA_DTYPE_F32, {s.rows, kCaseHeads}, {DSA_DTYPE_F32})));
    c.call = [](dsa_context_t* ctx, const ParamsList& p, const Tensors& t, WorkspaceArg) {
        return dsa_sparse_attention(ctx, params_at<dsa_sparse_attention_params_t>(p, 0), t[0], t[1], t[2], t[3], t[4],
                                    t[5], t[6], t[7], nullptr);
    };
    c.data_edits.push_back({"indices", {INT32_MIN, s.tokens, INT32_MAX}, {-1, -1, -1}});
    c.data_edits.push_back({"topk_length", {INT32_MIN, INT32_MAX}, {0, kCaseTopk}});
    return c;
}

// The paged form over a bf16 cache [num_pages, 4, d_qk] or the FP8 MLA cache [num_pages, 8, 656].
inline OpCase sparse_attention_paged_case(const CaseSize& s, bool fp8) {
    OpCase c;
    c.function = fp8 ? "dsa_sparse_attention_paged (FP8 cache)" : "dsa_sparse_attention_paged";
    const int64_t batch = s.rows / 2 > 0 ? s.rows / 2 : 1, s_q = 2;
    const int64_t page_size = fp8 ? 8 : 4, num_pages = (s.tokens + page_size - 1) / page_size;
    const int64_t d_qk = fp8 ? 576 : kCaseDqk, d_v = fp8 ? 512 : kCaseDv;
    c.params.push_back(make_params("params", case_attention_params(static_cast<int32_t>(d_v)), true));
    c.args.push_back(attention_q({batch, s_q}, d_qk, s.seed));
    if (fp8)
        c.args.push_back(filled_mla_cache(
            free_dims(contiguous(input("kv_cache", DSA_DTYPE_U8, {num_pages, page_size, 656}, {DSA_DTYPE_BF16, DSA_DTYPE_U8})), 3),
            s.seed + 1));
    else
        c.args.push_back(filled_real(
            free_dims(contiguous(input("kv_cache", DSA_DTYPE_BF16, {num_pages, page_size, d_qk}, {DSA_DTYPE_BF16, DSA_DTYPE_U8})), 3),
            s.seed + 1));
    c.args.push_back(filled(free_dims(input("indices", DSA_DTYPE_I32, {batch, s_q, kCaseTopk}, {DSA_DTYPE_I32}), 1u << 2),
                            random_selection(batch * s_q * kCaseTopk, num_pages * page_size, s.seed + 2)));
    c.args.push_back(attention_sink(s.seed + 3));
    c.args.push_back(optional(filled(input("topk_length", DSA_DTYPE_I32, {batch, s_q}, {DSA_DTYPE_I32}),
                                     random_lengths(batch * s_q, kCaseTopk, s.seed + 4))));
    add_attention_outputs(c, {batch, s_q}, d_v);
    c.call = [](dsa_context_t* ctx, const ParamsList& p, const Tensors& t, WorkspaceArg) {
        return dsa_sparse_attention_paged(ctx, params_at<dsa_sparse_attention_params_t>(p, 0), t[0], t[1], t[2], t[3],
                                          t[4], t[5], t[6], nullptr);
    };
    c.data_edits.push_back({"indices", {INT32_MIN, num_pages * page_size, INT32_MAX}, {-1, -1, -1}});
    return c;
}

inline OpCase mla_cache_write_case(const CaseSize& s) {
    OpCase c;
    c.function = "dsa_mla_cache_write";
    const int64_t num_pages = 3, page_size = 4;
    c.args.push_back(filled_f32(contiguous(input("c_kv", DSA_DTYPE_F32, {s.rows, 512}, {DSA_DTYPE_F32, DSA_DTYPE_BF16})),
                                s.seed, -4.0f, 4.0f));
    c.args.push_back(filled_f32(contiguous(input("k_pe", DSA_DTYPE_F32, {s.rows, 64}, {DSA_DTYPE_F32})), s.seed + 1));
    c.args.push_back(filled(input("slot_mapping", DSA_DTYPE_I64, {s.rows}, {DSA_DTYPE_I64}),
                            distinct_slots(s.rows, num_pages * page_size, s.seed + 2)));
    c.args.push_back(free_dims(contiguous(output("kv_cache", DSA_DTYPE_U8, {num_pages, page_size, 656}, {DSA_DTYPE_U8})), 3));
    c.call = [](dsa_context_t* ctx, const ParamsList&, const Tensors& t, WorkspaceArg) {
        return dsa_mla_cache_write(ctx, t[0], t[1], t[2], t[3], nullptr);
    };
    c.data_edits.push_back({"slot_mapping", {INT64_MIN, num_pages * page_size, INT64_MAX}, {-1, -1, -1}});
    return c;
}

inline OpCase indexer_topk_case(const CaseSize& s) {
    OpCase c;
    c.function = "dsa_indexer_topk";
    c.params.push_back(make_params("indexer_params", case_indexer_params()));
    c.params.push_back(make_params("topk_params", case_topk_params(64)));
    add_indexer_prefill(c, s, "");
    c.args.push_back(selection("indices", s.rows));
    c.call = [](dsa_context_t* ctx, const ParamsList& p, const Tensors& t, WorkspaceArg w) {
        return dsa_indexer_topk(ctx, params_at<dsa_indexer_params_t>(p, 0), params_at<dsa_topk_params_t>(p, 1), t[0],
                                t[1], t[2], t[3], t[4], t[5], t[6], w.data, w.bytes, nullptr);
    };
    const int64_t rows = s.rows, tokens = s.tokens;
    c.workspace_size = [rows, tokens](dsa_context_t* ctx, size_t* bytes) {
        return dsa_indexer_topk_workspace_size(ctx, rows, tokens, bytes);
    };
    return c;
}

inline OpCase indexer_topk_paged_case(const CaseSize& s) {
    OpCase c;
    c.function = "dsa_indexer_topk_paged";
    c.params.push_back(make_params("indexer_params", case_indexer_params()));
    c.params.push_back(make_params("topk_params", case_topk_params(64)));
    add_indexer_paged(c, s, "");
    const PagedShape shape = paged_shape(s);
    c.args.push_back(optional(selection("indices", shape.rows())));
    c.args.push_back(optional(selection("slots", shape.rows())));
    c.call = [](dsa_context_t* ctx, const ParamsList& p, const Tensors& t, WorkspaceArg w) {
        return dsa_indexer_topk_paged(ctx, params_at<dsa_indexer_params_t>(p, 0), params_at<dsa_topk_params_t>(p, 1),
                                      t[0], t[1], t[2], t[3], t[4], t[5], t[6], w.data, w.bytes, nullptr);
    };
    c.workspace_size = [shape](dsa_context_t* ctx, size_t* bytes) {
        return dsa_indexer_topk_workspace_size(ctx, shape.rows(), shape.max_pages * kCasePageTokens, bytes);
    };
    return c;
}

// The one-call layer's three params structs and its workspace query.
inline void add_layer_params(OpCase& c) {
    c.params.push_back(make_params("indexer_params", case_indexer_params()));
    c.params.push_back(make_params("topk_params", case_topk_params(64)));
    c.params.push_back(make_params("attention_params", case_attention_params(kCaseDv), true));
}
inline std::function<dsa_status_t(dsa_context_t*, size_t*)> layer_workspace_size(int64_t rows, int64_t tokens) {
    return [rows, tokens](dsa_context_t* ctx, size_t* bytes) {
        const dsa_topk_params_t topk = case_topk_params(64);
        return dsa_attention_workspace_size(ctx, &topk, rows, tokens, bytes);
    };
}
// Without a workspace the layer allocates its selection (rows x params.k indices) itself.
inline void set_layer_own_scratch(OpCase& c, int64_t rows, int64_t tokens) {
    c.own_scratch = [rows, tokens](dsa_context_t* ctx, const ParamsList& p, size_t* bytes) {
        return dsa_attention_workspace_size(ctx, params_at<dsa_topk_params_t>(p, 1), rows, tokens, bytes);
    };
}

inline OpCase attention_case(const CaseSize& s) {
    OpCase c;
    c.function = "dsa_attention";
    add_layer_params(c);
    add_indexer_prefill(c, s, "index_");
    c.args.push_back(attention_q({s.rows}, kCaseDqk, s.seed + 10));
    c.args.push_back(filled_real(contiguous(input("kv", DSA_DTYPE_BF16, {s.tokens, kCaseDqk}, {DSA_DTYPE_BF16})), s.seed + 11));
    c.args.push_back(attention_sink(s.seed + 12));
    add_attention_outputs(c, {s.rows}, kCaseDv);
    c.args.push_back(optional(selection("selected", s.rows)));
    c.call = [](dsa_context_t* ctx, const ParamsList& p, const Tensors& t, WorkspaceArg w) {
        return dsa_attention(ctx, params_at<dsa_indexer_params_t>(p, 0), params_at<dsa_topk_params_t>(p, 1),
                             params_at<dsa_sparse_attention_params_t>(p, 2), t[0], t[1], t[2], t[3], t[4], t[5], t[6],
                             t[7], t[8], t[9], t[10], t[11], w.data, w.bytes, nullptr);
    };
    c.workspace_size = layer_workspace_size(s.rows, s.tokens);
    set_layer_own_scratch(c, s.rows, s.tokens);
    return c;
}

inline OpCase attention_paged_case(const CaseSize& s) {
    OpCase c;
    c.function = "dsa_attention_paged";
    add_layer_params(c);
    add_indexer_paged(c, s, "index_");
    const PagedShape shape = paged_shape(s);
    c.args.push_back(attention_q({shape.batch, shape.next_n}, kCaseDqk, s.seed + 10));
    c.args.push_back(filled_real(free_dims(contiguous(input("kv_cache", DSA_DTYPE_BF16,
                                                            {shape.num_pages, kCasePageTokens, kCaseDqk},
                                                            {DSA_DTYPE_BF16, DSA_DTYPE_U8})),
                                           1),
                                 s.seed + 11));
    c.args.push_back(attention_sink(s.seed + 12));
    add_attention_outputs(c, {shape.batch, shape.next_n}, kCaseDv);
    c.args.push_back(optional(selection("selected", shape.rows())));
    c.call = [](dsa_context_t* ctx, const ParamsList& p, const Tensors& t, WorkspaceArg w) {
        return dsa_attention_paged(ctx, params_at<dsa_indexer_params_t>(p, 0), params_at<dsa_topk_params_t>(p, 1),
                                   params_at<dsa_sparse_attention_params_t>(p, 2), t[0], t[1], t[2], t[3], t[4], t[5],
                                   t[6], t[7], t[8], t[9], t[10], w.data, w.bytes, nullptr);
    };
    c.workspace_size = layer_workspace_size(shape.rows(), shape.max_pages * kCasePageTokens);
    set_layer_own_scratch(c, shape.rows(), shape.max_pages * kCasePageTokens);
    return c;
}

// ---- The training ops -------------------------------------------------------------------------

// Where each tensor parameter of a C signature is in c.args, -1 for one the case leaves out (the
// call passes NULL there).
inline std::vector<int> signature_slots(const OpCase& c, std::initializer_list<const char*> signature) {
    std::vector<int> slots;
    for (const char* name : signature) {
        int slot = -1;
        for (size_t i = 0; i < c.args.size(); ++i)
            if (c.args[i].name == name) slot = static_cast<int>(i);
        slots.push_back(slot);
    }
    for (const Arg& a : c.args)
        REQUIRE_MESSAGE(std::find(signature.begin(), signature.end(), a.name) != signature.end(),
                        a.name << " is not a parameter of " << c.function);
    return slots;
}
inline const dsa_tensor_t* in_slot(const Tensors& t, const std::vector<int>& slots, size_t parameter) {
    return slots[parameter] < 0 ? nullptr : t[static_cast<size_t>(slots[parameter])];
}

// The teacher of dsa_indexer_loss: teacher_q with teacher_k [S, H_kv, d] (grouped heads) or
// [S, d] (one kv head), or teacher_probs.
enum class LossTeacher { grouped, shared_kv, probs };
constexpr int64_t kCaseTeacherHeads = 4, kCaseTeacherKvHeads = 2, kCaseTeacherDim = 12;

inline dsa_indexer_loss_params_t case_indexer_loss_params(dsa_indexer_loss_mode_t mode) {
    dsa_indexer_loss_params_t params;
    REQUIRE(dsa_indexer_loss_params_init(&params) == DSA_STATUS_SUCCESS);
    params.mode = mode;
    params.coeff = 0.7f;
    params.teacher_scale = 0.35f;
    return params;
}

// dsa_indexer_loss with every output: the student index_q [rows, H_I, D_I], index_k [tokens,
// D_I], weights, windows ks/ke (and in SPARSE mode indices [rows, k]), and the teacher. The
// dense cases read f32 queries and bf16 keys, the sparse ones the other way round, so each
// float input is seen in both dtypes.
inline OpCase indexer_loss_case(const CaseSize& s, dsa_indexer_loss_mode_t mode, LossTeacher teacher) {
    const bool sparse = mode == DSA_INDEXER_LOSS_SPARSE;
    const std::vector<dsa_dtype_t> reals = {DSA_DTYPE_F32, DSA_DTYPE_BF16};
    const dsa_dtype_t query_dtype = sparse ? DSA_DTYPE_BF16 : DSA_DTYPE_F32;
    const dsa_dtype_t key_dtype = sparse ? DSA_DTYPE_F32 : DSA_DTYPE_BF16;
    OpCase c;
    c.function = std::string("dsa_indexer_loss (") + (sparse ? "SPARSE" : "DENSE") +
                 (teacher == LossTeacher::grouped     ? ", teacher_k [S, H_kv, d])"
                  : teacher == LossTeacher::shared_kv ? ", teacher_k [S, d])"
                                                      : ", teacher_probs)");
    // Without params the mode is DENSE and teacher_scale 0, which only DENSE with teacher_probs takes.
    c.params.push_back(make_params("params", case_indexer_loss_params(mode), sparse || teacher != LossTeacher::probs));
    c.args.push_back(filled_real(contiguous(input("index_q", query_dtype, {s.rows, kCaseIndexerHeads, kCaseIndexerDim}, reals)),
                                 s.seed));
    c.args.push_back(filled_real(contiguous(input("index_k", key_dtype, {s.tokens, kCaseIndexerDim}, reals)), s.seed + 1));
    c.args.push_back(filled_real(input("weights", query_dtype, {s.rows, kCaseIndexerHeads}, reals), s.seed + 2));
    add_row_windows(c, s, s.seed + 3);
    if (sparse) {
        // k is free; entries outside the window, -1 and repeats are part of the baseline.
        c.args.push_back(filled(free_dims(contiguous(input("indices", DSA_DTYPE_I32, {s.rows, kCaseTopk}, {DSA_DTYPE_I32})),
                                          1u << 1),
                                random_selection(s.rows * kCaseTopk, s.tokens, s.seed + 4)));
        c.data_edits.push_back({"indices", {INT32_MIN, s.tokens, INT32_MAX}, {-1, -1, -1}});
    }
    if (teacher == LossTeacher::probs) {
        c.args.push_back(filled_f32(contiguous(input("teacher_probs", DSA_DTYPE_F32, {s.rows, s.tokens}, {DSA_DTYPE_F32})),
                                    s.seed + 5, 0.01f, 1.0f));
    } else {
        // With one kv head every H_q works; with H_kv = 2 an H_q one larger does not divide.
        const uint32_t heads_free = teacher == LossTeacher::shared_kv ? 1u << 1 : 0;
        c.args.push_back(filled_real(
            free_dims(contiguous(input("teacher_q", key_dtype, {s.rows, kCaseTeacherHeads, kCaseTeacherDim}, reals)),
                      heads_free),
            s.seed + 5));
        const std::vector<int64_t> k_shape =
            teacher == LossTeacher::grouped ? std::vector<int64_t>{s.tokens, kCaseTeacherKvHeads, kCaseTeacherDim}
                                            : std::vector<int64_t>{s.tokens, kCaseTeacherDim};
        c.args.push_back(filled_real(contiguous(input("teacher_k", query_dtype, k_shape, reals)), s.seed + 6));
    }
    // loss is [] or [1] (any_rank: neither rank is a mistake).
    c.args.push_back(optional(any_rank(output("loss", DSA_DTYPE_F32, sparse ? std::vector<int64_t>{1} : std::vector<int64_t>{},
                                              {DSA_DTYPE_F32}))));
    c.args.push_back(optional(output("row_loss", DSA_DTYPE_F32, {s.rows}, {DSA_DTYPE_F32})));
    c.args.push_back(optional(contiguous(
        output("d_index_q", DSA_DTYPE_F32, {s.rows, kCaseIndexerHeads, kCaseIndexerDim}, {DSA_DTYPE_F32}))));
    c.args.push_back(optional(contiguous(output("d_index_k", DSA_DTYPE_F32, {s.tokens, kCaseIndexerDim}, {DSA_DTYPE_F32}))));
    c.args.push_back(optional(contiguous(output("d_weights", DSA_DTYPE_F32, {s.rows, kCaseIndexerHeads}, {DSA_DTYPE_F32}))));
    const std::vector<int> slots =
        signature_slots(c, {"index_q", "index_k", "weights", "ks", "ke", "indices", "teacher_q", "teacher_k",
                            "teacher_probs", "loss", "row_loss", "d_index_q", "d_index_k", "d_weights"});
    c.call = [slots](dsa_context_t* ctx, const ParamsList& p, const Tensors& t, WorkspaceArg) {
        auto at = [&](size_t parameter) { return in_slot(t, slots, parameter); };
        return dsa_indexer_loss(ctx, params_at<dsa_indexer_loss_params_t>(p, 0), at(0), at(1), at(2), at(3), at(4), at(5),
                                at(6), at(7), at(8), at(9), at(10), at(11), at(12), at(13), nullptr);
    };
    return c;
}

inline dsa_sparse_attention_backward_params_t case_attention_backward_params(dsa_sparse_attention_backward_mode_t mode) {
    dsa_sparse_attention_backward_params_t params;
    REQUIRE(dsa_sparse_attention_backward_params_init(&params) == DSA_STATUS_SUCCESS);
    params.scale = 0.3f;
    params.d_v = static_cast<int32_t>(kCaseDv);
    params.mode = mode;
    return params;
}

// dsa_sparse_attention_backward over q [rows, H, d_qk] and kv [tokens, d_qk]. DETERMINISTIC:
// bf16 inputs, f32 dq, with attn_sink, topk_length and d_attn_sink, and a workspace in the
// baseline runs; FAST: f32 inputs, bf16 dq, neither of the three, the op's own scratch. lse is
// the forward's (one row +inf: no valid index there), out and dout any values.
inline OpCase sparse_attention_backward_case(const CaseSize& s, dsa_sparse_attention_backward_mode_t mode) {
    const bool deterministic = mode == DSA_SPARSE_ATTENTION_BACKWARD_DETERMINISTIC;
    const std::vector<dsa_dtype_t> reals = {DSA_DTYPE_F32, DSA_DTYPE_BF16};
    const dsa_dtype_t real = deterministic ? DSA_DTYPE_BF16 : DSA_DTYPE_F32;
    OpCase c;
    c.function = deterministic ? "dsa_sparse_attention_backward"
                               : "dsa_sparse_attention_backward (FAST, no attn_sink, topk_length, d_attn_sink)";
    c.params.push_back(make_params("params", case_attention_backward_params(mode), true));
    c.args.push_back(filled_real(contiguous(input("q", real, {s.rows, kCaseHeads, kCaseDqk}, reals)), s.seed));
    c.args.push_back(filled_real(contiguous(input("kv", real, {s.tokens, kCaseDqk}, reals)), s.seed + 1));
    c.args.push_back(filled(free_dims(contiguous(input("indices", DSA_DTYPE_I32, {s.rows, kCaseTopk}, {DSA_DTYPE_I32})), 1u << 1),
                            random_selection(s.rows * kCaseTopk, s.tokens, s.seed + 2)));
    c.data_edits.push_back({"indices", {INT32_MIN, s.tokens, INT32_MAX}, {-1, -1, -1}});
    if (deterministic) {
        c.args.push_back(attention_sink(s.seed + 3));
        c.args.push_back(optional(filled(input("topk_length", DSA_DTYPE_I32, {s.rows}, {DSA_DTYPE_I32}),
                                         random_lengths(s.rows, kCaseTopk, s.seed + 4))));
        c.data_edits.push_back({"topk_length", {INT32_MIN, INT32_MAX}, {0, kCaseTopk}});
    }
    c.args.push_back(filled_real(contiguous(input("out", real, {s.rows, kCaseHeads, kCaseDv}, reals)), s.seed + 5));
    Arg lse = filled_f32(input("lse", DSA_DTYPE_F32, {s.rows, kCaseHeads}, {DSA_DTYPE_F32}), s.seed + 6, 0.5f, 2.5f);
    reinterpret_cast<float*>(lse.data())[(s.rows - 1) * kCaseHeads] = INFINITY;
    c.args.push_back(std::move(lse));
    c.args.push_back(filled_real(contiguous(input("dout", deterministic ? DSA_DTYPE_F32 : DSA_DTYPE_BF16,
                                                  {s.rows, kCaseHeads, kCaseDv}, reals)),
                                 s.seed + 7));
    c.args.push_back(contiguous(output("dq", deterministic ? DSA_DTYPE_F32 : DSA_DTYPE_BF16,
                                       {s.rows, kCaseHeads, kCaseDqk}, {DSA_DTYPE_F32, DSA_DTYPE_BF16})));
    c.args.push_back(contiguous(output("dkv", DSA_DTYPE_F32, {s.tokens, kCaseDqk}, {DSA_DTYPE_F32})));
    if (deterministic) c.args.push_back(optional(output("d_attn_sink", DSA_DTYPE_F32, {kCaseHeads}, {DSA_DTYPE_F32})));
    const std::vector<int> slots = signature_slots(
        c, {"q", "kv", "indices", "attn_sink", "topk_length", "out", "lse", "dout", "dq", "dkv", "d_attn_sink"});
    c.call = [slots](dsa_context_t* ctx, const ParamsList& p, const Tensors& t, WorkspaceArg w) {
        auto at = [&](size_t parameter) { return in_slot(t, slots, parameter); };
        return dsa_sparse_attention_backward(ctx, params_at<dsa_sparse_attention_backward_params_t>(p, 0), at(0), at(1),
                                             at(2), at(3), at(4), at(5), at(6), at(7), at(8), at(9), at(10), w.data,
                                             w.bytes, nullptr);
    };
    const int64_t rows = s.rows, tokens = s.tokens;
    c.workspace_size = [rows, tokens, mode](dsa_context_t* ctx, size_t* bytes) {
        const dsa_sparse_attention_backward_params_t params = case_attention_backward_params(mode);
        return dsa_sparse_attention_backward_workspace_size(ctx, &params, rows, kCaseTopk, tokens, kCaseDqk, bytes);
    };
    c.run_with_workspace = deterministic;
    return c;
}

using OpCaseBuilder = std::function<OpCase(const CaseSize&)>;

// Every tensor op of dsa.h, in header order up to the training ops, then ops added later in the
// order they were added (dsa_hadamard_quantize_fp8). A fuzzer input selects a builder by one byte modulo
// their count; the committed seeds and regression inputs hold the exact position, so appending
// keeps them on their op.
inline const std::vector<OpCaseBuilder>& op_case_builders() {
    static const std::vector<OpCaseBuilder> builders = {
        quantize_case,
        dequantize_case,
        hadamard_case,
        topk_case,
        indexer_logits_case,
        indexer_logits_paged_case,
        indexer_cache_write_case,
        sparse_attention_case,
        [](const CaseSize& s) { return sparse_attention_paged_case(s, false); },
        [](const CaseSize& s) { return sparse_attention_paged_case(s, true); },
        mla_cache_write_case,
        indexer_topk_case,
        indexer_topk_paged_case,
        attention_case,
        attention_paged_case,
        [](const CaseSize& s) { return indexer_loss_case(s, DSA_INDEXER_LOSS_DENSE, LossTeacher::grouped); },
        [](const CaseSize& s) { return indexer_loss_case(s, DSA_INDEXER_LOSS_DENSE, LossTeacher::probs); },
        [](const CaseSize& s) { return indexer_loss_case(s, DSA_INDEXER_LOSS_SPARSE, LossTeacher::probs); },
        [](const CaseSize& s) { return indexer_loss_case(s, DSA_INDEXER_LOSS_SPARSE, LossTeacher::shared_kv); },
        [](const CaseSize& s) { return sparse_attention_backward_case(s, DSA_SPARSE_ATTENTION_BACKWARD_DETERMINISTIC); },
        [](const CaseSize& s) { return sparse_attention_backward_case(s, DSA_SPARSE_ATTENTION_BACKWARD_FAST); },
        hadamard_quantize_case,
    };
    return builders;
}

inline std::vector<OpCase> all_op_cases(const CaseSize& s) {
    std::vector<OpCase> cases;
    for (const OpCaseBuilder& build : op_case_builders()) cases.push_back(build(s));
    return cases;
}

}  // namespace dsa_test
