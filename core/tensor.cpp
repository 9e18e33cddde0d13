#include "tensor.hpp"

#include <utility>
#include <string>

namespace dsa {
namespace {

std::string join_shape(const TensorView& tensor) {
    std::string text = "[";
    for (int axis = 0; axis < tensor.ndim; ++axis) {
        if (axis) text += ", ";
        text += std::to_string(tensor.shape[axis]);
    }
    return text + "]";
}

std::string named(const char* name, const std::string& what) { return std::string(name) + ": " + what; }

}  // namespace

int64_t TensorView::numel() const {
    int64_t count = 1;
    for (int axis = 0; axis < ndim; ++axis) count *= shape[axis];
    return count;
}

int64_t dtype_size(DType dtype) {
    switch (dtype) {
        case DType::f32: case DType::i32: return 4;
        case DType::f16: case DType::bf16: return 2;
        case DType::fp8_e4m3: case DType::u8: return 1;
        case DType::i64: return 8;
    }
    return 0;
}

bool dtype_known(int32_t code) { return code >= 1 && code <= 7; }

const char* dtype_name(DType dtype) {
    switch (dtype) {
        case DType::f32: return "float32";
        case DType::f16: return "float16";
        case DType::bf16: return "bfloat16";
        case DType::fp8_e4m3: return "float8_e4m3";
        case DType::u8: return "uint8";
        case DType::i32: return "int32";
        case DType::i64: return "int64";
    }
    return "unknown";
}

const char* device_name(DeviceType device) {
    switch (device) {
        case DeviceType::cpu: return "cpu";
        case DeviceType::cuda: return "cuda";
    }
    return "unknown";
}

RowLayout leading_rows(const TensorView& tensor) {
    RowLayout layout;
    layout.ndim = tensor.ndim > 0 ? tensor.ndim - 1 : 0;
    for (int axis = 0; axis < layout.ndim; ++axis) {
        layout.shape[axis] = tensor.shape[axis];
        layout.strides[axis] = tensor.strides[axis];
    }
    return layout;
}

int64_t leading_row_count(const TensorView& tensor) {
    int64_t rows = 1;
    for (int axis = 0; axis + 1 < tensor.ndim; ++axis) rows *= tensor.shape[axis];
    return rows;
}

Status check_tensor(const TensorView* tensor, const char* name) {
    if (tensor == nullptr) return {StatusCode::invalid_argument, named(name, "tensor pointer is NULL")};
    if (tensor->ndim < 0 || tensor->ndim > kMaxDims)
        return {StatusCode::invalid_argument,
                named(name, "ndim must be in [0, 8], got " + std::to_string(tensor->ndim))};
    if (!dtype_known(static_cast<int32_t>(tensor->dtype)))
        return {StatusCode::dtype_mismatch,
                named(name, "unknown dtype code " + std::to_string(static_cast<int32_t>(tensor->dtype)))};
    if (tensor->device != DeviceType::cpu && tensor->device != DeviceType::cuda)
        return {StatusCode::device_mismatch,
                named(name, "device_type must be 1 (cpu) or 2 (cuda), got " +
                                std::to_string(static_cast<int32_t>(tensor->device)))};
    if (tensor->device == DeviceType::cuda && tensor->device_id < 0)
        return {StatusCode::device_mismatch,
                named(name, "device_id must be >= 0, got " + std::to_string(tensor->device_id))};
    // Elements and the span of addressed bytes must fit in int64.
    int64_t elements = 1;
    int64_t last_offset = 0;
    bool empty = false;
    for (int axis = 0; axis < tensor->ndim; ++axis) {
        const int64_t extent = tensor->shape[axis];
        const int64_t stride = tensor->strides[axis];
        if (extent < 0)
            return {StatusCode::shape_mismatch,
                    named(name, "extent of dimension " + std::to_string(axis) + " is negative (shape " +
                                    join_shape(*tensor) + ")")};
        if (stride < 0)
            return {StatusCode::layout_unsupported,
                    named(name, "stride of dimension " + std::to_string(axis) + " is negative (" +
                                    std::to_string(stride) + "); strides must be >= 0")};
        if (extent == 0) empty = true;
        int64_t reach = 0;
        if (__builtin_mul_overflow(elements, extent, &elements) ||
            (extent > 0 && (__builtin_mul_overflow(extent - 1, stride, &reach) ||
                            __builtin_add_overflow(last_offset, reach, &last_offset))))
            return {StatusCode::shape_mismatch,
                    named(name, "shape " + join_shape(*tensor) + " with its strides overflows int64")};
    }
    int64_t last_byte = 0;
    if (__builtin_add_overflow(last_offset, 1, &last_byte) ||
        __builtin_mul_overflow(last_byte, dtype_size(tensor->dtype), &last_byte))
        return {StatusCode::shape_mismatch,
                named(name, "shape " + join_shape(*tensor) + " spans more bytes than int64 can count")};
    if (!empty && tensor->data == nullptr)
        return {StatusCode::invalid_argument, named(name, "data is NULL but the tensor has elements")};
    if (reinterpret_cast<uintptr_t>(tensor->data) % static_cast<uintptr_t>(dtype_size(tensor->dtype)) != 0)
        return {StatusCode::layout_unsupported,
                named(name, "data must be aligned to its element size (" +
                                std::to_string(dtype_size(tensor->dtype)) + " bytes)")};
    return Status::success();
}

Status require_dtype(const TensorView& tensor, const char* name, std::initializer_list<DType> allowed) {
    std::string expected;
    for (DType dtype : allowed) {
        if (dtype == tensor.dtype) return Status::success();
        if (!expected.empty()) expected += " or ";
        expected += dtype_name(dtype);
    }
    return {StatusCode::dtype_mismatch,
            named(name, "dtype must be " + expected + ", got " + dtype_name(tensor.dtype))};
}

Status require_rank(const TensorView& tensor, const char* name, int rank) {
    if (tensor.ndim == rank) return Status::success();
    return {StatusCode::shape_mismatch, named(name, "must have rank " + std::to_string(rank) + ", got shape " +
                                                        join_shape(tensor))};
}

Status require_min_rank(const TensorView& tensor, const char* name, int rank) {
    if (tensor.ndim >= rank) return Status::success();
    return {StatusCode::shape_mismatch, named(name, "must have rank >= " + std::to_string(rank) +
                                                        ", got shape " + join_shape(tensor))};
}

Status require_extent(const TensorView& tensor, const char* name, int axis, int64_t expected,
                      const char* expected_what) {
    const int resolved = axis < 0 ? tensor.ndim + axis : axis;
    if (resolved >= 0 && resolved < tensor.ndim && tensor.shape[resolved] == expected) return Status::success();
    return {StatusCode::shape_mismatch,
            named(name, "dimension " + std::to_string(resolved) + " must be " + std::to_string(expected) + " (" +
                            expected_what + "), got shape " + join_shape(tensor))};
}

Status require_same_leading_shape(const TensorView& tensor, const char* name, const TensorView& reference,
                                  const char* reference_name) {
    bool same = tensor.ndim == reference.ndim;
    for (int axis = 0; same && axis + 1 < tensor.ndim; ++axis) same = tensor.shape[axis] == reference.shape[axis];
    if (same) return Status::success();
    return {StatusCode::shape_mismatch,
            named(name, "leading dimensions must match " + std::string(reference_name) + " " +
                            join_shape(reference) + ", got shape " + join_shape(tensor))};
}

Status require_same_shape(const TensorView& tensor, const char* name, const TensorView& reference,
                          const char* reference_name) {
    bool same = tensor.ndim == reference.ndim;
    for (int axis = 0; same && axis < tensor.ndim; ++axis) same = tensor.shape[axis] == reference.shape[axis];
    if (same) return Status::success();
    return {StatusCode::shape_mismatch, named(name, "shape must equal " + std::string(reference_name) + "'s " +
                                                        join_shape(reference) + ", got " + join_shape(tensor))};
}

Status require_unit_last_stride(const TensorView& tensor, const char* name) {
    if (tensor.ndim == 0 || tensor.shape[tensor.ndim - 1] <= 1 || tensor.strides[tensor.ndim - 1] == 1)
        return Status::success();
    return {StatusCode::layout_unsupported,
            named(name, "the last dimension must be contiguous (stride 1), got stride " +
                            std::to_string(tensor.strides[tensor.ndim - 1]))};
}

Status require_non_self_overlapping(const TensorView& tensor, const char* name) {
    // Sorted by stride, each dimension must step over everything the smaller ones span.
    int order[kMaxDims];
    int count = 0;
    for (int axis = 0; axis < tensor.ndim; ++axis) {
        if (tensor.shape[axis] == 0) return Status::success();
        if (tensor.shape[axis] > 1) order[count++] = axis;
    }
    for (int i = 1; i < count; ++i)  // insertion sort by stride: at most 8 entries
        for (int j = i; j > 0 && tensor.strides[order[j]] < tensor.strides[order[j - 1]]; --j) std::swap(order[j], order[j - 1]);
    int64_t span = 1;
    for (int i = 0; i < count; ++i) {
        const int axis = order[i];
        if (tensor.strides[axis] < span)
            return {StatusCode::layout_unsupported,
                    named(name, "strides make elements overlap (dimension " + std::to_string(axis) +
                                    " has stride " + std::to_string(tensor.strides[axis]) +
                                    "); an output must address each element once")};
        span = tensor.strides[axis] * (tensor.shape[axis] - 1) + span;
    }
    return Status::success();
}

namespace {
// [first, last) byte range that a validated view spans; empty views span nothing.
bool byte_span(const TensorView& tensor, uintptr_t& first, uintptr_t& last) {
    int64_t last_offset = 0;
    for (int axis = 0; axis < tensor.ndim; ++axis) {
        if (tensor.shape[axis] == 0) return false;
        last_offset += (tensor.shape[axis] - 1) * tensor.strides[axis];
    }
    first = reinterpret_cast<uintptr_t>(tensor.data);
    last = first + static_cast<uintptr_t>((last_offset + 1) * dtype_size(tensor.dtype));
    return true;
}
}  // namespace

Status require_disjoint(const TensorView& a, const char* a_name, const TensorView& b, const char* b_name) {
    uintptr_t a_first, a_last, b_first, b_last;
    // Different memories cannot overlap; device_id names one only on CUDA (it is ignored for CPU).
    const bool same_memory = a.device == b.device && (a.device != DeviceType::cuda || a.device_id == b.device_id);
    if (!same_memory || !byte_span(a, a_first, a_last) ||
        !byte_span(b, b_first, b_last) || a_last <= b_first || b_last <= a_first)
        return Status::success();
    return {StatusCode::layout_unsupported,
            named(a_name, std::string("memory overlaps ") + b_name + "; pass separate buffers")};
}

bool same_view(const TensorView& a, const TensorView& b) {
    if (a.data != b.data || a.ndim != b.ndim || a.dtype != b.dtype) return false;
    for (int axis = 0; axis < a.ndim; ++axis)
        if (a.shape[axis] != b.shape[axis] || (a.shape[axis] > 1 && a.strides[axis] != b.strides[axis])) return false;
    return true;
}

Status require_alignment(const TensorView& tensor, const char* name, int64_t bytes) {
    if (reinterpret_cast<uintptr_t>(tensor.data) % static_cast<uintptr_t>(bytes) == 0) return Status::success();
    return {StatusCode::layout_unsupported,
            named(name, "data must be aligned to " + std::to_string(bytes) + " bytes")};
}

}  // namespace dsa
