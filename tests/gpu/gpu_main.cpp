// Entry point of the GPU test binaries: exit code 77 (CTest reports "skipped") when no CUDA
// device is usable, so the same binaries run everywhere.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cuda_runtime.h>

#include <cstdio>

int main(int argc, char** argv) {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        std::printf("no CUDA device: GPU tests skipped\n");
        return 77;
    }
    doctest::Context context(argc, argv);
    return context.run();
}
