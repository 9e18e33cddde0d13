#include "device.hpp"

#include <cstring>
#include <deque>
#include <functional>
#include <utility>
#include <vector>

#ifdef STORIES_DSA_WITH_CUDA
#include "cuda_memory.hpp"
#endif

namespace stories {
namespace {

dsa_context_t* create_context(dsa_device_type_t type, int cpu_threads) {
    dsa_context_options_t options;
    check(dsa_context_options_init(&options), "dsa_context_options_init");
    options.device_type = type;
    options.num_threads = cpu_threads;
    dsa_context_t* context = nullptr;
    check(dsa_context_create(&context, &options), "dsa_context_create");
    return context;
}

#ifdef STORIES_DSA_WITH_CUDA
// Runs every op the demo needs once on a tiny problem in CUDA memory and returns the names of
// those that refuse (DSA_STATUS_UNSUPPORTED: no CUDA kernel yet) or fail, with the message.
std::vector<std::string> refused_ops(const Device& device) {
    std::deque<DeviceTensor> keep;  // a deque: growing it leaves the tensors handed out in place
    std::vector<uint8_t> zeros(4096, 0);
    auto tensor = [&](std::initializer_list<int64_t> shape, dsa_dtype_t dtype) {
        keep.push_back(device.input(zeros.data(), shape, dtype));
        return keep.back().get();
    };
    dsa_context_t* context = device.context();
    std::vector<std::pair<const char*, std::function<dsa_status_t()>>> probes;
    probes.emplace_back("dsa_quantize_fp8", [&] {
        return dsa_quantize_fp8(context, nullptr, tensor({1, 128}, DSA_DTYPE_F32), tensor({1, 128}, DSA_DTYPE_FP8_E4M3),
                                tensor({1, 1}, DSA_DTYPE_F32), nullptr);
    });
    probes.emplace_back("dsa_hadamard_quantize_fp8", [&] {
        return dsa_hadamard_quantize_fp8(context, nullptr, nullptr, tensor({1, 128}, DSA_DTYPE_F32),
                                         tensor({1, 128}, DSA_DTYPE_FP8_E4M3), tensor({1, 1}, DSA_DTYPE_F32), nullptr);
    });
    probes.emplace_back("dsa_topk", [&] {
        dsa_topk_params_t params;
        dsa_topk_params_init(&params);
        params.k = 1;
        return dsa_topk(context, &params, tensor({1, 4}, DSA_DTYPE_F32), nullptr, nullptr, nullptr,
                        tensor({1, 1}, DSA_DTYPE_I32), nullptr);
    });
    probes.emplace_back("dsa_indexer_topk", [&] {
        dsa_topk_params_t params;
        dsa_topk_params_init(&params);
        params.k = 1;
        return dsa_indexer_topk(context, nullptr, &params, tensor({1, 1, 16}, DSA_DTYPE_FP8_E4M3),
                                tensor({1, 1}, DSA_DTYPE_F32), tensor({1, 16}, DSA_DTYPE_FP8_E4M3),
                                tensor({1}, DSA_DTYPE_F32), tensor({1}, DSA_DTYPE_I32), tensor({1}, DSA_DTYPE_I32),
                                tensor({1, 1}, DSA_DTYPE_I32), nullptr, 0, nullptr);
    });
    probes.emplace_back("dsa_sparse_attention", [&] {
        dsa_sparse_attention_params_t params;
        dsa_sparse_attention_params_init(&params);
        params.scale = 1.0f;
        params.d_v = 8;
        return dsa_sparse_attention(context, &params, tensor({1, 1, 16}, DSA_DTYPE_BF16), tensor({1, 16}, DSA_DTYPE_BF16),
                                    tensor({1, 1}, DSA_DTYPE_I32), nullptr, nullptr, tensor({1, 1, 8}, DSA_DTYPE_BF16),
                                    tensor({1, 1}, DSA_DTYPE_F32), nullptr, nullptr);
    });
    probes.emplace_back("dsa_indexer_loss", [&] {
        dsa_indexer_loss_params_t params;
        dsa_indexer_loss_params_init(&params);
        params.teacher_scale = 1.0f;
        return dsa_indexer_loss(context, &params, tensor({1, 1, 16}, DSA_DTYPE_F32), tensor({1, 16}, DSA_DTYPE_F32),
                                tensor({1, 1}, DSA_DTYPE_F32), tensor({1}, DSA_DTYPE_I32), tensor({1}, DSA_DTYPE_I32),
                                nullptr, tensor({1, 2, 8}, DSA_DTYPE_F32), tensor({1, 1, 8}, DSA_DTYPE_F32), nullptr,
                                tensor({1}, DSA_DTYPE_F32), nullptr, tensor({1, 1, 16}, DSA_DTYPE_F32),
                                tensor({1, 16}, DSA_DTYPE_F32), tensor({1, 1}, DSA_DTYPE_F32), nullptr);
    });
    std::vector<std::string> refused;
    for (auto& [name, probe] : probes) {
        const dsa_status_t status = probe();
        if (status == DSA_STATUS_UNSUPPORTED) refused.push_back(std::string(name) + " (no CUDA kernel)");
        else if (status != DSA_STATUS_SUCCESS)
            refused.push_back(std::string(name) + " (" + dsa_status_string(status) + ": " + dsa_last_error_message() + ")");
    }
    return refused;
}
#endif

}  // namespace

void check(dsa_status_t status, const char* call) {
    if (status != DSA_STATUS_SUCCESS)
        throw LibraryError(status, std::string(call) + ": " + dsa_status_string(status) + ": " + dsa_last_error_message());
}

Device Device::open(DeviceChoice choice, int cpu_threads, std::string* note) {
    if (note != nullptr) note->clear();
    if (choice == DeviceChoice::cpu) return Device(create_context(DSA_DEVICE_CPU, cpu_threads), DSA_DEVICE_CPU);
#ifdef STORIES_DSA_WITH_CUDA
    std::string problem;
    try {
        Device device(create_context(DSA_DEVICE_CUDA, 0), DSA_DEVICE_CUDA);
        const std::vector<std::string> refused = refused_ops(device);
        if (refused.empty()) return device;
        problem = "libdsa's CUDA backend lacks what the demo needs:";
        for (const std::string& op : refused) problem += " " + op;
    } catch (const std::exception& error) {
        problem = std::string("no usable CUDA device: ") + error.what();
    }
#else
    const std::string problem = "the demo was built without CUDA";
#endif
    if (choice == DeviceChoice::cuda) throw std::runtime_error("--device cuda: " + problem);
    if (note != nullptr) *note = problem + "; running on the CPU";
    return Device(create_context(DSA_DEVICE_CPU, cpu_threads), DSA_DEVICE_CPU);
}

Device::Device(Device&& other) noexcept : context_(std::exchange(other.context_, nullptr)), type_(other.type_) {}

Device& Device::operator=(Device&& other) noexcept {
    if (this != &other) {
        dsa_context_destroy(context_);
        context_ = std::exchange(other.context_, nullptr);
        type_ = other.type_;
    }
    return *this;
}

Device::~Device() { dsa_context_destroy(context_); }

DeviceTensor Device::input(const void* host, std::initializer_list<int64_t> shape, dsa_dtype_t dtype) const {
    return make(const_cast<void*>(host), shape, dtype, true, false);
}

DeviceTensor Device::output(void* host, std::initializer_list<int64_t> shape, dsa_dtype_t dtype) const {
    return make(host, shape, dtype, false, true);
}

DeviceTensor Device::in_out(void* host, std::initializer_list<int64_t> shape, dsa_dtype_t dtype) const {
    return make(host, shape, dtype, true, true);
}

DeviceTensor Device::make(void* host, std::initializer_list<int64_t> shape, dsa_dtype_t dtype, bool upload,
                          bool download) const {
    DeviceTensor tensor;
    size_t elements = 1;
    for (int64_t extent : shape) elements *= static_cast<size_t>(extent);
    tensor.bytes_ = elements * dsa_dtype_size(dtype);
    void* data = host;
#ifdef STORIES_DSA_WITH_CUDA
    if (is_cuda()) {
        tensor.device_memory_.reset(cuda::allocate(tensor.bytes_));
        data = tensor.device_memory_.get();
        if (upload) cuda::upload(data, host, tensor.bytes_);
        if (download) tensor.host_ = host;
    }
#else
    (void)upload;
    (void)download;
#endif
    check(dsa_tensor_init_contiguous(&tensor.view_, data, static_cast<int32_t>(shape.size()), std::data(shape), dtype,
                                     type_, 0),
          "dsa_tensor_init_contiguous");
    return tensor;
}

void DeviceTensor::fetch() {
#ifdef STORIES_DSA_WITH_CUDA
    if (host_ != nullptr) cuda::download(host_, device_memory_.get(), bytes_);
#endif
}

void DeviceTensor::DeviceMemory::operator()(void* pointer) const {
#ifdef STORIES_DSA_WITH_CUDA
    cuda::release(pointer);
#else
    (void)pointer;
#endif
}

}  // namespace stories
