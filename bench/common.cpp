// Shapes, random inputs, tensor views and the op registry of dsa-bench.
#include <algorithm>
#include <set>

#include "bench/bench.hpp"
#include "core/numeric.hpp"

namespace dsa_bench {

int64_t Shape::operator[](const std::string& key) const {
    for (const auto& [name, value] : entries)
        if (name == key) return value;
    throw std::logic_error("shape has no parameter " + key);
}

std::string Shape::text() const {
    std::string result;
    for (const auto& [name, value] : entries) result += (result.empty() ? "" : " ") + name + "=" + std::to_string(value);
    return result;
}

std::vector<float> random_floats(Random& random, size_t count, float low, float high) {
    std::vector<float> values(count);
    for (float& value : values) value = random.uniform(low, high);
    return values;
}

std::vector<uint16_t> random_bf16(Random& random, size_t count, float low, float high) {
    std::vector<uint16_t> values(count);
    for (uint16_t& value : values) value = dsa::float_to_bf16(random.uniform(low, high));
    return values;
}

std::vector<uint8_t> random_e4m3(Random& random, size_t count) {
    std::vector<uint8_t> codes(count);
    size_t i = 0;
    while (i < count) {
        uint64_t bits = random.next();
        for (int byte = 0; byte < 8 && i < count; ++byte, bits >>= 8)
            if ((bits & 0x7f) != 0x7f) codes[i++] = static_cast<uint8_t>(bits);  // 0x7F / 0xFF are NaN
    }
    return codes;
}

std::vector<int32_t> random_distinct(Random& random, int64_t count, int64_t range) {
    std::vector<int32_t> result;
    if (count * 4 >= range) {  // dense: a partial shuffle of all tokens
        std::vector<int32_t> all(static_cast<size_t>(range));
        for (int64_t i = 0; i < range; ++i) all[i] = static_cast<int32_t>(i);
        const int64_t taken = std::min(count, range);
        for (int64_t i = 0; i < taken; ++i) std::swap(all[i], all[i + random.below(range - i)]);
        all.resize(static_cast<size_t>(taken));
        return all;
    }
    std::set<int32_t> seen;  // sparse: rejection sampling
    while (static_cast<int64_t>(result.size()) < count) {
        const auto token = static_cast<int32_t>(random.below(range));
        if (seen.insert(token).second) result.push_back(token);
    }
    return result;
}

dsa_tensor_t device_tensor(const Device& device, const Buffer& buffer, std::vector<int64_t> shape, dsa_dtype_t dtype) {
    dsa_tensor_t tensor;
    require_success(dsa_tensor_init_contiguous(&tensor, buffer.data(), static_cast<int32_t>(shape.size()), shape.data(),
                                               dtype, device.type(), device.device_id()),
                    "dsa_tensor_init_contiguous");
    return tensor;
}

dsa_tensor_t host_tensor(const void* data, std::vector<int64_t> shape, dsa_dtype_t dtype) {
    dsa_tensor_t tensor;
    require_success(dsa_tensor_init_contiguous(&tensor, const_cast<void*>(data), static_cast<int32_t>(shape.size()),
                                               shape.data(), dtype, DSA_DEVICE_CPU, 0),
                    "dsa_tensor_init_contiguous");
    return tensor;
}

void require_success(dsa_status_t status, const char* what) {
    if (status != DSA_STATUS_SUCCESS)
        throw std::runtime_error(std::string(what) + ": " + dsa_status_string(status) + ": " + dsa_last_error_message());
}

std::vector<int64_t> sample_rows(int64_t rows, int count, uint64_t seed) {
    std::set<int64_t> chosen;
    if (rows > 0 && count > 0) chosen.insert(rows - 1);
    if (rows > 0 && count > 1) chosen.insert(0);
    Random random(seed);
    while (static_cast<int64_t>(chosen.size()) < std::min<int64_t>(count, rows)) chosen.insert(random.below(rows));
    return {chosen.begin(), chosen.end()};
}

const std::vector<Op>& all_ops() {
    static const std::vector<Op> ops = [] {
        std::vector<Op> list;
        add_elementwise_ops(list);
        add_indexer_ops(list);
        add_attention_ops(list);
        add_training_ops(list);
        return list;
    }();
    return ops;
}

const Op* find_op(const std::string& name) {
    for (const Op& op : all_ops())
        if (name == op.name) return &op;
    return nullptr;
}

}  // namespace dsa_bench
