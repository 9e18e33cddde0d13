// The execution context behind dsa_context_t: one device, a CPU thread pool, cached properties.
#pragma once

#include <memory>

#include "status.hpp"
#include "tensor.hpp"
#include "thread_pool.hpp"

struct CUstream_st;  // the CUDA runtime's stream type; cudaStream_t is CUstream_st*

namespace dsa {

using Stream = ::CUstream_st*;

struct DeviceProperties {
    int multiprocessor_count = 0;
    int compute_major = 0;
    int compute_minor = 0;
    int64_t l2_cache_bytes = 0;
    int64_t shared_memory_per_block_optin = 0;
};

class Context {
public:
    Context(DeviceType device, int device_id, int num_threads, const DeviceProperties& properties);

    DeviceType device() const { return device_; }
    int device_id() const { return device_id_; }
    const DeviceProperties& properties() const { return properties_; }
    ThreadPool& pool() { return pool_; }
    int num_threads() const { return pool_.num_threads(); }

    // Every tensor of a call must live where the context does.
    Status require_device(const TensorView& tensor, const char* name) const;

private:
    DeviceType device_;
    int device_id_;
    DeviceProperties properties_;
    ThreadPool pool_;
};

// Validates the options and creates a context (queries the CUDA device when asked for one).
Status create_context(DeviceType device, int device_id, int num_threads, std::unique_ptr<Context>* context);

// True when this build contains the CUDA backend.
bool cuda_built();
// The status an op returns if a CUDA context reaches it in a build without CUDA (impossible
// through the C API, which refuses to create such a context).
Status cuda_not_built();

namespace cuda {
// Implemented in cuda/ (only linked when the build has CUDA).
Status query_device(int device_id, DeviceProperties* properties);
// "cuda 13.0 (archs 80,90a; runtime 13.0, driver 13.0)" or the reason CUDA is unusable.
std::string describe();
}  // namespace cuda

}  // namespace dsa
