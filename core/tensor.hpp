// Tensor views and the checks every op runs on them before any backend sees them.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "numeric.hpp"
#include "status.hpp"

namespace dsa {

// Codes equal dsa.h's DSA_DTYPE_* and DSA_DEVICE_* (DLPack device codes).
enum class DType : int32_t { f32 = 1, f16 = 2, bf16 = 3, fp8_e4m3 = 4, u8 = 5, i32 = 6, i64 = 7 };
enum class DeviceType : int32_t { cpu = 1, cuda = 2 };

inline constexpr int kMaxDims = 8;

struct TensorView {
    void* data = nullptr;
    int32_t ndim = 0;
    DType dtype = DType::f32;
    DeviceType device = DeviceType::cpu;
    int32_t device_id = 0;
    int64_t shape[kMaxDims] = {};
    int64_t strides[kMaxDims] = {};

    DSA_HOST_DEVICE int64_t size(int axis) const { return shape[axis < 0 ? ndim + axis : axis]; }
    DSA_HOST_DEVICE int64_t stride(int axis) const { return strides[axis < 0 ? ndim + axis : axis]; }
    int64_t numel() const;
    template <typename T> DSA_HOST_DEVICE T* as() const { return static_cast<T*>(data); }
};

// Size in bytes of one element; 0 for an unknown code.
int64_t dtype_size(DType dtype);
bool dtype_known(int32_t code);
const char* dtype_name(DType dtype);
const char* device_name(DeviceType device);

// The leading dimensions of a tensor (all but the last) as a flat row index -> element offset
// map, so ops that work row by row honour arbitrary leading strides on every backend.
struct RowLayout {
    int32_t ndim = 0;  // number of leading dimensions
    int64_t shape[kMaxDims] = {};
    int64_t strides[kMaxDims] = {};

    DSA_HOST_DEVICE int64_t offset(int64_t row) const {
        int64_t result = 0;
        for (int axis = ndim - 1; axis >= 0; --axis) {
            const int64_t extent = shape[axis];
            result += (row % extent) * strides[axis];
            row /= extent;
        }
        return result;
    }
};
RowLayout leading_rows(const TensorView& tensor);
int64_t leading_row_count(const TensorView& tensor);

// ---- Checks: each returns an error status whose message starts with the argument's name. ----

// Structural sanity of a caller-described tensor: rank in [0, 8], extents and strides >= 0,
// the addressed span fits int64 bytes, data non-NULL when there are elements, known dtype and
// device codes.
Status check_tensor(const TensorView* tensor, const char* name);
Status require_dtype(const TensorView& tensor, const char* name, std::initializer_list<DType> allowed);
Status require_rank(const TensorView& tensor, const char* name, int rank);
Status require_min_rank(const TensorView& tensor, const char* name, int rank);
Status require_extent(const TensorView& tensor, const char* name, int axis, int64_t expected,
                      const char* expected_what);
// Same leading shape (all dimensions but the last).
Status require_same_leading_shape(const TensorView& tensor, const char* name,
                                  const TensorView& reference, const char* reference_name);
Status require_same_shape(const TensorView& tensor, const char* name, const TensorView& reference,
                          const char* reference_name);
Status require_unit_last_stride(const TensorView& tensor, const char* name);
// No two distinct index tuples address the same element (outputs must not write twice).
Status require_non_self_overlapping(const TensorView& tensor, const char* name);
// The byte ranges the two views span do not intersect.
Status require_disjoint(const TensorView& a, const char* a_name, const TensorView& b, const char* b_name);
bool same_view(const TensorView& a, const TensorView& b);
// data aligned to `bytes` (a power of two).
Status require_alignment(const TensorView& tensor, const char* name, int64_t bytes);

}  // namespace dsa
