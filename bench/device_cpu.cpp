// The CPU as a benchmark device: host buffers, wall-clock medians, and the f32 FMA peak and
// memory-copy ceilings of bench/timing.hpp measured with the context's thread count.
#include <cstdlib>
#include <cstring>

#include "bench/bench.hpp"
#include "bench/timing.hpp"

namespace dsa_bench {
namespace {

class CpuDevice final : public Device {
public:
    explicit CpuDevice(int threads) {
        dsa_context_options_t options;
        dsa_context_options_init(&options);
        options.num_threads = threads;
        require_success(dsa_context_create(&context_, &options), "dsa_context_create (CPU)");
        dsa_context_num_threads(context_, &threads_);
    }
    ~CpuDevice() override { dsa_context_destroy(context_); }

    dsa_device_type_t type() const override { return DSA_DEVICE_CPU; }
    std::string description() const override {
        return std::string("CPU, ") + std::to_string(threads_) + " threads (" + dsa_build_info() + ")";
    }
    dsa_context_t* context() const override { return context_; }
    dsa_stream_t stream() const override { return nullptr; }

    Buffer allocate(size_t bytes) override {
        // 64-byte aligned (a cache line), at least one byte so empty buffers have an address.
        void* memory = std::aligned_alloc(64, (bytes + 64) / 64 * 64);
        if (!memory) throw std::bad_alloc();
        return Buffer{std::shared_ptr<void>(memory, std::free), bytes};
    }
    void copy_to_device(void* device, const void* host, size_t bytes) override { std::memcpy(device, host, bytes); }
    void copy_to_host(void* host, const void* device, size_t bytes) override { std::memcpy(host, device, bytes); }
    void fill(void* device, uint8_t byte, size_t bytes) override { std::memset(device, byte, bytes); }
    void synchronize() override {}

    Timing time(const std::function<void()>& run, int warmup, int repeats) override {
        return Timing{median_seconds(run, repeats, warmup) * 1e3, repeats};
    }

    Ceilings measure_ceilings() override {
        Ceilings ceilings;
        ceilings.flops = measure_fma_peak_gflops(threads_) * 1e9;
        ceilings.bytes_per_second = measure_copy_gbps() * 1e9;
        ceilings.flops_what = "f32 FMA loop, " + std::to_string(threads_) + " threads";
        ceilings.bytes_what = "memcpy of 256 MB (read + write)";
        return ceilings;
    }

private:
    dsa_context_t* context_ = nullptr;
    int32_t threads_ = 1;
};

}  // namespace

std::unique_ptr<Device> make_cpu_device(int threads) { return std::make_unique<CpuDevice>(threads); }

}  // namespace dsa_bench
