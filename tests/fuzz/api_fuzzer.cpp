// libFuzzer target for the C API on the CPU path, built with ASan + UBSan (tests/fuzz/run.sh).
// The input picks one op and a valid call of it (tests/op_cases.hpp, with fuzzed sizes and
// seed), then breaks it: tensor descriptors (NULL, dtype, rank, extents, strides, alignment,
// device, overlapping outputs), params fields, data values (windows, lengths, indices, block
// tables, slots; NaN/Inf/huge/tiny floats; NaN codes) and the workspace. Descriptors whose span
// can be backed are re-allocated to exactly that span, so the kernels really run on them and
// any read or write outside is caught. Invariants checked on every call:
//  - the status is a documented code, never DSA_STATUS_INTERNAL;
//  - a failing call leaves a message and every output byte untouched;
//  - a succeeding call gives bitwise the same outputs on a context with another thread count.
#define DOCTEST_CONFIG_IMPLEMENT
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdio>
#include <iterator>
#include <cstdlib>
#include <limits>

#include "../op_cases.hpp"

using namespace dsa_test;

namespace {

constexpr int64_t kMaxElements = int64_t(1) << 18;  // per tensor, so every call stays fast
constexpr int64_t kMaxBytes = int64_t(4) << 20;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "api_fuzzer: %s (last error: %s)\n", what, dsa_last_error_message());
    std::abort();
}

// Elements a view spans (1 + sum of (extent - 1) * stride), or -1 when check_tensor must reject
// it (bad rank, dtype, negative extent or stride, overflow) and 0 when it is empty.
int64_t span_elements(const dsa_tensor_t& t, int64_t* count) {
    *count = 0;
    if (t.ndim < 0 || t.ndim > DSA_MAX_DIMS || dsa_dtype_size(t.dtype) == 0) return -1;
    int64_t last = 0, elements = 1;
    for (int axis = 0; axis < t.ndim; ++axis) {
        if (t.shape[axis] < 0 || t.strides[axis] < 0) return -1;
        int64_t reach = 0;
        if (__builtin_mul_overflow(elements, t.shape[axis], &elements)) return -1;
        if (t.shape[axis] > 0 &&
            (__builtin_mul_overflow(t.shape[axis] - 1, t.strides[axis], &reach) || __builtin_add_overflow(last, reach, &last)))
            return -1;
    }
    *count = elements;
    if (elements == 0) return 0;
    return last == std::numeric_limits<int64_t>::max() ? -1 : last + 1;
}

// current + step without overflow (an earlier mutation may have left INT64_MAX).
int64_t grown(int64_t current, int64_t step) {
    int64_t result = 0;
    return __builtin_add_overflow(current, step, &result) ? std::numeric_limits<int64_t>::max() : result;
}

int64_t pick_extent(FuzzedDataProvider& in, int64_t current) {
    switch (in.ConsumeIntegralInRange(0, 7)) {
        case 0: return grown(current, 1);
        case 1: return current > 0 ? current - 1 : 0;
        case 2: return 0;
        case 3: return 1;
        case 4: return -1;
        case 5: return int64_t(1) << in.ConsumeIntegralInRange(31, 62);
        case 6: return std::numeric_limits<int64_t>::max();
        default: return in.ConsumeIntegralInRange<int64_t>(0, 300);
    }
}

int64_t pick_stride(FuzzedDataProvider& in, int64_t current) {
    switch (in.ConsumeIntegralInRange(0, 6)) {
        case 0: return 0;
        case 1: return grown(current, in.ConsumeIntegralInRange(1, 9));  // padded rows
        case 2: return -1;
        case 3: return 1;
        case 4: return int64_t(1) << in.ConsumeIntegralInRange(20, 62);
        case 5: return std::numeric_limits<int64_t>::max();
        default: return current > 1 ? current - 1 : 2;  // rows overlapping or too short
    }
}

// Breaks one tensor descriptor.
void mutate_descriptor(FuzzedDataProvider& in, dsa_tensor_t& t) {
    const int dims = t.ndim < 0 ? 0 : (t.ndim > DSA_MAX_DIMS ? DSA_MAX_DIMS : t.ndim);  // an earlier mutation may leave 9
    const int axis = dims > 0 ? in.ConsumeIntegralInRange(0, dims - 1) : 0;
    switch (in.ConsumeIntegralInRange(0, 8)) {
        case 0: t.dtype = in.ConsumeIntegralInRange(-1, 9); break;
        case 1: t.ndim = in.ConsumeIntegralInRange(-1, 9); break;
        case 2: if (dims > 0) t.shape[axis] = pick_extent(in, t.shape[axis]); break;
        case 3: if (dims > 0) t.strides[axis] = pick_stride(in, t.strides[axis]); break;
        case 4: t.device_type = in.ConsumeIntegralInRange(0, 3); break;
        case 5: t.device_id = in.ConsumeIntegralInRange(-1, 1); break;
        case 6:  // misaligned (a 1-byte dtype cannot be; it would only read past its buffer)
            if (t.data != nullptr && dsa_dtype_size(t.dtype) > 1) t.data = static_cast<char*>(t.data) + in.ConsumeIntegralInRange(1, 3);
            break;
        case 7: t.data = nullptr; break;
        default:  // a new rank with contiguous extents
            t.ndim = in.ConsumeIntegralInRange(0, 5);
            for (int d = t.ndim - 1, stride = 1; d >= 0; --d) {
                t.shape[d] = in.ConsumeIntegralInRange(0, 9);
                t.strides[d] = stride;
                stride *= static_cast<int>(t.shape[d] > 0 ? t.shape[d] : 1);
            }
    }
}

constexpr int64_t kInterestingInts[] = {-1, 0, 1, 2, 63, 64, 65, 127, 4095, INT32_MAX, INT32_MIN, INT32_MAX - 1};

// Overwrites a few elements of a data tensor with edge values (or fuzzer bytes).
void mutate_values(FuzzedDataProvider& in, Arg& a) {
    const int64_t count = a.bytes / dsa_dtype_size(a.tensor.dtype);
    if (count == 0) return;
    const int edits = in.ConsumeIntegralInRange(1, 4);
    for (int e = 0; e < edits; ++e) {
        const int64_t at = in.ConsumeIntegralInRange<int64_t>(0, count - 1);
        const int64_t pick = in.ConsumeIntegral<int64_t>();
        uint8_t* element = a.data() + at * dsa_dtype_size(a.tensor.dtype);
        switch (a.tensor.dtype) {
            case DSA_DTYPE_I32: {
                const int32_t value = static_cast<int32_t>(
                    in.ConsumeBool() ? kInterestingInts[static_cast<uint64_t>(pick) % std::size(kInterestingInts)] : pick);
                std::memcpy(element, &value, sizeof value);
                break;
            }
            case DSA_DTYPE_I64: {
                const int64_t choices[] = {-1, 0, 1, INT64_MIN, INT64_MAX, INT32_MAX, int64_t(INT32_MAX) + 1, pick};
                std::memcpy(element, &choices[static_cast<uint64_t>(pick) % std::size(choices)], sizeof(int64_t));
                break;
            }
            case DSA_DTYPE_F32: {
                const float choices[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                                         -std::numeric_limits<float>::infinity(), 3e38f, -3e38f, 1e-45f, 1e-38f, -0.0f, 0.0f};
                std::memcpy(element, &choices[static_cast<uint64_t>(pick) % std::size(choices)], sizeof(float));
                break;
            }
            case DSA_DTYPE_BF16: case DSA_DTYPE_F16: {
                const uint16_t choices[] = {0x7fc0, 0x7f80, 0xff80, 0x7f7f, 0x0001, 0x8000, 0x7e00, 0x7c00};
                std::memcpy(element, &choices[static_cast<uint64_t>(pick) % std::size(choices)], sizeof(uint16_t));
                break;
            }
            default: *element = static_cast<uint8_t>(pick); break;  // e4m3 / u8: any byte, NaN codes included
        }
    }
}

// Room for a params struct from a "newer caller": struct_size may grow up to this, with fields
// past the known ones zero or not.
constexpr size_t kParamsCapacity = 64;

// Overwrites one 4-byte field of a params struct (struct_size included, kept within the memory
// there is) or of the room after it with an edge value.
void mutate_params(FuzzedDataProvider& in, std::vector<uint64_t>& storage) {
    const size_t field = in.ConsumeIntegralInRange<size_t>(0, kParamsCapacity / 4 - 1);
    const float floats[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(), 0.0f,
                            -0.3f, 1e-30f, 1e30f, 0.13523378f};
    uint32_t value = 0;
    if (in.ConsumeBool()) {
        const float f = floats[in.ConsumeIntegralInRange<size_t>(0, std::size(floats) - 1)];
        std::memcpy(&value, &f, sizeof value);
    } else {
        value = static_cast<uint32_t>(in.ConsumeBool() ? kInterestingInts[in.ConsumeIntegralInRange<size_t>(
                                                             0, std::size(kInterestingInts) - 1)]
                                                       : in.ConsumeIntegral<int32_t>());
    }
    if (field == 0 && value > kParamsCapacity) value %= kParamsCapacity + 1;
    std::memcpy(reinterpret_cast<uint8_t*>(storage.data()) + 4 * field, &value, sizeof value);
}

// The call as text, for replaying a crash (DSA_FUZZ_VERBOSE=1 tests/fuzz/run.sh --replay FILE).
void describe(const OpCase& op, const Tensors& tensors, WorkspaceArg workspace) {
    std::fprintf(stderr, "%s (workspace %p, %zu bytes)\n", op.function.c_str(), workspace.data, workspace.bytes);
    for (size_t i = 0; i < tensors.size(); ++i) {
        const dsa_tensor_t* t = tensors[i];
        std::fprintf(stderr, "  %s: ", op.args[i].name.c_str());
        if (t == nullptr) {
            std::fprintf(stderr, "NULL\n");
            continue;
        }
        std::fprintf(stderr, "data %p (%zu bytes backed), dtype %d, device %d:%d, ndim %d, shape/strides", t->data,
                     op.args[i].bytes, t->dtype, t->device_type, t->device_id, t->ndim);
        for (int axis = 0; axis < t->ndim && axis < DSA_MAX_DIMS; ++axis)
            std::fprintf(stderr, " %lld/%lld", static_cast<long long>(t->shape[axis]), static_cast<long long>(t->strides[axis]));
        std::fprintf(stderr, "\n");
    }
}

struct Contexts {
    dsa_context_t* threaded = nullptr;
    dsa_context_t* serial = nullptr;
    Contexts() {
        dsa_context_options_t options;
        dsa_context_options_init(&options);
        options.num_threads = 3;
        if (dsa_context_create(&threaded, &options) != DSA_STATUS_SUCCESS) fail("context");
        options.num_threads = 1;
        if (dsa_context_create(&serial, &options) != DSA_STATUS_SUCCESS) fail("context");
    }
};

doctest::Context& doctest_for_asserts() {
    static doctest::Context context;
    static const bool ready = [] {
        context.setAsDefaultForAssertsOutOfTestCases();
        context.setAssertHandler([](const doctest::AssertData& data) {
            std::fprintf(stderr, "api_fuzzer: a case builder assertion failed at %s:%d\n", data.m_file, data.m_line);
            std::abort();
        });
        return true;
    }();
    (void)ready;
    return context;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    doctest_for_asserts();
    static Contexts contexts;
    FuzzedDataProvider in(data, size);

    CaseSize sizes;
    sizes.rows = in.ConsumeIntegralInRange(1, 12);
    sizes.tokens = in.ConsumeIntegralInRange(2, 200);
    sizes.seed = in.ConsumeIntegral<uint8_t>();
    const std::vector<OpCaseBuilder>& builders = op_case_builders();
    OpCase op = builders[in.ConsumeIntegralInRange<size_t>(0, builders.size() - 1)](sizes);

    std::vector<dsa_tensor_t> tensors;
    std::vector<bool> passed, pinned;  // pinned: another argument's view points into it
    bool aliased = false;              // an output points at another argument's memory
    for (Arg& a : op.args) {
        tensors.push_back(a.tensor);
        passed.push_back(true);
        pinned.push_back(false);
    }
    ParamsList params = op.baseline_params();
    std::vector<std::vector<uint64_t>> params_storage;
    for (const ParamsArg& p : op.params) {
        params_storage.push_back(p.storage);
        params_storage.back().resize(kParamsCapacity / 8, 0);
    }

    const int mutations = in.ConsumeIntegralInRange(0, 6);
    for (int m = 0; m < mutations && in.remaining_bytes() > 0; ++m) {
        const size_t i = in.ConsumeIntegralInRange<size_t>(0, op.args.size() - 1);
        Arg& a = op.args[i];
        switch (in.ConsumeIntegralInRange(0, 5)) {
            case 0: mutate_values(in, a); break;
            case 1: mutate_values(in, a); break;
            case 2: {  // a descriptor, re-backed by exactly the memory it spans when it can be
                dsa_tensor_t changed = tensors[i];
                mutate_descriptor(in, changed);
                int64_t count = 0;
                const int64_t span = span_elements(changed, &count);
                if (pinned[i]) break;
                const bool pointer_changed = changed.data != tensors[i].data;
                if (span > 0 && !pointer_changed) {
                    int64_t bytes = 0;
                    if (count > kMaxElements || __builtin_mul_overflow(span, int64_t(dsa_dtype_size(changed.dtype)), &bytes) ||
                        bytes > kMaxBytes)
                        break;  // well formed but too large to back: keep the old view
                    a.storage.assign(static_cast<size_t>(bytes) / 8 + 1, 0);
                    a.bytes = static_cast<size_t>(bytes);
                    for (size_t b = 0; b < a.bytes; ++b) a.data()[b] = static_cast<uint8_t>(b * 37 + sizes.seed);
                    changed.data = a.storage.data();
                }
                tensors[i] = changed;
                break;
            }
            case 3:
                if (pinned[i]) break;
                passed[i] = a.optional ? !passed[i] : in.ConsumeIntegralInRange(0, 7) != 0;
                break;
            case 4: {  // an output over another (passed) argument's memory, which must hold all of it
                const size_t j = in.ConsumeIntegralInRange<size_t>(0, op.args.size() - 1);
                int64_t count = 0, span_bytes = 0;
                const int64_t span = span_elements(tensors[i], &count);
                // A view the library rejects (span -1) may point anywhere; one it accepts must be
                // backed, or the call breaks the contract (j's view may have been emptied by a
                // descriptor mutation while its memory stays what it was).
                const bool fits = span < 0 || (!__builtin_mul_overflow(span, int64_t(dsa_dtype_size(tensors[i].dtype)), &span_bytes) &&
                                               span_bytes <= static_cast<int64_t>(op.args[j].bytes));
                if (a.role == Role::output && j != i && passed[j] && op.args[j].bytes > 0 && tensors[j].data != nullptr && fits) {
                    tensors[i].data = tensors[j].data;
                    pinned[j] = pinned[i] = aliased = true;
                }
                break;
            }
            default:
                if (!op.params.empty()) {
                    const size_t p = in.ConsumeIntegralInRange<size_t>(0, op.params.size() - 1);
                    if (in.ConsumeIntegralInRange(0, 9) == 0) params[p] = nullptr;
                    else mutate_params(in, params_storage[p]), params[p] = params_storage[p].data();
                }
        }
    }
    // Keep the args' views in step for the output snapshots.
    for (size_t i = 0; i < op.args.size(); ++i) op.args[i].tensor = tensors[i];

    WorkspaceArg workspace;
    std::vector<uint64_t> workspace_storage;
    if (op.workspace_size && in.ConsumeBool()) {
        size_t needed = 0;
        if (op.workspace_size(contexts.threaded, &needed) == DSA_STATUS_SUCCESS && needed < size_t(kMaxBytes)) {
            workspace_storage.assign(needed / 8 + 2, 0);
            workspace.data = workspace_storage.data();
            workspace.bytes = needed;
            switch (in.ConsumeIntegralInRange(0, 3)) {
                case 1: workspace.bytes = needed > 0 ? needed - 1 : 0; break;
                case 2: workspace.data = reinterpret_cast<char*>(workspace_storage.data()) + 4; break;
                case 3: workspace.bytes = SIZE_MAX; break;
                default: break;
            }
        }
    }
    dsa_context_t* context = in.ConsumeIntegralInRange(0, 31) == 0 ? nullptr : contexts.threaded;
    // A call without a workspace whose own scratch grows with a params value (k = 2^31 rows of
    // selection, say) legitimately allocates it; beyond the harness's memory bound it is skipped.
    if (workspace.data == nullptr && op.own_scratch) {
        size_t scratch = 0;
        if (op.own_scratch(contexts.threaded, params, &scratch) == DSA_STATUS_SUCCESS && scratch > size_t(kMaxBytes))
            return 0;
    }

    Tensors pointers;
    for (size_t i = 0; i < tensors.size(); ++i) pointers.push_back(passed[i] ? &tensors[i] : nullptr);
    if (std::getenv("DSA_FUZZ_VERBOSE")) describe(op, pointers, workspace);
    op.poison_outputs();
    const std::vector<std::vector<uint8_t>> poisoned = op.outputs();
    const dsa_status_t status = op.call(context, params, pointers, workspace);
    if (status < DSA_STATUS_SUCCESS || status > DSA_STATUS_INTERNAL) fail("undocumented status code");
    if (status == DSA_STATUS_INTERNAL) fail("DSA_STATUS_INTERNAL");
    if (status != DSA_STATUS_SUCCESS) {
        if (dsa_last_error_message()[0] == '\0') fail("a failing call left no message");
        if (op.outputs() != poisoned) fail("a failing call wrote an output");
        return 0;
    }
    // Determinism: the same call on one thread gives the same bytes (unless it ran in place).
    if (aliased) return 0;
    const std::vector<std::vector<uint8_t>> threaded = op.outputs();
    op.poison_outputs();
    if (op.call(contexts.serial, params, pointers, workspace) != DSA_STATUS_SUCCESS) fail("serial rerun failed");
    if (op.outputs() != threaded) fail("results depend on the thread count");
    return 0;
}
