// CUDA quantize / dequantize / hadamard / hadamard_quantize_fp8 against the CPU path on the same
// inputs: the kernels use the same codec and the same butterfly order, so results are bitwise equal.
#include "gpu_support.hpp"

using namespace dsa_test;

TEST_CASE("CUDA quantize_fp8 and dequantize_fp8 equal the CPU bitwise (strided rows, all formats)") {
    Context cpu(2);
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    cudaStream_t stream;
    CUDA_REQUIRE(cudaStreamCreate(&stream));
    const int64_t outer = 300, inner = 250, n = 512;  // 75000 rows > 65535
    std::vector<float> storage = random_floats(outer * inner * 2 * n, 17, -5.0f, 5.0f);
    for (size_t i = 0; i < storage.size(); i += 1031) storage[i] *= 300.0f;
    for (dsa_scale_format_t format : {DSA_SCALE_FORMAT_F32, DSA_SCALE_FORMAT_UE8M0}) {
        for (int32_t group : {128, 64, 32}) {
            CAPTURE(format); CAPTURE(group);
            dsa_quantize_fp8_params_t params;
            dsa_quantize_fp8_params_init(&params);
            params.scale_format = format;
            params.group_size = group;
            // Every other row of the input buffer.
            dsa_tensor_t x = strided(storage.data(), {outer, inner, n}, {inner * 2 * n, 2 * n, 1}, DSA_DTYPE_F32);
            std::vector<uint8_t> q_cpu(outer * inner * n, 1);
            std::vector<float> s_cpu(outer * inner * (n / group), 1.0f);
            dsa_tensor_t qt = view(q_cpu.data(), {outer, inner, n}, DSA_DTYPE_FP8_E4M3);
            dsa_tensor_t st = view(s_cpu.data(), {outer, inner, n / group}, DSA_DTYPE_F32);
            REQUIRE(dsa_quantize_fp8(cpu, &params, &x, &qt, &st, nullptr) == DSA_STATUS_SUCCESS);

            DeviceBuffer<float> x_dev(storage);
            DeviceBuffer<uint8_t> q_dev(std::vector<uint8_t>(q_cpu.size(), 0x33));
            DeviceBuffer<float> s_dev(std::vector<float>(s_cpu.size(), -3.0f));
            dsa_tensor_t xd = on_device(x, x_dev.data), qd = on_device(qt, q_dev.data), sd = on_device(st, s_dev.data);
            REQUIRE_MESSAGE(dsa_quantize_fp8(gpu, &params, &xd, &qd, &sd, stream) == DSA_STATUS_SUCCESS,
                            dsa_last_error_message());
            CHECK(q_dev.download() == q_cpu);
            CHECK(s_dev.download() == s_cpu);

            for (dsa_dtype_t out_dtype : {DSA_DTYPE_F32, DSA_DTYPE_BF16}) {
                const size_t bytes = q_cpu.size() * (out_dtype == DSA_DTYPE_F32 ? 4 : 2);
                std::vector<uint8_t> y_cpu(bytes, 0);
                dsa_tensor_t yt = view(y_cpu.data(), {outer, inner, n}, out_dtype);
                REQUIRE(dsa_dequantize_fp8(cpu, &params, &qt, &st, &yt, nullptr) == DSA_STATUS_SUCCESS);
                DeviceBuffer<uint8_t> y_dev(std::vector<uint8_t>(bytes, 0x7f));
                dsa_tensor_t yd = on_device(yt, y_dev.data);
                REQUIRE(dsa_dequantize_fp8(gpu, &params, &qd, &sd, &yd, stream) == DSA_STATUS_SUCCESS);
                CHECK(y_dev.download() == y_cpu);
            }
        }
    }
    CUDA_REQUIRE(cudaStreamDestroy(stream));
}

TEST_CASE("CUDA quantize_fp8 reads bf16 and f16 inputs like the CPU") {
    Context cpu(1);
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    const int64_t rows = 1000, n = 256;
    std::vector<uint16_t> x = to_bf16(random_floats(rows * n, 4, -100.0f, 100.0f));
    for (dsa_dtype_t dtype : {DSA_DTYPE_BF16, DSA_DTYPE_F16}) {
        if (dtype == DSA_DTYPE_F16)
            for (uint16_t& v : x) v &= 0xbbff;  // keep f16 exponents finite
        dsa_tensor_t xt = view(x.data(), {rows, n}, dtype);
        std::vector<uint8_t> q(rows * n);
        std::vector<float> s(rows * 2);
        dsa_tensor_t qt = view(q.data(), {rows, n}, DSA_DTYPE_U8), st = view(s.data(), {rows, 2}, DSA_DTYPE_F32);
        REQUIRE(dsa_quantize_fp8(cpu, nullptr, &xt, &qt, &st, nullptr) == DSA_STATUS_SUCCESS);
        DeviceBuffer<uint16_t> x_dev(x);
        DeviceBuffer<uint8_t> q_dev(std::vector<uint8_t>(q.size(), 1));
        DeviceBuffer<float> s_dev(std::vector<float>(s.size(), 1.0f));
        dsa_tensor_t xd = on_device(xt, x_dev.data), qd = on_device(qt, q_dev.data), sd = on_device(st, s_dev.data);
        REQUIRE(dsa_quantize_fp8(gpu, nullptr, &xd, &qd, &sd, nullptr) == DSA_STATUS_SUCCESS);
        CHECK(q_dev.download() == q);
        CHECK(s_dev.download() == s);
    }
}

TEST_CASE("CUDA hadamard equals the CPU bitwise for every length, in place too") {
    Context cpu(2);
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    for (int64_t n = 1; n <= 1024; n *= 2) {
        CAPTURE(n);
        const int64_t rows = n == 128 ? 70000 : 257;
        std::vector<float> x = random_floats(rows * n, static_cast<uint32_t>(n) + 1);
        std::vector<float> y(rows * n, 0.0f);
        dsa_tensor_t xt = view(x.data(), {rows, n}, DSA_DTYPE_F32), yt = view(y.data(), {rows, n}, DSA_DTYPE_F32);
        REQUIRE(dsa_hadamard(cpu, nullptr, &xt, &yt, nullptr) == DSA_STATUS_SUCCESS);
        DeviceBuffer<float> xy_dev(x);
        dsa_tensor_t xyd = on_device(xt, xy_dev.data);
        REQUIRE(dsa_hadamard(gpu, nullptr, &xyd, &xyd, nullptr) == DSA_STATUS_SUCCESS);  // in place
        CHECK(xy_dev.download() == y);

        std::vector<uint16_t> xb = to_bf16(x), yb(rows * n, 0);
        dsa_tensor_t xbt = view(xb.data(), {rows, n}, DSA_DTYPE_BF16), ybt = view(yb.data(), {rows, n}, DSA_DTYPE_BF16);
        REQUIRE(dsa_hadamard(cpu, nullptr, &xbt, &ybt, nullptr) == DSA_STATUS_SUCCESS);
        DeviceBuffer<uint16_t> xb_dev(xb), yb_dev(std::vector<uint16_t>(yb.size(), 0xffff));
        dsa_tensor_t xbd = on_device(xbt, xb_dev.data), ybd = on_device(ybt, yb_dev.data);
        REQUIRE(dsa_hadamard(gpu, nullptr, &xbd, &ybd, nullptr) == DSA_STATUS_SUCCESS);
        CHECK(yb_dev.download() == yb);
    }
}

TEST_CASE("CUDA hadamard_quantize_fp8 equals the CPU bitwise (every length, group sizes, formats, dtypes, strided rows)") {
    Context cpu(2);
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    for (int64_t n = 1; n <= 1024; n *= 2) {
        // n = 8: more rows than the grid has blocks, so blocks take several rows.
        const int64_t rows = n == 8 ? 600000 : 301;
        // Every other row of the input buffer, with outliers, NaN, Inf and an all-zero row.
        std::vector<float> storage = random_floats(rows * 2 * n, static_cast<uint32_t>(n) + 5, -4.0f, 4.0f);
        for (size_t i = 0; i < storage.size(); i += 1031) storage[i] *= 500.0f;
        storage[2 * n * 3] = NAN;
        storage[2 * n * 5 + n - 1] = INFINITY;
        for (int64_t i = 0; i < n; ++i) storage[2 * n * 7 + i] = 0.0f;
        for (dsa_dtype_t dtype : {DSA_DTYPE_F32, DSA_DTYPE_BF16, DSA_DTYPE_F16}) {
            std::vector<uint16_t> halves = to_bf16(storage);
            if (dtype == DSA_DTYPE_F16)
                for (uint16_t& v : halves) v = static_cast<uint16_t>((v & 0x83ff) | 0x3000);  // finite f16, |v| in [0.125, 0.25)
            void* host = dtype == DSA_DTYPE_F32 ? static_cast<void*>(storage.data()) : halves.data();
            const size_t bytes = storage.size() * (dtype == DSA_DTYPE_F32 ? 4 : 2);
            dsa_tensor_t x = strided(host, {rows, n}, {2 * n, 1}, dtype);
            DeviceBuffer<uint8_t> x_dev(std::vector<uint8_t>(static_cast<uint8_t*>(host), static_cast<uint8_t*>(host) + bytes));
            const dsa_tensor_t xd = on_device(x, x_dev.data);
            for (int64_t group : {n, int64_t{32}, int64_t{1}}) {
                if (group > n || (group == 1 && n > 64)) continue;
                for (dsa_scale_format_t format : {DSA_SCALE_FORMAT_F32, DSA_SCALE_FORMAT_UE8M0}) {
                    CAPTURE(n); CAPTURE(dtype); CAPTURE(group); CAPTURE(format);
                    dsa_quantize_fp8_params_t params;
                    dsa_quantize_fp8_params_init(&params);
                    params.group_size = static_cast<int32_t>(group);
                    params.scale_format = format;
                    std::vector<uint8_t> q_cpu(rows * n, 1);
                    std::vector<float> s_cpu(rows * (n / group), 1.0f);
                    dsa_tensor_t qt = view(q_cpu.data(), {rows, n}, DSA_DTYPE_FP8_E4M3);
                    dsa_tensor_t st = view(s_cpu.data(), {rows, n / group}, DSA_DTYPE_F32);
                    REQUIRE(dsa_hadamard_quantize_fp8(cpu, nullptr, &params, &x, &qt, &st, nullptr) == DSA_STATUS_SUCCESS);
                    DeviceBuffer<uint8_t> q_dev(std::vector<uint8_t>(q_cpu.size(), 0x33));
                    DeviceBuffer<float> s_dev(std::vector<float>(s_cpu.size(), -3.0f));
                    dsa_tensor_t qd = on_device(qt, q_dev.data), sd = on_device(st, s_dev.data);
                    REQUIRE_MESSAGE(dsa_hadamard_quantize_fp8(gpu, nullptr, &params, &xd, &qd, &sd, nullptr) ==
                                        DSA_STATUS_SUCCESS,
                                    dsa_last_error_message());
                    CHECK(q_dev.download() == q_cpu);
                    CHECK(s_dev.download() == s_cpu);  // scales are never NaN
                }
            }
        }
    }
}

TEST_CASE("CUDA contexts: device checks and errors name the argument") {
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    std::vector<float> host(256, 1.0f), scales(2);
    std::vector<uint8_t> codes(256);
    dsa_tensor_t x = view(host.data(), {2, 128}, DSA_DTYPE_F32), q = view(codes.data(), {2, 128}, DSA_DTYPE_U8),
                 s = view(scales.data(), {2, 1}, DSA_DTYPE_F32);
    CHECK_FAILS_WITH(dsa_quantize_fp8(gpu, nullptr, &x, &q, &s, nullptr), DSA_STATUS_DEVICE_MISMATCH, "x");
    DeviceBuffer<float> x_dev(host);
    dsa_tensor_t xd = on_device(x, x_dev.data);
    CHECK_FAILS_WITH(dsa_quantize_fp8(gpu, nullptr, &xd, &q, &s, nullptr), DSA_STATUS_DEVICE_MISMATCH, "q");
    xd.device_id = 5;
    CHECK_FAILS_WITH(dsa_quantize_fp8(gpu, nullptr, &xd, &q, &s, nullptr), DSA_STATUS_DEVICE_MISMATCH, "x");
    Context cpu(1);
    xd.device_id = 0;
    CHECK_FAILS_WITH(dsa_hadamard(cpu, nullptr, &xd, &xd, nullptr), DSA_STATUS_DEVICE_MISMATCH, "x");

    dsa_context_options_t options;
    dsa_context_options_init(&options);
    options.device_type = DSA_DEVICE_CUDA;
    options.device_id = 999;
    dsa_context_t* context = nullptr;
    CHECK_FAILS_WITH(dsa_context_create(&context, &options), DSA_STATUS_INVALID_ARGUMENT, "device_id");
    CHECK(context == nullptr);
    CHECK(std::string(dsa_build_info()).find("device(s)") != std::string::npos);
}

TEST_CASE("CUDA results are identical run to run") {
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    const int64_t rows = 4096, n = 128;
    std::vector<float> x = random_floats(rows * n, 23);
    DeviceBuffer<float> x_dev(x), y_dev(std::vector<float>(x.size(), 0.0f));
    dsa_tensor_t xd = on_device(view(x.data(), {rows, n}, DSA_DTYPE_F32), x_dev.data);
    dsa_tensor_t yd = on_device(view(x.data(), {rows, n}, DSA_DTYPE_F32), y_dev.data);
    REQUIRE(dsa_hadamard(gpu, nullptr, &xd, &yd, nullptr) == DSA_STATUS_SUCCESS);
    const std::vector<float> first = y_dev.download();
    for (int repeat = 0; repeat < 3; ++repeat) {
        REQUIRE(dsa_hadamard(gpu, nullptr, &xd, &yd, nullptr) == DSA_STATUS_SUCCESS);
        CHECK(y_dev.download() == first);
    }
}
