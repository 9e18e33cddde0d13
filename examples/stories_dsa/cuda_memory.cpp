#include "cuda_memory.hpp"

#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace stories::cuda {
namespace {

void require(cudaError_t error, const char* call) {
    if (error != cudaSuccess) throw std::runtime_error(std::string(call) + ": " + cudaGetErrorString(error));
}

}  // namespace

void* allocate(size_t bytes) {
    void* pointer = nullptr;
    require(cudaMalloc(&pointer, bytes == 0 ? 1 : bytes), "cudaMalloc");
    return pointer;
}

void release(void* pointer) { cudaFree(pointer); }

// Synchronous copies on the legacy default stream, which is the stream the demo's libdsa calls
// use: an upload is complete before the op reads it and a download waits for the op.
void upload(void* device, const void* host, size_t bytes) {
    require(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy (to the device)");
}

void download(void* host, const void* device, size_t bytes) {
    require(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy (from the device)");
}

void zero(void* device, size_t bytes) { require(cudaMemset(device, 0, bytes), "cudaMemset"); }

}  // namespace stories::cuda
