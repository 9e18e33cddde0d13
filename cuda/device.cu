// Device discovery for contexts and dsa_build_info().
#include <string>

#include "common/runtime.cuh"

namespace dsa::cuda {

Status query_device(int device_id, DeviceProperties* properties) {
    int count = 0;
    DSA_TRY(runtime_status(cudaGetDeviceCount(&count), "options.device_type: no usable CUDA device (cudaGetDeviceCount)"));
    if (device_id >= count)
        return {StatusCode::invalid_argument, "options.device_id: " + std::to_string(device_id) +
                                                  " is not a CUDA device; this machine has " + std::to_string(count)};
    cudaDeviceProp prop{};
    DSA_TRY(runtime_status(cudaGetDeviceProperties(&prop, device_id), "cudaGetDeviceProperties"));
    properties->multiprocessor_count = prop.multiProcessorCount;
    properties->compute_major = prop.major;
    properties->compute_minor = prop.minor;
    properties->l2_cache_bytes = prop.l2CacheSize;
    properties->shared_memory_per_block_optin = static_cast<int64_t>(prop.sharedMemPerBlockOptin);
    return Status::success();
}

std::string describe() {
    std::string text = "cuda " + std::to_string(CUDART_VERSION / 1000) + "." + std::to_string(CUDART_VERSION % 1000 / 10) +
                       " (archs " DSA_CUDA_ARCHITECTURES ")";
    int driver = 0, devices = 0;
    if (cudaDriverGetVersion(&driver) != cudaSuccess || driver == 0) return text + ", no driver";
    if (cudaGetDeviceCount(&devices) != cudaSuccess) {
        cudaGetLastError();
        return text + ", no device";
    }
    return text + ", driver " + std::to_string(driver / 1000) + "." + std::to_string(driver % 1000 / 10) + ", " +
           std::to_string(devices) + " device(s)";
}

}  // namespace dsa::cuda
