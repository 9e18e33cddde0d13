// Test helpers: contexts, host tensors, random data, and views the scalar references accept.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "../core/tensor.hpp"
#include "dsa.h"

namespace dsa_test {

// A context that is destroyed at scope exit.
struct Context {
    dsa_context_t* handle = nullptr;
    explicit Context(int num_threads = 0, dsa_device_type_t device = DSA_DEVICE_CPU, int device_id = 0) {
        dsa_context_options_t options;
        dsa_context_options_init(&options);
        options.num_threads = num_threads;
        options.device_type = device;
        options.device_id = device_id;
        const dsa_status_t status = dsa_context_create(&handle, &options);
        REQUIRE_MESSAGE(status == DSA_STATUS_SUCCESS, dsa_last_error_message());
    }
    ~Context() { dsa_context_destroy(handle); }
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;
    operator dsa_context_t*() const { return handle; }
};

inline dsa_tensor_t view(void* data, std::initializer_list<int64_t> shape, dsa_dtype_t dtype,
                         dsa_device_type_t device = DSA_DEVICE_CPU, int device_id = 0) {
    dsa_tensor_t tensor;
    std::vector<int64_t> extents(shape);
    const dsa_status_t status = dsa_tensor_init_contiguous(&tensor, data, static_cast<int32_t>(extents.size()),
                                                           extents.data(), dtype, device, device_id);
    REQUIRE_MESSAGE(status == DSA_STATUS_SUCCESS, dsa_last_error_message());
    return tensor;
}

inline dsa_tensor_t strided(void* data, std::initializer_list<int64_t> shape, std::initializer_list<int64_t> strides,
                            dsa_dtype_t dtype) {
    dsa_tensor_t tensor = view(data, shape, dtype);
    int axis = 0;
    for (int64_t stride : strides) tensor.strides[axis++] = stride;
    return tensor;
}

// The core view of an ABI tensor (same fields), for the scalar references.
inline dsa::TensorView core_view(const dsa_tensor_t& tensor) {
    dsa::TensorView result;
    result.data = tensor.data;
    result.ndim = tensor.ndim;
    result.dtype = static_cast<dsa::DType>(tensor.dtype);
    result.device = static_cast<dsa::DeviceType>(tensor.device_type);
    result.device_id = tensor.device_id;
    for (int axis = 0; axis < DSA_MAX_DIMS; ++axis) {
        result.shape[axis] = tensor.shape[axis];
        result.strides[axis] = tensor.strides[axis];
    }
    return result;
}

inline std::vector<float> random_floats(size_t count, uint32_t seed, float low = -1.0f, float high = 1.0f) {
    std::mt19937 engine(seed);
    std::uniform_real_distribution<float> dist(low, high);
    std::vector<float> values(count);
    for (float& v : values) v = dist(engine);
    return values;
}

inline std::vector<uint16_t> to_bf16(const std::vector<float>& values) {
    std::vector<uint16_t> result(values.size());
    for (size_t i = 0; i < values.size(); ++i) result[i] = dsa::float_to_bf16(values[i]);
    return result;
}

inline dsa_topk_params_t topk_params(int32_t k, dsa_topk_order_t order = DSA_TOPK_ORDER_UNSPECIFIED,
                                     int32_t n_sink = 0, int32_t n_local = 0) {
    dsa_topk_params_t params;
    REQUIRE(dsa_topk_params_init(&params) == DSA_STATUS_SUCCESS);
    params.k = k;
    params.order = order;
    params.n_sink = n_sink;
    params.n_local = n_local;
    return params;
}

// The status and message of a call that must fail: checks the code and that the message names
// the argument.
#define CHECK_FAILS_WITH(call, expected_status, argument_name)                                    \
    do {                                                                                         \
        const dsa_status_t check_status_ = (call);                                               \
        CHECK_MESSAGE(check_status_ == (expected_status), dsa_last_error_message());             \
        CHECK_MESSAGE(std::string(dsa_last_error_message()).find(argument_name) != std::string::npos, \
                      dsa_last_error_message());                                                 \
    } while (0)

}  // namespace dsa_test
