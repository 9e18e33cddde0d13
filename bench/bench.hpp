// dsa-bench: the pieces every benchmark case shares. A case is one op at one shape; it is
// prepared (random inputs on the benchmarked device, outputs poisoned), run once and checked
// against an oracle on a sample of its rows, then timed. Every op call goes through the public C
// API (dsa.h); only the oracle may use the scalar references of core/reference.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dsa.h"

namespace dsa_bench {

// ---- Shapes -------------------------------------------------------------------------------

// The named integer parameters of a case, in the op's order ("S_q=4096 S_kv=8192 ...").
struct Shape {
    std::vector<std::pair<std::string, int64_t>> entries;

    int64_t operator[](const std::string& key) const;
    std::string text() const;
};

// ---- Random inputs ------------------------------------------------------------------------

// splitmix64: fast enough for gigabytes of inputs, and the same stream on every machine.
class Random {
public:
    explicit Random(uint64_t seed) : state_(seed) {}
    uint64_t next() {
        uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    // Uniform in [0, bound), bound >= 1.
    int64_t below(int64_t bound) { return static_cast<int64_t>(next() % static_cast<uint64_t>(bound)); }
    float uniform(float low, float high) {
        return low + (high - low) * static_cast<float>(next() >> 40) * (1.0f / 16777216.0f);
    }

private:
    uint64_t state_;
};

std::vector<float> random_floats(Random& random, size_t count, float low, float high);
std::vector<uint16_t> random_bf16(Random& random, size_t count, float low, float high);
// e4m3 codes over the whole finite range (subnormals and +-448 included), never NaN.
std::vector<uint8_t> random_e4m3(Random& random, size_t count);
// `count` distinct tokens of [0, range) in random order (all of them, shuffled, if count >= range).
std::vector<int32_t> random_distinct(Random& random, int64_t count, int64_t range);

// ---- Devices ------------------------------------------------------------------------------

// Memory on the benchmarked device (host memory for the CPU), freed with the last copy.
struct Buffer {
    std::shared_ptr<void> memory;
    size_t bytes = 0;
    void* data() const { return memory.get(); }
    template <typename T> T* as() const { return static_cast<T*>(memory.get()); }
};

// The two machine ceilings of the roofline, measured in the same run as the cases.
struct Ceilings {
    double flops = 0;            // FLOP/s: an f32 FMA loop (CPU) or a cuBLAS bf16 GEMM 8192^3 (CUDA)
    double bytes_per_second = 0; // a large copy, bytes read + written
    std::string flops_what, bytes_what;
};

// The samples of a timed case, in milliseconds.
struct Timing {
    double median_ms = 0;
    int repeats = 0;
};

class Device {
public:
    virtual ~Device() = default;
    virtual dsa_device_type_t type() const = 0;
    virtual int32_t device_id() const { return 0; }
    virtual std::string description() const = 0;  // "NVIDIA H200, CUDA 13.0" / "x86-64, 2 threads"
    virtual dsa_context_t* context() const = 0;
    virtual dsa_stream_t stream() const = 0;
    virtual Buffer allocate(size_t bytes) = 0;
    virtual void copy_to_device(void* device, const void* host, size_t bytes) = 0;
    virtual void copy_to_host(void* host, const void* device, size_t bytes) = 0;  // waits for the stream
    virtual void fill(void* device, uint8_t byte, size_t bytes) = 0;
    // Waits for the stream; throws if the device reports an error.
    virtual void synchronize() = 0;
    // Median of `repeats` timed calls of `run` after `warmup` untimed ones (CUDA: events, the L2
    // flushed by writing >= 256 MB before each timed call).
    virtual Timing time(const std::function<void()>& run, int warmup, int repeats) = 0;
    virtual Ceilings measure_ceilings() = 0;

    // A device copy of host data.
    template <typename T> Buffer upload(const std::vector<T>& host) {
        Buffer buffer = allocate(host.size() * sizeof(T));
        copy_to_device(buffer.data(), host.data(), host.size() * sizeof(T));
        return buffer;
    }
    // An output buffer filled with `poison` bytes, so unwritten elements are caught.
    Buffer output(size_t bytes, uint8_t poison) {
        Buffer buffer = allocate(bytes);
        fill(buffer.data(), poison, bytes);
        return buffer;
    }
    // Elements [first, first + count) of a device array of T.
    template <typename T> std::vector<T> download(const Buffer& buffer, size_t first, size_t count) {
        std::vector<T> host(count);
        copy_to_host(host.data(), buffer.as<T>() + first, count * sizeof(T));
        return host;
    }
};

std::unique_ptr<Device> make_cpu_device(int threads);
#ifdef DSA_BENCH_CUDA
std::unique_ptr<Device> make_cuda_device(int device_id);
#endif

// Poison bytes: 0xFF makes f32 and bf16 NaN; 0xA5 makes int32 a large negative value that is
// neither a valid index nor the -1 padding.
inline constexpr uint8_t kPoisonFloat = 0xFF;
inline constexpr uint8_t kPoisonIndex = 0xA5;

// A tensor view of a buffer on the benchmarked device / of host memory.
dsa_tensor_t device_tensor(const Device& device, const Buffer& buffer, std::vector<int64_t> shape, dsa_dtype_t dtype);
dsa_tensor_t host_tensor(const void* data, std::vector<int64_t> shape, dsa_dtype_t dtype);

// Throws with libdsa's message unless status is DSA_STATUS_SUCCESS.
void require_success(dsa_status_t status, const char* what);

// Thrown while preparing a case whose inputs need an op the device does not implement: the case
// is reported as unsupported, like one whose own op answers DSA_STATUS_UNSUPPORTED.
struct Unsupported : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// ---- The oracle ---------------------------------------------------------------------------

// What a case's sampled rows are checked against, on host tensors: the scalar references for the
// CPU device, libdsa's CPU path (through the C API) for the CUDA device. The fused ops are
// checked through their parts.
class Oracle {
public:
    virtual ~Oracle() = default;
    virtual const char* name() const = 0;
    virtual void quantize_fp8(const dsa_quantize_fp8_params_t& params, const dsa_tensor_t& x, const dsa_tensor_t& q,
                              const dsa_tensor_t& scales) = 0;
    virtual void dequantize_fp8(const dsa_quantize_fp8_params_t& params, const dsa_tensor_t& q,
                                const dsa_tensor_t& scales, const dsa_tensor_t& y) = 0;
    virtual void hadamard(const dsa_tensor_t& x, const dsa_tensor_t& y) = 0;  // orthonormal scale
    virtual void topk(const dsa_topk_params_t& params, const dsa_tensor_t& scores, const dsa_tensor_t* row_starts,
                      const dsa_tensor_t* row_ends, const dsa_tensor_t& indices) = 0;
    virtual void indexer_logits(const dsa_tensor_t& q, const dsa_tensor_t& weights, const dsa_tensor_t& k,
                                const dsa_tensor_t& k_scale, const dsa_tensor_t& ks, const dsa_tensor_t& ke,
                                const dsa_tensor_t& logits) = 0;
    virtual void indexer_logits_paged(const dsa_tensor_t& q, const dsa_tensor_t& weights, const dsa_tensor_t& k_cache,
                                      const dsa_tensor_t& block_table, const dsa_tensor_t& context_lens,
                                      const dsa_tensor_t& logits) = 0;
    virtual void indexer_cache_write(const dsa_tensor_t& k, const dsa_tensor_t& slot_mapping,
                                     const dsa_tensor_t& k_cache) = 0;
    // paged: kv is a [num_pages, page_size, width] cache and q/indices/out/lse have a batch axis.
    virtual void sparse_attention(const dsa_sparse_attention_params_t& params, bool paged, const dsa_tensor_t& q,
                                  const dsa_tensor_t& kv, const dsa_tensor_t& indices, const dsa_tensor_t& out,
                                  const dsa_tensor_t& lse) = 0;
    virtual void mla_cache_write(const dsa_tensor_t& c_kv, const dsa_tensor_t& k_pe, const dsa_tensor_t& slot_mapping,
                                 const dsa_tensor_t& kv_cache) = 0;
    // The row-local outputs of the indexer loss (contiguous f32/bf16 inputs; the optional ones
    // may be NULL as dsa.h says).
    virtual void indexer_loss(const dsa_indexer_loss_params_t& params, const dsa_tensor_t& index_q,
                              const dsa_tensor_t& index_k, const dsa_tensor_t& weights, const dsa_tensor_t& ks,
                              const dsa_tensor_t& ke, const dsa_tensor_t* indices, const dsa_tensor_t* teacher_q,
                              const dsa_tensor_t* teacher_k, const dsa_tensor_t* teacher_probs,
                              const dsa_tensor_t& row_loss, const dsa_tensor_t& d_index_q,
                              const dsa_tensor_t& d_weights) = 0;
    // dq of the sparse attention backward (its row-local output).
    virtual void sparse_attention_backward(const dsa_sparse_attention_backward_params_t& params, const dsa_tensor_t& q,
                                           const dsa_tensor_t& kv, const dsa_tensor_t& indices, const dsa_tensor_t& out,
                                           const dsa_tensor_t& lse, const dsa_tensor_t& dout,
                                           const dsa_tensor_t& dq) = 0;
};

std::unique_ptr<Oracle> make_reference_oracle();
std::unique_ptr<Oracle> make_library_oracle(int threads);

// ---- Cases --------------------------------------------------------------------------------

// What a case computes, by ../shared/PERFORMANCE.md's formulas.
struct Work {
    double flop = 0;
    double bytes = 0;
};

// A case ready to run: `run` is the timed call; `check` runs after one call and returns "" when
// the sampled rows agree with the oracle, else what differed.
struct Prepared {
    Work work;
    std::function<dsa_status_t()> run;
    std::function<std::string()> check;
};

// What a case builder gets.
struct Bench {
    Device& device;
    Oracle& oracle;
    uint64_t seed = 1;
    int check_rows = 4;  // rows (or sequences) of each case compared with the oracle
};

struct Op {
    const char* name;
    const char* summary;  // for --help: what is measured and how it is counted
    std::vector<std::pair<std::string, int64_t>> defaults;
    Prepared (*prepare)(Bench& bench, const Shape& shape);
};

// Every op, in table order.
const std::vector<Op>& all_ops();
const Op* find_op(const std::string& name);
// The op families (each in its own file).
void add_elementwise_ops(std::vector<Op>& ops);
void add_indexer_ops(std::vector<Op>& ops);
void add_attention_ops(std::vector<Op>& ops);
void add_training_ops(std::vector<Op>& ops);

// `count` sorted distinct rows of [0, rows) to check: the first, the last, random ones between.
std::vector<int64_t> sample_rows(int64_t rows, int count, uint64_t seed);

// Copies rows `rows` (each `row_elements` long) of `data` into one contiguous array.
template <typename T>
std::vector<T> gather_rows(const std::vector<T>& data, int64_t row_elements, const std::vector<int64_t>& rows) {
    std::vector<T> result;
    result.reserve(rows.size() * static_cast<size_t>(row_elements));
    for (int64_t row : rows)
        result.insert(result.end(), data.begin() + row * row_elements, data.begin() + (row + 1) * row_elements);
    return result;
}

// Rows `rows` of a device array whose rows are `row_elements` long, downloaded into one array.
template <typename T>
std::vector<T> download_rows(Device& device, const Buffer& buffer, int64_t row_elements,
                             const std::vector<int64_t>& rows) {
    std::vector<T> result;
    result.reserve(rows.size() * static_cast<size_t>(row_elements));
    for (int64_t row : rows) {
        const std::vector<T> part = device.download<T>(buffer, static_cast<size_t>(row * row_elements),
                                                       static_cast<size_t>(row_elements));
        result.insert(result.end(), part.begin(), part.end());
    }
    return result;
}

}  // namespace dsa_bench
