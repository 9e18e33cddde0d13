// Stream-ordered device scratch (see core/stream_buffer.hpp).
#include <string>

#include "../../core/stream_buffer.hpp"
#include "runtime.cuh"

namespace dsa {

Status StreamBuffer::allocate(const Context& context, int64_t bytes, Stream stream) {
    if (data_ != nullptr) return {StatusCode::internal, "StreamBuffer: allocated twice"};
    cuda::DeviceScope scope(context.device_id());
    DSA_TRY(scope.status());
    void* data = nullptr;
    const cudaError_t error = cudaMallocAsync(&data, static_cast<size_t>(bytes), stream);
    if (error != cudaSuccess) {
        cudaGetLastError();  // not sticky: clear it so later launch checks do not report it
        return cuda::runtime_status(error, ("cudaMallocAsync of " + std::to_string(bytes) + " bytes of scratch").c_str());
    }
    data_ = data;
    stream_ = stream;
    device_ = context.device_id();
    return Status::success();
}

StreamBuffer::~StreamBuffer() {
    if (data_ == nullptr) return;
    cuda::DeviceScope scope(device_);
    cudaFreeAsync(data_, stream_);
}

}  // namespace dsa
