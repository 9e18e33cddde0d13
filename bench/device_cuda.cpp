// A CUDA GPU as a benchmark device: device buffers, CUDA-event medians with the L2 flushed
// (256 MB written) before every timed call, and the ceilings measured in the same run: a
// device-to-device copy and a cuBLAS bf16 GEMM 8192^3. Only dsa-bench links cudart and cuBLAS;
// libdsa never does.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "bench/bench.hpp"

namespace dsa_bench {
namespace {

void require_cuda(cudaError_t error, const char* what) {
    if (error != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(error));
}

void require_cublas(cublasStatus_t status, const char* what) {
    if (status != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string(what) + ": cuBLAS status " + std::to_string(status));
}

constexpr size_t kFlushBytes = size_t(256) << 20;

class CudaDevice final : public Device {
public:
    explicit CudaDevice(int device_id) : device_id_(device_id) {
        require_cuda(cudaSetDevice(device_id), "cudaSetDevice");
        require_cuda(cudaGetDeviceProperties(&properties_, device_id), "cudaGetDeviceProperties");
        require_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
        require_cuda(cudaEventCreate(&start_), "cudaEventCreate");
        require_cuda(cudaEventCreate(&end_), "cudaEventCreate");
        flush_ = allocate(kFlushBytes);
        dsa_context_options_t options;
        dsa_context_options_init(&options);
        options.device_type = DSA_DEVICE_CUDA;
        options.device_id = device_id;
        require_success(dsa_context_create(&context_, &options), "dsa_context_create (CUDA)");
    }
    ~CudaDevice() override {
        dsa_context_destroy(context_);
        cudaEventDestroy(start_);
        cudaEventDestroy(end_);
        cudaStreamDestroy(stream_);
    }

    dsa_device_type_t type() const override { return DSA_DEVICE_CUDA; }
    int32_t device_id() const override { return device_id_; }
    std::string description() const override {
        int runtime = 0, driver = 0;
        cudaRuntimeGetVersion(&runtime);
        cudaDriverGetVersion(&driver);
        return std::string(properties_.name) + ", " + std::to_string(properties_.multiProcessorCount) + " SMs, " +
               std::to_string(properties_.l2CacheSize >> 20) + " MB L2, CUDA runtime " +
               std::to_string(runtime / 1000) + "." + std::to_string(runtime % 1000 / 10) + ", driver API " +
               std::to_string(driver / 1000) + "." + std::to_string(driver % 1000 / 10);
    }
    dsa_context_t* context() const override { return context_; }
    dsa_stream_t stream() const override { return stream_; }

    Buffer allocate(size_t bytes) override {
        void* memory = nullptr;
        require_cuda(cudaMalloc(&memory, std::max<size_t>(bytes, 1)), "cudaMalloc");
        return Buffer{std::shared_ptr<void>(memory, [](void* p) { cudaFree(p); }), bytes};
    }
    void copy_to_device(void* device, const void* host, size_t bytes) override {
        require_cuda(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpy (upload)");
        synchronize();
    }
    void copy_to_host(void* host, const void* device, size_t bytes) override {
        synchronize();
        require_cuda(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, stream_), "cudaMemcpy (download)");
        synchronize();
    }
    void fill(void* device, uint8_t byte, size_t bytes) override {
        require_cuda(cudaMemsetAsync(device, byte, bytes, stream_), "cudaMemset");
        synchronize();
    }
    void synchronize() override {
        require_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
        require_cuda(cudaGetLastError(), "CUDA error");
    }

    Timing time(const std::function<void()>& run, int warmup, int repeats) override {
        for (int i = 0; i < warmup; ++i) run();
        synchronize();
        std::vector<float> samples;
        for (int i = 0; i < repeats; ++i) {
            // A different byte each time, so no run finds the flush buffer's lines already written.
            require_cuda(cudaMemsetAsync(flush_.data(), i & 0xff, kFlushBytes, stream_), "cudaMemset (L2 flush)");
            require_cuda(cudaEventRecord(start_, stream_), "cudaEventRecord");
            run();
            require_cuda(cudaEventRecord(end_, stream_), "cudaEventRecord");
            require_cuda(cudaEventSynchronize(end_), "cudaEventSynchronize");
            float ms = 0;
            require_cuda(cudaEventElapsedTime(&ms, start_, end_), "cudaEventElapsedTime");
            samples.push_back(ms);
        }
        synchronize();
        std::sort(samples.begin(), samples.end());
        return Timing{samples[samples.size() / 2], repeats};
    }

    Ceilings measure_ceilings() override {
        Ceilings ceilings;
        const size_t copy_bytes = size_t(1) << 30;
        {
            Buffer from = allocate(copy_bytes), to = allocate(copy_bytes);
            fill(from.data(), 0x3c, copy_bytes);
            const Timing timing = time(
                [&] {
                    require_cuda(cudaMemcpyAsync(to.data(), from.data(), copy_bytes, cudaMemcpyDeviceToDevice, stream_),
                                 "cudaMemcpy (copy ceiling)");
                },
                3, 10);
            ceilings.bytes_per_second = 2.0 * copy_bytes / (timing.median_ms * 1e-3);
            ceilings.bytes_what = "device-to-device copy of 1 GiB (read + write)";
        }
        {
            const int n = 8192;
            Random random(8192);
            const std::vector<uint16_t> a = random_bf16(random, size_t(n) * n, -1.0f, 1.0f),
                                        b = random_bf16(random, size_t(n) * n, -1.0f, 1.0f);
            Buffer da = upload(a), db = upload(b), dc = allocate(size_t(n) * n * 2);
            cublasHandle_t handle = nullptr;
            require_cublas(cublasCreate(&handle), "cublasCreate");
            std::unique_ptr<cublasContext, void (*)(cublasHandle_t)> owner(handle, [](cublasHandle_t h) { cublasDestroy(h); });
            require_cublas(cublasSetStream(handle, stream_), "cublasSetStream");
            const float alpha = 1.0f, beta = 0.0f;
            const Timing timing = time(
                [&] {
                    require_cublas(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, da.data(), CUDA_R_16BF,
                                                n, db.data(), CUDA_R_16BF, n, &beta, dc.data(), CUDA_R_16BF, n,
                                                CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                                   "cublasGemmEx");
                },
                3, 10);
            ceilings.flops = 2.0 * n * n * static_cast<double>(n) / (timing.median_ms * 1e-3);
            ceilings.flops_what = "cuBLAS bf16 GEMM 8192^3 (f32 accumulation)";
        }
        return ceilings;
    }

private:
    int device_id_ = 0;
    cudaDeviceProp properties_{};
    cudaStream_t stream_ = nullptr;
    cudaEvent_t start_ = nullptr, end_ = nullptr;
    Buffer flush_;
    dsa_context_t* context_ = nullptr;
};

}  // namespace

std::unique_ptr<Device> make_cuda_device(int device_id) { return std::make_unique<CudaDevice>(device_id); }

}  // namespace dsa_bench
