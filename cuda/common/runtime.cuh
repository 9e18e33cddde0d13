// CUDA runtime plumbing shared by every launcher: errors into Status, the device guard.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "../../core/context.hpp"

namespace dsa::cuda {

// A CUDA error as a status that names what failed.
inline Status runtime_status(cudaError_t error, const char* what) {
    if (error == cudaSuccess) return Status::success();
    const StatusCode code = error == cudaErrorMemoryAllocation ? StatusCode::out_of_memory : StatusCode::cuda_error;
    return {code, std::string(what) + ": " + cudaGetErrorName(error) + " (" + cudaGetErrorString(error) + ")"};
}

// The result of the launch just made (configuration errors and, for sticky errors, earlier ones).
inline Status launch_status(const char* kernel) { return runtime_status(cudaGetLastError(), kernel); }

// Makes the context's device current for the scope and restores the caller's afterwards, so
// calling libdsa never changes which device the caller's thread has selected.
class DeviceScope {
public:
    explicit DeviceScope(int device) : status_(enter(device)) {}
    ~DeviceScope() {
        if (switched_) cudaSetDevice(previous_);
    }
    DeviceScope(const DeviceScope&) = delete;
    DeviceScope& operator=(const DeviceScope&) = delete;
    const Status& status() const { return status_; }

private:
    Status enter(int device) {
        DSA_TRY(runtime_status(cudaGetDevice(&previous_), "cudaGetDevice"));
        if (previous_ == device) return Status::success();
        DSA_TRY(runtime_status(cudaSetDevice(device), "cudaSetDevice"));
        switched_ = true;
        return Status::success();
    }

    int previous_ = 0;
    bool switched_ = false;
    Status status_;
};

DSA_HOST_DEVICE int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace dsa::cuda
