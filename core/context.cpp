#include "context.hpp"

#include <string>
#include <thread>

namespace dsa {

Context::Context(DeviceType device, int device_id, int num_threads, const DeviceProperties& properties)
    : device_(device), device_id_(device_id), properties_(properties), pool_(num_threads) {}

Status Context::require_device(const TensorView& tensor, const char* name) const {
    if (tensor.device == DeviceType::cuda && !cuda_built())
        return {StatusCode::unsupported, std::string(name) + ": tensor is on cuda:" +
                                             std::to_string(tensor.device_id) +
                                             " but this libdsa was built without CUDA"};
    if (tensor.device == device_ && (device_ == DeviceType::cpu || tensor.device_id == device_id_))
        return Status::success();
    std::string where = device_name(tensor.device);
    if (tensor.device == DeviceType::cuda) where += ":" + std::to_string(tensor.device_id);
    std::string expected = device_name(device_);
    if (device_ == DeviceType::cuda) expected += ":" + std::to_string(device_id_);
    return {StatusCode::device_mismatch,
            std::string(name) + ": tensor is on " + where + " but the context is on " + expected +
                "; every tensor of a call must be on the context's device"};
}

bool cuda_built() {
#ifdef DSA_HAVE_CUDA
    return true;
#else
    return false;
#endif
}

Status cuda_not_built() {
    return {StatusCode::unsupported, "this libdsa was built without CUDA; rebuild with -DDSA_WITH_CUDA=ON"};
}

Status create_context(DeviceType device, int device_id, int num_threads, std::unique_ptr<Context>* context) {
    if (num_threads < 0)
        return {StatusCode::invalid_argument,
                "options.num_threads: must be >= 0 (0 = all cores), got " + std::to_string(num_threads)};
    DeviceProperties properties;
    int threads = num_threads;
    if (device == DeviceType::cpu) {
        if (threads == 0) threads = static_cast<int>(std::thread::hardware_concurrency());
        if (threads < 1) threads = 1;
    } else if (device == DeviceType::cuda) {
        if (device_id < 0)
            return {StatusCode::invalid_argument,
                    "options.device_id: must be >= 0, got " + std::to_string(device_id)};
#ifdef DSA_HAVE_CUDA
        DSA_TRY(cuda::query_device(device_id, &properties));
#else
        return {StatusCode::unsupported, "options.device_type: " + cuda_not_built().message()};
#endif
        threads = 1;  // CUDA work needs no CPU workers
    } else {
        return {StatusCode::device_mismatch, "options.device_type: must be 1 (cpu) or 2 (cuda), got " +
                                                 std::to_string(static_cast<int>(device))};
    }
    *context = std::make_unique<Context>(device, device_id, threads, properties);
    return Status::success();
}

}  // namespace dsa
