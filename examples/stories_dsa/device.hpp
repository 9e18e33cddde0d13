// Where libdsa's ops run. The example's own maths always runs on the host; the tensors it hands
// to libdsa live on the chosen device: on the CPU they are the host arrays themselves, on CUDA
// device copies (inputs uploaded when the tensor is made, outputs downloaded by fetch()).
#pragma once

#include <dsa.h>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>

namespace stories {

// A failed libdsa call: the status and the library's message.
class LibraryError : public std::runtime_error {
public:
    LibraryError(dsa_status_t status, const std::string& what) : std::runtime_error(what), status_(status) {}
    dsa_status_t status() const { return status_; }

private:
    dsa_status_t status_;
};

// Throws LibraryError("<call>: <status>: <message>") unless status is success.
void check(dsa_status_t status, const char* call);

enum class DeviceChoice { automatic, cpu, cuda };

class DeviceTensor;

class Device {
public:
    // cpu: a CPU context with cpu_threads workers (0 = all cores). cuda: a CUDA context on device
    // 0 whose every op the demo needs answers a probe; otherwise throws, saying which op or why.
    // automatic: cuda when that works, else the CPU, with the reason in *note (else note is "").
    static Device open(DeviceChoice choice, int cpu_threads, std::string* note);

    Device(Device&&) noexcept;
    Device& operator=(Device&&) noexcept;
    ~Device();

    dsa_context_t* context() const { return context_; }
    bool is_cuda() const { return type_ == DSA_DEVICE_CUDA; }
    const char* name() const { return is_cuda() ? "cuda" : "cpu"; }

    // A library tensor of host data, contiguous, of the given shape and dtype.
    DeviceTensor input(const void* host, std::initializer_list<int64_t> shape, dsa_dtype_t dtype) const;
    // A library tensor that an op writes; fetch() brings the result into `host`.
    DeviceTensor output(void* host, std::initializer_list<int64_t> shape, dsa_dtype_t dtype) const;
    // Both: an op reads and rewrites it in place.
    DeviceTensor in_out(void* host, std::initializer_list<int64_t> shape, dsa_dtype_t dtype) const;

private:
    Device(dsa_context_t* context, dsa_device_type_t type) : context_(context), type_(type) {}
    DeviceTensor make(void* host, std::initializer_list<int64_t> shape, dsa_dtype_t dtype, bool upload,
                      bool download) const;

    dsa_context_t* context_ = nullptr;
    dsa_device_type_t type_ = DSA_DEVICE_CPU;
};

class DeviceTensor {
public:
    const dsa_tensor_t* get() const { return &view_; }
    // Copies an output back to its host array (nothing to do on the CPU).
    void fetch();

private:
    friend class Device;
    struct DeviceMemory {
        void operator()(void* pointer) const;
    };
    dsa_tensor_t view_{};
    void* host_ = nullptr;  // where fetch() copies to; NULL for inputs and on the CPU
    size_t bytes_ = 0;
    std::unique_ptr<void, DeviceMemory> device_memory_;
};

}  // namespace stories
