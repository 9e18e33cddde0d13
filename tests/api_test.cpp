// Versions, status strings, error messages, contexts and tensor helpers.
#include <algorithm>
#include <cstring>
#include <thread>

#include "support.hpp"

using namespace dsa_test;

TEST_CASE("version macros and functions agree") {
    CHECK(dsa_version() == DSA_VERSION_NUMBER);
    const std::string text = std::to_string(DSA_VERSION_MAJOR) + "." + std::to_string(DSA_VERSION_MINOR) + "." +
                             std::to_string(DSA_VERSION_PATCH);
    CHECK(text == dsa_version_string());
    const std::string info = dsa_build_info();
    CHECK(info.find(text) != std::string::npos);
    CHECK(info.find("cpu: ") != std::string::npos);
    CHECK(info.find("cuda") != std::string::npos);
}

TEST_CASE("every status code has a distinct string; unknown codes are named so") {
    std::vector<std::string> seen;
    for (dsa_status_t code = 0; code <= DSA_STATUS_INTERNAL; ++code) {
        const std::string text = dsa_status_string(code);
        CHECK(text != "unknown status");
        CHECK(std::find(seen.begin(), seen.end(), text) == seen.end());
        seen.push_back(text);
    }
    CHECK(std::string(dsa_status_string(-1)) == "unknown status");
    CHECK(std::string(dsa_status_string(1000)) == "unknown status");
}

TEST_CASE("the error message is per thread") {
    CHECK(dsa_context_create(nullptr, nullptr) == DSA_STATUS_INVALID_ARGUMENT);
    const std::string mine = dsa_last_error_message();
    CHECK(mine.find("context") != std::string::npos);
    std::string other = "unset";
    std::thread([&] { other = dsa_last_error_message(); }).join();
    CHECK(other.empty());
    CHECK(dsa_last_error_message() == mine);
}

TEST_CASE("contexts: defaults, thread counts, bad options") {
    dsa_context_t* context = nullptr;
    REQUIRE(dsa_context_create(&context, nullptr) == DSA_STATUS_SUCCESS);
    dsa_device_type_t device = 0;
    int32_t id = -1, threads = 0;
    CHECK(dsa_context_device(context, &device, &id) == DSA_STATUS_SUCCESS);
    CHECK(device == DSA_DEVICE_CPU);
    CHECK(dsa_context_num_threads(context, &threads) == DSA_STATUS_SUCCESS);
    CHECK(threads >= 1);
    CHECK_FAILS_WITH(dsa_context_num_threads(context, nullptr), DSA_STATUS_INVALID_ARGUMENT, "num_threads");
    CHECK_FAILS_WITH(dsa_context_device(nullptr, &device, &id), DSA_STATUS_INVALID_ARGUMENT, "context");
    dsa_context_destroy(context);
    dsa_context_destroy(nullptr);

    dsa_context_options_t options;
    dsa_context_options_init(&options);
    options.num_threads = 3;
    REQUIRE(dsa_context_create(&context, &options) == DSA_STATUS_SUCCESS);
    CHECK(dsa_context_num_threads(context, &threads) == DSA_STATUS_SUCCESS);
    CHECK(threads == 3);
    dsa_context_destroy(context);

    options.num_threads = -1;
    context = reinterpret_cast<dsa_context_t*>(&options);
    CHECK_FAILS_WITH(dsa_context_create(&context, &options), DSA_STATUS_INVALID_ARGUMENT, "num_threads");
    CHECK(context == nullptr);
    dsa_context_options_init(&options);
    options.device_type = 5;
    CHECK_FAILS_WITH(dsa_context_create(&context, &options), DSA_STATUS_DEVICE_MISMATCH, "device_type");
    dsa_context_options_init(&options);
    options.struct_size = 3;
    CHECK_FAILS_WITH(dsa_context_create(&context, &options), DSA_STATUS_INVALID_ARGUMENT, "struct_size");
    dsa_context_options_init(&options);
    options.device_type = DSA_DEVICE_CUDA;
    options.device_id = 4096;
    const dsa_status_t status = dsa_context_create(&context, &options);
    CHECK(status != DSA_STATUS_SUCCESS);  // CPU-only build: unsupported; CUDA build: no such device
    CHECK(context == nullptr);
    CHECK(std::string(dsa_last_error_message()).find("options.device") == 0);
    CHECK(dsa_context_options_init(nullptr) == DSA_STATUS_INVALID_ARGUMENT);
}

TEST_CASE("tensor_init_contiguous and dtype sizes") {
    float data[24];
    dsa_tensor_t tensor;
    const int64_t shape[3] = {2, 3, 4};
    REQUIRE(dsa_tensor_init_contiguous(&tensor, data, 3, shape, DSA_DTYPE_F32, DSA_DEVICE_CPU, 0) == DSA_STATUS_SUCCESS);
    CHECK(tensor.strides[0] == 12);
    CHECK(tensor.strides[1] == 4);
    CHECK(tensor.strides[2] == 1);
    CHECK(dsa_dtype_size(DSA_DTYPE_F32) == 4);
    CHECK(dsa_dtype_size(DSA_DTYPE_BF16) == 2);
    CHECK(dsa_dtype_size(DSA_DTYPE_FP8_E4M3) == 1);
    CHECK(dsa_dtype_size(DSA_DTYPE_I64) == 8);
    CHECK(dsa_dtype_size(0) == 0);
    CHECK(dsa_dtype_size(42) == 0);
    const int64_t huge[2] = {int64_t(1) << 40, int64_t(1) << 40};
    CHECK_FAILS_WITH(dsa_tensor_init_contiguous(&tensor, data, 2, huge, DSA_DTYPE_F32, DSA_DEVICE_CPU, 0),
                     DSA_STATUS_SHAPE_MISMATCH, "overflow");
    const int64_t negative[1] = {-3};
    CHECK_FAILS_WITH(dsa_tensor_init_contiguous(&tensor, data, 1, negative, DSA_DTYPE_F32, DSA_DEVICE_CPU, 0),
                     DSA_STATUS_SHAPE_MISMATCH, "negative");
    CHECK_FAILS_WITH(dsa_tensor_init_contiguous(&tensor, data, 9, shape, DSA_DTYPE_F32, DSA_DEVICE_CPU, 0),
                     DSA_STATUS_INVALID_ARGUMENT, "ndim");
    CHECK_FAILS_WITH(dsa_tensor_init_contiguous(&tensor, data, 3, shape, 77, DSA_DEVICE_CPU, 0),
                     DSA_STATUS_DTYPE_MISMATCH, "dtype");
    CHECK_FAILS_WITH(dsa_tensor_init_contiguous(nullptr, data, 3, shape, DSA_DTYPE_F32, DSA_DEVICE_CPU, 0),
                     DSA_STATUS_INVALID_ARGUMENT, "tensor");
}

TEST_CASE("one context shared by several threads gives the serial results") {
    Context context(2);
    const int64_t rows = 64, n = 256;
    std::vector<float> x = random_floats(rows * n, 99);
    auto run = [&](std::vector<uint8_t>& q, std::vector<float>& s) {
        q.assign(rows * n, 0);
        s.assign(rows * 2, 0);
        dsa_tensor_t xt = view(x.data(), {rows, n}, DSA_DTYPE_F32), qt = view(q.data(), {rows, n}, DSA_DTYPE_U8),
                     st = view(s.data(), {rows, 2}, DSA_DTYPE_F32);
        return dsa_quantize_fp8(context, nullptr, &xt, &qt, &st, nullptr);
    };
    std::vector<uint8_t> serial_q;
    std::vector<float> serial_s;
    REQUIRE(run(serial_q, serial_s) == DSA_STATUS_SUCCESS);
    std::vector<std::vector<uint8_t>> qs(4);
    std::vector<std::vector<float>> ss(4);
    std::vector<dsa_status_t> statuses(4, -1);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int repeat = 0; repeat < 20 && statuses[t] <= 0; ++repeat) statuses[t] = run(qs[t], ss[t]);
        });
    for (std::thread& thread : threads) thread.join();
    for (int t = 0; t < 4; ++t) {
        CHECK(statuses[t] == DSA_STATUS_SUCCESS);
        CHECK(qs[t] == serial_q);
        CHECK(ss[t] == serial_s);
    }
}
