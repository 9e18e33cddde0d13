// Device scratch for a CUDA call made without a caller workspace: allocated on the call's
// stream (cudaMallocAsync) and released on it when the owner goes out of scope (cudaFreeAsync),
// so the work queued in between may use it, nothing synchronises the host, and the calls stay
// capturable in a CUDA graph. Implemented in cuda/common/stream_buffer.cu (CUDA builds only).
#pragma once

#include "context.hpp"

namespace dsa {

class StreamBuffer {
public:
    StreamBuffer() = default;
    ~StreamBuffer();
    StreamBuffer(const StreamBuffer&) = delete;
    StreamBuffer& operator=(const StreamBuffer&) = delete;

    // Allocates `bytes` (> 0) on the context's device, ordered on `stream`; at most once.
    Status allocate(const Context& context, int64_t bytes, Stream stream);
    void* data() const { return data_; }

private:
    void* data_ = nullptr;
    Stream stream_ = nullptr;
    int device_ = 0;
};

}  // namespace dsa
