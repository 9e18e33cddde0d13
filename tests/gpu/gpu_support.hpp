// GPU test helpers: device buffers and CUDA contexts.
#pragma once

#include <cuda_runtime.h>

#include <vector>

#include "../support.hpp"

namespace dsa_test {

#define CUDA_REQUIRE(call) REQUIRE_MESSAGE((call) == cudaSuccess, #call)

// A device copy of a host vector, copied back with download().
template <typename T>
struct DeviceBuffer {
    T* data = nullptr;
    size_t count = 0;
    explicit DeviceBuffer(const std::vector<T>& host) : count(host.size()) {
        CUDA_REQUIRE(cudaMalloc(&data, count * sizeof(T) + 1));
        CUDA_REQUIRE(cudaMemcpy(data, host.data(), count * sizeof(T), cudaMemcpyHostToDevice));
    }
    ~DeviceBuffer() { cudaFree(data); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    std::vector<T> download() const {
        std::vector<T> host(count);
        CUDA_REQUIRE(cudaDeviceSynchronize());
        CUDA_REQUIRE(cudaMemcpy(host.data(), data, count * sizeof(T), cudaMemcpyDeviceToHost));
        return host;
    }
};

inline dsa_tensor_t on_device(dsa_tensor_t tensor, void* device_data) {
    tensor.data = device_data;
    tensor.device_type = DSA_DEVICE_CUDA;
    tensor.device_id = 0;
    return tensor;
}

}  // namespace dsa_test
