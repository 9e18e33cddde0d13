// The training ops on a CUDA context: validated like on the CPU, then DSA_STATUS_UNSUPPORTED
// with a message naming the op (their CUDA backends are not written yet); outputs untouched.
#include <string>

#include "gpu_support.hpp"

using namespace dsa_test;

namespace {

// A CUDA tensor of `shape` over its own device buffer filled with `fill`.
struct DeviceTensor {
    std::vector<float> host;
    DeviceBuffer<float> buffer;
    dsa_tensor_t tensor;
    DeviceTensor(std::initializer_list<int64_t> shape, dsa_dtype_t dtype, float fill)
        : host(count(shape), fill), buffer(host), tensor(on_device(view(host.data(), shape, dtype), buffer.data)) {}
    static size_t count(std::initializer_list<int64_t> shape) {
        size_t elements = 1;
        for (int64_t extent : shape) elements *= static_cast<size_t>(extent);
        return elements;
    }
    const dsa_tensor_t* get() const { return &tensor; }
    bool untouched() const { return buffer.download() == host; }
};

}  // namespace

TEST_CASE("indexer_loss and sparse_attention_backward answer UNSUPPORTED on CUDA tensors") {
    Context gpu(0, DSA_DEVICE_CUDA, 0);
    const int64_t T = 3, S = 8, H = 2, D = 4;
    DeviceTensor index_q({T, H, D}, DSA_DTYPE_F32, 0.5f), index_k({S, D}, DSA_DTYPE_F32, 0.25f),
        weights({T, H}, DSA_DTYPE_F32, 1.0f), ks({T}, DSA_DTYPE_I32, 0.0f), ke({T}, DSA_DTYPE_I32, 0.0f),
        probs({T, S}, DSA_DTYPE_F32, 0.1f), loss({}, DSA_DTYPE_F32, 7.0f), d_index_k({S, D}, DSA_DTYPE_F32, 7.0f);
    CHECK(dsa_indexer_loss(gpu, nullptr, index_q.get(), index_k.get(), weights.get(), ks.get(), ke.get(), nullptr,
                           nullptr, nullptr, probs.get(), loss.get(), nullptr, nullptr, d_index_k.get(), nullptr,
                           nullptr) == DSA_STATUS_UNSUPPORTED);
    CHECK(std::string(dsa_last_error_message()).find("indexer_loss") != std::string::npos);
    CHECK(loss.untouched());
    CHECK(d_index_k.untouched());

    const int64_t d_qk = 16, d_v = 8, k = 4;
    DeviceTensor q({T, H, d_qk}, DSA_DTYPE_F32, 0.5f), kv({S, d_qk}, DSA_DTYPE_F32, 0.25f),
        indices({T, k}, DSA_DTYPE_I32, 0.0f), out({T, H, d_v}, DSA_DTYPE_F32, 0.1f), lse({T, H}, DSA_DTYPE_F32, 1.0f),
        dout({T, H, d_v}, DSA_DTYPE_F32, 0.2f), dq({T, H, d_qk}, DSA_DTYPE_F32, 7.0f), dkv({S, d_qk}, DSA_DTYPE_F32, 7.0f);
    dsa_sparse_attention_backward_params_t params;
    REQUIRE(dsa_sparse_attention_backward_params_init(&params) == DSA_STATUS_SUCCESS);
    params.scale = 0.25f;
    params.d_v = static_cast<int32_t>(d_v);
    CHECK(dsa_sparse_attention_backward(gpu, &params, q.get(), kv.get(), indices.get(), nullptr, nullptr, out.get(),
                                        lse.get(), dout.get(), dq.get(), dkv.get(), nullptr, nullptr, 0,
                                        nullptr) == DSA_STATUS_UNSUPPORTED);
    CHECK(std::string(dsa_last_error_message()).find("sparse_attention_backward") != std::string::npos);
    CHECK(dq.untouched());
    CHECK(dkv.untouched());
    size_t bytes = 1;
    CHECK(dsa_sparse_attention_backward_workspace_size(gpu, &params, T, k, S, d_qk, &bytes) == DSA_STATUS_SUCCESS);
    CHECK(bytes == 0);
}
