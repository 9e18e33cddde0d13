// The few CUDA runtime calls the demo makes itself (allocation and copies for the tensors it
// hands to libdsa). Only built when the build has CUDA; each throws std::runtime_error with the
// runtime's message on failure.
#pragma once

#include <cstddef>

namespace stories::cuda {

void* allocate(size_t bytes);
void release(void* pointer);
void upload(void* device, const void* host, size_t bytes);
void download(void* host, const void* device, size_t bytes);
void zero(void* device, size_t bytes);

}  // namespace stories::cuda
