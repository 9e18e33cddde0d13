#include "arguments.hpp"

#include <string>

namespace dsa {

Status check_arguments(const Context& context, std::initializer_list<NamedTensor> required,
                       std::initializer_list<NamedTensor> optional) {
    for (const NamedTensor& tensor : required) {
        DSA_TRY(check_tensor(tensor.view, tensor.name));
        DSA_TRY(context.require_device(*tensor.view, tensor.name));
    }
    for (const NamedTensor& tensor : optional) {
        if (tensor.view == nullptr) continue;
        DSA_TRY(check_tensor(tensor.view, tensor.name));
        DSA_TRY(context.require_device(*tensor.view, tensor.name));
    }
    return Status::success();
}

Status require_shape(const TensorView& tensor, const char* name, std::initializer_list<int64_t> expected,
                     const char* what) {
    bool same = tensor.ndim == static_cast<int32_t>(expected.size());
    int axis = 0;
    for (int64_t extent : expected) {
        if (!same) break;
        same = tensor.shape[axis++] == extent;
    }
    if (same) return Status::success();
    auto text = [](const int64_t* extents, size_t count) {
        std::string result = "[";
        for (size_t i = 0; i < count; ++i) result += (i ? ", " : "") + std::to_string(extents[i]);
        return result + "]";
    };
    return {StatusCode::shape_mismatch, std::string(name) + ": shape must be " +
                                            text(expected.begin(), expected.size()) + " (" + what + "), got " +
                                            text(tensor.shape, static_cast<size_t>(tensor.ndim))};
}

Status require_separate_outputs(std::initializer_list<NamedTensor> outputs, std::initializer_list<NamedTensor> inputs) {
    for (const NamedTensor* output = outputs.begin(); output != outputs.end(); ++output) {
        if (output->view == nullptr) continue;
        DSA_TRY(require_non_self_overlapping(*output->view, output->name));
        for (const NamedTensor& input : inputs)
            if (input.view) DSA_TRY(require_disjoint(*output->view, output->name, *input.view, input.name));
        for (const NamedTensor* other = outputs.begin(); other != output; ++other)
            if (other->view) DSA_TRY(require_disjoint(*output->view, output->name, *other->view, other->name));
    }
    return Status::success();
}

}  // namespace dsa
